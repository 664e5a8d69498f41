"""What the importers of production traffic share: reading records, checking their fields, and
setting the columns every such table gets (send order, prompt hash, the reported cost beside ours).

Every check raises `DataFileError` naming the file, the line (JSON lines, CSV) or record (a JSON
array) and the field, so a bad row in a million is found without a debugger.
"""
from __future__ import annotations

import csv as csv_module
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.errors import DataFileError, PriceError
from toolkit.importers._common import finish, read_table

PROMPT_HASH_HEX = 16  # 64 bits of SHA-256: collisions are negligible below billions of prompts


@dataclass(frozen=True)
class Where:
    """A record's place in its file: a line (JSON lines, CSV) or a position (JSON array)."""

    path: Path
    line: int | None = None
    record: int | None = None
    within: str = ""  # a path inside the record, e.g. "resourceSpans[0].scopeSpans[0].spans[3]"

    def error(self, field: str | None, message: str) -> DataFileError:
        at = []
        if self.record is not None:
            at.append(f"record {self.record}")
        if self.within:
            at.append(self.within)
        suffix = f" in {', '.join(at)}" if at else ""
        return DataFileError(self.path, message + suffix, line=self.line, field=field)

    def inside(self, within: str) -> Where:
        return Where(self.path, self.line, self.record, within)


def read_records(path: Path, *, list_keys: tuple[str, ...] = ("data",),
                 csv: bool = False) -> Iterator[tuple[Where, object]]:
    """Yield (where, record) for every record of a JSON array, of a JSON object's list under one of
    `list_keys` (an API page such as `{"data": [...]}`), of a JSON lines file, or (`csv=True`) of a CSV
    file with a header (each record a dict of strings, empty cells None)."""
    if not path.is_file():
        raise DataFileError(path, "no such file")
    if csv and path.suffix.lower() == ".csv":
        frame = read_table(path)
        for line, row in zip(_csv_lines(path), frame.to_dict("records")):
            yield Where(path, line=line), {k: (None if pd.isna(v) else v) for k, v in row.items()}
        return
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise DataFileError(path, "the file is empty")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None  # not one JSON document: JSON lines, read below with a line for each error
    if document is not None and not isinstance(document, (list, dict)):
        raise DataFileError(path, "expected a JSON array or object, or JSON lines")
    if isinstance(document, dict):
        key = next((k for k in list_keys if isinstance(document.get(k), list)), None)
        if key is None:  # one record: its line only if it is written on one
            yield Where(path, line=1 if "\n" not in text.strip() else None), document
            return
        document = document[key]
    if isinstance(document, list):
        if not document:
            raise DataFileError(path, "the file holds no records")
        for index, record in enumerate(document):
            yield Where(path, record=index), record
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield Where(path, line=number), json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(path, f"not valid JSON ({exc.msg})", line=number) from exc


def _csv_lines(path: Path) -> list[int]:
    """The physical line (1-based) where each data row starts; quoted newlines counted, blank lines
    skipped as pandas skips them."""
    starts, start = [], 1
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv_module.reader(handle)
        for index, row in enumerate(reader):
            if index > 0 and row:
                starts.append(start)
            start = reader.line_num + 1
    return starts


def require_object(record: object, where: Where) -> dict:
    if not isinstance(record, dict):
        raise where.error(None, f"expected a JSON object, got {type(record).__name__}")
    return record


def count(value: object, where: Where, field: str, *, required: bool = False) -> int | None:
    """A token count: a non-negative integer (a JSON number or a numeral string); missing -> None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        if required:
            raise where.error(field, "is missing")
        return None
    number = _number(value, where, field)
    if number != int(number):
        raise where.error(field, f"not a whole number ({value!r})")
    if number < 0:
        raise where.error(field, f"is negative ({value!r})")
    return int(number)


def non_negative(value: object, where: Where, field: str, *, scale: float = 1.0) -> float | None:
    """A non-negative number (a duration x `scale` to seconds, or USD; JSON number or decimal
    string); missing -> None."""
    if value is None or value == "":
        return None
    number = _number(value, where, field) * scale
    if number < 0:
        raise where.error(field, f"is negative ({value!r})")
    return number


def setting(value: object, *, whole: bool = False) -> float | int | None:
    """A model setting (max_tokens, temperature) if it is a finite non-negative number, else None.
    These columns describe a request and are never required; the tools store them free-form
    (LangChain writes max_tokens "Infinity", None or -1 for "no limit")."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        return None
    if whole:
        return int(number) if number == int(number) else None
    return number


