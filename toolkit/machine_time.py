"""Machine time of self-hosted requests: each request's share of the wall time of the phase it ran in.

A self-hosted request's machine cost is the hourly rate x its share of the wall time of its phase
(one concurrency level of one collection session): what the machine actually delivered at that
load, never the request's own e2e divided by its nominal concurrency.  `machine_seconds` gives the
shares, `MACHINE_RULES` says in words how each was found, and `pricing_rules` counts which rule
priced which requests, so a report can say so.  `pricing.price_requests` turns the seconds into dollars.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from toolkit.price_table import MachinePrice, PriceTable, resolve_price


MACHINE_RULES = {
    "phase": "machine time by phase: the wall time of the phase a request ran in (one concurrency level "
             "of one collection session, first send to last byte), shared among the phase's requests in "
             "proportion to the work each did (the server's prefill + decode time where it reports it, else "
             "end-to-end time); what the machine delivered at that load",
    "e2e": "machine time by request: no phase was recorded (imported data), so each request is charged "
           "its own end-to-end time as if the machine served it alone (exact for a server that runs one "
           "request at a time, an upper bound for one that batches)",
    "batch": "machine time by batch: a batch answer has no time of its own, so the span from the batch's "
             "first answer to its last is shared equally among its answers",
    "cache_hit": "response-cache hit: no machine time",
}


MACHINE_INPUTS = ("run_id", "endpoint", "phase", "started_at", "e2e_s", "cache_hit", "batch", "server_prefill_s",
                  "server_decode_s")  # what `machine_seconds` reads


def machine_seconds(frame: pd.DataFrame) -> pd.DataFrame:
    """Each request's share of a self-hosted machine's wall time, and the rule that gave it.

    Columns `machine_s` and `machine_rule` (a key of `MACHINE_RULES`), on `frame`'s index.  Rows
    with a `phase` share the wall time of (run_id, endpoint, phase), from its first send to its last
    byte, in proportion to the work each did (the server's prefill + decode seconds where it reports
    them, else e2e_s): a serial server at concurrency 4 queues every request four deep but takes
    the same wall time per request, so a request costs what it costs at concurrency 1; a server
    that truly runs four at once finishes the phase sooner and each request costs less in
    proportion to the measured throughput.  Rows without a phase pay their own e2e_s.  Batch
    answers without times share their batch's span equally.  Response-cache hits use no machine time.
    """
    index = frame.index
    e2e = frame["e2e_s"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    hit = (frame["cache_hit"].astype("boolean").fillna(False).to_numpy(dtype=bool)
           if "cache_hit" in frame.columns else np.zeros(len(frame), dtype=bool))
    phase = (frame["phase"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
             if "phase" in frame.columns else np.full(len(frame), np.nan))
    if "started_at" in frame.columns:
        started = pd.to_datetime(frame["started_at"], utc=True)
        sent_s = (started - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float, na_value=np.nan)
    else:  # no send times: nothing to measure a phase or a batch by
        sent_s = np.full(len(frame), np.nan)
    by_phase = ~np.isnan(phase) & ~np.isnan(sent_s)
    # the server's own prefill + decode time is the work a request did; e2e adds queueing, so it
    # is the weight only where the server reports no timings
    work = e2e
    if {"server_prefill_s", "server_decode_s"} <= set(frame.columns):
        served = (frame["server_prefill_s"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
                  + frame["server_decode_s"].astype("Float64").to_numpy(dtype=float, na_value=np.nan))
        work = np.where(np.isnan(served), e2e, served)
    batch = (frame["batch"].astype("boolean").fillna(False).to_numpy(dtype=bool) if "batch" in frame.columns
             else np.zeros(len(frame), dtype=bool))
    by_batch = batch & np.isnan(e2e) & ~np.isnan(sent_s) & ~hit
    by_phase &= ~by_batch
    machine = np.where(hit, 0.0, e2e)
    rules = list(MACHINE_RULES)
    code = {name: rules.index(name) for name in rules}
    rule = np.where(hit, code["cache_hit"],
                    np.where(by_phase, code["phase"], np.where(by_batch, code["batch"], code["e2e"])))
    if by_batch.any():
        answers = pd.DataFrame({"run_id": _column(frame, "run_id")[by_batch],
                                "endpoint": _column(frame, "endpoint")[by_batch], "sent": sent_s[by_batch]})
        groups = answers.groupby(["run_id", "endpoint"], sort=False, dropna=False)["sent"]
        machine[by_batch] = (groups.transform("max") - groups.transform("min")) / groups.transform("size")
    if by_phase.any():
        phased = pd.DataFrame({
            "run_id": _column(frame, "run_id")[by_phase], "endpoint": _column(frame, "endpoint")[by_phase],
            "phase": phase[by_phase], "sent": sent_s[by_phase],
            "done": np.fmax(sent_s[by_phase] + np.nan_to_num(e2e[by_phase]), sent_s[by_phase]),
            "weight": np.where(hit[by_phase], 0.0, np.nan_to_num(work[by_phase]))})
        groups = phased.groupby(["run_id", "endpoint", "phase"], sort=False, dropna=False)
        wall = groups["done"].transform("max") - groups["sent"].transform("min")
        busy = groups["weight"].transform("sum")
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(busy > 0, wall * phased["weight"] / busy, 0.0)
        machine[by_phase] = np.where(hit[by_phase], 0.0, np.where(np.isnan(e2e[by_phase]), np.nan, share))
    return pd.DataFrame({"machine_s": machine, "machine_rule": pd.Categorical.from_codes(rule, categories=rules)},
                        index=index)


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A grouping key as integer codes, missing the same as "" (numbers: a million strings as Python
    objects cost a hundred megabytes)."""
    if name not in frame.columns:
        return np.zeros(len(frame), dtype=np.intp)
    values = frame[name]
    return pd.factorize(values.fillna("") if isinstance(values.dtype, pd.StringDtype)
                        else values.astype(object).fillna(""))[0]


def pricing_rules(frame: pd.DataFrame, table: PriceTable) -> pd.DataFrame:
    """Which rule priced which requests: one row per (model, rule) with its request count.

    Columns: model, kind ("tokens" or "machine"), rule (a `MACHINE_RULES` key, "tokens" or
    "batch tokens"), requests, description.  A report shows this so a reader knows whether a
    self-hosted cost came from measured phases or from the per-request fallback.
    """
    if frame.empty:
        return pd.DataFrame(columns=["model", "kind", "rule", "requests", "description"])
    rules = (frame["machine_rule"].astype(object) if "machine_rule" in frame.columns
             else machine_seconds(frame)["machine_rule"].astype(object))
    kinds = {m: isinstance(resolve_price(table, m)[1], MachinePrice) for m in frame["model"].dropna().unique()}
    machine = frame["model"].astype(object).map(kinds).eq(True).to_numpy(dtype=bool)
    batch = frame["batch"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    token_rule = np.where(batch, "batch tokens", "tokens")
    token_rule = np.where(rules.to_numpy() == "cache_hit", "cache_hit", token_rule)
    rule = np.where(machine, rules.to_numpy(), token_rule)
    counts = (pd.DataFrame({"model": frame["model"].astype(object), "kind": np.where(machine, "machine", "tokens"),
                            "rule": rule}).groupby(["model", "kind", "rule"], sort=True).size()
              .rename("requests").reset_index())
    token_words = {"tokens": "token prices x the request's tokens",
                   "batch tokens": f"token prices less the batch discount ({table.batch_discount:.0%})"}
    counts["description"] = counts["rule"].map(lambda r: MACHINE_RULES.get(r) or token_words[r])
    return counts
