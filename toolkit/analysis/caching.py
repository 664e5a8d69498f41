"""Savings of the three levers that change cost without changing the model: a response cache
(exact repeats answered from storage), provider prompt caching (a repeated prompt prefix billed at
the cached-input price) and Batch pricing (a discount for answers that may take up to 24 h);
plus the prefix-reuse experiment that the embedded server makes possible, and a what-if simulator.

Measured savings compare rows of the requests table with the same rows priced without the lever,
using `pricing.priced` (in DuckDB, over a run's files or a DataFrame), so they follow the price table's
rules (including its named `batch_discount`).  The simulator's arithmetic is closed-form; see `simulate`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from toolkit import store, warehouse
from toolkit.analysis.accuracy import mean_intervals, wilson_interval
from toolkit.errors import ParameterError, PriceError
from toolkit.machine_time import with_machine_time
from toolkit.pricing import MachinePrice, PriceTable, machine_priced, priced, resolve_price
from toolkit.warehouse import Rows


MIN_CACHEABLE_PROMPT_TOKENS = 1024  # OpenAI caches prompts only from 1,024 tokens ...
CACHE_INCREMENT_TOKENS = 128  # ... and the cached part grows in steps of 128 tokens


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"].eq("ok").fillna(False).astype(bool)]


def _floats(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").astype(float).to_numpy()


def _groups(frame: pd.DataFrame, by: Sequence[str]):
    if not by:
        yield {}, frame
        return
    for key, part in frame.groupby(list(by), dropna=False, sort=True):
        yield dict(zip(by, key if isinstance(key, tuple) else (key,))), part


def _answered(rows: Rows, prices: PriceTable) -> duckdb.DuckDBPyRelation:
    """The ok rows with `_hit` (a response-cache hit), `_batch` (sent through a batch) and `_machine` (priced by
    machine time); a self-hosted request's machine time is its share of its whole phase (as `load_run` gives
    it), shared before the filter."""
    source = warehouse.relation(rows)
    machines = machine_priced(source, prices)
    if machines:
        source = with_machine_time(source)
    model = warehouse.text(source, "model")
    is_machine = f"coalesce({model} IN ({', '.join(map(warehouse.literal, machines))}), false)" if machines else "false"
    return warehouse.over(source, f"""
        SELECT *, {warehouse.flag(source, 'cache_hit')} AS _hit, {warehouse.flag(source, 'batch')} AS _batch,
               {is_machine} AS _machine
        FROM {{rows}} WHERE coalesce({warehouse.text(source, 'status')} = 'ok', false)""")


def _priced_as(rows: duckdb.DuckDBPyRelation, prices: PriceTable, name: str,
               **settings: str) -> duckdb.DuckDBPyRelation:
    """`rows` with `name`: each row's USD (`pricing.priced`) were `settings` (column: SQL value) its values."""
    changed = ", ".join(f"{value} AS {warehouse.quoted(column)}" for column, value in settings.items()
                        if column in rows.columns)
    added = "".join(f", {value} AS {warehouse.quoted(column)}" for column, value in settings.items()
                    if column not in rows.columns)
    source = warehouse.over(rows, f"SELECT *{f' REPLACE ({changed})' if changed else ''}{added} FROM {{rows}}")
    return warehouse.over(priced(source, prices),
                          f"SELECT * EXCLUDE (usd), usd AS {warehouse.quoted(name)} FROM {{rows}}")


