"""Helpers every importer shares: reading a foreign file safely, checking fields, the manifest."""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit import __version__
from toolkit.errors import DataFileError
from toolkit.schema import coerce_requests

CHARS_PER_TOKEN = 4  # the usual English rule of thumb; used only where a source gives no token counts


def read_json(path: Path) -> object:
    """Parse a JSON file; an empty or malformed file is a DataFileError with its line."""
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataFileError(path, "the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(path, f"not valid JSON ({exc.msg})", line=exc.lineno) from exc


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file as strings/values; an empty file is a DataFileError."""
    if not path.is_file():
        raise DataFileError(path, "no such file")
    if path.stat().st_size == 0:
        raise DataFileError(path, "the file is empty")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise DataFileError(path, f"not a readable Parquet file ({exc})") from exc
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"not a readable CSV file ({exc})") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataFileError(path, "the file is empty") from exc
    if frame.empty:
        raise DataFileError(path, "the file has a header but no rows")
    return frame


def csv_line(path: Path, row: int) -> int | None:
    """Physical line (1-based) where data row `row` (0-based) starts; quoted newlines counted."""
    if path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        return None
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        start = 1
        for index, _ in enumerate(reader):
            if index == row + 1:  # index 0 is the header
                return start
            start = reader.line_num + 1
    return None


def require_columns(frame: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise DataFileError(path, f"required column(s) missing: {', '.join(missing)}", line=1)


def row_error(path: Path, row: int, field: str | None, message: str, *,
              unit: str = "row") -> DataFileError:
    """An error at data row `row` (0-based): a CSV names its physical line, other files the row."""
    line = csv_line(path, row)
    if line is not None:
        return DataFileError(path, message, line=line, field=field)
    return DataFileError(path, f"{message} in {unit} {row}", field=field)


def numeric(values: pd.Series, path: Path, field: str, *, required: bool | np.ndarray = False,
            unit: str = "row") -> pd.Series:
    """`values` as floats; a non-numeric (or, where required, missing) cell raises naming its row.

    `required` is a bool or a boolean mask of the rows where the field must be present.
    """
    converted = pd.to_numeric(values, errors="coerce").astype(float)
    bad = converted.isna() & values.notna()
    bad |= values.isna() & np.broadcast_to(np.asarray(required, dtype=bool), len(values))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = values.iloc[row]
        message = "is missing" if pd.isna(value) else f"not a number ({value!r})"
        raise row_error(path, row, field, message, unit=unit)
    return converted


def require_text(values: pd.Series, path: Path, field: str, *, unit: str = "row") -> pd.Series:
    missing = values.isna() | (values.astype(str).str.strip() == "")
    if missing.any():
        raise row_error(path, int(np.flatnonzero(missing.to_numpy())[0]), field, "is missing", unit=unit)
    return values.astype(str)


def estimate_tokens(chars: pd.Series) -> pd.Series:
    """Tokens estimated from a character count (chars / 4, rounded; null stays null)."""
    return (chars / CHARS_PER_TOKEN).round().astype("Int64")


def finish(frame: pd.DataFrame, *, path: Path) -> pd.DataFrame:
    """Coerce to the requests table and check the request ids are unique (they are primary keys)."""
    table = coerce_requests(frame, source=str(path))
    duplicated = table["request_id"].duplicated()
    if duplicated.any():
        first = table.loc[duplicated, "request_id"].iloc[0]
        raise DataFileError(path, f"duplicate request id {first!r}", field="request_id")
    return table


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_manifest(*, kind: str, version: str, run_id: str, sources: list[Path],
                   table: pd.DataFrame, notes: list[str], **extra: object) -> dict:
    """The manifest of an imported run: where it came from, how it was converted, what it holds."""
    return {
        "run_id": run_id,
        "source": "import",
        "importer": {"kind": kind, "version": version},
        "source_files": [{"path": str(p), "sha256": file_digest(p)} for p in sources],
        "toolkit_version": __version__,
        "imported_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "configs": sorted(table["config_id"].dropna().unique().tolist()),
        "datasets": sorted(table["dataset"].dropna().unique().tolist()),
        "n_requests": int(len(table)),
        "notes": notes,
        **extra,
    }
