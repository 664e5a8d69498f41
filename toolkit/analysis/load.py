"""How an endpoint behaves under load: what more requests in flight buy (`load_sweep`) and whether
an open-loop run kept its arrival rate (`arrival_rates`)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from toolkit.analysis.rows import floats, group_keys, quantile_name, timed_mask
from toolkit.machine_time import MACHINE_INPUTS, machine_seconds

LOAD_GROUP = ("endpoint", "model", "prompt_variant", "max_tokens", "stop_sequences", "temperature",
              "response_cache")


def _phase_seconds(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's share of its phase's wall time (`machine_time.machine_seconds`) and how it was known:
    "phase"; "level" for rows collected without a recorded phase (older runs, imports), taken as
    one phase per run, endpoint and concurrency level (the collector has always sent one level at
    a time, and llmperf does too); "hit" for response-cache hits (0 s: no machine time); "none"
    where no send time makes a phase (NaN seconds)."""
    if {"machine_s", "machine_rule"} <= set(frame.columns):  # load_run's, shared over the whole run
        seconds = floats(frame["machine_s"]).copy()
        rule = frame["machine_rule"].astype(object).to_numpy()
    else:
        machine = machine_seconds(frame)
        seconds = machine["machine_s"].to_numpy(dtype=float, copy=True)
        rule = machine["machine_rule"].astype(object).to_numpy()
    how = np.where(rule == "phase", "phase", np.where(rule == "cache_hit", "hit", "none")).astype(object)
    loose = rule == "e2e"
    if loose.any():
        # what machine_seconds and the levels read: a copy of every column of a million rows costs ~0.4 GB
        part = frame.loc[loose, [c for c in (*MACHINE_INPUTS, "concurrency") if c in frame.columns]]
        levels = part.groupby(["run_id", "endpoint", "concurrency"], dropna=False, sort=False).ngroup()
        stand_in = machine_seconds(part.assign(phase=-1 - levels.to_numpy()))
        phased = (stand_in["machine_rule"] == "phase").to_numpy()
        seconds[loose] = np.where(phased, stand_in["machine_s"].to_numpy(dtype=float), np.nan)
        how[loose] = np.where(phased, "level", "none")
    seconds = np.where(how == "none", np.nan, seconds)
    return seconds, how


def load_sweep(frame: pd.DataFrame, *, by: str | Sequence[str] = LOAD_GROUP,
               level: str = "concurrency") -> pd.DataFrame:
    """What more requests in flight buy: per config group (`by`, every setting but the load) and
    `level`, the throughput against the latency it costs, and the knee.

    throughput_rps and throughput_tokens_per_s = requests (output tokens) completed over the wall
    time of the phases they ran in, first send to last byte, shared among a phase's requests as
    `machine_time.machine_seconds` shares it (the same seconds a self-hosted request is priced by).
    p50/p95 of ttft_s and e2e_s over the timed rows.  e2e_ratio and throughput_ratio are the
    factors from the previous level; `knee` marks the first level where p50 e2e grows by a larger
    factor than throughput_rps: past it, more in flight buys latency rather than throughput.
    Columns: keys, level, n, n_ok, wall_s,
    wall_rule ("phase", "level" or "none": see `_phase_seconds`), throughput_rps,
    throughput_tokens_per_s, p50_/p95_ ttft_s and e2e_s, e2e_ratio, throughput_ratio, knee.
    """
    keys = [k for k in group_keys(by) if k in frame.columns and k != level]
    seconds, how = _phase_seconds(frame)
    data = frame[[*keys, level, "status", "ttft_s", "e2e_s", "completion_tokens"]].copy()
    data["_seconds"], data["_how"] = seconds, how
    # completed: ok and inside a phase whose wall time is known, so that count and seconds match
    data["_done"] = frame["status"].eq("ok").fillna(False).to_numpy(dtype=bool) & (how != "none")
    data["_timed"] = timed_mask(frame).to_numpy(dtype=bool)
    data["_tokens"] = np.where(data["_done"], np.nan_to_num(floats(frame["completion_tokens"])), 0.0)
    columns = [*keys, level, "n", "n_ok", "wall_s", "wall_rule", "throughput_rps",
               "throughput_tokens_per_s", "p50_ttft_s", "p95_ttft_s", "p50_e2e_s", "p95_e2e_s", "e2e_ratio",
               "throughput_ratio", "knee"]
    rows = []
    for values, part in data.groupby([*keys, level], dropna=False, sort=True):
        row = dict(zip([*keys, level], values))
        wall = part["_seconds"].sum(min_count=1)
        wall = wall if wall > 0 else np.nan
        rules = sorted(set(part["_how"].unique()) - {"none", "hit"}) or ["none"]
        row |= {"n": len(part), "n_ok": int(part["status"].eq("ok").fillna(False).sum()), "wall_s": wall,
                "wall_rule": "+".join(rules), "throughput_rps": part["_done"].sum() / wall,
                "throughput_tokens_per_s": part["_tokens"].sum() / wall}
        timed = part[part["_timed"]]
        for metric in ("ttft_s", "e2e_s"):
            values_s = timed[metric].astype(float)
            for q in (0.5, 0.95):
                row[f"{quantile_name(q)}_{metric}"] = float(values_s.quantile(q)) if len(values_s) else np.nan
        rows.append(row)
    table = pd.DataFrame(rows, columns=columns)
    # rows come sorted by group, then level: compare each level with the one before it
    group = table.groupby(keys, dropna=False, sort=False).ngroup() if keys else pd.Series(0, index=table.index)
    table["e2e_ratio"] = table["p50_e2e_s"] / table.groupby(group)["p50_e2e_s"].shift()
    table["throughput_ratio"] = table["throughput_rps"] / table.groupby(group)["throughput_rps"].shift()
    past = (table["e2e_ratio"] > table["throughput_ratio"]).astype(int)
    table["knee"] = (past == 1) & (past.groupby(group).cumsum() == 1)
    return table


def arrival_rates(phases: Sequence[dict]) -> pd.DataFrame:
    """The open-loop phases of a manifest's "phases" list: target and achieved rate, their ratio,
    requests sent and the largest send lag.  Empty (with the columns) for a closed-loop run."""
    columns = ["phase", "target_rate_per_s", "achieved_rate_per_s", "achieved_share", "requests",
               "max_in_flight", "max_send_lag_s"]
    rows = []
    for entry in phases:
        arrival = entry.get("arrival")
        if not arrival:
            continue
        target, achieved = arrival.get("target_rate_per_s"), arrival.get("achieved_rate_per_s")
        rows.append({"phase": entry.get("phase"), "target_rate_per_s": target, "achieved_rate_per_s": achieved,
                     "achieved_share": achieved / target if achieved is not None and target else np.nan,
                     "requests": arrival.get("requests"), "max_in_flight": arrival.get("max_in_flight"),
                     "max_send_lag_s": arrival.get("max_send_lag_s")})
    return pd.DataFrame(rows, columns=columns).astype({"achieved_rate_per_s": float, "max_send_lag_s": float})