def response_cache_savings(rows: Rows, prices: PriceTable, *, by: Sequence[str] = ("config_id",),
                           confidence: float = 0.95) -> pd.DataFrame:
    """Hits vs misses of the response cache per group, on ok rows: hit rate (Wilson interval),
    mean e2e of hits and misses (bootstrap interval for misses), and cost paid vs without the cache
    (counted in DuckDB).

    A hit costs 0 (`pricing.priced`); without the cache it would have cost its own tokens at the
    model's price, or for a machine-priced model the mean cost of the group's misses (a hit's e2e
    is the lookup time, not the time the model would have taken).
    """
    ok = _answered(rows, prices)
    costed = _priced_as(_priced_as(ok, prices, "_paid"), prices, "_uncached", cache_hit="false")
    keys = [warehouse.quoted(key) for key in by]
    match = " AND ".join(f"r.{key} IS NOT DISTINCT FROM g.{key}" for key in keys) or "TRUE"
    chain = warehouse.over(costed, f"SELECT {warehouse.group_columns(costed, by)}_hit, _machine, _paid, _uncached, "
                                   f"{warehouse.number(costed, 'e2e_s')} AS _e2e FROM {{rows}}")
    # the pricing joins run once; the tables and the intervals read their result
    with warehouse.materialized(chain) as narrow:
        misses = warehouse.over(narrow, f"SELECT {warehouse.group_columns(narrow, by)}"
                                        "avg(_paid) FILTER (WHERE NOT _hit) AS _miss_cost FROM {rows} GROUP BY ALL").df()
        would = "CASE WHEN _hit AND _machine THEN g._miss_cost ELSE _uncached END"
        per_row = warehouse.over(narrow, f"SELECT r.*, {would} AS _would, {would} - _paid AS _saving "
                                         f"FROM {{rows}} r JOIN {warehouse.inline(misses.astype({'_miss_cost': float}), 'g')} "
                                         f"ON {match}")
        table = warehouse.over(per_row, f"""
            SELECT {warehouse.group_columns(per_row, by)}count(*) AS requests, count(*) FILTER (WHERE _hit) AS hits,
                   avg(_e2e) FILTER (WHERE _hit) AS e2e_hit_s, avg(_e2e) FILTER (WHERE NOT _hit) AS e2e_miss_s,
                   coalesce(sum(_paid), 0.0) AS usd_paid, coalesce(sum(_would), 0.0) AS usd_without_cache,
                   1000 * avg(_saving) AS usd_saved_per_1k
            FROM {{rows}} GROUP BY ALL HAVING count(*) > 0 {warehouse.group_order(by)}""").df()
        intervals = mean_intervals(per_row, by, {"e2e_miss": "CASE WHEN NOT _hit THEN _e2e END", "saving": "_saving"},
                                   confidence)
    table = table.astype({"requests": np.int64, "hits": np.int64})
    table["hit_rate"] = table["hits"] / table["requests"]
    table["hit_rate_low"], table["hit_rate_high"] = wilson_interval(table["hits"], table["requests"], confidence)
    table["usd_saved"] = table["usd_without_cache"] - table["usd_paid"]
    without = table["usd_without_cache"].to_numpy()
    table["saved_share"] = np.where(without > 0, table["usd_saved"] / np.where(without > 0, without, 1), np.nan)
    for value, low, high, scale in (("e2e_miss", "e2e_miss_low", "e2e_miss_high", 1.0),
                                    ("saving", "usd_saved_per_1k_low", "usd_saved_per_1k_high", 1000.0)):
        found = intervals.loc[intervals["value"] == value, [*by, "low", "high"]]
        table = table.merge(found.rename(columns={"low": low, "high": high}), on=list(by),
                            how="left") if by else table.assign(**{
                                low: found["low"].iloc[0] if len(found) else math.nan,
                                high: found["high"].iloc[0] if len(found) else math.nan})
        table[[low, high]] = table[[low, high]].astype(float) * scale
    return table[[*by, *_CACHE_COLUMNS]]


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


def prompt_caching_savings(rows: Rows, prices: PriceTable, *, by: Sequence[str] = ("config_id",)) -> pd.DataFrame:
    """What the cached input tokens the endpoint reported saved, per group, on ok rows with usage
    (counted in DuckDB).

    Compares the cost as priced (cached tokens at the cached-input price) with the same rows
    with `cached_tokens = 0`.  `below_minimum_share` is the share of requests whose prompt is
    under 1,024 tokens, which OpenAI never caches.  Machine-priced models pay for time, not
    tokens: their saving is in TTFT (see `prefix_reuse`), so it is 0 here, with kind "machine".
    """
    ok = _answered(rows, prices)
    ok = warehouse.over(ok, f"SELECT *, {warehouse.number(ok, 'prompt_tokens')} AS _prompt, "
                            f"coalesce({warehouse.number(ok, 'cached_tokens')}, 0.0) AS _cached FROM {{rows}} "
                            f"WHERE {warehouse.number(ok, 'prompt_tokens')} IS NOT NULL")
    costed = _priced_as(_priced_as(ok, prices, "_paid"), prices, "_full", cached_tokens="0")
    table = warehouse.over(costed, f"""
        SELECT {warehouse.group_columns(costed, by)}
               CASE WHEN bool_and(_machine) THEN 'machine' ELSE 'tokens' END AS kind,
               count(*) AS requests, avg(_prompt) AS prompt_tokens_mean, sum(_cached) AS cached_tokens,
               CASE WHEN sum(_prompt) <> 0 THEN sum(_cached) / sum(_prompt) END AS cached_share,
               avg(CASE WHEN _prompt < {MIN_CACHEABLE_PROMPT_TOKENS} THEN 1.0 ELSE 0.0 END) AS below_minimum_share,
               coalesce(sum(_paid), 0.0) AS usd_paid, coalesce(sum(_full), 0.0) AS usd_without_prompt_cache
        FROM {{rows}} GROUP BY ALL HAVING count(*) > 0 {warehouse.group_order(by)}""").df()
    table = table.astype({"requests": np.int64, "cached_tokens": np.int64})
    table["usd_saved"] = table["usd_without_prompt_cache"] - table["usd_paid"]
    without = table["usd_without_prompt_cache"].to_numpy()
    table["saved_share"] = np.where(without > 0, table["usd_saved"] / np.where(without > 0, without, 1), np.nan)
    return table[[*by, "kind", "requests", "prompt_tokens_mean", "cached_tokens", "cached_share",
                  "below_minimum_share", "usd_paid", "usd_without_prompt_cache", "usd_saved", "saved_share"]]


