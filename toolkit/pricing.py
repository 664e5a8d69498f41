"""Dollars from the requests table: token prices for API models, machine time for self-hosted ones.

Cost is derived, never stored: the prices come from a named, versioned `PriceTable`
(`toolkit.price_table`: data/prices.yaml, user prices, model aliases, genai-prices), so a report
can say its prices and be re-priced; a self-hosted request is charged its share of its phase's wall
time (`toolkit.machine_time`).  `price_coverage` says which models got no price and why;
`choose_cost_basis` falls back to a stated basis (output tokens x one price) when none did.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from toolkit import warehouse
from toolkit.errors import ParameterError, PriceError
from toolkit.machine_time import MACHINE_INPUTS, pricing_rules, with_machine_time
from toolkit.price_table import (DEFAULT_PRICES, TOKEN_FIELDS, MachinePrice, Price, PriceTable, load_aliases,
                                 load_price_table, no_price_reason, resolve_price)
from toolkit.warehouse import Rows

# the price table's names (and `pricing_rules`, which notebooks call as pricing.pricing_rules) are offered here
# too, so a notebook imports one module for prices
__all__ = [
    "COST_BASES", "DEFAULT_PRICES", "NO_PRICE", "TOKEN_FIELDS", "CostBasis", "MachinePrice", "Price", "PriceTable",
    "choose_cost_basis", "describe", "load_aliases", "load_price_table", "machine_priced", "output_token_basis",
    "parse_user_price",
    "price_coverage", "price_requests", "price_table_for", "priced", "pricing_rules", "resolve_price", "user_prices",
]

log = logging.getLogger("toolkit")

COST_BASES = ("auto", "prices", "output_tokens")


@dataclass(frozen=True)
class CostBasis:
    """What a report's costs stand on: `basis` "prices" (each model's own prices, `table`) or
    "output_tokens" (every request's completion tokens x `usd_per_mtok`, one price for all models),
    and the `requested` choice ("auto" picks output_tokens only when no model has a price)."""

    basis: str
    requested: str
    usd_per_mtok: float | None
    table: PriceTable


# what `priced` reads (without `machine_s`, `machine_time.with_machine_time` reads MACHINE_INPUTS)
PRICE_INPUTS = ("model", "status", "prompt_tokens", "completion_tokens", "cached_tokens", "batch", "cache_hit",
                "machine_s")


def price_requests(frame: pd.DataFrame, table: PriceTable) -> pd.Series:
    """USD per row of a requests table, named `usd`, on `frame`'s index: `priced` over `frame`, in its
    row order (NaN where unknown)."""
    used = [name for name in (*PRICE_INPUTS, *MACHINE_INPUTS) if name in frame.columns]
    usd = priced(frame[used], table, keep_order=True).select("usd").df()["usd"].to_numpy(dtype=float)
    unnamed = int(frame["model"].isna().sum())
    if unnamed:
        log.warning("%d rows name no model and are priced NaN", unnamed)
    unknown = int(np.isnan(usd).sum()) - unnamed
    if unknown:
        log.warning("%d ok rows have no token counts or e2e_s and are priced NaN", unknown)
    return pd.Series(usd, index=frame.index, name="usd")


def priced(rows: Rows, table: PriceTable, *, keep_order: bool = False) -> duckdb.DuckDBPyRelation:
    """`rows` with each request's cost in USD, `usd` (null where unknown), computed in DuckDB.

    API models: (prompt - cached) x input + cached x cached price (input price when none) +
    completion tokens (which include reasoning tokens) x output; `batch` rows get the batch
    discount.  Self-hosted models: `machine_s` x usd_per_hour / 3600, the request's share of the
    machine's wall time (`machine_time.with_machine_time`: what the machine delivered at that load,
    never e2e / nominal concurrency).  The `machine_s` column is used when `rows` has it (`load_run`
    adds it over the whole run, so a subset keeps its shares), else computed from `rows`.
    `cache_hit` rows cost 0.  Missing token counts or times count as 0 on error rows and give null
    on ok rows (unknown, not free); so does a row that names no model (a public trace: price it
    as a model of your choice, e.g. with `frame.assign(model=...)`).  `keep_order` keeps `rows`' order.
    """
    source = warehouse.relation(rows)
    resolved = {m: resolve_price(table, m)[1] for m in warehouse.distinct_texts(source, "model")}
    machines = [m for m, price in resolved.items() if isinstance(price, MachinePrice)]
    if machines:
        source = with_machine_time(source, keep_order=keep_order)
    model = warehouse.text(source, "model")

    def rate(attribute: str) -> str:
        cases = " ".join(f"WHEN {warehouse.literal(m)} THEN {_sql_number(_rate(price, attribute))}"
                         for m, price in resolved.items())
        return f"(CASE {model} {cases} END)" if cases else "CAST(NULL AS DOUBLE)"

    def known(column: str) -> str:  # unknown counts are 0 on a failed request, unknown on an answered one
        return f"coalesce({warehouse.number(source, column)}, CASE WHEN _priced_error THEN 0.0 END)"

    status = warehouse.text(source, "status")
    is_machine = f"{model} IN ({', '.join(map(warehouse.literal, machines))})" if machines else "false"
    tokens = (f"((_priced_prompt - _priced_cached) * {rate('input_usd_per_mtok')}"
              f" + _priced_cached * {rate('cached_input_usd_per_mtok')}"
              f" + _priced_completion * {rate('output_usd_per_mtok')}) / 1e6")
    return warehouse.over(source, f"""
        WITH checked AS (SELECT *, coalesce({status} <> 'ok', true) AS _priced_error FROM {{rows}}),
        counted AS (
            SELECT *, {known('prompt_tokens')} AS _priced_prompt, {known('completion_tokens')} AS _priced_completion,
                   {known('machine_s')} AS _priced_machine_s
            FROM checked)
        SELECT * EXCLUDE (_priced_error, _priced_prompt, _priced_completion, _priced_machine_s, _priced_cached),
               CASE WHEN {model} IS NULL THEN NULL
                    WHEN {warehouse.flag(source, 'cache_hit')} THEN 0.0
                    WHEN {is_machine} THEN _priced_machine_s * {rate('usd_per_hour')} / 3600
                    WHEN {warehouse.flag(source, 'batch')} THEN {tokens} * {1 - table.batch_discount!r}
                    ELSE {tokens} END AS usd
        FROM (SELECT *, least(coalesce({warehouse.number(source, 'cached_tokens')}, 0.0), _priced_prompt)
                            AS _priced_cached
              FROM counted)""")


def describe(table: PriceTable, models: Iterable[str] | None = None) -> pd.DataFrame:
    """Which prices a report used: one row per model (or per table entry when `models` is None).

    Columns: model, matched, kind ("tokens" or "machine"), input_usd_per_mtok,
    cached_input_usd_per_mtok, output_usd_per_mtok, usd_per_hour, batch_discount, source,
    table, version, as_of.
    """
    pairs = ([(m, *resolve_price(table, m)) for m in sorted(set(models))] if models is not None
             else [(pattern, pattern, price) for pattern, price in table.prices.items()])
    rows = [{
        "model": model, "matched": matched,
        "kind": "machine" if isinstance(price, MachinePrice) else "tokens",
        **{f: getattr(price, f, np.nan) for f in TOKEN_FIELDS},
        "usd_per_hour": getattr(price, "usd_per_hour", np.nan),
        "batch_discount": table.batch_discount, "source": price.source, "table": table.name,
        "version": table.version, "as_of": table.as_of.isoformat(),
    } for model, matched, price in pairs]
    columns = ["model", "matched", "kind", *TOKEN_FIELDS, "usd_per_hour", "batch_discount", "source",
               "table", "version", "as_of"]
    return pd.DataFrame(rows, columns=columns)


def parse_user_price(text: str) -> tuple[str, Price]:
    """"MODEL=IN,OUT" or "MODEL=IN,OUT,CACHED" -> (MODEL, Price), in USD per million input, output
    and cached input tokens.  MODEL may be an fnmatch pattern ("gpt-4o*"); a bad entry is a
    `PriceError` that quotes it."""
    model, sep, numbers = str(text).rpartition("=")
    model = model.strip()
    if not sep or not model:
        raise PriceError(f"price {text!r}: expected MODEL=IN,OUT in USD per million input and output tokens, "
                         "e.g. gpt-4o=2.5,10 (a third number is the cached-input price)")
    parts = [part.strip() for part in numbers.split(",")]
    if len(parts) not in (2, 3):
        raise PriceError(f"price {text!r}: expected 2 or 3 numbers after '=' (IN,OUT or IN,OUT,CACHED), "
                         f"got {len(parts)}")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise PriceError(f"price {text!r}: {part!r} is not a number >= 0")
        values.append(value)
    cached = values[2] if len(values) == 3 else None
    return model, Price(model, values[0], cached, values[1], f"user price {model}={numbers.strip()}")


def user_prices(entries: Iterable[str]) -> dict[str, Price]:
    """`parse_user_price` over `entries`, as `load_price_table(overrides=...)` takes them; a model
    given twice is a `PriceError` quoting the second entry."""
    prices: dict[str, Price] = {}
    for entry in entries:
        model, price = parse_user_price(entry)
        if model.lower() in {m.lower() for m in prices}:
            raise PriceError(f"price {entry!r}: {model!r} already has a price")
        prices[model] = price
    return prices


def price_coverage(table: PriceTable, models: Iterable[str], *, reported: Iterable[str] = ()) -> pd.DataFrame:
    """Which of `models` `table` prices, and why the others have no price: one row per distinct model.

    Columns: model, priced, matched (as `resolve_price`; "reported" for a model in `reported`,
    whose cost the import itself reported, e.g. FrugalGPT's), approximate (priced through an
    alias with a note), source, reason (None when priced).  A price with no rates (the NaN
    placeholder `overview.price_table_for` gives unknown models) counts as no price.
    """
    reported = {str(m) for m in reported}
    rows = []
    for model in sorted({str(m) for m in models}):
        try:
            matched, price = resolve_price(table, model)
        except PriceError:
            matched, price = None, None
        if price is not None and _has_rates(price):
            alias = table.aliases.get(model.lower())
            approximate = matched.startswith("alias") and alias is not None and alias.note is not None
            rows.append((model, True, matched, approximate, price.source, None))
        elif model in reported:
            rows.append((model, True, "reported", False, "the cost the import reported per query", None))
        else:
            rows.append((model, False, None, False, None, no_price_reason(table, model)))
    return pd.DataFrame(rows, columns=["model", "priced", "matched", "approximate", "source", "reason"])


def output_token_basis(usd_per_mtok: float) -> PriceTable:
    """A price table that charges every model's output tokens at one stated price and nothing else:
    a cost basis for comparing models that have no prices, not anyone's bill."""
    if isinstance(usd_per_mtok, bool) or not isinstance(usd_per_mtok, (int, float)) or not usd_per_mtok > 0:
        raise ParameterError(f"output-token cost basis (basis_usd_per_mtok): the price must be a number > 0, "
                             f"got {usd_per_mtok!r}")
    rate = float(usd_per_mtok)
    price = Price("*", 0.0, 0.0, rate, f"cost basis: output tokens x {rate:g} USD per million, the same for "
                  "every model (not a real price)")
    return PriceTable(name="output-token basis", version=f"{rate:g} USD per million output tokens",
                      prices={"*": price}, batch_discount=0.0, use_genai_prices=False)


