"""Dollars from the requests table: token prices for API models, machine time for self-hosted ones.

Cost is derived, never stored: a `PriceTable` names where each price came from and which version,
so a report can say its prices and be re-priced.  Lookup order for a model name: `overrides`
(e.g. a user's `--price MODEL=IN,OUT`), then the entries of `data/prices.yaml` (fnmatch patterns,
case-insensitive, first match wins), then `data/model_aliases.yaml` (a leaderboard name such as
AlpacaEval's `llama-2-70b-chat-hf` -> the genai-prices entry it is priced as, with a note where that
is approximate), then the genai-prices package's bundled snapshot by the name itself, then
`machine_usd_per_hour` if given.  `price_coverage` says which models got no price and why;
`choose_cost_basis` falls back to a stated basis (output tokens x one price) when none did.

genai-prices 0.2.3 works offline: `calc_price` and the lookups used here read the snapshot shipped
inside the package; it only fetches prices when an `UpdatePrices` updater is started, which this
module never does.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import functools
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from toolkit import resources
from toolkit.errors import DataFileError, ParameterError, PriceError

log = logging.getLogger("toolkit")

DEFAULT_PRICES = resources.prices_file()
DEFAULT_ALIASES = resources.aliases_file()
ALIAS_FIELDS = {"model", "price_as", "note"}
UNPRICED_FIELDS = {"model", "why"}
COST_BASES = ("auto", "prices", "output_tokens")
TOKEN_FIELDS = ("input_usd_per_mtok", "cached_input_usd_per_mtok", "output_usd_per_mtok")
ENTRY_FIELDS = {"match", "source", "usd_per_hour", *TOKEN_FIELDS}


@dataclass(frozen=True)
class Price:
    """Token prices of an API model in USD per million tokens."""

    model: str
    input_usd_per_mtok: float
    cached_input_usd_per_mtok: float | None
    output_usd_per_mtok: float
    source: str


@dataclass(frozen=True)
class MachinePrice:
    """Price of the machine serving a self-hosted model, in USD per hour of wall time."""

    usd_per_hour: float
    source: str


@dataclass(frozen=True)
class Alias:
    """A model name priced as a genai-prices entry under another name (`data/model_aliases.yaml`).

    `price_as` is "provider:model id" in genai-prices' snapshot, or None for a name the file leaves
    unpriced on purpose.  `note` says why the match is approximate (None: it is the same model) or,
    when unpriced, why no price fits.  `file`, `line` and `version` say where, for reviewers.
    """

    model: str
    price_as: str | None
    note: str | None
    file: str
    line: int
    version: str

    @property
    def where(self) -> str:
        return f"{self.file} line {self.line}, version {self.version}"


@dataclass(frozen=True)
class CostBasis:
    """What a report's costs stand on: `basis` "prices" (each model's own prices, `table`) or
    "output_tokens" (every request's completion tokens x `usd_per_mtok`, one price for all models),
    and the `requested` choice ("auto" picks output_tokens only when no model has a price)."""

    basis: str
    requested: str
    usd_per_mtok: float | None
    table: PriceTable


@dataclass(frozen=True)
class PriceTable:
    """Named, versioned prices: explicit entries keyed by model-name pattern, plus genai-prices.

    `batch_discount` is the fraction taken off token prices for `batch` rows (0.5 = half price).
    `as_of` picks among genai-prices' dated prices; `fallback` prices models nothing else knows.
    """

    name: str
    version: str
    prices: Mapping[str, Price | MachinePrice]
    batch_discount: float = 0.5
    use_genai_prices: bool = True
    as_of: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    fallback: MachinePrice | None = None
    path: str | None = None
    aliases: Mapping[str, Alias] = field(default_factory=dict)  # keyed by lower-case model name


def load_price_table(path: Path | None = None, *, machine_usd_per_hour: float | None = None,
                     overrides: Mapping[str, Price | MachinePrice] | None = None,
                     use_genai_prices: bool = True, as_of: dt.datetime | None = None,
                     aliases_path: Path | None = None) -> PriceTable:
    """Read a prices YAML (default `data/prices.yaml`) and combine it with genai-prices.

    `machine_usd_per_hour` replaces the hourly rate of every machine entry and prices any model
    that is otherwise unknown as self-hosted at that rate.  `overrides` (pattern -> price) win
    over everything.  `as_of` (default now, UTC) selects genai-prices' price at that date.
    `aliases_path` (default `data/model_aliases.yaml`) maps names to genai-prices entries; it
    is read only when genai-prices is used, since every alias points into it.
    """
    path = Path(path) if path is not None else DEFAULT_PRICES
    document, section_lines = _read_yaml(path)
    lines = section_lines["models"]
    name = str(document.get("name", path.stem))
    version = str(document.get("version", "unversioned"))
    discount = document.get("batch_discount", 0.5)
    if not isinstance(discount, (int, float)) or not 0 <= discount <= 1:
        raise DataFileError(path, f"must be a number in [0, 1], got {discount!r}", field="batch_discount")
    prices: dict[str, Price | MachinePrice] = dict(overrides or {})
    for entry, line in zip(document.get("models") or [], lines):
        pattern, price = _parse_entry(entry, path, line)
        if isinstance(price, MachinePrice) and machine_usd_per_hour is not None:
            price = MachinePrice(machine_usd_per_hour, "machine_usd_per_hour argument")
        prices.setdefault(pattern, price)
    if use_genai_prices:
        version = f"{version}; genai-prices {_genai_version()}"
    fallback = (MachinePrice(machine_usd_per_hour, "machine_usd_per_hour argument")
                if machine_usd_per_hour is not None else None)
    aliases = load_aliases(aliases_path) if use_genai_prices else {}
    return PriceTable(name=name, version=version, prices=prices, batch_discount=float(discount),
                      use_genai_prices=use_genai_prices, as_of=as_of or dt.datetime.now(dt.UTC),
                      fallback=fallback, path=str(path), aliases=aliases)


def resolve_price(table: PriceTable, model: str) -> tuple[str, Price | MachinePrice]:
    """The price `table` uses for `model`, with what it matched: a pattern, "alias -> provider:id"
    (data/model_aliases.yaml) or a genai-prices "provider:id"."""
    for pattern, price in table.prices.items():
        if fnmatch.fnmatchcase(model.lower(), pattern.lower()):
            return pattern, price
    alias = table.aliases.get(model.lower())
    if table.use_genai_prices and alias is not None and alias.price_as is not None:
        provider, model_id = alias.price_as.split(":", 1)
        found = _genai_price(model_id, table.as_of, provider)
        if found is None:
            raise PriceError(f"{alias.where}: price_as {alias.price_as!r} is not a priced model in "
                             f"genai-prices {_genai_version()}")
        note = f": {alias.note}" if alias.note else "; the same model"
        return f"alias -> {found.model}", dataclasses.replace(
            found, source=f"{found.source}, for {alias.model} per {alias.where}{note}")
    if table.use_genai_prices:
        found = _genai_price(model, table.as_of)
        if found is not None:
            return found.model, found
    if table.fallback is not None:
        return "*", table.fallback
    where = table.path or "data/prices.yaml"
    why = f" ({alias.where}: {alias.note})" if alias is not None and alias.note else ""
    raise PriceError(
        f"no price for model {model!r} in price table {table.name!r} (nor in genai-prices){why}: pass "
        f"--price {model}=IN,OUT to frontier report (USD per million input and output tokens; "
        f"model_prices in a notebook); or add an entry "
        f"to {where} under models: with match: {model!r}, input_usd_per_mtok, output_usd_per_mtok, "
        f"optional cached_input_usd_per_mtok and source; or, for a self-hosted model, usd_per_hour and "
        f"source; or pass load_price_table(machine_usd_per_hour=...)")


def price_requests(frame: pd.DataFrame, table: PriceTable) -> pd.Series:
    """USD per row of a requests table, named `usd`.

    API models: (prompt - cached) x input + cached x cached price (input price when none) +
    completion tokens (which include reasoning tokens) x output; `batch` rows get the batch
    discount.  Self-hosted models: `machine_s` x usd_per_hour / 3600, the request's share of the
    machine's wall time (`machine_seconds`: what the machine delivered at that load, never
    e2e / nominal concurrency).  The `machine_s` column is used when the frame has it (`load_run`
    adds it over the whole run, so a subset keeps its shares), else computed from `frame`.
    `cache_hit` rows cost 0.  Missing token counts or times count as 0 on error rows and give NaN
    on ok rows (unknown, not free).
    """
    if frame["model"].isna().any():
        row = frame.index[frame["model"].isna()][0]
        raise PriceError(f"requests table row {row}: field \"model\" is empty, so it cannot be priced")
    resolved = {m: resolve_price(table, m)[1] for m in frame["model"].unique()}
    is_error = (frame["status"] != "ok").fillna(True).to_numpy(dtype=bool)

    def column(name: str, default: float | None) -> np.ndarray:
        values = frame[name].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        filled = np.where(is_error, 0.0, np.nan) if default is None else default
        return np.where(np.isnan(values), filled, values)

    prompt, completion = column("prompt_tokens", None), column("completion_tokens", None)
    cached = np.minimum(column("cached_tokens", 0.0), prompt)
    machine_s = (frame["machine_s"] if "machine_s" in frame.columns else machine_seconds(frame)["machine_s"])
    machine_s = machine_s.astype(float).to_numpy()
    machine_s = np.where(np.isnan(machine_s) & is_error, 0.0, machine_s)
    # one lookup per distinct model, then a gather: a per-row Python loop costs seconds at 1M rows
    codes, models = pd.factorize(frame["model"])

    def per_row(attribute: str) -> np.ndarray:
        return np.array([_rate(resolved[m], attribute) for m in models], dtype=float)[codes]

    tokens = ((prompt - cached) * per_row("input_usd_per_mtok")
              + cached * per_row("cached_input_usd_per_mtok")
              + completion * per_row("output_usd_per_mtok")) / 1e6
    batch = frame["batch"].fillna(False).to_numpy(dtype=bool)
    tokens = np.where(batch, tokens * (1 - table.batch_discount), tokens)
    machine = machine_s * per_row("usd_per_hour") / 3600
    is_machine = np.array([isinstance(resolved[m], MachinePrice) for m in models], dtype=bool)[codes]
    usd = np.where(is_machine, machine, tokens)
    usd = np.where(frame["cache_hit"].fillna(False).to_numpy(dtype=bool), 0.0, usd)
    if np.isnan(usd).any():
        log.warning("%d ok rows have no token counts or e2e_s and are priced NaN", int(np.isnan(usd).sum()))
    return pd.Series(usd, index=frame.index, name="usd")


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
    rule = np.where(hit, "cache_hit", np.where(by_phase, "phase", np.where(by_batch, "batch", "e2e"))).astype(object)
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
    return pd.DataFrame({"machine_s": machine, "machine_rule": pd.Categorical(rule, categories=list(MACHINE_RULES))},
                        index=index)


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A grouping key as objects, "" where missing (a group key must not be NaN)."""
    if name not in frame.columns:
        return np.full(len(frame), "", dtype=object)
    return frame[name].astype(object).fillna("").to_numpy()


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
    machine = frame["model"].map(kinds).fillna(False).to_numpy(dtype=bool)
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