def batch_savings(rows: Rows, prices: PriceTable, *, by: Sequence[str] = ("config_id",),
                  turnaround_s: float | None = None) -> pd.DataFrame:
    """Cost of the ok rows sent online vs through a Batch API (the price table's `batch_discount`),
    counted in DuckDB.

    Token-priced rows only: a self-hosted server has no batch price (run it with `frontier batch
    run` and it costs machine time: `turnaround_s` x USD per hour, split over the groups by their
    batch rows, in `machine_usd`).  `batch_rows` counts the rows that really went through a batch.
    """
    ok = _answered(rows, prices)
    costed = _priced_as(_priced_as(ok, prices, "_online", batch="false"), prices, "_batched", batch="true")
    tokens = warehouse.over(costed, f"""
        SELECT {warehouse.group_columns(costed, by)}'tokens' AS kind, count(*) AS requests,
               count(*) FILTER (WHERE _batch) AS batch_rows,
               {prices.batch_discount!r} AS batch_discount, coalesce(sum(_online), 0.0) AS usd_online,
               coalesce(sum(_batched), 0.0) AS usd_batch
        FROM {{rows}} WHERE NOT _machine GROUP BY ALL HAVING count(*) > 0 {warehouse.group_order(by)}""").df()
    tokens["usd_saved"] = tokens["usd_online"] - tokens["usd_batch"]
    tokens["machine_usd"] = math.nan
    machine = warehouse.over(ok, f"""
        SELECT {warehouse.group_columns(ok, by)}'machine' AS kind, count(*) AS requests,
               count(*) FILTER (WHERE _batch) AS batch_rows,
               min({warehouse.text(ok, 'model')}) AS _model
        FROM {{rows}} WHERE _machine GROUP BY ALL HAVING count(*) > 0 {warehouse.group_order(by)}""").df()
    batched = machine["batch_rows"].sum()
    hourly = np.array([resolve_price(prices, model)[1].usd_per_hour for model in machine["_model"]], dtype=float)
    share = machine["batch_rows"].to_numpy() / batched if batched else np.zeros(len(machine))
    machine = machine.drop(columns="_model").assign(
        batch_discount=0.0, usd_online=math.nan, usd_batch=math.nan, usd_saved=math.nan,
        machine_usd=np.where((share > 0) & (turnaround_s is not None), (turnaround_s or 0.0) * hourly / 3600 * share,
                             np.nan))
    columns = [*by, "kind", "requests", "batch_rows", "batch_discount", "usd_online", "usd_batch", "usd_saved",
               "machine_usd"]
    table = pd.concat([part[columns] for part in (tokens, machine) if len(part)], ignore_index=True)
    return table.astype({"requests": np.int64, "batch_rows": np.int64}) if len(table) else pd.DataFrame(columns=columns)


def batch_vs_online(batch: Rows, online: Rows, *, by: Sequence[str] = ("config_id",)) -> pd.DataFrame:
    """The same requests (joined on request_id) answered through a batch and online: how many
    match, the share with identical output text, the accuracy of each and the online mean e2e."""
    cols = ["request_id", *by, "output_text", "correct", "status", "e2e_s"]
    answered = [_ok(store.frame_of(warehouse.relation(rows).select(*map(warehouse.quoted, cols))))
                for rows in (batch, online)]
    joined = answered[0].merge(answered[1], on=["request_id", *by], suffixes=("_batch", "_online"))
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


