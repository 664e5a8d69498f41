"""Latency metrics, their percentiles, decomposition, goodput and CDFs from the requests table;
where each request's time went (`latency_split`), and what more requests in flight buy (`load_sweep`).

The metric definitions are the ones in shared/DESIGN.md "Measurement rules", computed from the
stored timings so that other tools' numbers can be recomputed. Only `status == "ok"` rows with
both `ttft_s` and `e2e_s` count. Open-loop runs also get latency from the time a request was due
(`send_lag_s` + `ttft_s` / `e2e_s`), so a client that sent late cannot hide it. The robust fits
and what-if predictions live in `toolkit.analysis.latency_fit` and are re-exported here.
"""
from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd

from toolkit import warehouse
from toolkit.errors import ParameterError
from toolkit.analysis.rows import group_keys, quantile_name, timed_sql
from toolkit.analysis.latency_fit import fit_e2e, fit_robust, fit_ttft, predict, what_if, what_if_prompt
from toolkit.warehouse import Rows

__all__ = [
    "decomposition", "fit_e2e", "fit_robust", "fit_ttft", "goodput", "latency_cdf", "latency_split", "percentiles", "predict", "request_metrics", "what_if", "what_if_prompt",
]

METRIC_COLUMNS = ("tpot_s", "output_tokens_per_s", "itl_mean_s", "overhead_s", "decode_s",
                  "ttft_from_scheduled_s", "e2e_from_scheduled_s")
SHARE_COLUMNS = ("network_share", "ttft_share", "decode_share")
ITL = "itl_s"  # a pseudo-metric: one value per gap in `tbt_s`, not one per request
METRIC_INPUTS = ("status", "ttft_s", "e2e_s", "completion_tokens", "server_s", "tbt_s", "tbt_sum_s", "tbt_count",
                 "send_lag_s")


def _gap_totals(source: duckdb.DuckDBPyRelation) -> tuple[str, str]:
    """SQL for the sum and number of a request's token gaps: `load_run`'s `tbt_sum_s` and `tbt_count` where
    the rows have them (so that the lists need not be read), else from the `tbt_s` lists."""
    if {"tbt_sum_s", "tbt_count"} <= set(source.columns):
        return warehouse.number(source, "tbt_sum_s"), f"coalesce({warehouse.number(source, 'tbt_count')}, 0)"
    if "tbt_s" in source.columns:
        return "coalesce(list_sum(tbt_s), 0.0)", "coalesce(len(tbt_s), 0)"
    return "CAST(NULL AS DOUBLE)", "0"


def with_metrics(rows: Rows) -> duckdb.DuckDBPyRelation:
    """`rows` with `_timed` (status ok with both `ttft_s` and `e2e_s`) and the `METRIC_COLUMNS` of
    `request_metrics` (null where undefined), as a relation: nothing runs until it is read."""
    source = warehouse.relation(rows)
    number = lambda column: warehouse.number(source, column)  # noqa: E731
    gap_sum, gap_count = _gap_totals(source)
    timed = timed_sql(source)
    replaced = [name for name in (*METRIC_COLUMNS, "_timed") if name in source.columns]
    helpers = "_decode, _tokens, _gap_sum, _gap_count"
    return warehouse.over(source, f"""
        SELECT * EXCLUDE ({helpers}),
               CASE WHEN _tokens > 1 THEN _decode / (_tokens - 1) END AS tpot_s,
               CASE WHEN _tokens > 1 AND _decode > 0 THEN (_tokens - 1) / _decode END AS output_tokens_per_s,
               CASE WHEN _timed AND _gap_count > 0 THEN _gap_sum / _gap_count END AS itl_mean_s,
               CASE WHEN _timed THEN {number('e2e_s')} - {number('server_s')} END AS overhead_s,
               _decode AS decode_s,
               CASE WHEN _timed THEN {number('send_lag_s')} + {number('ttft_s')} END AS ttft_from_scheduled_s,
               CASE WHEN _timed THEN {number('send_lag_s')} + {number('e2e_s')} END AS e2e_from_scheduled_s
        FROM (SELECT *, CASE WHEN _timed THEN {number('e2e_s')} - {number('ttft_s')} END AS _decode
              FROM (SELECT {f"* EXCLUDE ({', '.join(map(warehouse.quoted, replaced))})" if replaced else "*"},
                           {timed} AS _timed, {number('completion_tokens')} AS _tokens,
                           {gap_sum} AS _gap_sum, {gap_count} AS _gap_count FROM {{rows}}))""")


