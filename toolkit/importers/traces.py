"""Import public production traces: request arrivals and sizes, with no answers and no grades.

- **Azure LLM inference trace 2023** (Azure/AzurePublicDataset, `AzureLLMInferenceTrace_{code,conv}.csv`,
  CC BY 4.0; Patel et al., "Splitwise", ISCA 2024).  Upstream's `AzureLLMInferenceDataset2023.md`
  defines `TIMESTAMP` ("Invocation time"), `ContextTokens` ("Number of context tokens") and
  `GeneratedTokens` ("Number of generated tokens").  No latency, model, tokenizer or time zone is
  given: latencies stay null, the model is null unless the caller names one, and the wall-clock
  times are read as UTC (their 100 ns digits are cut to the microsecond the table stores).
- **Mooncake FAST'25 traces** (kvcache-ai/Mooncake, `FAST25-release/traces/*.jsonl`, Apache-2.0;
  Qin et al., FAST 2025).  Upstream's `FAST25-release/README.md` defines `timestamp` ("Relative
  request arrival time in milliseconds"), `input_length`, `output_length` and `hash_ids` ("Remapped
  prefix block hashes. The block size is 512 tokens"); the paper's appendix says each hash covers
  its block and all blocks before it.  The times are relative, so `started_at` = `origin` (default
  the Unix epoch) + timestamp; `hash_ids` become `prefix_hashes`, checked to number
  ceil(input_length / 512) as upstream's files do.

The shipped copies are in `data/public/traces/` with their LICENSE and SOURCE.md.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.errors import DataFileError, ParameterError
from toolkit.importers._common import build_manifest, finish, numeric, read_table, require_columns, row_error
from toolkit.importers._traffic import Where, count, read_records, require_object

VERSION = "1"
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
AZURE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
MOONCAKE_KEYS = ("timestamp", "input_length", "output_length", "hash_ids")
MOONCAKE_BLOCK_TOKENS = 512  # upstream README: "The block size is 512 tokens"


def import_azure2023(path: str | os.PathLike, *, run_id: str | None = None,
                     model: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Read an Azure LLM inference trace 2023 CSV (or the folder holding one) into a requests table.

    `model` names the model to price the traffic as (upstream names none; left null otherwise).
    """
    file = _single_file(Path(path), "AzureLLMInferenceTrace_*.csv")
    service = file.stem.rsplit("_", 1)[-1]  # code or conv
    raw = read_table(file)
    require_columns(raw, AZURE_COLUMNS, file)
    stamps = pd.to_datetime(raw["TIMESTAMP"], format=AZURE_TIME_FORMAT, errors="coerce", utc=True)
    bad = stamps.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = raw["TIMESTAMP"].iloc[row]
        message = "is missing" if pd.isna(value) else f"not a time like 2023-11-16 18:17:03.9799600 ({value!r})"
        raise row_error(file, row, "TIMESTAMP", message)
    prompt = _counts(raw["ContextTokens"], file, "ContextTokens")
    completion = _counts(raw["GeneratedTokens"], file, "GeneratedTokens")
    dataset = f"azure2023-{service}"
    run_id = run_id or dataset
    frame = pd.DataFrame({
        "run_id": run_id,
        "request_id": [f"{dataset}-{i:05d}" for i in range(len(raw))],
        "config_id": model or dataset,
        "model": model,
        "dataset": dataset,
        "endpoint": "unknown",
        "batch": False,
        "cache_hit": False,
        "started_at": stamps.dt.floor("us"),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "usage_source": "server",
        "status": "ok",
        "sequence": np.arange(len(raw)),  # strictly increasing times upstream: file order is send order
    })
    table = finish(frame, path=file)
    span = (table["started_at"].max() - table["started_at"].min()).total_seconds()
    notes = [
        "One row per request: TIMESTAMP is its arrival, read as UTC (upstream names no time zone) and "
        "cut from 100 ns to the microsecond; prompt_tokens = ContextTokens, completion_tokens = "
        "GeneratedTokens (usage_source server: the service's counts; the tokenizer is not named).",
        "No latency was recorded upstream: ttft_s and e2e_s are null; replay the arrivals to measure them.",
        f"model is {'given by the caller: ' + model if model else 'null: upstream names none'}.",
        "Licence CC BY 4.0; attribution: Patel et al., Splitwise, ISCA 2024 (see SOURCE.md).",
    ]
    manifest = build_manifest(kind="azure2023", version=VERSION, run_id=run_id, sources=[file],
                              table=table, notes=notes, span_s=span, service=service)
    return table, manifest