def load_aliases(path: Path | None = None) -> dict[str, Alias]:
    """Read `data/model_aliases.yaml` (or `path`) into model name -> `Alias`, keyed by lower-case name.

    `aliases:` entries have `model`, `price_as` ("provider:model id" as genai-prices names them)
    and, where the match is approximate, a `note` saying why it is the closest listed price;
    `unpriced:` entries have `model` and `why` no listed price fits.  A name listed twice, an
    unknown key or a malformed `price_as` is a `DataFileError` naming the line and field.
    """
    path = Path(path) if path is not None else DEFAULT_ALIASES
    document, lines = _read_yaml(path, ("aliases", "unpriced"), what="the model aliases",
                                 shape="name, version, aliases and unpriced")
    version = str(document.get("version", "unversioned"))
    found: dict[str, Alias] = {}
    for section, fields, reason in (("aliases", ALIAS_FIELDS, "note"), ("unpriced", UNPRICED_FIELDS, "why")):
        for entry, line in zip(document.get(section) or [], lines[section]):
            if not isinstance(entry, dict):
                raise DataFileError(path, "each entry must be a mapping", line=line, field=section)
            unknown = sorted(set(entry) - fields)
            if unknown:
                raise DataFileError(path, f"unknown key; allowed: {', '.join(sorted(fields))}", line=line,
                                    field=str(unknown[0]))
            required = ("model", "price_as") if section == "aliases" else ("model", "why")
            for name in {*required, *(f for f in fields if f in entry)}:
                if not isinstance(entry.get(name), str) or not entry[name].strip():
                    raise DataFileError(path, "must be a non-empty string", line=line, field=name)
            target = entry.get("price_as")
            if target is not None and not all(part.strip() for part in target.partition(":")[::2]):
                raise DataFileError(path, "must be provider:model id as genai-prices names them, e.g. "
                                    f"together:meta-llama/Llama-2-70b-chat-hf; got {target!r}", line=line,
                                    field="price_as")
            key = entry["model"].lower()
            if key in found:
                raise DataFileError(path, f"{entry['model']!r} is listed twice (first at {found[key].where})",
                                    line=line, field="model")
            found[key] = Alias(entry["model"], target, entry.get(reason), path.name, line, version)
    return found


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
            rows.append((model, False, None, False, None, _no_price_reason(table, model)))
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


