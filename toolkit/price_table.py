"""The named, versioned price table: what it holds, how it is read, how a model's price is found in it.

A `PriceTable` names where each price came from and which version, so a report can say its prices
and be re-priced.  Lookup order for a model name (`resolve_price`): `overrides` (e.g. a user's
`--price MODEL=IN,OUT`), then the entries of `data/prices.yaml` (fnmatch patterns,
case-insensitive, first match wins), then `data/model_aliases.yaml` (a leaderboard name such as
AlpacaEval's `llama-2-70b-chat-hf` -> the genai-prices entry it is priced as, with a note where that
is approximate), then the genai-prices package's bundled snapshot by the name itself, then
`machine_usd_per_hour` if given.  `no_price_reason` says why a model got none.

genai-prices 0.2.3 works offline: the lookups used here read the snapshot shipped inside the
package; it only fetches prices when an `UpdatePrices` updater is started, which this module never
does.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from toolkit import resources
from toolkit.errors import DataFileError, PriceError


DEFAULT_PRICES = resources.prices_file()
DEFAULT_ALIASES = resources.aliases_file()
ALIAS_FIELDS = {"model", "price_as", "note"}
UNPRICED_FIELDS = {"model", "why"}
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


def no_price_reason(table: PriceTable, model: str) -> str:
    """Why `resolve_price` finds no price for `model` in `table`: the alias file's reason when it
    leaves the model unpriced on purpose, else the sources it was looked for in."""
    alias = table.aliases.get(model.lower())
    if alias is not None and alias.price_as is None:
        return f"{alias.file}: {alias.note}"
    prices = Path(table.path).name if table.path else "the price table"
    listed = (f", genai-prices {_genai_version()} does not list it" if table.use_genai_prices
              else ", genai-prices not used")
    return f"not in {prices} or {DEFAULT_ALIASES.name}{listed}"


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path, sections: tuple[str, ...] = ("models",), *, what: str = "the price table",
               shape: str = "name, version, batch_discount and models") -> tuple[dict, dict[str, list[int]]]:
    """The document and, per list-valued section, the line where each of its entries starts."""
    try:
        text = path.read_text(encoding="utf-8")
        # parsed once, by libyaml where it is built in (every notebook reads both files: ~0.1 s each)
        loader = _YAML_LOADER(text)
        try:
            root = loader.get_single_node()
            document = (loader.construct_document(root) if root is not None else None) or {}
        finally:
            loader.dispose()
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
