"""The traffic a team really has: arrivals, token distributions, what it costs, and what each lever
(provider prompt caching, a response cache, the Batch API, shorter outputs, shorter prompts) would save.

Works on any requests table: imported production or public traces (no grades, often no timings)
and our own runs alike, as a DataFrame or as a run's files where they lie (`toolkit.open_run`): every
function aggregates in DuckDB (`warehouse.Rows`, one code path for both), so a month of traffic (tens
of millions of rows) never has to fit in memory; pandas holds the small tables returned and a bounded
sample for figures (`prompt_cache_tokens` and `response_cache_hits`, one number per request, are for
looking at single requests).

Assumptions, stated where the notebook shows the numbers:
- Send order is `started_at`, ties broken by `sequence` (binned traces such as Mooncake share times),
  then by the rows' order.
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
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from toolkit import warehouse
from toolkit.analysis.caching import (CACHE_INCREMENT_TOKENS, MIN_CACHEABLE_PROMPT_TOKENS, LeverPrices,
                                      lever_prices)
from toolkit.analysis.latency_model import GroupModel
from toolkit.errors import ParameterError, PriceError
from toolkit.pricing import PriceTable
from toolkit.warehouse import Rows

MONTH_S = 30 * 86400.0
LEVERS = ("prompt caching", "response cache", "batch", "output cap", "shorter prompts")
TOKEN_COLUMNS = ("prompt_tokens", "cached_tokens", "completion_tokens")
# a figure of the token distributions, and a latency prediction that cannot be taken exactly, need no more rows
SAMPLE_ROWS = 200_000
# what each column this module reads must hold: DuckDB's own error for text where numbers belong names no column
_KINDS = {"started_at": "times", "sequence": "numbers", "prefix_hashes": "lists of integers",
          **{column: "numbers" for column in TOKEN_COLUMNS}}
_INTEGER_TYPES = {"tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint", "uinteger", "ubigint",
                  "uhugeint"}
_NUMBER_TYPES = _INTEGER_TYPES | {"float", "double", "decimal"}
# token counts as numbers, an unknown count as 0 (as the cost of a request counts it)
_TOKENS = {"_prompt": "prompt_tokens", "_cached": "cached_tokens", "_output": "completion_tokens"}


def _holds(kind: duckdb.DuckDBPyType, wanted: str) -> bool:
    if kind.id == "null":  # a column of nothing but nulls
        return True
    if wanted == "times":
        return kind.id.startswith("timestamp")
    if wanted == "lists of integers":
        return kind.id == "list" and kind.children[0][1].id in _INTEGER_TYPES
    return kind.id in _NUMBER_TYPES


def _relation(rows: Rows, function: str, needed: Sequence[str]) -> duckdb.DuckDBPyRelation:
    """`rows` as a relation, once it has the `needed` columns and every column of `_KINDS` it has holds its kind."""
    source = warehouse.relation(rows)
    missing = [column for column in needed if column not in source.columns]
    if missing:
        raise ParameterError(f"{function}: the requests are missing column(s) {', '.join(missing)}")
    for column, kind in zip(source.columns, source.types):
        if column in _KINDS and not _holds(kind, _KINDS[column]):
            raise ParameterError(f"{function}: column {column} must hold {_KINDS[column]}, not {kind}")
    return source


def _stamp(source: duckdb.DuckDBPyRelation) -> str:
    """`started_at` in SQL as microseconds since the epoch (a column of nothing but nulls has no time type)."""
    nothing = dict(zip(source.columns, source.types))["started_at"].id == "null"
    return "CAST(NULL AS BIGINT)" if nothing else "epoch_us(started_at)"


def _seconds(source: duckdb.DuckDBPyRelation) -> str:
    """`started_at` in SQL as float seconds, the unit lifetimes and TTLs are given in."""
    return f"{_stamp(source)} / 1e6"


def _double(value: float) -> str:
    """A float as a DOUBLE literal that reads back bit for bit (a bare 0.15 would be a DECIMAL)."""
    return f"CAST('{float(value)!r}' AS DOUBLE)"


def arrivals(rows: Rows, *, bin_s: float = 60.0) -> pd.DataFrame:
    """Requests per time bin: bin_start (UTC), requests, rate_per_s, from the first arrival on (counted in DuckDB)."""
    if bin_s <= 0:
        raise ParameterError(f"arrivals: bin_s must be > 0, got {bin_s!r}")
    source = _relation(rows, "arrivals", ["started_at"])
    first, = warehouse.over(source, f"SELECT min({_seconds(source)}) FROM {{rows}}").fetchall()[0]
    return _bins(source, first, bin_s)


def _bins(source: duckdb.DuckDBPyRelation, first: float | None, bin_s: float) -> pd.DataFrame:
    if first is None:
        return pd.DataFrame({"bin_start": pd.Series(dtype="datetime64[us, UTC]"), "requests": pd.Series(dtype=int),
                             "rate_per_s": pd.Series(dtype=float)})
    found = warehouse.over(source, f"""
        SELECT CAST(floor(({_seconds(source)} - {_double(first)}) / {_double(bin_s)}) AS BIGINT) AS bin, count(*) AS n
        FROM {{rows}} WHERE started_at IS NOT NULL GROUP BY ALL""").fetchnumpy()
    counts = np.zeros(int(found["bin"].max()) + 1, dtype=np.int64)
    counts[found["bin"]] = found["n"]
    starts = pd.to_datetime(first + np.arange(len(counts)) * bin_s, unit="s", utc=True)
    return pd.DataFrame({"bin_start": starts, "requests": counts, "rate_per_s": counts / bin_s})


def arrival_summary(rows: Rows, *, bin_s: float = 60.0) -> pd.DataFrame:
    """One row: requests, span_s, mean_rate_per_s, peak_rate_per_s (busiest `bin_s` bin, narrowed to a tenth
    of the span for traffic shorter than ten bins; `bin_s` says which was used), peak_to_mean,
    interarrival_cv (1 for a Poisson process, above 1 bursty), dispersion_index (variance / mean of
    the per-bin counts: 1 Poisson, above 1 bursty), busiest_bin_start, requests_per_month (at the
    mean rate).  Counted in DuckDB."""
    source = _relation(rows, "arrival_summary", ["started_at"])
    requests, timed, first, last, gap_mean, gap_std = warehouse.over(source, f"""
        SELECT count(*), count(_t), min(_t), max(_t), avg(_gap), stddev_pop(_gap)
        FROM (SELECT _t, _t - lag(_t) OVER (ORDER BY _t) AS _gap FROM (SELECT {_seconds(source)} AS _t FROM {{rows}}))
        """).fetchall()[0]
    if timed > 1 and last > first:  # a short run still gets ten bins to find a peak in
        bin_s = min(bin_s, float(last - first) / 10)
    bins = _bins(source, first, bin_s)
    span = float(last - first) if timed > 1 else math.nan
    mean_rate = timed / span if span and span > 0 else math.nan
    counts = bins["requests"].to_numpy(dtype=float)
    # the last bin is partial: its rate would read low, so peaks and dispersion use full bins only
    full = counts[:-1] if len(counts) > 1 else counts
    row = {
        "requests": requests, "timed_arrivals": timed, "span_s": span, "mean_rate_per_s": mean_rate,
        "peak_rate_per_s": float(full.max() / bin_s) if len(full) else math.nan,
        "bin_s": bin_s,
        "interarrival_cv": float(gap_std / gap_mean) if timed > 2 and gap_mean > 0 else math.nan,
        "dispersion_index": float(full.var() / full.mean()) if len(full) > 1 and full.mean() > 0 else math.nan,
        "busiest_bin_start": bins["bin_start"].iloc[int(np.argmax(full))] if len(full) else pd.NaT,
        "requests_per_month": mean_rate * MONTH_S if np.isfinite(mean_rate) else math.nan,
    }
    row["peak_to_mean"] = row["peak_rate_per_s"] / mean_rate if np.isfinite(mean_rate) and mean_rate > 0 else math.nan
    return pd.DataFrame([row])


def token_summary(rows: Rows) -> pd.DataFrame:
    """Per token column (prompt_tokens, cached_tokens, completion_tokens): n, mean, p50, p90, p99 (exact),
    max, total, over the known counts (computed in DuckDB)."""
    source = _relation(rows, "token_summary", TOKEN_COLUMNS)
    finite = {column: f"CASE WHEN isfinite({number}) THEN {number} END"
              for column, number in ((c, warehouse.number(source, c)) for c in TOKEN_COLUMNS)}
    spread = warehouse.quantiles(source, [], finite, (0.5, 0.9, 0.99)).set_index("value")
    found = warehouse.over(source, "SELECT " + ", ".join(f"avg({v}), max({v}), sum({v})" for v in finite.values())
                           + " FROM {rows}").fetchall()[0]
    table = [{"tokens": column, "n": spread.at[column, "n"], "mean": found[3 * position],
              "p50": spread.at[column, "q0"], "p90": spread.at[column, "q1"], "p99": spread.at[column, "q2"],
              "max": found[3 * position + 1], "total": found[3 * position + 2]}
             for position, column in enumerate(TOKEN_COLUMNS) if column in spread.index]
    return pd.DataFrame(table, columns=["tokens", "n", "mean", "p50", "p90", "p99", "max", "total"])


def token_sample(rows: Rows, *, limit: int = SAMPLE_ROWS, seed: int = 0) -> pd.DataFrame:
    """prompt_tokens and completion_tokens of a seeded random choice of at most `limit` requests, made in
    DuckDB: what a histogram of the lengths draws."""
    source = _relation(rows, "token_sample", ["prompt_tokens", "completion_tokens"])
    return warehouse.over(source, f"SELECT prompt_tokens, completion_tokens FROM {{rows}} "
                                  f"USING SAMPLE reservoir({int(limit)} ROWS) REPEATABLE ({int(seed)})").df()


def pricing_model(rows: Rows, table: PriceTable, model: str | None = None,
                  default_model: str = "gpt-4o-mini") -> tuple[str, str]:
    """The model whose token prices price the traffic and its levers, and why: "chosen" (`model`),
    "named" (the model most requests name that has token prices; equal counts go to the first name in
    sorted order) or "default" (`default_model`: the traffic names no model with token prices, e.g. a
    public trace or a self-hosted run)."""
    if model is not None:
        lever_prices(table, model)  # an unknown or machine-priced model fails here, naming itself
        return model, "chosen"
    source = _relation(rows, "pricing_model", ["model"])
    named = warehouse.text(source, "model")
    for name, _ in warehouse.over(source, f"SELECT {named} AS name, count(*) AS n FROM {{rows}} "
                                          f"WHERE {named} IS NOT NULL GROUP BY ALL ORDER BY n DESC, name").fetchall():
        try:
            lever_prices(table, str(name))
        except PriceError:
            continue
        return str(name), "named"
    lever_prices(table, default_model)
    return default_model, "default"


def _tokens(source: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """`source` with its token counts as numbers, unknown as 0: `_prompt`, `_cached`, `_output`."""
    counts = ", ".join(f"coalesce({warehouse.number(source, column)}, 0.0) AS {name}"
                       for name, column in _TOKENS.items())
    return warehouse.over(source, f"SELECT *, {counts} FROM {{rows}}")


def _token_usd(prices: LeverPrices) -> str:
    """A request's cost at token prices (uncached prompt, cached prompt and output tokens), in SQL over
    `_prompt`, `_cached` and `_output`; a request cannot have more cached tokens than prompt tokens."""
    cached = "least(_cached, _prompt)"
    return (f"((_prompt - {cached}) * {_double(prices.input_usd_per_mtok)} + {cached} * "
            f"{_double(prices.cached_input_usd_per_mtok)} + _output * {_double(prices.output_usd_per_mtok)}) / 1e6")


def _send_order(source: duckdb.DuckDBPyRelation, keep: Sequence[str]) -> str:
    """The rows of `source` as SQL with `_row` (their position, 1 first: DuckDB numbers a scan in the order it
    reads, which is the rows' order), `_stamp` (send time in microseconds), `_sequence` and the `keep`
    expressions: what a window in send order (`_IN_SEND_ORDER`) reads."""
    return (f"SELECT row_number() OVER () AS _row, {_stamp(source)} AS _stamp, "
            f"{warehouse.number(source, 'sequence')} AS _sequence, {', '.join(keep)} FROM {{rows}}")


_IN_SEND_ORDER = "ORDER BY _stamp NULLS LAST, _sequence NULLS LAST, _row"


def _cacheable(shared: str) -> str:
    """`caching.cacheable_tokens` in SQL: nothing below the minimum, then the minimum plus whole increments."""
    return (f"CASE WHEN {shared} >= {MIN_CACHEABLE_PROMPT_TOKENS} THEN {MIN_CACHEABLE_PROMPT_TOKENS} + "
            f"floor(({shared} - {MIN_CACHEABLE_PROMPT_TOKENS}) / {CACHE_INCREMENT_TOKENS}) * {CACHE_INCREMENT_TOKENS} "
            "ELSE 0.0 END")


def _check_cache(lifetime_s: float, block_tokens: int, lifetime_name: str) -> None:
    if lifetime_s < 0 or block_tokens <= 0:
        raise ParameterError(f"{lifetime_name} must be >= 0 and block_tokens > 0 "
                             f"(got {lifetime_s!r}, {block_tokens!r})")


def _prompt_cache(tokens: duckdb.DuckDBPyRelation, lifetime_s: float, block_tokens: int) -> duckdb.DuckDBPyRelation:
    """One row per request that finds part of its prompt in the provider's cache: `_row` (its position),
    `_cacheable` (the tokens billed as cached) and its `_cached` (reported) tokens.

    Every (request, block, hash) is laid out by unnesting `prefix_hashes`; a block is a hit when the previous use
    of its hash in send order (a window per hash) was at most `lifetime_s` earlier (an unknown time never hits);
    a request's cached prefix ends at its deepest hit block, as a hash covers every block before it."""
    numbered = _send_order(tokens, ["_prompt", "_cached", "prefix_hashes"])
    blocks = ("SELECT _row, _stamp, _sequence, _prompt, _cached, unnest(prefix_hashes) AS _hash, "
              f"generate_subscripts(prefix_hashes, 1) AS _depth FROM ({numbered})")
    gaps = (f"SELECT _row, _depth, _prompt, _cached, _stamp / 1e6 - lag(_stamp) OVER (PARTITION BY _hash "
            f"{_IN_SEND_ORDER}, _depth) / 1e6 AS _gap FROM ({blocks}) WHERE _hash IS NOT NULL")
    shared = f"least(max(_depth) * {int(block_tokens)}, any_value(_prompt))"
    return warehouse.over(tokens, f"SELECT _row, {_cacheable(shared)} AS _cacheable, any_value(_cached) AS _cached "
                                  f"FROM ({gaps}) WHERE _gap <= {_double(lifetime_s)} GROUP BY _row")


def prompt_cache_tokens(rows: Rows, *, lifetime_s: float = 300.0, block_tokens: int = 512) -> np.ndarray:
    """Per row of `rows`, in their order: the prompt tokens a provider's prompt cache would have served (0
    where the row has no `prefix_hashes`), by the rule of this module's docstring (simulated in DuckDB)."""
    _check_cache(lifetime_s, block_tokens, "prompt_cache_tokens: lifetime_s")
    source = _relation(rows, "prompt_cache_tokens", ["started_at", "prompt_tokens"])
    count, = warehouse.over(source, "SELECT count(*) FROM {rows}").fetchall()[0]
    out = np.zeros(count)
    if "prefix_hashes" in source.columns:
        found = _prompt_cache(_tokens(source), lifetime_s, block_tokens).fetchnumpy()
        out[found["_row"] - 1] = found["_cacheable"]
    return out


def _repeats(tokens: duckdb.DuckDBPyRelation, ttl_s: float | None) -> duckdb.DuckDBPyRelation:
    """The requests with a prompt hash: `_row` (their position), `_repeat` (a response cache would have
    answered them) and their token counts; a window per prompt hash in send order."""
    numbered = _send_order(tokens, ["_prompt", "_cached", "_output", "prompt_hash"])
    repeat = ("lag(_row) OVER earlier IS NOT NULL" if ttl_s is None
              else f"_stamp / 1e6 - lag(_stamp) OVER earlier / 1e6 <= {_double(ttl_s)}")
    return warehouse.over(tokens, f"""
        SELECT _row, coalesce({repeat}, false) AS _repeat, _prompt, _cached, _output
        FROM ({numbered}) WHERE prompt_hash IS NOT NULL
        WINDOW earlier AS (PARTITION BY prompt_hash {_IN_SEND_ORDER})""")


def response_cache_hits(rows: Rows, *, ttl_s: float | None = None) -> np.ndarray:
    """Per row of `rows`, in their order: whether an earlier request had the same `prompt_hash` (within
    `ttl_s` of the latest earlier one; None: any time before).  False where the row has no prompt hash."""
    source = _relation(rows, "response_cache_hits", ["started_at"])
    count, = warehouse.over(source, "SELECT count(*) FROM {rows}").fetchall()[0]
    hits = np.zeros(count, dtype=bool)
    if "prompt_hash" in source.columns:
        found = warehouse.over(_repeats(_tokens(source), ttl_s), "SELECT _row FROM {rows} WHERE _repeat").fetchnumpy()
        hits[found["_row"] - 1] = True
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
        _check_cache(self.cache_lifetime_s, self.block_tokens, "Levers cache_lifetime_s")
        for name in ("deferrable_share", "prompt_trim_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ParameterError(f"Levers {name}: must be in [0, 1], got {getattr(self, name)!r}")
        if self.output_cap_tokens is not None and self.output_cap_tokens < 1:
            raise ParameterError(f"Levers output_cap_tokens: must be >= 1 or None, got {self.output_cap_tokens!r}")


LEVER_COLUMNS = ("lever", "applies", "requests_touched", "touched_share", "usd_before", "usd_saved", "saved_share",
                 "usd_saved_per_month", "tokens_saved", "p50_e2e_before_s", "p50_e2e_after_s", "extrapolated",
                 "why_not")


def lever_savings(rows: Rows, prices: LeverPrices, levers: Levers = Levers(), *,
                  requests_per_month: float | None = None, latency: GroupModel | None = None) -> pd.DataFrame:
    """What each lever of `LEVERS` would save on this traffic at `prices`, one row each: requests it
    touches, USD before and saved (over the table, and per month at `requests_per_month`), tokens it
    saves, and, for the output cap and shorter prompts with a `latency` model, the predicted median
    e2e of the traffic before and after.  `applies` False with `why_not` where the table cannot say (no
    prefix hashes, no prompt hashes).  Summed in DuckDB."""
    hashed = [column for column in ("prefix_hashes", "prompt_hash") if column in rows.columns]
    source = _relation(rows, "lever_savings", [*TOKEN_COLUMNS, *(["started_at"] if hashed else [])])
    tokens = _tokens(source)
    usd = _token_usd(prices)
    cut = f"_prompt - _prompt * {_double(1 - levers.prompt_trim_share)}"
    sums = {"n": "count(*)", "before": f"coalesce(sum({usd}), 0.0)",
            **{column: f"count({column})" for column in hashed},
            "shortened": f"count(*) FILTER (WHERE {cut} > 0)", "cut": f"coalesce(sum({cut}), 0.0)"}
    if levers.output_cap_tokens is not None:
        trimmed = f"_output - least(_output, {_double(levers.output_cap_tokens)})"
        sums |= {"capped": f"count(*) FILTER (WHERE {trimmed} > 0)", "trimmed": f"coalesce(sum({trimmed}), 0.0)"}
    found = dict(zip(sums, warehouse.over(tokens, f"SELECT {', '.join(sums.values())} FROM {{rows}}").fetchall()[0]))
    n, before = found["n"], found["before"]
    per_month = (requests_per_month / n) if requests_per_month and n else math.nan
    medians = _predicted_medians(latency, tokens, levers) if latency is not None and n else {}
    # the latency model learnt from prompts this long at most: beyond, its times are extrapolation
    extrapolated = bool(medians) and medians["prompt"] > np.nanmax(latency.prompt_tokens)
    table = []

    def add(lever: str, touched: int, saved_usd: float, tokens_saved: float, *, why_not: str = "",
            e2e: tuple[str, str] | None = None) -> None:
        before_s, after_s = (medians[e2e[0]], medians[e2e[1]]) if medians and e2e else (math.nan, math.nan)
        table.append({"lever": lever, "applies": not why_not, "requests_touched": touched,
                         "touched_share": touched / n if n else math.nan, "usd_before": before, "usd_saved": saved_usd,
                         "saved_share": saved_usd / before if before > 0 else math.nan,
                         "usd_saved_per_month": saved_usd * per_month, "tokens_saved": tokens_saved,
                         "p50_e2e_before_s": before_s, "p50_e2e_after_s": after_s,
                         "extrapolated": extrapolated and not math.isnan(after_s), "why_not": why_not})

    if found.get("prefix_hashes"):
        saving = "greatest(_cacheable - _cached, 0)"
        touched, cached = warehouse.over(
            _prompt_cache(tokens, levers.cache_lifetime_s, levers.block_tokens),
            f"SELECT count(*) FILTER (WHERE {saving} > 0), coalesce(sum({saving}), 0.0) FROM {{rows}}").fetchall()[0]
        discount = (prices.input_usd_per_mtok - prices.cached_input_usd_per_mtok) / 1e6
        add("prompt caching", touched, cached * discount, cached)
    else:
        add("prompt caching", 0, math.nan, math.nan, why_not="no prefix hashes (block hashes of the prompt)")
    if found.get("prompt_hash"):
        hits, saved, hit_tokens = warehouse.over(
            _repeats(tokens, levers.response_cache_ttl_s),
            f"SELECT count(*), coalesce(sum({usd}), 0.0), coalesce(sum(_prompt + _output), 0.0) FROM {{rows}} "
            "WHERE _repeat").fetchall()[0]
        add("response cache", hits, saved, hit_tokens)
    else:
        add("response cache", 0, math.nan, math.nan, why_not="no prompt hashes")
    add("batch", round(levers.deferrable_share * n), before * levers.deferrable_share * prices.batch_discount, 0.0)
    if levers.output_cap_tokens is not None:
        add("output cap", found["capped"], found["trimmed"] * prices.output_usd_per_mtok / 1e6, found["trimmed"],
            e2e=("before", "output cap"))
    add("shorter prompts", found["shortened"], found["cut"] * prices.input_usd_per_mtok / 1e6, found["cut"],
        e2e=("before", "shorter prompts"))
    return pd.DataFrame(table, columns=list(LEVER_COLUMNS))


def _predicted_medians(latency: GroupModel, tokens: duckdb.DuckDBPyRelation, levers: Levers) -> dict[str, float]:
    """The median prompt length ("prompt") and, before and after each lever that changes lengths ("before",
    "output cap", "shorter prompts"), the median over the requests of each one's predicted median e2e.

    A request's prediction is the model's median at its output length plus the TTFT slope x its prompt length
    (`GroupModel.quantiles_of`), so the model runs once per distinct output length and DuckDB takes the exact
    medians over the requests.  Where some training requests have no prompt length that shift is not common to
    all of them: then each request is predicted on its own, on a seeded sample of `SAMPLE_ROWS` requests."""
    keep, cap = 1 - levers.prompt_trim_share, levers.output_cap_tokens
    if latency.ttft_slope != 0 and np.isnan(latency.prompt_tokens).any():
        sample = warehouse.over(tokens, f"SELECT _prompt, _output FROM {{rows}} "
                                        f"USING SAMPLE reservoir({SAMPLE_ROWS} ROWS) REPEATABLE (0)").df()
        prompt, output = sample["_prompt"].to_numpy(), sample["_output"].to_numpy()

        def median(new_prompt: np.ndarray, new_output: np.ndarray) -> float:
            return float(np.median(latency.quantiles_of(new_prompt, new_output, q=(0.5,))))

        found = {"before": median(prompt, output), "shorter prompts": median(prompt * keep, output)}
        if cap is not None:
            found["output cap"] = median(prompt, np.minimum(output, cap))
        return found | {"prompt": float(warehouse.quantiles(tokens, [], {"prompt": "_prompt"}, (0.5,))["q0"].iloc[0])}
    lengths = np.sort(warehouse.over(tokens, "SELECT DISTINCT _output FROM {rows}").fetchnumpy()["_output"])

    def at(output: np.ndarray) -> np.ndarray:  # the model's median at these output lengths and no prompt
        return latency.quantiles_of(np.zeros(len(output)), output, q=(0.5,))[:, 0]

    slope = _double(latency.ttft_slope)
    predicted = {"prompt": "_prompt", "before": f"_median + {slope} * _prompt",
                 "shorter prompts": f"_median + {slope} * (_prompt * {_double(keep)})"}
    if cap is not None:  # an output past the cap is predicted at the cap
        predicted["output cap"] = (f"CASE WHEN _output <= {_double(cap)} THEN _median "
                                   f"ELSE {_double(at(np.array([float(cap)]))[0])} END + {slope} * _prompt")
    # the table of lengths as two list literals: thousands of lengths in a few tokens, where VALUES rows would
    # each be parsed and bound again by every pass
    table = (f"(SELECT unnest(CAST('{[float(n) for n in lengths]!r}' AS DOUBLE[])) AS _n, "
             f"unnest(CAST('{[float(m) for m in at(lengths)]!r}' AS DOUBLE[])) AS _median) m")
    joined = warehouse.over(tokens, f"SELECT _prompt, _output, m._median FROM {{rows}} JOIN {table} ON m._n = _output")
    found = warehouse.quantiles(joined, [], predicted, (0.5,))
    return dict(zip(found["value"], found["q0"].astype(float)))