def _has_rates(price: Price | MachinePrice) -> bool:
    if isinstance(price, MachinePrice):
        return not math.isnan(price.usd_per_hour)
    return not (math.isnan(price.input_usd_per_mtok) and math.isnan(price.output_usd_per_mtok))


def _no_price_reason(table: PriceTable, model: str) -> str:
    alias = table.aliases.get(model.lower())
    if alias is not None and alias.price_as is None:
        return f"{alias.file}: {alias.note}"
    prices = Path(table.path).name if table.path else "the price table"
    listed = (f", genai-prices {_genai_version()} does not list it" if table.use_genai_prices
              else ", genai-prices not used")
    return f"not in {prices} or {DEFAULT_ALIASES.name}{listed}"


def _read_yaml(path: Path, sections: tuple[str, ...] = ("models",), *, what: str = "the price table",
               shape: str = "name, version, batch_discount and models") -> tuple[dict, dict[str, list[int]]]:
    """The document and, per list-valued section, the line where each of its entries starts."""
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text) or {}
        root = yaml.compose(text)
    except OSError as exc:
        raise DataFileError(path, f"cannot read {what}: {exc}") from exc
    except yaml.YAMLError as exc:
        line = exc.problem_mark.line + 1 if getattr(exc, "problem_mark", None) else None
        raise DataFileError(path, f"is not valid YAML: {exc}", line=line) from exc
    if not isinstance(document, dict):
        raise DataFileError(path, f"must be a mapping with {shape}")
    lines = {}
    for section in sections:
        if not isinstance(document.get(section) or [], list):
            raise DataFileError(path, "must be a list of entries", field=section)
        nodes = next((v for k, v in root.value if k.value == section), None) if root is not None else None
        lines[section] = [item.start_mark.line + 1 for item in nodes.value] if nodes is not None else []
    return document, lines