def request_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of `frame` with per-request latency metrics added (NaN where undefined).

    tpot_s = (e2e - ttft) / (completion_tokens - 1), undefined for <= 1 token (vLLM);
    output_tokens_per_s = (completion_tokens - 1) / (e2e - ttft) (Artificial Analysis);
    itl_mean_s = mean of the `tbt_s` gaps; overhead_s = e2e - server_s (network and client share,
    only where the server reports its time); decode_s = e2e - ttft; ttft_from_scheduled_s and
    e2e_from_scheduled_s = send_lag_s + ttft / e2e, the latency from the time an open-loop request
    was due (NaN in closed-loop runs). Rows that are not ok or lack timings get NaN for all of them.
    Computed by `with_metrics`, the SQL every latency analysis reads.
    """
    inputs = frame[[c for c in METRIC_INPUTS if c in frame.columns]]
    found = with_metrics(inputs).select(*(warehouse.quoted(c) for c in METRIC_COLUMNS)).df()
    return frame.assign(**{c: found[c].to_numpy(dtype=float, na_value=np.nan) for c in METRIC_COLUMNS})


def _group_counts(source: duckdb.DuckDBPyRelation, keys: Sequence[str], where: str, **aggregates: str) -> pd.DataFrame:
    """Per group of `keys` (in sorted order, nulls last): `aggregates` (name -> SQL) over the rows `where` holds."""
    measured = ", ".join(f"{expression} AS {warehouse.quoted(name)}" for name, expression in aggregates.items())
    return warehouse.over(source, f"SELECT {warehouse.group_columns(source, keys)}{measured} FROM {{rows}} "
                                  f"WHERE {where} GROUP BY ALL {warehouse.group_order(keys)}").df()


def percentiles(rows: Rows, *, by: str | Sequence[str] = ("config_id",),
                metrics: Sequence[str] = ("ttft_s", "e2e_s", "tpot_s"),
                q: Sequence[float] = (0.5, 0.9, 0.95, 0.99)) -> pd.DataFrame:
    """Per group: n (timed requests) and columns `p50_e2e_s`, `p99_tpot_s`, ... (linear interpolation),
    groups in sorted order.

    Any request column or `request_metrics` column is a metric; `itl_s` pools every gap of
    `tbt_s` in the group, which is how vLLM reports ITL percentiles.  Counted in DuckDB (exact quantiles in
    bounded memory, `warehouse.quantiles`), so `rows` may be a run's files.
    """
    keys = group_keys(by)
    measured = with_metrics(rows)
    columns = keys + ["n"] + [f"{quantile_name(p)}_{m}" for m in metrics for p in q]
    table = _group_counts(measured, keys, "_timed", n="count(*)")
    names = {m: [f"{quantile_name(p)}_{m}" for p in q] for m in metrics}
    stored = [m for m in metrics if m != ITL]
    table = warehouse.with_quantiles(table, measured, keys, {m: warehouse.number(measured, m) for m in stored}, q,
                                     {m: names[m] for m in stored}, where="_timed")
    if ITL in metrics:
        if "tbt_s" not in measured.columns:
            raise ParameterError("percentiles: itl_s pools the token gaps of tbt_s, which these rows do not have")
        gaps = warehouse.over(measured, "SELECT *, unnest(tbt_s) AS _gap FROM {rows} WHERE _timed")
        table = warehouse.with_quantiles(table, gaps, keys, {ITL: "_gap"}, q, {ITL: names[ITL]})
    return table.astype({"n": np.int64})[columns]


def decomposition(rows: Rows, *, by: str | Sequence[str] = ("config_id",)) -> pd.DataFrame:
    """Per group, how e2e splits into network/client overhead, TTFT and decoding (TBT x tokens).

    Per request: network = e2e - server_s, clipped to [0, ttft] because the round trip happens
    before the first token arrives (NaN without server_s); ttft part = ttft - network (all of
    TTFT when network is unknown); decode = e2e - ttft. The shares are the medians of the
    per-request shares, rescaled to sum to 1 so they stack; the `median_*_s` columns give
    the seconds. Columns: keys, n, median_e2e_s, median_network_s, median_ttft_s,
    median_decode_s, median_completion_tokens, median_tpot_s, network_share, ttft_share,
    decode_share.  Counted in DuckDB.
    """
    keys = group_keys(by)
    measured = with_metrics(rows)
    number = lambda column: warehouse.number(measured, column)  # noqa: E731
    picked = warehouse.group_columns(measured, keys)
    parts = warehouse.over(measured, f"""
        SELECT *, network_s / e2e_s AS network_share, (ttft_s - coalesce(network_s, 0)) / e2e_s AS ttft_share,
               decode_s / e2e_s AS decode_share
        FROM (SELECT {picked}{number('e2e_s')} AS e2e_s, {number('ttft_s')} AS ttft_s, decode_s,
                     {number('completion_tokens')} AS completion_tokens, tpot_s,
                     CASE WHEN overhead_s IS NULL THEN NULL
                          WHEN greatest(overhead_s, 0) <= {number('ttft_s')} THEN greatest(overhead_s, 0)
                          ELSE {number('ttft_s')} END AS network_s
              FROM {{rows}} WHERE _timed AND {number('e2e_s')} > 0)""")
    seconds = {"median_e2e_s": "e2e_s", "median_network_s": "network_s", "median_ttft_s": "ttft_s",
               "median_decode_s": "decode_s", "median_completion_tokens": "completion_tokens",
               "median_tpot_s": "tpot_s"} | {share: share for share in SHARE_COLUMNS}
    table = _group_counts(parts, keys, "TRUE", n="count(*)")
    table = warehouse.with_quantiles(table, parts, keys,
                                     {name: warehouse.quoted(column) for name, column in seconds.items()}, [0.5],
                                     {name: [name] for name in seconds})
    shares = table[list(SHARE_COLUMNS)].to_numpy(dtype=float)
    total = np.nansum(shares, axis=1, keepdims=True)
    table[list(SHARE_COLUMNS)] = np.where(total > 0, shares / np.where(total > 0, total, 1.0), shares)
    return table.astype({"n": np.int64})[keys + ["n", *seconds]]


def goodput(rows: Rows, *, ttft_s: float | None = None, tpot_s: float | None = None,
            e2e_s: float | None = None, by: str | Sequence[str] = ("config_id",)) -> pd.DataFrame:
    """Per group, requests per second that meet every latency target given (DistServe's goodput).

    A request is good when it is ok, timed, and within each target given (<=); TPOT is undefined
    for <= 1 completion token and then meets its target, as in vLLM's benchmark. The rate is over
    the group's wall time, from its first `started_at` to its last `started_at + e2e_s`.
    Columns: keys, n (all requests, errors included), n_ok, n_good, good_share (n_good / n),
    wall_s, throughput_rps (n_ok / wall_s), goodput_rps (n_good / wall_s).  Counted in DuckDB.
    """
    keys = group_keys(by)
    measured = with_metrics(rows)
    number = lambda column: warehouse.number(measured, column)  # noqa: E731
    good = ["_timed"]
    if ttft_s is not None:
        good.append(f"{number('ttft_s')} <= {float(ttft_s)!r}")
    if e2e_s is not None:
        good.append(f"{number('e2e_s')} <= {float(e2e_s)!r}")
    if tpot_s is not None:
        good.append(f"(tpot_s IS NULL OR tpot_s <= {float(tpot_s)!r})")
    sent = "epoch_us(started_at)" if "started_at" in measured.columns else "CAST(NULL AS DOUBLE)"
    table = _group_counts(measured, keys, "TRUE", n="count(*)", n_ok="count(*) FILTER (WHERE _timed)",
                          n_good=f"count(*) FILTER (WHERE {' AND '.join(good)})",
                          wall_s=f"(max({sent} + {number('e2e_s')} * 1e6) - min({sent})) / 1e6")
    table = table.astype({"n": np.int64, "n_ok": np.int64, "n_good": np.int64})
    wall = table["wall_s"].astype(float)
    table["wall_s"] = wall.where(wall > 0)
    table["good_share"] = table["n_good"] / table["n"]
    table["throughput_rps"] = table["n_ok"] / table["wall_s"]
    table["goodput_rps"] = table["n_good"] / table["wall_s"]
    return table[keys + ["n", "n_ok", "n_good", "good_share", "wall_s", "throughput_rps", "goodput_rps"]]


def latency_cdf(rows: Rows, *, metric: str = "e2e_s", by: str | Sequence[str] = "config_id") -> pd.DataFrame:
    """Tidy empirical CDF per group: keys, the metric's values sorted, and `cdf` = share <= value.

    `metric` may be any request or `request_metrics` column, or `itl_s` for every token gap.  Every
    value is returned: for a figure of a large run, pass a bounded sample (`store.load_sample`).
    """
    keys = group_keys(by)
    measured = with_metrics(rows)
    value = "unnest(tbt_s)" if metric == ITL else warehouse.number(measured, metric)
    picked = "".join(f"{warehouse.quoted(key)}, " for key in keys)
    values = warehouse.over(measured, f"SELECT {picked}{value} AS {warehouse.quoted(metric)} FROM {{rows}} "
                                      "WHERE _timed").df().dropna(subset=[metric])
    values = values.sort_values(keys + [metric], kind="stable").reset_index(drop=True)
    grouped = values.groupby(keys, dropna=False, sort=False, observed=True)[metric]
    values["cdf"] = grouped.rank(method="max") / grouped.transform("size")
    return values[keys + [metric, "cdf"]]


SPLIT_PARTS = ("network_queue", "prefill", "decode", "overhead")


def latency_split(rows: Rows, *, by: str | Sequence[str] = ("config_id",)) -> pd.DataFrame:
    """Per group, where a request's end-to-end time goes, in seconds and shares.

    Per request: network_queue = ttft - server_prefill_s (the trip to the server, the wait for a
    slot and the first token's way back); prefill = server_prefill_s (prompt processing);
    decode = server_decode_s, else the sum of the `tbt_s` gaps (TBT x tokens); overhead = e2e -
    ttft - decode (what follows the last token).  The four add up to e2e.  Without server timings
    network_queue and prefill are NaN (not separable: both are inside TTFT); without them and
    without token gaps (imports such as llmperf's) decode and overhead are NaN too (both are inside
    after_first = e2e - ttft).  Nothing is guessed.
    Columns: keys, n, n_server_timed, mean_/median_ e2e_s, ttft_s, after_first_s and each part's _s,
    the shares (a part's total over the e2e total of the rows where the part is known, so that they
    add up to 1 where every part is known; ttft_share = network_queue + prefill, after_first_share =
    decode + overhead), mean_prompt_tokens, mean_completion_tokens, cached_prompt_share
    (server_cached_tokens / prompt_tokens) and `dominant`, the part with the largest share among
    the finest ones known ("ttft" where TTFT cannot be split, "after_first" where decode cannot).
    Counted in DuckDB.
    """
    keys = group_keys(by)
    source = warehouse.relation(rows)
    number = lambda column: warehouse.number(source, column)  # noqa: E731
    gap_sum, gap_count = _gap_totals(source)
    timed = timed_sql(source)
    picked = warehouse.group_columns(source, keys)
    # the client's own decode time where the server gives none: every gap after the first token;
    # an answer of one token has none, one of several without gaps recorded is unknown
    parts = warehouse.over(source, f"""
        SELECT *, ttft - prefill AS network_queue, e2e - ttft - decode AS overhead, e2e - ttft AS after_first
        FROM (SELECT {picked}{number('ttft_s')} AS ttft, {number('e2e_s')} AS e2e,
                     {number('server_prefill_s')} AS prefill,
                     coalesce({number('server_decode_s')}, CASE WHEN {gap_count} > 0 THEN {gap_sum}
                                                             WHEN {number('completion_tokens')} <= 1 THEN 0.0 END)
                         AS decode,
                     {number('prompt_tokens')} AS prompt_tokens, {number('completion_tokens')} AS completion_tokens,
                     {number('server_cached_tokens')} AS cached_tokens
              FROM {{rows}} WHERE {timed})""")
    seconds = ("e2e", "ttft", "after_first", *SPLIT_PARTS)
    shared = ("ttft", "after_first", *SPLIT_PARTS)
    both = "cached_tokens IS NOT NULL AND prompt_tokens IS NOT NULL"
    table = _group_counts(
        parts, keys, "TRUE", n="count(*)", n_server_timed="count(prefill)",
        **{f"mean_{name}_s": f"avg({name})" for name in seconds},
        **{f"{name}_share": f"CASE WHEN sum(e2e) FILTER (WHERE {name} IS NOT NULL) > 0 "
                            f"THEN sum({name}) / sum(e2e) FILTER (WHERE {name} IS NOT NULL) END" for name in shared},
        mean_prompt_tokens="avg(prompt_tokens)", mean_completion_tokens="avg(completion_tokens)",
        cached_prompt_share=f"CASE WHEN sum(prompt_tokens) FILTER (WHERE {both}) > 0 THEN "
                            f"sum(cached_tokens) FILTER (WHERE {both}) / sum(prompt_tokens) FILTER (WHERE {both}) END")
    table = warehouse.with_quantiles(table, parts, keys, {name: name for name in seconds}, [0.5],
                                     {name: [f"median_{name}_s"] for name in seconds})
    table = table.astype({"n": np.int64, "n_server_timed": np.int64})
    table["dominant"] = [_dominant(row) for row in table.to_dict("records")]
    out = [*keys, "n", "n_server_timed", *(f"{stat}_{name}_s" for name in seconds for stat in ("mean", "median")),
           "ttft_share", "after_first_share", *(f"{name}_share" for name in SPLIT_PARTS), "mean_prompt_tokens",
           "mean_completion_tokens", "cached_prompt_share", "dominant"]
    return table.astype({column: float for column in out if column.endswith(("_s", "_share", "_tokens"))})[out]


def _dominant(row: dict) -> str | None:
    """The part with the largest share among the finest known: TTFT whole where network+queue and
    prefill are unknown, everything after the first token whole where decode is."""
    names = (["network_queue", "prefill"] if not np.isnan(row["prefill_share"]) else ["ttft"]) + (
        ["decode", "overhead"] if not np.isnan(row["decode_share"]) else ["after_first"])
    shares = {name: row[f"{name}_share"] for name in names if not np.isnan(row[f"{name}_share"])}
    return max(shares, key=shares.get) if shares else None


