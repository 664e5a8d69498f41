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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from toolkit import warehouse
from toolkit.analysis.rows import floats, group_keys, quantile_name, timed_mask
from toolkit.analysis.latency_fit import fit_e2e, fit_robust, fit_ttft, predict, what_if, what_if_prompt

__all__ = [
    "decomposition", "fit_e2e", "fit_robust", "fit_ttft", "goodput", "latency_cdf", "latency_split", "percentiles", "predict", "request_metrics", "what_if", "what_if_prompt",
]

METRIC_COLUMNS = ("tpot_s", "output_tokens_per_s", "itl_mean_s", "overhead_s", "decode_s",
                  "ttft_from_scheduled_s", "e2e_from_scheduled_s")
SHARE_COLUMNS = ("network_share", "ttft_share", "decode_share")
ITL = "itl_s"  # a pseudo-metric: one value per gap in `tbt_s`, not one per request


def _timed(frame: pd.DataFrame) -> np.ndarray:
    return timed_mask(frame).to_numpy(dtype=bool, copy=True)  # callers narrow it in place


def _gaps(value: object) -> np.ndarray:
    if isinstance(value, (list, tuple, np.ndarray)):
        return np.asarray(value, dtype=float)
    return np.empty(0)


def _gap_sums(frame: pd.DataFrame, chunk: int = 250_000) -> tuple[np.ndarray, np.ndarray]:
    """Sum and number of each row's gaps: `load_run`'s `tbt_sum_s` and `tbt_count` (summed in DuckDB,
    so the lists need not be read) where the frame has them, else from `tbt_s` through Arrow in chunks
    of rows, because a Python loop over a million lists takes seconds; values that are not lists fall
    back to that loop."""
    if {"tbt_sum_s", "tbt_count"} <= set(frame.columns):
        return np.nan_to_num(floats(frame["tbt_sum_s"])), np.nan_to_num(floats(frame["tbt_count"])).astype(np.int64)
    objects = frame["tbt_s"].to_numpy(dtype=object)
    sums, counts = np.zeros(len(objects)), np.zeros(len(objects), dtype=np.int64)
    for start in range(0, len(objects), chunk):
        part = objects[start:start + chunk]
        window = slice(start, start + len(part))
        try:
            lists = pa.array(part, type=pa.list_(pa.float64()), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            gaps = [_gaps(v) for v in part]
            sums[window], counts[window] = [float(g.sum()) for g in gaps], [len(g) for g in gaps]
            continue
        lengths = pc.list_value_length(lists).fill_null(0).to_numpy()
        sums[window] = np.bincount(np.repeat(np.arange(len(part)), lengths), minlength=len(part),
                                   weights=pc.list_flatten(lists).to_numpy(zero_copy_only=False))
        counts[window] = lengths
    return sums, counts


def _gap_means(frame: pd.DataFrame) -> np.ndarray:
    """Mean of each row's gaps, NaN for none."""
    sums, counts = _gap_sums(frame)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def request_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of `frame` with per-request latency metrics added (NaN where undefined).

    tpot_s = (e2e - ttft) / (completion_tokens - 1), undefined for <= 1 token (vLLM);
    output_tokens_per_s = (completion_tokens - 1) / (e2e - ttft) (Artificial Analysis);
    itl_mean_s = mean of the `tbt_s` gaps; overhead_s = e2e - server_s (network and client share,
    only where the server reports its time); decode_s = e2e - ttft; ttft_from_scheduled_s and
    e2e_from_scheduled_s = send_lag_s + ttft / e2e, the latency from the time an open-loop request
    was due (NaN in closed-loop runs). Rows that are not ok or lack timings get NaN for all of them.
    """
    out = frame.copy(deep=False)  # copy-on-write: only the added columns are new
    timed = _timed(frame)
    ttft, e2e = floats(frame["ttft_s"]), floats(frame["e2e_s"])
    tokens, server = floats(frame["completion_tokens"]), floats(frame["server_s"])
    decode = np.where(timed, e2e - ttft, np.nan)
    multi = tokens > 1
    with np.errstate(divide="ignore", invalid="ignore"):
        out["tpot_s"] = np.where(multi, decode / (tokens - 1), np.nan)
        out["output_tokens_per_s"] = np.where(multi & (decode > 0), (tokens - 1) / decode, np.nan)
    out["itl_mean_s"] = np.where(timed, _gap_means(frame), np.nan)
    out["overhead_s"] = np.where(timed, e2e - server, np.nan)
    out["decode_s"] = decode
    lag = floats(frame["send_lag_s"]) if "send_lag_s" in frame.columns else np.full(len(frame), np.nan)
    out["ttft_from_scheduled_s"] = np.where(timed, lag + ttft, np.nan)
    out["e2e_from_scheduled_s"] = np.where(timed, lag + e2e, np.nan)
    return out


METRIC_INPUTS = ("status", "ttft_s", "e2e_s", "completion_tokens", "server_s", "tbt_s", "tbt_sum_s", "tbt_count",
                 "send_lag_s")


def _timed_metrics(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`request_metrics` of the timed rows, with only `columns` of `frame` beside what the metrics
    read: a copy of every column of a million-row table costs about half a gigabyte."""
    if all(c in frame.columns for c in columns):  # stored columns alone: no metric to compute
        return frame.loc[_timed(frame), list(dict.fromkeys(columns))]
    keep = list(dict.fromkeys(c for c in [*METRIC_INPUTS, *columns] if c in frame.columns))
    return request_metrics(frame.loc[_timed(frame), keep])


def _values(timed: pd.DataFrame, metric: str, keys: list[str]) -> pd.DataFrame:
    """Group keys and one metric's values; `itl_s` is exploded to one row per gap."""
    if metric != ITL:
        return timed[keys + [metric]]
    gaps = timed[keys].copy()
    gaps[ITL] = [_gaps(v) for v in timed["tbt_s"]]
    gaps = gaps.explode(ITL)
    return gaps.astype({ITL: float}).dropna(subset=[ITL])


def percentiles(frame: pd.DataFrame, *, by: str | Sequence[str] = ("config_id",),
                metrics: Sequence[str] = ("ttft_s", "e2e_s", "tpot_s"),
                q: Sequence[float] = (0.5, 0.9, 0.95, 0.99)) -> pd.DataFrame:
    """Per group: n (timed requests) and columns `p50_e2e_s`, `p99_tpot_s`, ... (linear interpolation).

    Any request column or `request_metrics` column is a metric; `itl_s` pools every gap of
    `tbt_s` in the group, which is how vLLM reports ITL percentiles.  The quantiles are taken in
    DuckDB (`quantile_cont`, numpy's linear rule), the gaps unnested there, over numbers and group
    numbers alone; pandas numbers the groups, so they come in its order.
    """
    keys = group_keys(by)
    timed = _timed_metrics(frame, [*keys, *metrics])
    columns = keys + ["n"] + [f"{quantile_name(p)}_{m}" for m in metrics for p in q]
    groups = timed.groupby(keys, dropna=False, sort=True)
    table = groups.size().rename("n").reset_index()
    if table.empty:
        return pd.DataFrame(columns=columns)
    number = groups.ngroup().to_numpy()
    found = warehouse.group_quantiles(pa.table({"_group": number, **{m: floats(timed[m]) for m in metrics if m != ITL}}),
                                      [m for m in metrics if m != ITL], q, len(table))
    if ITL in metrics:
        gaps = pa.array(timed["tbt_s"].map(_gaps).to_numpy(dtype=object), type=pa.list_(pa.float64()))
        found |= warehouse.group_quantiles(pa.table({"_group": number, ITL: gaps}), [ITL], q, len(table), unnest=True)
    for metric in metrics:
        for i, p in enumerate(q):
            table[f"{quantile_name(p)}_{metric}"] = found[metric][:, i]
    return table[columns]


def decomposition(frame: pd.DataFrame, *, by: str | Sequence[str] = ("config_id",)) -> pd.DataFrame:
    """Per group, how e2e splits into network/client overhead, TTFT and decoding (TBT x tokens).

    Per request: network = e2e - server_s, clipped to [0, ttft] because the round trip happens
    before the first token arrives (NaN without server_s); ttft part = ttft - network (all of
    TTFT when network is unknown); decode = e2e - ttft. The shares are the medians of the
    per-request shares, rescaled to sum to 1 so they stack; the `median_*_s` columns give
    the seconds. Columns: keys, n, median_e2e_s, median_network_s, median_ttft_s,
    median_decode_s, median_completion_tokens, median_tpot_s, network_share, ttft_share,
    decode_share.
    """
    keys = group_keys(by)
    timed = _timed_metrics(frame, [*keys, "e2e_s", "ttft_s", "overhead_s", "decode_s", "completion_tokens", "tpot_s"])
    kept = (timed["e2e_s"] > 0).to_numpy()
    e2e, ttft = floats(timed["e2e_s"])[kept], floats(timed["ttft_s"])[kept]
    network = np.clip(floats(timed["overhead_s"])[kept], 0.0, None)
    network = np.where(np.isnan(network) | (network <= ttft), network, ttft)
    decode = floats(timed["decode_s"])[kept]
    parts = timed.loc[kept, keys].assign(
        e2e_s=e2e, network_s=network, ttft_s=ttft, decode_s=decode,
        completion_tokens=floats(timed["completion_tokens"])[kept], tpot_s=floats(timed["tpot_s"])[kept],
        network_share=network / e2e, ttft_share=(ttft - np.nan_to_num(network)) / e2e, decode_share=decode / e2e)
    del timed  # only the columns the medians need are kept
    seconds = {"median_e2e_s": "e2e_s", "median_network_s": "network_s", "median_ttft_s": "ttft_s",
               "median_decode_s": "decode_s", "median_completion_tokens": "completion_tokens",
               "median_tpot_s": "tpot_s"}
    columns = keys + ["n", *seconds, *SHARE_COLUMNS]
    if parts.empty:
        return pd.DataFrame(columns=columns)
    groups = parts.groupby(keys, dropna=False, sort=True, observed=True)
    table = groups[[*seconds.values(), *SHARE_COLUMNS]].median()
    table.columns = [*seconds, *SHARE_COLUMNS]
    table.insert(0, "n", groups.size())
    shares = table[list(SHARE_COLUMNS)].to_numpy(dtype=float)
    total = np.nansum(shares, axis=1, keepdims=True)
    table[list(SHARE_COLUMNS)] = np.where(total > 0, shares / np.where(total > 0, total, 1.0), shares)
    return table.reset_index()[columns]


def goodput(frame: pd.DataFrame, *, ttft_s: float | None = None, tpot_s: float | None = None,
            e2e_s: float | None = None, by: str | Sequence[str] = ("config_id",)) -> pd.DataFrame:
    """Per group, requests per second that meet every latency target given (DistServe's goodput).

    A request is good when it is ok, timed, and within each target given (<=); TPOT is undefined
    for <= 1 completion token and then meets its target, as in vLLM's benchmark. The rate is over
    the group's wall time, from its first `started_at` to its last `started_at + e2e_s`.
    Columns: keys, n (all requests, errors included), n_ok, n_good, good_share (n_good / n),
    wall_s, throughput_rps (n_ok / wall_s), goodput_rps (n_good / wall_s).
    """
    keys = group_keys(by)
    metrics = request_metrics(frame[[c for c in dict.fromkeys([*METRIC_INPUTS, "started_at", *keys])
                                     if c in frame.columns]])
    metrics["_good"] = _meets(metrics, ttft_s=ttft_s, tpot_s=tpot_s, e2e_s=e2e_s)
    metrics["_ok"] = _timed(metrics)
    metrics["_end"] = metrics["started_at"] + pd.to_timedelta(metrics["e2e_s"], unit="s")
    columns = keys + ["n", "n_ok", "n_good", "good_share", "wall_s", "throughput_rps", "goodput_rps"]
    rows = []
    for group, part in metrics.groupby(keys, dropna=False, sort=True):
        wall = (part["_end"].max() - part["started_at"].min()).total_seconds()
        wall = wall if pd.notna(wall) and wall > 0 else np.nan
        n_ok, n_good = int(part["_ok"].sum()), int(part["_good"].sum())
        rows.append(dict(zip(keys, group)) | {
            "n": len(part), "n_ok": n_ok, "n_good": n_good, "good_share": n_good / len(part),
            "wall_s": wall, "throughput_rps": n_ok / wall, "goodput_rps": n_good / wall})
    return pd.DataFrame(rows, columns=columns)


def _meets(metrics: pd.DataFrame, *, ttft_s: float | None, tpot_s: float | None,
           e2e_s: float | None) -> np.ndarray:
    good = _timed(metrics)
    if ttft_s is not None:
        good &= (metrics["ttft_s"] <= ttft_s).fillna(False).to_numpy(dtype=bool)
    if e2e_s is not None:
        good &= (metrics["e2e_s"] <= e2e_s).fillna(False).to_numpy(dtype=bool)
    if tpot_s is not None:
        tpot = metrics["tpot_s"]
        good &= (tpot.isna() | (tpot <= tpot_s)).to_numpy(dtype=bool)
    return good


def latency_cdf(frame: pd.DataFrame, *, metric: str = "e2e_s",
                by: str | Sequence[str] = "config_id") -> pd.DataFrame:
    """Tidy empirical CDF per group: keys, the metric's values sorted, and `cdf` = share <= value.

    `metric` may be any request or `request_metrics` column, or `itl_s` for every token gap.
    """
    keys = group_keys(by)
    values = _values(_timed_metrics(frame, [*keys, metric]), metric, keys).dropna(subset=[metric])
    values = values.sort_values(keys + [metric], kind="stable").reset_index(drop=True)
    grouped = values.groupby(keys, dropna=False, sort=False)[metric]
    values["cdf"] = grouped.rank(method="max") / grouped.transform("size")
    return values[keys + [metric, "cdf"]]


SPLIT_PARTS = ("network_queue", "prefill", "decode", "overhead")


def _split_parts(timed: pd.DataFrame) -> pd.DataFrame:
    """Per timed request, the seconds of each part of `latency_split` (NaN where not separable)."""
    ttft, e2e = floats(timed["ttft_s"]), floats(timed["e2e_s"])
    prefill = floats(timed["server_prefill_s"]) if "server_prefill_s" in timed.columns else np.full(len(timed), np.nan)
    server_decode = (floats(timed["server_decode_s"]) if "server_decode_s" in timed.columns
                     else np.full(len(timed), np.nan))
    gap_sum, gaps = _gap_sums(timed)
    tokens = floats(timed["completion_tokens"])
    # the client's own decode time where the server gives none: every gap after the first token;
    # an answer of one token has none, one of several without gaps recorded is unknown
    streamed = np.where(gaps > 0, gap_sum, np.where(tokens <= 1, 0.0, np.nan))
    decode = np.where(np.isnan(server_decode), streamed, server_decode)
    return pd.DataFrame({"ttft": ttft, "e2e": e2e, "network_queue": ttft - prefill, "prefill": prefill,
                         "decode": decode, "overhead": e2e - ttft - decode, "after_first": e2e - ttft},
                        index=timed.index)


def latency_split(frame: pd.DataFrame, *, by: str | Sequence[str] = ("config_id",)) -> pd.DataFrame:
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
    """
    keys = group_keys(by)
    columns = [*keys, "prompt_tokens", "completion_tokens", "server_prefill_s", "server_decode_s",
               "server_cached_tokens"]
    timed = frame.loc[_timed(frame), [c for c in dict.fromkeys([*METRIC_INPUTS, *columns]) if c in frame.columns]]
    parts = _split_parts(timed)
    parts[keys] = timed[keys]
    parts["prompt_tokens"] = floats(timed["prompt_tokens"]) if "prompt_tokens" in timed.columns else np.nan
    parts["completion_tokens"] = floats(timed["completion_tokens"])
    parts["cached_tokens"] = (floats(timed["server_cached_tokens"]) if "server_cached_tokens" in timed.columns
                              else np.nan)
    seconds = ("e2e", "ttft", "after_first", *SPLIT_PARTS)
    out = [*keys, "n", "n_server_timed", *(f"{stat}_{name}_s" for name in seconds for stat in ("mean", "median")),
           "ttft_share", "after_first_share", *(f"{name}_share" for name in SPLIT_PARTS), "mean_prompt_tokens",
           "mean_completion_tokens", "cached_prompt_share", "dominant"]
    rows = []
    for group, part in parts.groupby(keys, dropna=False, sort=True):
        row = dict(zip(keys, group)) | {"n": len(part), "n_server_timed": int(part["prefill"].notna().sum())}
        for name in seconds:
            row[f"mean_{name}_s"], row[f"median_{name}_s"] = part[name].mean(), part[name].median()
        for name in ("ttft", "after_first", *SPLIT_PARTS):
            known = part[name].notna()
            total = part.loc[known, "e2e"].sum()
            row[f"{name}_share"] = part.loc[known, name].sum() / total if known.any() and total > 0 else np.nan
        row["mean_prompt_tokens"] = part["prompt_tokens"].mean()
        row["mean_completion_tokens"] = part["completion_tokens"].mean()
        cached = part.dropna(subset=["cached_tokens", "prompt_tokens"])
        row["cached_prompt_share"] = (cached["cached_tokens"].sum() / cached["prompt_tokens"].sum()
                                      if cached["prompt_tokens"].sum() > 0 else np.nan)
        row["dominant"] = _dominant(row)
        rows.append(row)
    return pd.DataFrame(rows, columns=out)


def _dominant(row: dict) -> str | None:
    """The part with the largest share among the finest known: TTFT whole where network+queue and
    prefill are unknown, everything after the first token whole where decode is."""
    names = (["network_queue", "prefill"] if not np.isnan(row["prefill_share"]) else ["ttft"]) + (
        ["decode", "overhead"] if not np.isnan(row["decode_share"]) else ["after_first"])
    shares = {name: row[f"{name}_share"] for name in names if not np.isnan(row[f"{name}_share"])}
    return max(shares, key=shares.get) if shares else None