def _parse_entry(entry: object, path: Path, line: int) -> tuple[str, Price | MachinePrice]:
    if not isinstance(entry, dict):
        raise DataFileError(path, "each entry must be a mapping", line=line, field="models")
    unknown = sorted(set(entry) - ENTRY_FIELDS)
    if unknown:
        raise DataFileError(path, f"unknown key; allowed: {', '.join(sorted(ENTRY_FIELDS))}",
                            line=line, field=str(unknown[0]))
    for required in ("match", "source"):
        if not isinstance(entry.get(required), str) or not entry[required]:
            raise DataFileError(path, "is required and must be a non-empty string", line=line, field=required)
    numbers = {}
    for name in ("usd_per_hour", *TOKEN_FIELDS):
        value = entry.get(name)
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise DataFileError(path, f"must be a number >= 0, got {value!r}", line=line, field=name)
        numbers[name] = None if value is None else float(value)
    has_tokens = numbers["input_usd_per_mtok"] is not None or numbers["output_usd_per_mtok"] is not None
    if (numbers["usd_per_hour"] is not None) == has_tokens:
        raise DataFileError(path, "give either usd_per_hour (self-hosted) or input_usd_per_mtok and "
                            "output_usd_per_mtok (API)", line=line, field="usd_per_hour")
    if numbers["usd_per_hour"] is not None:
        return entry["match"], MachinePrice(numbers["usd_per_hour"], entry["source"])
    for name in ("input_usd_per_mtok", "output_usd_per_mtok"):
        if numbers[name] is None:
            raise DataFileError(path, "is required for a token-priced model", line=line, field=name)
    return entry["match"], Price(entry["match"], numbers["input_usd_per_mtok"],
                                 numbers["cached_input_usd_per_mtok"], numbers["output_usd_per_mtok"],
                                 entry["source"])


