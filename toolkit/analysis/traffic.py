"""The traffic a team really has: arrivals, token distributions, what it costs, and what each lever
(provider prompt caching, a response cache, the Batch API, shorter outputs, shorter prompts) would save.

Works on any requests table: imported production or public traces (no grades, often no timings)
and our own runs alike.  Every function is vectorized over rows (numpy/Arrow), so a month of
traffic (tens of millions of rows) goes through in seconds; nothing here loops in Python per request.

Assumptions, stated where the notebook shows the numbers:
- Send order is `started_at`, ties broken by `sequence` (binned traces such as Mooncake share times).
- Provider prompt caching (`prompt_cache_tokens`): a request's prompt prefix of k blocks is cached
  when a request within the cache lifetime before it had the same k-th block hash (a hash covers
  its block and every block before it, as Mooncake's `hash_ids` do); every use refreshes the entry;
  the provider bills only from `caching.MIN_CACHEABLE_PROMPT_TOKENS` on, in steps of
  `caching.CACHE_INCREMENT_TOKENS` (OpenAI's rule), at the cached input price.
- Response cache (`response_cache_hits`): a request whose `prompt_hash` an earlier request had, within
  `ttl_s` of that earlier one (None: any time before), is answered from the cache at no model cost.
- Batch: `deferrable_share` of the requests, spread evenly over the traffic, could wait up to 24 h
  for the price table's batch discount.
- Shorter outputs / prompts: a cap on output tokens trims every longer answer to the cap (its quality
  is not judged here: 01_accuracy can measure that on a dataset); latency follows the endpoint's
  fitted latency model (`latency_model`, as 03_latency fits it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from toolkit.analysis.caching import LeverPrices, cacheable_tokens, lever_prices
from toolkit.analysis.latency_model import GroupModel
from toolkit.errors import ParameterError, PriceError
from toolkit.pricing import PriceTable

MONTH_S = 30 * 86400.0
PARTITION_BLOCKS = 2_000_000  # prefix blocks sorted at once by `prompt_cache_tokens`
LEVERS = ("prompt caching", "response cache", "batch", "output cap", "shorter prompts")


def positions_in_send_order(frame: pd.DataFrame) -> np.ndarray | None:
    """Row positions of `frame` in send order (`started_at`, then `sequence`, then file order), or
    None when the rows already are in that order (as imported traces and our own runs mostly are:
    the check is one pass, where sorting tens of millions of rows costs seconds and gigabytes)."""
    started = frame["started_at"]
    known = started.notna().to_numpy()
    stamps = np.where(known, started.to_numpy(dtype="datetime64[us]").astype(np.int64), np.iinfo(np.int64).max)
    sequence = (np.nan_to_num(frame["sequence"].to_numpy(dtype=float, na_value=np.nan), nan=np.inf)
                if "sequence" in frame else np.zeros(len(frame)))
    later = stamps[1:] > stamps[:-1]
    if np.all(later | ((stamps[1:] == stamps[:-1]) & (sequence[1:] >= sequence[:-1]))):
        return None
    return np.lexsort((np.arange(len(frame)), sequence, stamps))


def _seconds(frame: pd.DataFrame) -> np.ndarray:
    """started_at as float seconds since the epoch (NaN where unknown)."""
    stamps = frame["started_at"]
    out = stamps.to_numpy(dtype="datetime64[us]").view(np.int64) / 1e6
    out[stamps.isna().to_numpy()] = np.nan
    return out


def arrivals(frame: pd.DataFrame, *, bin_s: float = 60.0) -> pd.DataFrame:
    """Requests per time bin: bin_start (UTC), requests, rate_per_s, from the first arrival on."""
    if bin_s <= 0:
        raise ParameterError(f"arrivals: bin_s must be > 0, got {bin_s!r}")
    seconds = _seconds(frame)
    seconds = seconds[np.isfinite(seconds)]
    if not len(seconds):
        return pd.DataFrame({"bin_start": pd.Series(dtype="datetime64[us, UTC]"), "requests": pd.Series(dtype=int),
                             "rate_per_s": pd.Series(dtype=float)})
    first = seconds.min()
    bins = np.floor((seconds - first) / bin_s).astype(np.int64)
    counts = np.bincount(bins)
    starts = pd.to_datetime(first + np.arange(len(counts)) * bin_s, unit="s", utc=True)
    return pd.DataFrame({"bin_start": starts, "requests": counts, "rate_per_s": counts / bin_s})


def arrival_summary(frame: pd.DataFrame, *, bin_s: float = 60.0) -> pd.DataFrame:
    """One row: requests, span_s, mean_rate_per_s, peak_rate_per_s (busiest `bin_s` bin, narrowed to a tenth
    of the span for traffic shorter than ten bins; `bin_s` says which was used), peak_to_mean,
    interarrival_cv (1 for a Poisson process, above 1 bursty), dispersion_index (variance / mean of
    the per-bin counts: 1 Poisson, above 1 bursty), busiest_bin_start, requests_per_month (at the
    mean rate)."""
    seconds = _seconds(frame)
    seconds = np.sort(seconds[np.isfinite(seconds)])
    if len(seconds) > 1 and seconds[-1] > seconds[0]:  # a short run still gets ten bins to find a peak in
        bin_s = min(bin_s, float(seconds[-1] - seconds[0]) / 10)
    bins = arrivals(frame, bin_s=bin_s)
    span = float(seconds[-1] - seconds[0]) if len(seconds) > 1 else math.nan
    mean_rate = len(seconds) / span if span and span > 0 else math.nan
    counts = bins["requests"].to_numpy(dtype=float)
    # the last bin is partial: its rate would read low, so peaks and dispersion use full bins only
    full = counts[:-1] if len(counts) > 1 else counts
    gaps = np.diff(seconds)
    row = {
        "requests": len(frame), "timed_arrivals": len(seconds), "span_s": span, "mean_rate_per_s": mean_rate,
        "peak_rate_per_s": float(full.max() / bin_s) if len(full) else math.nan,
        "bin_s": bin_s,
        "interarrival_cv": float(gaps.std() / gaps.mean()) if len(gaps) > 1 and gaps.mean() > 0 else math.nan,
        "dispersion_index": float(full.var() / full.mean()) if len(full) > 1 and full.mean() > 0 else math.nan,
        "busiest_bin_start": bins["bin_start"].iloc[int(np.argmax(full))] if len(full) else pd.NaT,
        "requests_per_month": mean_rate * MONTH_S if np.isfinite(mean_rate) else math.nan,
    }
    row["peak_to_mean"] = row["peak_rate_per_s"] / mean_rate if np.isfinite(mean_rate) and mean_rate > 0 else math.nan
    return pd.DataFrame([row])


def token_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per token column (prompt_tokens, cached_tokens, completion_tokens): n, mean, p50, p90, p99, max, total."""
    rows = []
    for column in ("prompt_tokens", "cached_tokens", "completion_tokens"):
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        p50, p90, p99 = np.quantile(values, [0.5, 0.9, 0.99])
        rows.append({"tokens": column, "n": len(values), "mean": values.mean(), "p50": p50, "p90": p90,
                     "p99": p99, "max": values.max(), "total": values.sum()})
    return pd.DataFrame(rows, columns=["tokens", "n", "mean", "p50", "p90", "p99", "max", "total"])