def choose_cost_basis(table: PriceTable, coverage: pd.DataFrame, requested: str = "auto",
                      usd_per_mtok: float = 1.0) -> CostBasis:
    """The cost basis a report uses: "prices" (`table`), "output_tokens" (`output_token_basis`), or
    "auto": prices when any model in `coverage` (from `price_coverage`) has one, else output tokens."""
    if requested not in COST_BASES:
        raise ParameterError(f"cost basis must be one of {', '.join(COST_BASES)}, got {requested!r}")
    basis = requested
    if requested == "auto":
        basis = "prices" if coverage.empty or coverage["priced"].any() else "output_tokens"
    if basis == "prices":
        return CostBasis("prices", requested, None, table)
    return CostBasis("output_tokens", requested, float(usd_per_mtok), output_token_basis(usd_per_mtok))


def _rate(price: Price | MachinePrice, attribute: str) -> float:
    if attribute == "cached_input_usd_per_mtok" and isinstance(price, Price):
        cached = price.cached_input_usd_per_mtok
        return price.input_usd_per_mtok if cached is None else cached
    value = getattr(price, attribute, 0.0)
    return 0.0 if value is None else float(value)


def machine_priced(rows: Rows, table: PriceTable) -> list[str]:
    """The models of `rows` that `table` prices by machine time (self-hosted), sorted."""
    return [m for m in warehouse.distinct_texts(warehouse.relation(rows), "model")
            if isinstance(resolve_price(table, m)[1], MachinePrice)]


