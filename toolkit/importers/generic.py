"""Import any CSV or Parquet table of requests by naming which of its columns is which DESIGN column.

`mapping` maps source column -> requests-table column; keyword arguments named like a requests
column set it to a constant (`model="gpt-4o-mini"`); `milliseconds` lists source columns in ms.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from toolkit.errors import ParameterError
from toolkit.importers._common import build_manifest, finish, numeric, read_table, require_columns, row_error
from toolkit.schema import ARROW_SCHEMA, REQUEST_COLUMNS

KIND = "generic"
VERSION = "1"
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


def import_generic(path: str | os.PathLike, *, mapping: Mapping[str, str],
                   milliseconds: Sequence[str] = (), run_id: str | None = None,
                   **constants: object) -> tuple[pd.DataFrame, dict]:
    """Read a CSV/Parquet file into a requests table through a column mapping.

    Every value is checked against its column's type; a bad cell raises DataFileError naming the
    file, line (CSV) or row (Parquet) and source column.  `model` must be mapped or constant;
    config_id defaults to model, request_id to "<file stem>-<row>", status to "ok".
    """
    path = Path(path)
    _check_targets(mapping, milliseconds, constants)
    raw = read_table(path)
    require_columns(raw, mapping.keys(), path)
    frame = pd.DataFrame(index=raw.index)
    for source, target in mapping.items():
        values = raw[source]
        scale = 1e-3 if source in milliseconds else 1.0
        frame[target] = _convert(values, ARROW_SCHEMA.field(target).type, path, source, scale)
    for target, value in constants.items():
        frame[target] = value
    if "model" not in frame.columns:
        raise ParameterError("import_generic: map a column to 'model' or pass model=... as a constant")
    missing = frame["model"].isna()
    if missing.any():
        source = next((s for s, t in mapping.items() if t == "model"), "model")
        raise row_error(path, int(np.flatnonzero(missing.to_numpy())[0]), source, "is missing")
    run_id = run_id or f"{KIND}-{path.stem}"
    frame["run_id"] = run_id
    defaults = {"config_id": frame["model"], "status": "ok", "endpoint": "unknown",
                "request_id": [f"{path.stem}-{i:06d}" for i in range(len(frame))]}
    for target, value in defaults.items():
        if target not in frame.columns:
            frame[target] = value
    table = finish(frame, path=path)
    notes = [f"mapping {dict(mapping)}", f"constants {sorted(constants)}",
             f"milliseconds converted to seconds: {list(milliseconds)}",
             "usage_source is null unless given: the source does not say where token counts came from.",
             "endpoint is 'unknown' unless mapped or given."]
    manifest = build_manifest(kind=KIND, version=VERSION, run_id=run_id, sources=[path], table=table,
                              notes=notes, mapping=dict(mapping))
    return table, manifest


def _check_targets(mapping: Mapping[str, str], milliseconds: Sequence[str],
                   constants: Mapping[str, object]) -> None:
    unknown = sorted({t for t in mapping.values() if t not in REQUEST_COLUMNS}
                     | {t for t in constants if t not in REQUEST_COLUMNS})
    if unknown:
        raise ParameterError(f"import_generic: unknown requests-table column(s): {', '.join(unknown)}")
    if "run_id" in mapping.values() or "run_id" in constants:
        raise ParameterError("import_generic: set run_id with run_id=..., not as a column")
    targets = list(mapping.values()) + list(constants)
    twice = sorted({t for t in targets if targets.count(t) > 1})
    if twice:
        raise ParameterError(f"import_generic: column(s) set more than once: {', '.join(twice)}")
    not_mapped = [name for name in milliseconds if name not in mapping]
    if not_mapped:
        raise ParameterError("import_generic: milliseconds names unmapped column(s): "
                             + ", ".join(not_mapped))


def _convert(values: pd.Series, kind: pa.DataType, path: Path, source: str, scale: float) -> pd.Series:
    if pa.types.is_floating(kind):
        return numeric(values, path, source) * scale
    if pa.types.is_integer(kind):
        number = numeric(values, path, source) * scale
        fractional = number.notna() & (number != number.round())
        if fractional.any():
            row = int(np.flatnonzero(fractional.to_numpy())[0])
            raise row_error(path, row, source, f"not an integer ({values.iloc[row]!r})")
        return number.astype("Int64")
    if pa.types.is_boolean(kind):
        return pd.Series([_boolean(v, path, source, row) for row, v in enumerate(values)],
                         index=values.index, dtype="boolean")
    if pa.types.is_timestamp(kind):
        stamps = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        bad = stamps.isna() & values.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise row_error(path, row, source, f"not an ISO 8601 time ({values.iloc[row]!r})")
        return stamps
    if pa.types.is_list(kind):
        return pd.Series([_gaps(v, path, source, row, scale) for row, v in enumerate(values)],
                         index=values.index, dtype=object)
    return values.map(lambda v: None if _missing(v) else str(v))


def _boolean(value: object, path: Path, source: str, row: int) -> bool | None:
    if _missing(value) or isinstance(value, (bool, np.bool_)):
        return None if _missing(value) else bool(value)
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise row_error(path, row, source, f"not a boolean ({value!r})")


def _gaps(value: object, path: Path, source: str, row: int, scale: float) -> list[float] | None:
    if _missing(value):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise row_error(path, row, source, f"not a JSON list of numbers ({exc.msg})") from exc
    try:
        return [float(gap) * scale for gap in value]
    except (TypeError, ValueError) as exc:
        raise row_error(path, row, source, "not a list of numbers") from exc


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
