"""Tables for reading: readable headers, a unit in every cell, intervals folded into their values."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from toolkit.errors import ParameterError
from toolkit.present.units import is_missing, pct, secs, usd


# Headers of the tables `show` returns; units live in the cells.
HEADERS = {
    "config_id": "configuration", "n": "requests", "accuracy": "accuracy", "hit_rate": "cache hit rate",
    "usd_per_1k": "cost per 1,000 requests", "usd_per_request": "cost per request",
    "break_even_accuracy": "break-even accuracy", "accuracy_target": "accuracy needed",
    "ev_usd": "expected value per request", "monthly_ev_usd": "expected value per month",
    "break_even_verdict": "vs break-even", "human_verdict": "vs human",
    "mean_prompt_tokens": "prompt tokens (mean)", "mean_completion_tokens": "output tokens (mean)",
    "median_completion_tokens": "output tokens (median)", "pareto": "on the 3-objective front",
    "dominated_by": "beaten on all three by", "good_share": "meets every target", "n_ok": "ok",
    "n_good": "meet every target", "goodput_rps": "goodput", "throughput_rps": "throughput",
    "accuracy_diff": "accuracy A − B", "p_value": "p", "p_adjusted": "p (Holm-adjusted)",
    "n_pairs": "paired items", "a_only": "only A right", "b_only": "only B right", "config_a": "A",
    "config_b": "B", "hits": "cache hits", "e2e_hit_s": "mean e2e of a hit", "e2e_miss_s": "mean e2e of a miss",
    "usd_saved_per_1k": "saved per 1,000 requests", "input_usd_per_mtok": "input per million tokens",
    "output_usd_per_mtok": "output per million tokens", "usd_per_hour": "machine time per hour",
    "prompt_tokens_mean": "prompt tokens (mean)", "n_shared": "requests after a shared prefix",
    "n_changed": "requests after a changed prefix", "cached_input_usd_per_mtok": "cached input per million tokens",
    "ttft_base_s": "TTFT before prefill", "prefill_s_per_token": "prefill time",
    "cached_prefill_s_per_token": "prefill time of a cached token", "decode_s_per_token": "decode time",
    "lookup_s": "response-cache lookup", "batch_wait_s": "batch wait (the promised worst case)",
    "below_minimum_share": "prompts too short to cache", "batch_rows": "sent as a batch",
    "usd_online": "cost online", "usd_batch": "cost as a batch", "machine_usd": "machine time of the batch", "ttft_shared_median_s": "median TTFT, shared prefix",
    "ttft_changed_median_s": "median TTFT, changed prefix", "ttft_saved_s": "TTFT saved (mean)",
    "speedup": "speed-up", "prompt_variant": "prompt variant", "monthly_usd": "cost per month",
    "usd_saved": "saved", "saved_share": "saved share", "online_e2e_s": "mean e2e online",
    "deferred_share": "deferred to a batch", "cached_tokens_per_request": "cached tokens per request",
    "throughput_tokens_per_s": "output throughput",
}

_ABBREVIATIONS = {"e2e": "e2e", "ttft": "TTFT", "tpot": "TPOT", "usd": "USD"}


def header(column: str) -> str:
    """A table header for a column: `HEADERS`, else the name without its unit (`p95_e2e_s` -> `p95 e2e`)."""
    if column in HEADERS:
        return HEADERS[column]
    name = column
    if name.endswith("_output_tokens_per_s"):
        name = name.removesuffix("_output_tokens_per_s") + "_output_speed"
    for suffix in ("_usd", "_rps", "_s"):
        name = name.removesuffix(suffix)
    return " ".join(_ABBREVIATIONS.get(w, w) for w in name.split("_"))


def cell(column: str, value: object) -> str:
    """One value with its unit, chosen by the column's name: percent, ms or s, USD, tokens/s, counts."""
    if is_missing(value):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    number = float(value)  # type: ignore[arg-type]
    if column == "accuracy_diff":
        return f"{100 * number:+.1f} pp"
    if column == "accuracy" or column.endswith(("_accuracy", "_share", "_rate", "_discount")):
        return pct(number)
    if column.endswith("_s_per_token"):
        return f"{secs(number)} per token"
    if column.endswith("_rps"):
        return f"{number:.3g}/s"
    if column == "speedup" or column.endswith("_ratio"):
        return f"{number:.1f}x"
    if column.endswith("_per_s"):
        return f"{number:.1f} tokens/s"
    if "usd" in column:
        return usd(number)
    if column.endswith("_s"):
        return secs(number)
    if column.startswith("p_") or column.endswith("_p"):
        return f"{number:.2g}"
    return f"{number:,.0f}" if number == int(number) else f"{number:,.1f}"


