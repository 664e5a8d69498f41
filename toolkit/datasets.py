"""Datasets: JSONL files of items with an id, an input and the expected answer (in `data/evals/`).

One JSON object per line: `{"id": "capitals-0001", "input": "France", "expected": "Paris"}`; any
other string fields (say `"style": "long"`) travel with the item so prompt templates can use them.
Loading checks every row and names the file, line and field of the first problem, because a typo
found after an hour of requests costs an hour.
"""
from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from toolkit import resources
from toolkit.errors import DataFileError

REQUIRED_FIELDS = ("id", "input", "expected")


@dataclass(frozen=True)
class Item:
    item_id: str
    input: str
    expected: str
    fields: Mapping[str, str]


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path
    sha256: str
    items: tuple[Item, ...]


def _parse_row(path: Path, lineno: int, raw: bytes) -> dict[str, str] | None:
    """The row on one line as a dict of strings, None for a blank line; raises DataFileError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                                  f"{exc.start + 1})", line=lineno) from exc
    if not text.strip():
        return None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(path, f"not valid JSON: {exc.msg} (column {exc.colno})",
                            line=lineno) from exc
    if not isinstance(row, dict):
        raise DataFileError(path, f"row must be a JSON object, got {type(row).__name__}", line=lineno)
    for field in REQUIRED_FIELDS:
        if field not in row:
            raise DataFileError(path, "missing", line=lineno, field=field)
    for field, value in row.items():
        if not isinstance(value, str):
            raise DataFileError(path, f"must be a string, got {type(value).__name__}",
                                line=lineno, field=field)
    for field in REQUIRED_FIELDS:
        if not row[field].strip():
            raise DataFileError(path, "empty", line=lineno, field=field)
    return row


def _beside(path: Path) -> str:
    """What the folder of a missing dataset holds, so the message says where else to look."""
    folder = path.parent
    if not folder.is_dir():
        return f" (no folder {folder})"
    names = ", ".join(sorted(p.stem for p in folder.glob("*.jsonl")))
    if folder.resolve() == resources.evals_dir():
        return (f" among the datasets shipped with the package ({names}); for your own, set evals_dir in the "
                f"config to the folder holding {path.name}")
    return f" ({folder} holds {names})" if names else ""


def load_dataset(path: str | Path) -> Dataset:
    """Read and validate a JSONL dataset; its name is the file stem, its hash the file's SHA-256.

    A UTF-8 byte order mark at the start is skipped (the hash still covers it).
    Raises DataFileError naming the file, line and field for: a missing file, bytes that are not
    UTF-8, a row that is not a JSON object, a missing, empty or non-string field, a duplicate id
    (both lines), and a file with no items.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataFileError(path, f"file not found{_beside(path)}") from exc
    except OSError as exc:
        raise DataFileError(path, f"cannot read the file: {exc.strerror}") from exc
    items: list[Item] = []
    first_line_of: dict[str, int] = {}
    # editors (Notepad, Excel's "CSV UTF-8") start a file with a byte order mark; it is not part of row 1
    text = data.removeprefix(codecs.BOM_UTF8)
    for lineno, raw in enumerate(text.splitlines(), start=1):
        row = _parse_row(path, lineno, raw)
        if row is None:
            continue
        item_id = row["id"]
        if item_id in first_line_of:
            raise DataFileError(path, f"duplicate id {item_id!r} (first on line "
                                      f"{first_line_of[item_id]})", line=lineno, field="id")
        first_line_of[item_id] = lineno
        extra = {k: v for k, v in row.items() if k not in REQUIRED_FIELDS}
        items.append(Item(item_id, row["input"], row["expected"], MappingProxyType(extra)))
    if not items:
        raise DataFileError(path, "no items (the file is empty)")
    return Dataset(path.stem, path, hashlib.sha256(data).hexdigest(), tuple(items))