def with_prefix_reuse(rows: Rows, *, keep_order: bool = False, carry: str = "*") -> duckdb.DuckDBPyRelation:
    """`rows` with `prefix_shared`: did the previous request sent to the same endpoint (by
    `sequence`, within the run) use the same model, dataset and prompt variant, hence the same
    prompt prefix (instructions and few-shot examples)?  Null where the order the server saw is
    unknown: the first request, cache hits and batch rows (never reach the server in sequence),
    and requests whose own or predecessor's concurrency is not 1.  A window in DuckDB; `keep_order`
    keeps `rows`' order (a window does not); `carry` (a SELECT list over `rows`) is what the result holds
    beside `prefix_shared`: the window sorts all of it.
    """
    source = warehouse.relation(rows)
    text = {name: warehouse.text(source, name) if name in source.columns else "NULL"
            for name in ("run_id", *PREFIX_KEY)}
    serial = f"coalesce({warehouse.number(source, 'concurrency')} = 1, false)"
    sent = (f"NOT {warehouse.flag(source, 'cache_hit')} AND NOT {warehouse.flag(source, 'batch')} "
            f"AND {warehouse.number(source, 'sequence')} IS NOT NULL")
    numbered = "SELECT row_number() OVER () AS _prefix_order, * FROM {rows}" if keep_order else "SELECT * FROM {rows}"
    # the window sorts every sent row of a run and endpoint (one partition, one thread): it partitions by a hash
    # of the keys and carries a hash of the prefix, 8 bytes each where the texts took some 100 (the marks of
    # 10,000,000 rows: 2.2 s, against 8.1 s); prefixes whose hashes collide (a chance in 2^64) would count as one
    return warehouse.over(source, f"""
        WITH numbered AS ({numbered}),
        marked AS (SELECT {carry}, {sent} AS _sent, {serial} AS _serial,
                          hash({text['run_id']}, {text['endpoint']}) AS _place, sequence AS _sent_as,
                          hash({', '.join(text[name] for name in PREFIX_KEY[1:])}) AS _prefix
                          {', _prefix_order' if keep_order else ''}
                   FROM numbered),
        ordered AS (SELECT *, lag(_serial) OVER w AS _previous_serial, lag(_prefix) OVER w AS _previous_prefix
                    FROM marked WHERE _sent
                    WINDOW w AS (PARTITION BY _place ORDER BY _sent_as))
        SELECT * EXCLUDE (_sent, _serial, _place, _sent_as, _prefix, _previous_serial, _previous_prefix
                          {', _prefix_order' if keep_order else ''}),
               CASE WHEN _serial AND _previous_serial THEN _prefix = _previous_prefix END AS prefix_shared
        FROM (SELECT * FROM ordered
              UNION ALL BY NAME
              SELECT * FROM marked WHERE NOT _sent)
        {'ORDER BY _prefix_order' if keep_order else ''}""")


PREFIX_INPUTS = ("run_id", *PREFIX_KEY, "concurrency", "cache_hit", "batch", "sequence")  # what the marks read


def _prefix_marked(rows: Rows, columns: Sequence[str]) -> duckdb.DuckDBPyRelation:
    """`with_prefix_reuse` of `rows` narrowed to the columns the marks read and `columns`: the window sorts
    every row it carries, so it carries no more than it must."""
    source = warehouse.relation(rows)
    kept = [c for c in dict.fromkeys([*PREFIX_INPUTS, *columns]) if c in source.columns]
    return with_prefix_reuse(source.select(*map(warehouse.quoted, kept)))


