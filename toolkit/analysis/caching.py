"""Savings of the three levers that change cost without changing the model: a response cache
(exact repeats answered from storage), provider prompt caching (a repeated prompt prefix billed at
the cached-input price) and Batch pricing (a discount for answers that may take up to 24 h);
plus the prefix-reuse experiment that the embedded server makes possible, and a what-if simulator.

Measured savings compare rows of the requests table with the same rows priced without the lever,
using `pricing.price_requests`, so they follow the price table's rules (including its named
`batch_discount`).  The simulator's arithmetic is closed-form; see `simulate`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from toolkit.analysis.accuracy import bootstrap_mean_interval, wilson_interval
from toolkit.errors import ParameterError, PriceError
from toolkit.machine_time import MACHINE_INPUTS
from toolkit.pricing import PRICE_INPUTS, MachinePrice, PriceTable, price_requests, resolve_price


MIN_CACHEABLE_PROMPT_TOKENS = 1024  # OpenAI caches prompts only from 1,024 tokens ...
CACHE_INCREMENT_TOKENS = 128  # ... and the cached part grows in steps of 128 tokens


def _ok_mask(frame: pd.DataFrame) -> pd.Series:
    return frame["status"].eq("ok").fillna(False).astype(bool)


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[_ok_mask(frame)]


def _ok_priced(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The ok rows with `columns` and what pricing them reads: filtering every column of a million-row
    table takes most of a second, each time."""
    machine = () if "machine_s" in frame.columns else MACHINE_INPUTS
    keep = [c for c in dict.fromkeys([*columns, *PRICE_INPUTS, *machine]) if c in frame.columns]
    return _ok(frame[keep])


def _flag(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].fillna(False).to_numpy(dtype=bool)