def import_mooncake(path: str | os.PathLike, *, run_id: str | None = None, model: str | None = None,
                    origin: str = "1970-01-01T00:00:00Z") -> tuple[pd.DataFrame, dict]:
    """Read a Mooncake FAST'25 trace (JSON lines, or the folder holding one) into a requests table.

    `origin` is the UTC time of timestamp 0 (the trace is relative); `model` as for Azure.
    """
    file = _single_file(Path(path), "*_trace.jsonl")
    try:
        start = pd.Timestamp(origin)
    except ValueError:
        raise ParameterError(f"import_mooncake: origin {origin!r} is not an ISO 8601 time") from None
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    rows = []
    for where, record in read_records(file):
        record = require_object(record, where)
        missing = [key for key in MOONCAKE_KEYS if key not in record]
        if missing:
            raise where.error(missing[0], "is missing")
        prompt = count(record["input_length"], where, "input_length", required=True)
        blocks = _hashes(record["hash_ids"], where)
        if len(blocks) != math.ceil(prompt / MOONCAKE_BLOCK_TOKENS):
            raise where.error("hash_ids", f"has {len(blocks)} block hashes, but input_length {prompt} makes "
                                          f"{math.ceil(prompt / MOONCAKE_BLOCK_TOKENS)} blocks of "
                                          f"{MOONCAKE_BLOCK_TOKENS} tokens")
        rows.append({
            "request_id": f"{file.stem}-{where.line:05d}",  # the line: the trace has exact duplicate records
            "started_at": start + pd.Timedelta(milliseconds=count(record["timestamp"], where, "timestamp",
                                                                  required=True)),
            "prompt_tokens": prompt,
            "completion_tokens": count(record["output_length"], where, "output_length", required=True),
            "prefix_hashes": blocks,
        })
    dataset = f"mooncake-{file.stem.removesuffix('_trace')}"
    run_id = run_id or dataset
    frame = pd.DataFrame(rows).assign(
        run_id=run_id, config_id=model or dataset, model=model, dataset=dataset, endpoint="unknown",
        batch=False, cache_hit=False, usage_source="server", status="ok",
        sequence=np.arange(len(rows)))  # upstream: replay in file order by these timestamps
    table = finish(frame, path=file)
    span = (table["started_at"].max() - table["started_at"].min()).total_seconds()
    notes = [
        f"started_at = {start.isoformat()} + timestamp ms: the trace's times are relative (origin option).",
        "Timestamps are binned upstream (about 3 s apart, many requests sharing one): sequence keeps the "
        "file order among equal times.",
        f"prefix_hashes = hash_ids: one hash per {MOONCAKE_BLOCK_TOKENS}-token block, the last block "
        "partial, each covering its block and all before it, so a shared hash at position i means the "
        "whole prefix of i+1 blocks is shared.",
        "No latency was recorded upstream: ttft_s and e2e_s are null.",
        f"model is {'given by the caller: ' + model if model else 'null: upstream names none'}.",
        "Licence Apache-2.0; cite Qin et al., Mooncake, FAST 2025 (see SOURCE.md).",
    ]
    manifest = build_manifest(kind="mooncake", version=VERSION, run_id=run_id, sources=[file],
                              table=table, notes=notes, span_s=span,
                              prefix_block_tokens=MOONCAKE_BLOCK_TOKENS, origin=start.isoformat())
    return table, manifest


def _single_file(path: Path, pattern: str) -> Path:
    """`path` itself, or the one file matching `pattern` in the folder `path`."""
    if not path.is_dir():
        if not path.is_file():
            raise DataFileError(path, "no such file")
        return path
    files = sorted(path.glob(pattern))
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise DataFileError(path, f"expected one file matching {pattern} in this folder, found {found}")
    return files[0]


def _counts(values: pd.Series, path: Path, field: str) -> pd.Series:
    number = numeric(values, path, field, required=True)
    bad = (number < 0) | (number != number.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        what = "is negative" if number.iloc[row] < 0 else "not a whole number"
        raise row_error(path, row, field, f"{what} ({values.iloc[row]!r})")
    return number.astype("Int64")


def _hashes(value: object, where: Where) -> list[int]:
    if not isinstance(value, list) or not value:
        raise where.error("hash_ids", f"expected a non-empty list of block hashes, got {value!r:.60}")
    for index, block in enumerate(value):
        if isinstance(block, bool) or not isinstance(block, int) or block < 0:
            raise where.error("hash_ids", f"element {index} is not a non-negative integer ({block!r})")
    return value