def mark_prefix_reuse(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `prefix_shared` (`with_prefix_reuse`), on `frame`'s index."""
    marked = with_prefix_reuse(frame, keep_order=True).select("prefix_shared").df()["prefix_shared"]
    return frame.assign(prefix_shared=pd.array(marked.to_numpy(dtype=object), dtype="boolean"))


# the rows a figure of shared against changed prefixes draws: at most this many of each, a seeded choice
FIGURE_ROWS = 100_000


def prefix_reuse_rows(rows: Rows, *, limit: int = FIGURE_ROWS) -> pd.DataFrame:
    """The ok timed rows whose `prefix_shared` is known, with `previous_prompt` = "shared prefix" or
    "changed prefix" (a label for plots' hue): at most `limit` of each label, a seeded choice made in DuckDB."""
    source = warehouse.relation(rows)
    ok = f"coalesce({warehouse.text(source, 'status')} = 'ok', false)"
    timed = f"{warehouse.number(source, 'ttft_s')} IS NOT NULL"
    # the window carries a rank and a flag, not the shown columns (texts cost it 10x); the chosen rows are the
    # `limit` smallest ranks of each label, joined back to read their columns
    marked = with_prefix_reuse(source, carry=f"hash(request_id, sequence) AS _rank, {ok} AND {timed} AS _shown")
    chosen = warehouse.over(marked, f"SELECT prefix_shared, unnest(_ranks) AS _rank FROM (SELECT prefix_shared, "
                                    f"min_by(_rank, _rank, {int(limit)}) AS _ranks FROM {{rows}} "
                                    "WHERE _shown AND prefix_shared IS NOT NULL GROUP BY prefix_shared)")
    shown = [c for c in ("config_id", *PREFIX_KEY, "sequence", "prompt_tokens", "ttft_s") if c in source.columns]
    ranked = warehouse.over(source, f"SELECT {', '.join(map(warehouse.quoted, shown))}, "
                                    f"hash(request_id, sequence) AS _rank FROM {{rows}} WHERE {ok} AND {timed}")
    kept = warehouse.over(ranked.set_alias("ranked").join(chosen.set_alias("chosen"), "_rank"), """
        SELECT * EXCLUDE (_rank), CASE WHEN prefix_shared THEN 'shared prefix' ELSE 'changed prefix' END
                                      AS previous_prompt
        FROM {rows} ORDER BY sequence""")
    shown += ["prefix_shared", "previous_prompt"]
    # computed once: frame_of's pass over their labels would run the window again
    with warehouse.materialized(kept.select(*map(warehouse.quoted, shown))) as held:
        return store.frame_of(held)


def prefix_reuse(rows: Rows, *, by: Sequence[str] = ("model", "dataset", "prompt_variant"),
                 confidence: float = 0.95) -> pd.DataFrame:
    """TTFT when the previous request shared the prompt prefix vs when it did not, per group (in DuckDB).

    A server that keeps the KV state of its last prompt (llama.cpp does) skips the shared
    prefix's prefill, so shared TTFT should be far lower.  Columns: n_shared, n_changed, mean
    and median TTFT of each, `ttft_saved_s` (difference of means) with a Welch t interval, and
    `speedup` (ratio of means); on ok timed rows with a known `prefix_shared`.
    """
    marked = _prefix_marked(rows, ["status", "ttft_s", "prompt_tokens", *by])
    ok = f"coalesce({warehouse.text(marked, 'status')} = 'ok', false)"
    ttft = warehouse.number(marked, "ttft_s")
    table = warehouse.over(marked, f"""
        SELECT {warehouse.group_columns(marked, by)}
               avg({warehouse.number(marked, 'prompt_tokens')}) AS prompt_tokens_mean,
               count(*) FILTER (WHERE prefix_shared) AS n_shared,
               count(*) FILTER (WHERE NOT prefix_shared) AS n_changed,
               avg(_ttft) FILTER (WHERE prefix_shared) AS ttft_shared_s,
               avg(_ttft) FILTER (WHERE NOT prefix_shared) AS ttft_changed_s,
               median(_ttft) FILTER (WHERE prefix_shared) AS ttft_shared_median_s,
               median(_ttft) FILTER (WHERE NOT prefix_shared) AS ttft_changed_median_s,
               var_samp(_ttft) FILTER (WHERE prefix_shared) AS _var_shared,
               var_samp(_ttft) FILTER (WHERE NOT prefix_shared) AS _var_changed
        FROM (SELECT *, {ttft} AS _ttft FROM {{rows}} WHERE {ok} AND prefix_shared IS NOT NULL AND {ttft} IS NOT NULL)
        GROUP BY ALL HAVING count(*) > 0 {warehouse.group_order(by)}""").df()
    table = table.astype({"n_shared": np.int64, "n_changed": np.int64})
    table["ttft_saved_s"] = table["ttft_changed_s"] - table["ttft_shared_s"]
    # Welch's interval of the difference of means, from each side's count and variance
    n_changed, n_shared = table["n_changed"], table["n_shared"]
    v_changed, v_shared = table["_var_changed"] / n_changed, table["_var_shared"] / n_shared
    tested = (n_shared >= 2) & (n_changed >= 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (v_changed + v_shared) ** 2 / (v_changed**2 / (n_changed - 1) + v_shared**2 / (n_shared - 1))
        half = stats.t.ppf((1 + confidence) / 2, df) * np.sqrt(v_changed + v_shared)
    table["ttft_saved_low"] = np.where(tested, table["ttft_saved_s"] - half, np.nan)
    table["ttft_saved_high"] = np.where(tested, table["ttft_saved_s"] + half, np.nan)
    shared = table["ttft_shared_s"].to_numpy(dtype=float)
    table["speedup"] = np.where(shared > 0, table["ttft_changed_s"] / np.where(shared > 0, shared, 1), np.nan)
    return table[[*by, "prompt_tokens_mean", "n_shared", "n_changed", "ttft_shared_s", "ttft_changed_s",
                  "ttft_shared_median_s", "ttft_changed_median_s", "ttft_saved_s", "ttft_saved_low",
                  "ttft_saved_high", "speedup"]]


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