def _sql_number(value: float) -> str:
    """A rate as a SQL literal: an unknown (NaN) rate is null, so that a sum leaves it out as pandas does."""
    return "NULL" if math.isnan(value) else repr(float(value))


def _has_rates(price: Price | MachinePrice) -> bool:
    if isinstance(price, MachinePrice):
        return not math.isnan(price.usd_per_hour)
    return not (math.isnan(price.input_usd_per_mtok) and math.isnan(price.output_usd_per_mtok))


NO_PRICE = ("no price known: pass --price MODEL=IN,OUT (or the model_prices parameter), add the model to "
            "data/prices.yaml, or pass machine_usd_per_hour")


def price_table_for(rows: Rows, machine_usd_per_hour: float | None = None, *,
                    path: Path | None = None,
                    overrides: Mapping[str, Price | MachinePrice] | None = None) -> PriceTable:
    """The price table for a run: data/prices.yaml + genai-prices, with unknown models priced NaN.

    Any run must be reportable, so a model no price source knows gets an explicit NaN machine
    price whose source says so (`pricing.describe` shows it) instead of a `PriceError`.
    `overrides` (e.g. a user's `model_prices`) win over every other source.
    """
    table = load_price_table(path, machine_usd_per_hour=machine_usd_per_hour, overrides=overrides)
    unknown = {}
    for model in warehouse.distinct_texts(warehouse.relation(rows), "model"):
        try:
            resolve_price(table, model)
        except PriceError:
            unknown[model] = MachinePrice(math.nan, NO_PRICE)
    if not unknown:
        return table
    return load_price_table(path, machine_usd_per_hour=machine_usd_per_hour,
                            overrides={**(overrides or {}), **unknown}, as_of=table.as_of)