def show(table: pd.DataFrame, columns: Sequence[str], *, index: str | None = "config_id") -> pd.DataFrame:
    """`table` for reading: `index` as the index, `columns` under readable headers, a unit in every cell
    (percent, ms or s, USD) and a value's interval folded into its cell when the table has one
    (`accuracy` with `accuracy_low`/`accuracy_high`, `ev_usd` with `ev_low_usd`/`ev_high_usd`,
    `e2e_miss_s` with `e2e_miss_low`/`e2e_miss_high`).  A column with no value at all is left out:
    it would say nothing.  Returns text: for display only."""
    missing = [c for c in [*columns, *([index] if index else [])] if c not in table.columns]
    if missing:
        raise ParameterError(f"show: table has no column(s) {', '.join(missing)}")
    out = pd.DataFrame(index=table.index)
    for column in columns:
        if table[column].isna().all() and len(table):
            continue
        low, high = _bounds(table, column)
        values = [cell(column, v) for v in table[column]]
        if low is not None:
            values = [_with_interval(v, cell(column, lo), cell(column, hi))
                      for v, lo, hi in zip(values, table[low], table[high])]
        out[header(column)] = values
    if index is not None:
        out.index = pd.Index(table[index].astype(str).to_numpy(), name=header(index))
    else:
        out.index = pd.RangeIndex(1, len(out) + 1)
    return out


def assumptions(*settings: object) -> pd.DataFrame:
    """The fields of frozen dataclasses (prices, a latency model) as a two-column table with units."""
    rows = [(header(f.name), cell(f.name, getattr(s, f.name))) for s in settings for f in dataclasses.fields(s)]
    return pd.DataFrame(rows, columns=["assumption", "value"]).set_index("assumption")


def accuracy_matrix(table: pd.DataFrame, *, id_col: str = "config_id", column: str = "dataset") -> pd.DataFrame:
    """Accuracy per config (rows) and `column` (columns) as percentages, from a two-key `accuracy_table`."""
    wide = table.pivot(index=id_col, columns=column, values="accuracy")
    wide = wide.reindex(index=list(dict.fromkeys(table[id_col])))
    out = wide.apply(lambda values: [pct(v) for v in values])
    out.index.name, out.columns.name = header(id_col), None
    return out


def _bounds(table: pd.DataFrame, column: str) -> tuple[str | None, str | None]:
    candidates = [(f"{column}_low", f"{column}_high")]
    for unit in ("_usd", "_s"):
        if column.endswith(unit):
            base = column.removesuffix(unit)
            candidates += [(f"{base}_low{unit}", f"{base}_high{unit}"), (f"{base}_low", f"{base}_high")]
    for low, high in candidates:
        if low in table.columns and high in table.columns:
            return low, high
    return None, None


def _with_interval(value: str, low: str, high: str) -> str:
    if value == "–" or low == "–" or high == "–":
        return value
    for unit in ("%", " USD", " ms", " s"):
        if value.endswith(unit) and low.endswith(unit) and high.endswith(unit):
            return f"{value} ({low.removesuffix(unit)} to {high})"
    return f"{value} ({low} to {high})"


def accuracy_interval(row: pd.Series, level: str | None) -> str:
    if is_missing(row.get("accuracy")):
        return "unknown"
    low, high = row.get("accuracy_low"), row.get("accuracy_high")
    where = f"{level} " if level else ""
    span = "" if is_missing(low) else f" ({where}interval {pct(low)} to {pct(high)}"
    n = row.get("n")
    span += "" if not span else (f", n = {int(n)})" if not is_missing(n) else ")")
    return pct(row["accuracy"]) + span


def accuracy_span(row: pd.Series, prefix: str) -> str:
    return f"{pct(row[prefix + '_accuracy'])} ({pct(row[prefix + '_low'])} to {pct(row[prefix + '_high'])})"