def _genai_version() -> str:
    import genai_prices

    return genai_prices.__version__


@functools.lru_cache(maxsize=512)
def _genai_price(model: str, as_of: dt.datetime, provider_id: str | None = None) -> Price | None:
    from genai_prices import data_snapshot
    from genai_prices.types import TieredPrices

    try:
        provider, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None
    # a provider's match rules can map an id to a different entry: an alias must name the entry itself
    if provider_id is not None and info.id.lower() != model.lower():
        return None
    price = info.get_prices(as_of)
    rates = {k: getattr(price, k) for k in ("input_mtok", "cache_read_mtok", "output_mtok")}
    if rates["input_mtok"] is None and rates["output_mtok"] is None:
        return None
    tiered = any(isinstance(v, TieredPrices) for v in rates.values())
    as_float = {k: None if v is None else float(v.base if isinstance(v, TieredPrices) else v)
                for k, v in rates.items()}
    note = " (tiered; base rate used)" if tiered else ""
    return Price(model=f"{provider.id}:{info.id}", input_usd_per_mtok=as_float["input_mtok"] or 0.0,
                 cached_input_usd_per_mtok=as_float["cache_read_mtok"],
                 output_usd_per_mtok=as_float["output_mtok"] or 0.0,
                 source=f"genai-prices {_genai_version()} {provider.id}/{info.id}{note}")

NO_PRICE = ("no price known: pass --price MODEL=IN,OUT (or the model_prices parameter), add the model to "
            "data/prices.yaml, or pass machine_usd_per_hour")


def price_table_for(frame: pd.DataFrame, machine_usd_per_hour: float | None = None, *,
                    path: Path | None = None,
                    overrides: Mapping[str, Price | MachinePrice] | None = None) -> PriceTable:
    """The price table for a run: data/prices.yaml + genai-prices, with unknown models priced NaN.

    Any run must be reportable, so a model no price source knows gets an explicit NaN machine
    price whose source says so (`pricing.describe` shows it) instead of a `PriceError`.
    `overrides` (e.g. a user's `model_prices`) win over every other source.
    """
    table = load_price_table(path, machine_usd_per_hour=machine_usd_per_hour, overrides=overrides)
    unknown = {}
    for model in sorted({str(m) for m in frame["model"].dropna().unique()}):
        try:
            resolve_price(table, model)
        except PriceError:
            unknown[model] = MachinePrice(math.nan, NO_PRICE)
    if not unknown:
        return table
    return load_price_table(path, machine_usd_per_hour=machine_usd_per_hour,
                            overrides={**(overrides or {}), **unknown}, as_of=table.as_of)
