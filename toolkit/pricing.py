"""Dollars from the requests table: token prices for API models, machine time for self-hosted ones.

Cost is derived, never stored: a `PriceTable` names where each price came from and which version,
so a report can say its prices and be re-priced.  Lookup order for a model name: `overrides`,
then the entries of `data/prices.yaml` (fnmatch patterns, case-insensitive, first match wins), then
the genai-prices package's bundled snapshot, then `machine_usd_per_hour` if given.

genai-prices 0.2.3 works offline: `calc_price` and the lookups used here read the snapshot shipped
inside the package; it only fetches prices when an `UpdatePrices` updater is started, which this
module never does.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from toolkit.errors import DataFileError, PriceError

log = logging.getLogger("toolkit")

DEFAULT_PRICES = Path(__file__).resolve().parent.parent / "data" / "prices.yaml"
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


def load_price_table(path: Path | None = None, *, machine_usd_per_hour: float | None = None,
                     overrides: Mapping[str, Price | MachinePrice] | None = None,
                     use_genai_prices: bool = True, as_of: dt.datetime | None = None) -> PriceTable:
    """Read a prices YAML (default `data/prices.yaml`) and combine it with genai-prices.

    `machine_usd_per_hour` replaces the hourly rate of every machine entry and prices any model
    that is otherwise unknown as self-hosted at that rate.  `overrides` (pattern -> price) win
    over everything.  `as_of` (default now, UTC) selects genai-prices' price at that date.
    """
    path = Path(path) if path is not None else DEFAULT_PRICES
    document, lines = _read_yaml(path)
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
    return PriceTable(name=name, version=version, prices=prices, batch_discount=float(discount),
                      use_genai_prices=use_genai_prices, as_of=as_of or dt.datetime.now(dt.UTC),
                      fallback=fallback, path=str(path))


def resolve_price(table: PriceTable, model: str) -> tuple[str, Price | MachinePrice]:
    """The price `table` uses for `model`, with what it matched (a pattern or a genai-prices id)."""
    for pattern, price in table.prices.items():
        if fnmatch.fnmatchcase(model.lower(), pattern.lower()):
            return pattern, price
    if table.use_genai_prices:
        found = _genai_price(model, table.as_of)
        if found is not None:
            return found.model, found
    if table.fallback is not None:
        return "*", table.fallback
    where = table.path or "data/prices.yaml"
    raise PriceError(
        f"no price for model {model!r} in price table {table.name!r} (nor in genai-prices): add an entry "
        f"to {where} under models: with match: {model!r}, input_usd_per_mtok, output_usd_per_mtok, "
        f"optional cached_input_usd_per_mtok and source; or, for a self-hosted model, usd_per_hour and "
        f"source; or pass load_price_table(machine_usd_per_hour=...)")


def price_requests(frame: pd.DataFrame, table: PriceTable) -> pd.Series:
    """USD per row of a requests table, named `usd`.

    API models: (prompt - cached) x input + cached x cached price (input price when none) +
    completion tokens (which include reasoning tokens) x output; `batch` rows get the batch
    discount.  Self-hosted models: e2e_s x usd_per_hour / 3600 / concurrency, because the
    machine serves `concurrency` requests at once and its hour is shared among them (a serial
    run, concurrency 1, pays the full wall time).  `cache_hit` rows cost 0.  Missing token
    counts or times count as 0 on error rows and give NaN on ok rows (unknown, not free).
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
    e2e = column("e2e_s", None)
    concurrency = np.maximum(column("concurrency", 1.0), 1.0)
    # one lookup per distinct model, then a gather: a per-row Python loop costs seconds at 1M rows
    codes, models = pd.factorize(frame["model"])

    def per_row(attribute: str) -> np.ndarray:
        return np.array([_rate(resolved[m], attribute) for m in models], dtype=float)[codes]

    tokens = ((prompt - cached) * per_row("input_usd_per_mtok")
              + cached * per_row("cached_input_usd_per_mtok")
              + completion * per_row("output_usd_per_mtok")) / 1e6
    batch = frame["batch"].fillna(False).to_numpy(dtype=bool)
    tokens = np.where(batch, tokens * (1 - table.batch_discount), tokens)
    machine = e2e * per_row("usd_per_hour") / 3600 / concurrency
    is_machine = np.array([isinstance(resolved[m], MachinePrice) for m in models], dtype=bool)[codes]
    usd = np.where(is_machine, machine, tokens)
    usd = np.where(frame["cache_hit"].fillna(False).to_numpy(dtype=bool), 0.0, usd)
    if np.isnan(usd).any():
        log.warning("%d ok rows have no token counts or e2e_s and are priced NaN", int(np.isnan(usd).sum()))
    return pd.Series(usd, index=frame.index, name="usd")


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


def _rate(price: Price | MachinePrice, attribute: str) -> float:
    if attribute == "cached_input_usd_per_mtok" and isinstance(price, Price):
        cached = price.cached_input_usd_per_mtok
        return price.input_usd_per_mtok if cached is None else cached
    value = getattr(price, attribute, 0.0)
    return 0.0 if value is None else float(value)


def _read_yaml(path: Path) -> tuple[dict, list[int]]:
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text) or {}
        root = yaml.compose(text)
    except OSError as exc:
        raise DataFileError(path, f"cannot read the price table: {exc}") from exc
    except yaml.YAMLError as exc:
        line = exc.problem_mark.line + 1 if getattr(exc, "problem_mark", None) else None
        raise DataFileError(path, f"is not valid YAML: {exc}", line=line) from exc
    if not isinstance(document, dict):
        raise DataFileError(path, "must be a mapping with name, version, batch_discount and models")
    models = document.get("models") or []
    if not isinstance(models, list):
        raise DataFileError(path, "must be a list of entries", field="models")
    nodes = next((v for k, v in root.value if k.value == "models"), None) if root is not None else None
    lines = [item.start_mark.line + 1 for item in nodes.value] if nodes is not None else []
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
def _genai_price(model: str, as_of: dt.datetime) -> Price | None:
    from genai_prices import data_snapshot
    from genai_prices.types import TieredPrices

    try:
        provider, info = data_snapshot.get_snapshot().find_provider_model(model, None, None, None)
    except LookupError:
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