def _number(value: object, where: Where, field: str) -> float:
    if isinstance(value, bool):
        raise where.error(field, f"not a number ({value!r})")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise where.error(field, f"not a number ({value!r})") from None
    if not math.isfinite(number):
        raise where.error(field, f"not a finite number ({value!r})")
    return number


def timestamp(value: object, where: Where, field: str, *, required: bool = True) -> pd.Timestamp | None:
    """An ISO 8601 time as UTC; a time without a zone is read as UTC (what these tools store)."""
    if value is None or value == "":
        if required:
            raise where.error(field, "is missing")
        return None
    if not isinstance(value, str):
        raise where.error(field, f"not an ISO 8601 time ({value!r})")
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        raise where.error(field, f"not an ISO 8601 time ({value!r})") from None
    if pd.isna(stamp):
        raise where.error(field, f"not an ISO 8601 time ({value!r})")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def span_seconds(start: pd.Timestamp, end: pd.Timestamp, where: Where, end_field: str) -> float:
    """end - start in seconds; an end before the start is an error naming `end_field`."""
    elapsed = (end - start).total_seconds()
    if elapsed < 0:
        raise where.error(end_field, f"is {-elapsed:g} s before the start ({end.isoformat()} < {start.isoformat()})")
    return elapsed


def first_token_seconds(start: pd.Timestamp, first: pd.Timestamp | None, end: pd.Timestamp | None,
                        where: Where, field: str) -> float | None:
    """first - start in seconds, which must lie within [start, end]."""
    if first is None:
        return None
    ttft = (first - start).total_seconds()
    if ttft < 0 or (end is not None and first > end):
        raise where.error(field, f"is outside the request's start and end ({first.isoformat()})")
    return ttft


def prompt_hash(prompt: object) -> str | None:
    """The first 16 hex digits of SHA-256 of `prompt` as canonical JSON (sorted keys, no spaces);
    a prompt stored as a JSON string is parsed first, so both spellings hash alike."""
    if prompt is None or prompt == "":
        return None
    if isinstance(prompt, str):
        try:
            prompt = json.loads(prompt)
        except json.JSONDecodeError:
            pass  # plain text: hash it as the JSON string it is
    canonical = json.dumps(prompt, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:PROMPT_HASH_HEX]


def traffic_table(rows: list[dict], run_id: str, path: Path) -> pd.DataFrame:
    """The requests table of a trace's rows: its run id, send order by start time, DESIGN dtypes."""
    frame = pd.DataFrame(rows)
    frame["run_id"] = run_id
    frame["sequence"] = send_order(frame["started_at"])
    return finish(frame, path=path)


def send_order(started_at: pd.Series) -> pd.Series:
    """Each request's position in send order (0-based; ties keep file order; no time -> null)."""
    stamps = pd.to_datetime(started_at, utc=True)
    order = stamps.rank(method="first") - 1
    return order.astype("Int64")


def compare_reported_costs(table: pd.DataFrame) -> list[dict]:
    """Per model, the cost the source reported against the toolkit's price for the same tokens.

    Only rows with both a reported cost and token counts are compared; a model the price table
    does not know is listed with the reason.  The reported cost is never used as the cost: this is
    the check that says whether it can be believed.
    """
    from toolkit.pricing import MachinePrice, load_price_table, price_requests, resolve_price

    rows = table[table["reported_cost_usd"].notna() & table["prompt_tokens"].notna()
                 & table["completion_tokens"].notna() & table["model"].notna()]
    if rows.empty:
        return []
    prices = load_price_table()
    comparison = []
    for model, group in rows.groupby("model", sort=True):
        reported = float(group["reported_cost_usd"].sum())
        entry: dict = {"model": model, "requests": int(len(group)), "reported_usd": reported}
        try:
            matched, price = resolve_price(prices, str(model))
        except PriceError as exc:
            comparison.append({**entry, "priced_usd": None, "why": str(exc)})
            continue
        if isinstance(price, MachinePrice):
            comparison.append({**entry, "priced_usd": None, "why": "priced by machine time, not tokens"})
            continue
        priced = float(price_requests(group.assign(machine_s=np.nan), prices).sum())
        comparison.append({**entry, "priced_usd": priced, "price": matched,
                           "reported_over_priced": reported / priced if priced else None})
    return comparison