def pricing_model(frame: pd.DataFrame, table: PriceTable, model: str | None = None,
                  default_model: str = "gpt-4o-mini") -> tuple[str, str]:
    """The model whose token prices price the traffic and its levers, and why: "chosen" (`model`),
    "named" (the model most requests name that has token prices) or "default" (`default_model`:
    the traffic names no model with token prices, e.g. a public trace or a self-hosted run)."""
    if model is not None:
        lever_prices(table, model)  # an unknown or machine-priced model fails here, naming itself
        return model, "chosen"
    for named in frame["model"].dropna().astype(str).value_counts().index:
        try:
            lever_prices(table, named)
        except PriceError:
            continue
        return named, "named"
    lever_prices(table, default_model)
    return default_model, "default"


def token_usd(frame: pd.DataFrame, prices: LeverPrices) -> np.ndarray:
    """Each request's cost at token prices: uncached prompt, cached prompt and output tokens."""
    prompt, cached, output = (_tokens(frame, c) for c in ("prompt_tokens", "cached_tokens", "completion_tokens"))
    cached = np.minimum(cached, prompt)
    return ((prompt - cached) * prices.input_usd_per_mtok + cached * prices.cached_input_usd_per_mtok
            + output * prices.output_usd_per_mtok) / 1e6


def _tokens(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A token column as floats, unknown counts as 0 (one array: these columns run to tens of millions)."""
    values = frame[column]
    # a numpy integer column has no missing values; asking for na_value would take a detour through objects
    out = values.to_numpy(dtype=float) if values.dtype.kind in "iu" else values.to_numpy(dtype=float, na_value=np.nan)
    return np.nan_to_num(out, copy=False)


def prompt_cache_tokens(frame: pd.DataFrame, *, lifetime_s: float = 300.0, block_tokens: int = 512) -> np.ndarray:
    """Per row of `frame`: the prompt tokens a provider's prompt cache would have served (0 where the
    row has no `prefix_hashes`), by the rule of this module's docstring.

    Vectorized: every (row, block, hash) is laid out flat, sorted by hash and then send order, and a
    block is a hit when the previous occurrence of its hash was at most `lifetime_s` earlier; a row's
    cached prefix is its last hit block (a hash covers every block before it)."""
    if lifetime_s < 0 or block_tokens <= 0:
        raise ParameterError(f"prompt_cache_tokens: lifetime_s must be >= 0 and block_tokens > 0 "
                             f"(got {lifetime_s!r}, {block_tokens!r})")
    if "prefix_hashes" not in frame or not frame["prefix_hashes"].notna().any():
        return np.zeros(len(frame))
    order = positions_in_send_order(frame)
    rank = None if order is None else np.empty(len(frame), dtype=np.int64)
    if order is not None:
        rank[order] = np.arange(len(frame))
    # Arrow all the way: an Arrow-backed column is read in place, never as millions of Python lists
    lists = pa.array(frame["prefix_hashes"], type=pa.list_(pa.int64()))
    chunks = lists.chunks if isinstance(lists, pa.ChunkedArray) else [lists]
    lengths = np.concatenate([c.value_lengths().fill_null(0).to_numpy(zero_copy_only=False) for c in chunks])
    ends = np.cumsum(lengths, dtype=np.int64)
    # each chunk's hashes stay where Arrow keeps them (no copy of the whole column): (first flat index, values)
    flat_chunks, first = [], 0
    for chunk in chunks:
        values = chunk.flatten().to_numpy(zero_copy_only=False)
        flat_chunks.append((first, values))
        first += len(values)
    times = _seconds(frame)
    blocks = np.zeros(len(frame), dtype=np.int64)
    # the flat (row, block) list is sorted one slice of hash values at a time: sort temporaries
    # then take a fraction of the memory a single sort of tens of millions of blocks would
    parts = max(1, first // PARTITION_BLOCKS)
    slices = [(begin, values, _partition(values, parts)) for begin, values in flat_chunks]
    for part in range(parts):
        picked = [(begin + np.flatnonzero(slice_of == part), values[slice_of == part])
                  for begin, values, slice_of in slices]
        flat = np.concatenate([p[0] for p in picked])
        values = np.concatenate([p[1] for p in picked])
        # the row owning a block is the first whose blocks end after it (rows without hashes end where they start)
        row = np.searchsorted(ends, flat, side="right")
        by_hash = np.lexsort((row if rank is None else rank[row], values))
        flat, row, values = flat[by_hash], row[by_hash], values[by_hash]
        again = np.flatnonzero(values[1:] == values[:-1]) + 1
        hit = again[times[row[again]] - times[row[again - 1]] <= lifetime_s]  # NaN times never hit
        hit_rows = row[hit]
        depth = flat[hit] - (ends[hit_rows] - lengths[hit_rows]) + 1  # blocks of the row's prefix up to this one
        # the deepest hit per row: sorted by (row, depth), a row's last entry (np.maximum.at took 60% of the time)
        by_row = np.lexsort((depth, hit_rows))
        hit_rows, depth = hit_rows[by_row], depth[by_row]
        last = np.ones(hit_rows.size, dtype=bool)
        last[:-1] = hit_rows[1:] != hit_rows[:-1]
        blocks[hit_rows[last]] = np.maximum(blocks[hit_rows[last]], depth[last])
    del times, lengths, ends
    shared = np.minimum(blocks * block_tokens, _tokens(frame, "prompt_tokens"))
    del blocks
    return cacheable_tokens(shared)


def _partition(hashes: np.ndarray, parts: int, chunk: int = 4_000_000) -> np.ndarray:
    """Which of `parts` slices each hash falls in (by value), computed a chunk at a time."""
    out = np.empty(len(hashes), dtype=np.int8 if parts <= 127 else np.int32)
    for begin in range(0, len(hashes), chunk):
        # hash ids are often small sequential integers: mix them (Fibonacci hashing) so slices come out even
        mixed = (hashes[begin:begin + chunk].view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(33)
        out[begin:begin + chunk] = mixed % np.uint64(parts)
    return out


def response_cache_hits(frame: pd.DataFrame, *, ttl_s: float | None = None) -> np.ndarray:
    """Per row: whether an earlier request had the same `prompt_hash` (within `ttl_s` of the latest
    earlier one; None: any time before).  False where the row has no prompt hash."""
    hits = np.zeros(len(frame), dtype=bool)
    if "prompt_hash" not in frame or not frame["prompt_hash"].notna().any():
        return hits
    order = positions_in_send_order(frame)
    codes = pd.factorize(frame["prompt_hash"])[0]  # -1 where a row has no hash
    if order is not None:
        codes = codes[order]
    by_key = np.argsort(codes, kind="stable")  # stable: send order within each prompt
    sorted_codes = codes[by_key]
    again = np.flatnonzero((sorted_codes[1:] == sorted_codes[:-1]) & (sorted_codes[1:] >= 0)) + 1
    repeat = np.zeros(len(frame), dtype=bool)
    if ttl_s is None:
        repeat[by_key[again]] = True
    else:
        times = _seconds(frame) if order is None else _seconds(frame)[order]
        repeat[by_key[again]] = times[by_key[again]] - times[by_key[again - 1]] <= ttl_s
    if order is None:
        return repeat
    hits[order] = repeat
    return hits


@dataclass(frozen=True)
class Levers:
    """The settings of `lever_savings`: each lever's parameter, as the notebook takes them."""

    cache_lifetime_s: float = 300.0
    block_tokens: int = 512
    response_cache_ttl_s: float | None = None
    deferrable_share: float = 0.3
    output_cap_tokens: int | None = 256
    prompt_trim_share: float = 0.2

    def __post_init__(self) -> None:
        for name in ("deferrable_share", "prompt_trim_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ParameterError(f"Levers {name}: must be in [0, 1], got {getattr(self, name)!r}")
        if self.output_cap_tokens is not None and self.output_cap_tokens < 1:
            raise ParameterError(f"Levers output_cap_tokens: must be >= 1 or None, got {self.output_cap_tokens!r}")


LEVER_COLUMNS = ("lever", "applies", "requests_touched", "touched_share", "usd_before", "usd_saved", "saved_share",
                 "usd_saved_per_month", "tokens_saved", "p50_e2e_before_s", "p50_e2e_after_s", "extrapolated",
                 "why_not")


def lever_savings(frame: pd.DataFrame, prices: LeverPrices, levers: Levers = Levers(), *,
                  requests_per_month: float | None = None, latency: GroupModel | None = None,
                  sample_rows: int = 200_000, seed: int = 0) -> pd.DataFrame:
    """What each lever of `LEVERS` would save on this traffic at `prices`, one row each: requests it
    touches, USD before and saved (over the table, and per month at `requests_per_month`), tokens it
    saves, and, for the output cap and shorter prompts with a `latency` model, the predicted median
    e2e of the traffic before and after (on a seeded sample of at most `sample_rows` requests: a
    median needs no more).  `applies` False with `why_not` where the table cannot say (no prefix
    hashes, no prompt hashes)."""
    n = len(frame)
    usd = token_usd(frame, prices)
    before = float(usd.sum())
    per_month = (requests_per_month / n) if requests_per_month and n else math.nan
    prompt, output = _tokens(frame, "prompt_tokens"), _tokens(frame, "completion_tokens")
    # the latency model learnt from prompts this long at most: beyond, its times are extrapolation
    extrapolated = latency is not None and n > 0 and float(np.median(prompt)) > np.nanmax(latency.prompt_tokens)
    rows = []

    def add(lever: str, touched: np.ndarray | None, saved_usd: float, tokens: float, *, why_not: str = "",
            e2e: tuple[float, float] = (math.nan, math.nan)) -> None:
        count = int(touched.sum()) if touched is not None else 0
        rows.append({"lever": lever, "applies": not why_not, "requests_touched": count,
                     "touched_share": count / n if n else math.nan, "usd_before": before, "usd_saved": saved_usd,
                     "saved_share": saved_usd / before if before > 0 else math.nan,
                     "usd_saved_per_month": saved_usd * per_month, "tokens_saved": tokens,
                     "p50_e2e_before_s": e2e[0], "p50_e2e_after_s": e2e[1],
                     "extrapolated": extrapolated and not math.isnan(e2e[1]), "why_not": why_not})

    has_hashes = "prefix_hashes" in frame and frame["prefix_hashes"].notna().any()
    if has_hashes:
        cached = np.maximum(prompt_cache_tokens(frame, lifetime_s=levers.cache_lifetime_s,
                                                block_tokens=levers.block_tokens) - _tokens(frame, "cached_tokens"), 0)
        discount = (prices.input_usd_per_mtok - prices.cached_input_usd_per_mtok) / 1e6
        add("prompt caching", cached > 0, float(cached.sum() * discount), float(cached.sum()))
    else:
        add("prompt caching", None, math.nan, math.nan, why_not="no prefix hashes (block hashes of the prompt)")
    if "prompt_hash" in frame and frame["prompt_hash"].notna().any():
        hits = response_cache_hits(frame, ttl_s=levers.response_cache_ttl_s)
        add("response cache", hits, float(usd[hits].sum()), float((prompt + output)[hits].sum()))
    else:
        add("response cache", None, math.nan, math.nan, why_not="no prompt hashes")
    deferred = np.arange(n) < round(levers.deferrable_share * n)  # a share of the requests, any of them
    add("batch", deferred, before * levers.deferrable_share * prices.batch_discount, 0.0)
    if levers.output_cap_tokens is not None:
        capped = np.minimum(output, levers.output_cap_tokens)
        trimmed = output - capped
        add("output cap", trimmed > 0, float(trimmed.sum() * prices.output_usd_per_mtok / 1e6), float(trimmed.sum()),
            e2e=_median_e2e(latency, prompt, output, prompt, capped, sample_rows, seed))
    trimmed_prompt = prompt * (1 - levers.prompt_trim_share)
    cut = prompt - trimmed_prompt
    add("shorter prompts", cut > 0, float(cut.sum() * prices.input_usd_per_mtok / 1e6), float(cut.sum()),
        e2e=_median_e2e(latency, prompt, output, trimmed_prompt, output, sample_rows, seed))
    return pd.DataFrame(rows, columns=list(LEVER_COLUMNS))


def _median_e2e(latency: GroupModel | None, prompt: np.ndarray, output: np.ndarray, new_prompt: np.ndarray,
                new_output: np.ndarray, sample_rows: int, seed: int) -> tuple[float, float]:
    """The median over requests of each one's predicted median e2e, before and after a change."""
    if latency is None or not len(prompt):
        return math.nan, math.nan
    take = np.random.default_rng(seed).choice(len(prompt), size=min(sample_rows, len(prompt)), replace=False)
    take.sort()
    before = latency.quantiles_of(prompt[take], output[take], q=(0.5,))[:, 0]
    after = latency.quantiles_of(new_prompt[take], new_output[take], q=(0.5,))[:, 0]
    return float(np.median(before)), float(np.median(after))