def _floats(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").astype(float).to_numpy()


def _groups(frame: pd.DataFrame, by: Sequence[str]):
    if not by:
        yield {}, frame
        return
    for key, part in frame.groupby(list(by), dropna=False, sort=True):
        yield dict(zip(by, key if isinstance(key, tuple) else (key,))), part


def _is_machine(frame: pd.DataFrame, prices: PriceTable) -> np.ndarray:
    kinds = {m: isinstance(resolve_price(prices, m)[1], MachinePrice) for m in frame["model"].dropna().unique()}
    return frame["model"].astype(object).map(kinds).eq(True).to_numpy(dtype=bool)


def response_cache_savings(frame: pd.DataFrame, prices: PriceTable, *, by: Sequence[str] = ("config_id",),
                           confidence: float = 0.95) -> pd.DataFrame:
    """Hits vs misses of the response cache per group, on ok rows: hit rate (Wilson interval),
    mean e2e of hits and misses (bootstrap interval for misses), and cost paid vs without the cache.

    A hit costs 0 (`price_requests`); without the cache it would have cost its own tokens at the
    model's price, or for a machine-priced model the mean cost of the group's misses (a hit's e2e
    is the lookup time, not the time the model would have taken).
    """
    ok = _ok_priced(frame, *by, "e2e_s")
    paid = price_requests(ok, prices).to_numpy() if len(ok) else np.array([])
    uncached = price_requests(ok.assign(cache_hit=False), prices).to_numpy() if len(ok) else np.array([])
    hit, machine = _flag(ok, "cache_hit"), _is_machine(ok, prices)
    rows = []
    narrow = ok[list(dict.fromkeys([*by, "e2e_s"]))]  # grouping a copy of every column costs seconds
    for key, part in _groups(narrow.assign(_paid=paid, _uncached=uncached, _hit=hit, _machine=machine), by):
        hits, misses = part[part["_hit"]], part[~part["_hit"]]
        would = part["_uncached"].to_numpy().copy()
        miss_cost = float(misses["_paid"].mean()) if len(misses) else math.nan
        would[(part["_hit"] & part["_machine"]).to_numpy()] = miss_cost
        low, high = wilson_interval(len(hits), len(part), confidence)
        miss_e2e = _floats(misses["e2e_s"])
        miss_e2e = miss_e2e[~np.isnan(miss_e2e)]
        e2e_low, e2e_high = bootstrap_mean_interval(miss_e2e, confidence)
        saving = would - part["_paid"].to_numpy()
        save_low, save_high = bootstrap_mean_interval(saving[~np.isnan(saving)], confidence)
        usd_paid, usd_uncached = float(np.sum(part["_paid"])), float(np.sum(would))
        rows.append(key | {
            "requests": len(part), "hits": len(hits), "hit_rate": len(hits) / len(part),
            "hit_rate_low": float(low), "hit_rate_high": float(high),
            "e2e_hit_s": float(np.nanmean(_floats(hits["e2e_s"]))) if len(hits) else math.nan,
            "e2e_miss_s": float(miss_e2e.mean()) if len(miss_e2e) else math.nan,
            "e2e_miss_low": e2e_low, "e2e_miss_high": e2e_high,
            "usd_paid": usd_paid, "usd_without_cache": usd_uncached, "usd_saved": usd_uncached - usd_paid,
            "saved_share": (usd_uncached - usd_paid) / usd_uncached if usd_uncached > 0 else math.nan,
            # a config answered only from the cache has no miss to price a hit by: unknown, not a warning
            "usd_saved_per_1k": 1000 * float(np.nanmean(saving)) if (~np.isnan(saving)).any() else math.nan,
            "usd_saved_per_1k_low": 1000 * save_low, "usd_saved_per_1k_high": 1000 * save_high,
        })
    rows = [r for r in rows if r["requests"]]
    return pd.DataFrame(rows, columns=[*by, *_CACHE_COLUMNS])


_CACHE_COLUMNS = ("requests", "hits", "hit_rate", "hit_rate_low", "hit_rate_high", "e2e_hit_s", "e2e_miss_s",
                  "e2e_miss_low", "e2e_miss_high", "usd_paid", "usd_without_cache", "usd_saved", "saved_share",
                  "usd_saved_per_1k", "usd_saved_per_1k_low", "usd_saved_per_1k_high")


def cacheable_tokens(shared_prefix_tokens: float | np.ndarray) -> float | np.ndarray:
    """Tokens a provider would bill as cached for an identical prefix of this length (OpenAI's rule:
    nothing below 1,024 tokens, then 1,024 plus whole steps of 128)."""
    shared = np.asarray(shared_prefix_tokens, dtype=float)
    steps = np.floor((shared - MIN_CACHEABLE_PROMPT_TOKENS) / CACHE_INCREMENT_TOKENS)
    out = np.where(shared >= MIN_CACHEABLE_PROMPT_TOKENS, MIN_CACHEABLE_PROMPT_TOKENS + steps * CACHE_INCREMENT_TOKENS, 0.0)
    return float(out) if out.ndim == 0 else out


def prompt_caching_savings(frame: pd.DataFrame, prices: PriceTable, *,
                           by: Sequence[str] = ("config_id",)) -> pd.DataFrame:
    """What the cached input tokens the endpoint reported saved, per group, on ok rows with usage.

    Compares the cost as priced (cached tokens at the cached-input price) with the same rows
    with `cached_tokens = 0`.  `below_minimum_share` is the share of requests whose prompt is
    under 1,024 tokens, which OpenAI never caches.  Machine-priced models pay for time, not
    tokens: their saving is in TTFT (see `prefix_reuse`), so it is 0 here, with kind "machine".
    """
    ok = _ok_priced(frame, *by)
    ok = ok[ok["prompt_tokens"].notna()]
    rows = []
    if len(ok):
        priced = price_requests(ok, prices).to_numpy()
        full = price_requests(ok.assign(cached_tokens=0), prices).to_numpy()
        machine = _is_machine(ok, prices)
        narrow = ok[list(dict.fromkeys([*by, "prompt_tokens", "cached_tokens"]))]
        for key, part in _groups(narrow.assign(_priced=priced, _full=full, _machine=machine), by):
            prompt, cached = _floats(part["prompt_tokens"]), np.nan_to_num(_floats(part["cached_tokens"]))
            paid, without = float(np.sum(part["_priced"])), float(np.sum(part["_full"]))
            rows.append(key | {
                "kind": "machine" if part["_machine"].all() else "tokens", "requests": len(part),
                "prompt_tokens_mean": float(prompt.mean()), "cached_tokens": int(cached.sum()),
                "cached_share": float(cached.sum() / prompt.sum()) if prompt.sum() else math.nan,
                "below_minimum_share": float(np.mean(prompt < MIN_CACHEABLE_PROMPT_TOKENS)),
                "usd_paid": paid, "usd_without_prompt_cache": without, "usd_saved": without - paid,
                "saved_share": (without - paid) / without if without > 0 else math.nan,
            })
    return pd.DataFrame(rows, columns=[*by, "kind", "requests", "prompt_tokens_mean", "cached_tokens",
                                       "cached_share", "below_minimum_share", "usd_paid",
                                       "usd_without_prompt_cache", "usd_saved", "saved_share"])


def batch_savings(frame: pd.DataFrame, prices: PriceTable, *, by: Sequence[str] = ("config_id",),
                  turnaround_s: float | None = None) -> pd.DataFrame:
    """Cost of the ok rows sent online vs through a Batch API (the price table's `batch_discount`).

    Token-priced rows only: a self-hosted server has no batch price (run it with `frontier batch
    run` and it costs machine time: `turnaround_s` x USD per hour, split over the groups by their
    batch rows, in `machine_usd`).  `batch_rows` counts the rows that really went through a batch.
    """
    ok = _ok_priced(frame, *by)
    machine = _is_machine(ok, prices) if len(ok) else np.array([], dtype=bool)
    tokens = ok[~machine]
    rows = []
    if len(tokens):
        online = price_requests(tokens.assign(batch=False), prices).to_numpy()
        batch = price_requests(tokens.assign(batch=True), prices).to_numpy()
        for key, part in _groups(tokens[list(dict.fromkeys([*by, "batch"]))].assign(_online=online, _batch=batch), by):
            usd_online, usd_batch = float(part["_online"].sum()), float(part["_batch"].sum())
            rows.append(key | {"kind": "tokens", "requests": len(part), "batch_rows": int(_flag(part, "batch").sum()),
                               "batch_discount": prices.batch_discount, "usd_online": usd_online,
                               "usd_batch": usd_batch, "usd_saved": usd_online - usd_batch, "machine_usd": math.nan})
    machine_batch_rows = int(_flag(ok[machine], "batch").sum()) if machine.any() else 0
    for key, part in _groups(ok[machine], by) if machine.any() else ():
        rate = resolve_price(prices, str(part["model"].iloc[0]))[1].usd_per_hour
        share = _flag(part, "batch").sum() / machine_batch_rows if machine_batch_rows else 0.0
        cost = turnaround_s * rate / 3600 * share if turnaround_s is not None and share else math.nan
        rows.append(key | {"kind": "machine", "requests": len(part), "batch_rows": int(_flag(part, "batch").sum()),
                           "batch_discount": 0.0, "usd_online": math.nan, "usd_batch": math.nan,
                           "usd_saved": math.nan, "machine_usd": cost})
    return pd.DataFrame(rows, columns=[*by, "kind", "requests", "batch_rows", "batch_discount", "usd_online",
                                       "usd_batch", "usd_saved", "machine_usd"])


def batch_vs_online(batch: pd.DataFrame, online: pd.DataFrame, *, by: Sequence[str] = ("config_id",)) -> pd.DataFrame:
    """The same requests (joined on request_id) answered through a batch and online: how many
    match, the share with identical output text, the accuracy of each and the online mean e2e."""
    cols = ["request_id", *by, "output_text", "correct", "status", "e2e_s"]
    joined = _ok(batch)[cols].merge(_ok(online)[cols], on=["request_id", *by], suffixes=("_batch", "_online"))
    rows = []
    for key, part in _groups(joined, by) if len(joined) else ():
        rows.append(key | {
            "matched": len(part),
            "same_output_share": float((part["output_text_batch"] == part["output_text_online"]).fillna(False).mean()),
            "accuracy_batch": float(part["correct_batch"].astype(float).mean()),
            "accuracy_online": float(part["correct_online"].astype(float).mean()),
            "e2e_online_s": float(np.nanmean(_floats(part["e2e_s_online"]))),
        })
    return pd.DataFrame(rows, columns=[*by, "matched", "same_output_share", "accuracy_batch", "accuracy_online",
                                       "e2e_online_s"])


PREFIX_KEY = ("endpoint", "model", "dataset", "prompt_variant")


def mark_prefix_reuse(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `prefix_shared`: did the previous request sent to the same endpoint (by
    `sequence`, within the run) use the same model, dataset and prompt variant, hence the same
    prompt prefix (instructions and few-shot examples)?  Null where the order the server saw is
    unknown: the first request, cache hits and batch rows (never reach the server in sequence),
    and requests whose own or predecessor's concurrency is not 1.
    """
    out = frame.copy(deep=False)  # copy-on-write: only the added column is new
    # integer codes, nulls included as a value, so that rows compare as numbers
    endpoint = out.groupby(["run_id", "endpoint"], dropna=False, sort=False).ngroup().to_numpy()
    prefix = out.groupby(list(PREFIX_KEY[1:]), dropna=False, sort=False).ngroup().to_numpy()
    sent = ~_flag(out, "cache_hit") & ~_flag(out, "batch") & out["sequence"].notna().to_numpy()
    sequence = out["sequence"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    # the order each endpoint saw: positions of the sent rows by (endpoint, sequence), ties as sent
    order = pd.DataFrame({"endpoint": endpoint, "sequence": sequence})[sent].sort_values(
        ["endpoint", "sequence"], kind="stable").index.to_numpy()
    serial = out["concurrency"].eq(1).fillna(False).to_numpy(dtype=bool)[order]
    after = np.r_[False, endpoint[order][1:] == endpoint[order][:-1]]  # same endpoint as the row before
    known = after & serial & np.r_[False, serial[:-1]]
    shared = np.r_[False, prefix[order][1:] == prefix[order][:-1]]
    values, missing = np.zeros(len(out), dtype=bool), np.ones(len(out), dtype=bool)
    values[order[known]], missing[order[known]] = shared[known], False
    out["prefix_shared"] = pd.arrays.BooleanArray(values, missing)
    return out


def prefix_reuse_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The ok timed rows whose `prefix_shared` is known, with `previous_prompt` = "shared prefix" or
    "changed prefix" (a label for plots' hue)."""
    marked = mark_prefix_reuse(frame)
    # one copy of the kept rows (each filter of a million-row table copies every column)
    keep = _ok_mask(marked) & marked["prefix_shared"].notna() & marked["ttft_s"].notna()
    marked = marked[keep]
    marked["previous_prompt"] = np.where(marked["prefix_shared"].to_numpy(dtype=bool), "shared prefix",
                                         "changed prefix")
    return marked


def prefix_reuse(frame: pd.DataFrame, *, by: Sequence[str] = ("model", "dataset", "prompt_variant"),
                 confidence: float = 0.95) -> pd.DataFrame:
    """TTFT when the previous request shared the prompt prefix vs when it did not, per group.

    A server that keeps the KV state of its last prompt (llama.cpp does) skips the shared
    prefix's prefill, so shared TTFT should be far lower.  Columns: n_shared, n_changed, mean
    and median TTFT of each, `ttft_saved_s` (difference of means) with a Welch t interval, and
    `speedup` (ratio of means); on ok timed rows with a known `prefix_shared`.
    """
    marked = prefix_reuse_rows(frame)
    rows = []
    for key, part in _groups(marked, by) if len(marked) else ():
        shared_mask = part["prefix_shared"].to_numpy(dtype=bool)
        shared, changed = _floats(part["ttft_s"])[shared_mask], _floats(part["ttft_s"])[~shared_mask]
        low = high = math.nan
        if len(shared) >= 2 and len(changed) >= 2:
            test = stats.ttest_ind(changed, shared, equal_var=False)
            interval = test.confidence_interval(confidence)
            low, high = float(interval.low), float(interval.high)
        mean_s, mean_c = (float(x.mean()) if len(x) else math.nan for x in (shared, changed))
        rows.append(key | {
            "prompt_tokens_mean": float(np.nanmean(_floats(part["prompt_tokens"]))) if part["prompt_tokens"].notna().any() else math.nan,
            "n_shared": len(shared), "n_changed": len(changed), "ttft_shared_s": mean_s, "ttft_changed_s": mean_c,
            "ttft_shared_median_s": float(np.median(shared)) if len(shared) else math.nan,
            "ttft_changed_median_s": float(np.median(changed)) if len(changed) else math.nan,
            "ttft_saved_s": mean_c - mean_s, "ttft_saved_low": low, "ttft_saved_high": high,
            "speedup": mean_c / mean_s if mean_s > 0 else math.nan,
        })
    return pd.DataFrame(rows, columns=[*by, "prompt_tokens_mean", "n_shared", "n_changed", "ttft_shared_s",
                                       "ttft_changed_s", "ttft_shared_median_s", "ttft_changed_median_s",
                                       "ttft_saved_s", "ttft_saved_low", "ttft_saved_high", "speedup"])


@dataclass(frozen=True)
class TrafficMix:
    """A month of traffic: volume, tokens per request and how much of it each lever can touch.

    repeat_share: requests that repeat an earlier request exactly (a response cache answers them);
    shared_prefix_tokens: leading prompt tokens identical across requests (system prompt, examples);
    prefix_hit_rate: share of requests that find that prefix in the provider's cache (it is evicted
    after minutes without traffic); deferrable_share: requests that may wait up to 24 h (Batch API).
    """

    monthly_requests: float
    prompt_tokens: float
    output_tokens: float
    repeat_share: float = 0.0
    shared_prefix_tokens: float = 0.0
    prefix_hit_rate: float = 1.0
    deferrable_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("repeat_share", "prefix_hit_rate", "deferrable_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ParameterError(f"TrafficMix {name}: must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("monthly_requests", "prompt_tokens", "output_tokens", "shared_prefix_tokens"):
            if getattr(self, name) < 0:
                raise ParameterError(f"TrafficMix {name}: must be >= 0, got {getattr(self, name)!r}")
        if self.shared_prefix_tokens > self.prompt_tokens:
            raise ParameterError(f"TrafficMix shared_prefix_tokens ({self.shared_prefix_tokens:g}) cannot exceed "
                                 f"prompt_tokens ({self.prompt_tokens:g})")


@dataclass(frozen=True)
class LeverPrices:
    """Token prices (USD per million) and the Batch discount the simulator uses."""

    input_usd_per_mtok: float
    cached_input_usd_per_mtok: float
    output_usd_per_mtok: float
    batch_discount: float = 0.5


def lever_prices(table: PriceTable, model: str) -> LeverPrices:
    """`model`'s token prices from a price table (cached input defaults to the input price)."""
    _, price = resolve_price(table, model)
    if isinstance(price, MachinePrice):
        raise PriceError(f"model {model!r} is priced by machine time in {table.name!r}; the what-if simulator "
                         "needs token prices (pick an API model)")
    cached = price.cached_input_usd_per_mtok
    return LeverPrices(price.input_usd_per_mtok, price.input_usd_per_mtok if cached is None else cached,
                       price.output_usd_per_mtok, table.batch_discount)


@dataclass(frozen=True)
class LatencyModel:
    """e2e = ttft_base_s + uncached prompt tokens x prefill_s_per_token + cached ones x
    cached_prefill_s_per_token + (output tokens - 1) x decode_s_per_token; a response-cache hit
    takes lookup_s and a batched request waits batch_wait_s (24 h is the promise, not the usual)."""

    ttft_base_s: float = 0.3
    prefill_s_per_token: float = 0.0002
    cached_prefill_s_per_token: float = 0.0
    decode_s_per_token: float = 0.01
    lookup_s: float = 0.001
    batch_wait_s: float = 24 * 3600.0

    def e2e_s(self, prompt_tokens: float, cached_tokens: float, output_tokens: float) -> float:
        return (self.ttft_base_s + (prompt_tokens - cached_tokens) * self.prefill_s_per_token
                + cached_tokens * self.cached_prefill_s_per_token + max(output_tokens - 1, 0) * self.decode_s_per_token)


SCENARIOS = ("baseline", "response cache", "prompt caching", "batch", "all three")


def simulate(traffic: TrafficMix, prices: LeverPrices, latency: LatencyModel = LatencyModel()) -> pd.DataFrame:
    """Expected monthly cost and latency with no lever, each lever alone, and all three together.

    With N requests, P prompt / O output tokens, cache hit share r, c = prefix_hit_rate x
    `cacheable_tokens(shared_prefix_tokens)` cached tokens, deferrable share d and discount b:
    cost per request C(c) = ((P - c) x input + c x cached + O x output) / 1e6; a hit costs 0;
    monthly cost = N (1 - r) [d (1 - b) + 1 - d] C(c) with the levers off giving r = c = d = 0
    (the batch discount applies on top of cached prices, as `price_requests` does).  Latency:
    `online_e2e_s` is the mean over requests answered online (hits at lookup_s, misses not
    deferred at the modelled e2e), `deferred_share` the share that waits `batch_wait_s`.
    """
    n, p, o = traffic.monthly_requests, traffic.prompt_tokens, traffic.output_tokens
    cached_tokens = traffic.prefix_hit_rate * cacheable_tokens(traffic.shared_prefix_tokens)

    def per_request(cached: float) -> float:
        return ((p - cached) * prices.input_usd_per_mtok + cached * prices.cached_input_usd_per_mtok
                + o * prices.output_usd_per_mtok) / 1e6

    rows = []
    baseline = n * per_request(0.0)
    for name in SCENARIOS:
        r = traffic.repeat_share if name in ("response cache", "all three") else 0.0
        c = cached_tokens if name in ("prompt caching", "all three") else 0.0
        d = traffic.deferrable_share if name in ("batch", "all three") else 0.0
        monthly = n * (1 - r) * (d * (1 - prices.batch_discount) + 1 - d) * per_request(c)
        online = r + (1 - r) * (1 - d)
        e2e = latency.e2e_s(p, c, o)
        online_e2e = (r * latency.lookup_s + (1 - r) * (1 - d) * e2e) / online if online > 0 else math.nan
        rows.append({"scenario": name, "monthly_usd": monthly, "usd_saved": baseline - monthly,
                     "saved_share": (baseline - monthly) / baseline if baseline > 0 else math.nan,
                     "cached_tokens_per_request": c, "online_e2e_s": online_e2e,
                     "deferred_share": (1 - r) * d, "deferred_wait_s": latency.batch_wait_s if d > 0 else 0.0})
    return pd.DataFrame(rows)


# --- what a reader should conclude ---------------------------------------------------------------


