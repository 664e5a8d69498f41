"""Import OpenAI Batch API output (JSONL: one `{id, custom_id, response, error}` object per line).

A batch gives no timings (ttft/e2e null) but exact usage from each response body.  `custom_id` is
the request id; with `id_pattern` (a regex with named groups config_id, dataset, item_id, repeat)
it also says which dataset item a line answers.  This module is the one reader of Batch output and error
files: `frontier batch ingest` (toolkit.batch.ingest) reads them with `read_batch_lines` and joins
the lines to the grid that built the batch.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.errors import DataFileError
from toolkit.importers._common import build_manifest, finish
from toolkit.records import Answer, Failure, outcome_columns

KIND = "openai_batch"
VERSION = "1"
DEFAULT_ENDPOINT = "api.openai.com"
ID_FIELDS = ("config_id", "dataset", "item_id", "repeat")
logger = logging.getLogger("toolkit")

NOTES = [
    "ttft_s, e2e_s and tbt_s are null: a batch has no per-request timings.",
    "started_at = the response body's `created` time (when the server made the answer), not a send time.",
    "usage_source = server; cached_tokens and reasoning_tokens come from the usage details.",
    "status ok only for HTTP 2xx without an error; error_type is the error code "
    "(line `error`, else the body's error), else http_<status>.",
    "A failed line without a body takes the batch's model: one batch file holds one model.",
]


@dataclass(frozen=True)
class BatchLine:
    """One line of a Batch output or error file: which request it answers and what came back."""

    custom_id: str
    model: str | None  # the model the response body names; None on a failed line without a body
    created: dt.datetime | None  # when the server made the answer (the body's `created`)
    outcome: Answer | Failure
    source: str | os.PathLike
    line: int


def import_openai_batch(path: str | os.PathLike, *, errors: str | os.PathLike | None = None,
                        run_id: str | None = None, endpoint: str = DEFAULT_ENDPOINT, model: str | None = None,
                        config_id: str | None = None, id_pattern: str | None = None,
                        dataset: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a Batch output (or error) JSONL file, and its error file when given, into a requests table
    with batch = True.  (A batch built from a frontier config: `frontier batch ingest` joins it to the
    grid and grades it.)"""
    paths = [Path(p) for p in (path, errors) if p is not None]
    for each in paths:
        if not each.is_file():
            raise DataFileError(each, "no such file")
    with contextlib.ExitStack() as stack:
        lines = read_batch_lines(*((stack.enter_context(p.open(encoding="utf-8")), p) for p in paths))
    table = batch_table(lines, source=paths[0], endpoint=endpoint, model=model, config_id=config_id,
                        id_pattern=id_pattern, dataset=dataset)
    run_id = run_id or f"{KIND}-{paths[0].stem}"
    table["run_id"] = run_id
    manifest = build_manifest(kind=KIND, version=VERSION, run_id=run_id, sources=paths, table=table,
                              notes=NOTES, endpoint=endpoint)
    return table, manifest


def parse_batch_output(lines: Iterable[str], *, source: str | os.PathLike = "batch output",
                       endpoint: str = DEFAULT_ENDPOINT, model: str | None = None,
                       config_id: str | None = None, id_pattern: str | None = None,
                       dataset: str | None = None) -> pd.DataFrame:
    """Rows of the requests table (run_id unset) from Batch output lines; bad lines raise DataFileError."""
    return batch_table(read_batch_lines((lines, source)), source=source, endpoint=endpoint, model=model,
                       config_id=config_id, id_pattern=id_pattern, dataset=dataset)


def read_batch_lines(*files: tuple[Iterable[str], str | os.PathLike]) -> list[BatchLine]:
    """The lines of Batch output and error files (each given as (lines, source name)), in order.

    One file may be empty (an error file often is), not all; a custom_id answered twice, in one file
    or across the two, is a DataFileError naming both places.
    """
    parsed: list[BatchLine] = []
    first: dict[str, BatchLine] = {}
    for lines, source in files:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            line = _line(_parse_line(text, source, number), source, number)
            if line.custom_id in first:
                before = first[line.custom_id]
                raise DataFileError(source, f"duplicate request id {line.custom_id!r} (first at {before.source} "
                                    f"line {before.line})", line=number, field="custom_id")
            first[line.custom_id] = line
            parsed.append(line)
    if not parsed:
        names = " and ".join(str(source) for _, source in files)
        raise DataFileError(names, "the file is empty" if len(files) == 1 else "the files are empty")
    return parsed


def batch_table(lines: list[BatchLine], *, source: str | os.PathLike, endpoint: str = DEFAULT_ENDPOINT,
                model: str | None = None, config_id: str | None = None, id_pattern: str | None = None,
                dataset: str | None = None) -> pd.DataFrame:
    """Requests-table rows (run_id unset) of Batch lines that no frontier plan describes: the model
    from each body, item identity only as far as `id_pattern` reads it from the custom_id."""
    pattern = re.compile(id_pattern) if id_pattern else None
    rows = [{"request_id": line.custom_id, "model": line.model, "batch": True, "cache_hit": False,
             "started_at": line.created, **outcome_columns(line.outcome), **_id_fields(line, pattern)}
            for line in lines]
    # object columns: an ok row's null tbt_s beside an error row's missing one must not become a float
    frame = pd.DataFrame(rows, dtype=object)
    models = frame["model"].dropna().unique()
    fallback = model or (models[0] if len(models) == 1 else None)
    if fallback is None and frame["model"].isna().any():
        logger.warning("%s: %d failed lines name no model", source, int(frame["model"].isna().sum()))
    frame["model"] = frame["model"].fillna(fallback) if fallback else frame["model"]
    if "config_id" not in frame.columns or frame["config_id"].isna().all():
        frame["config_id"] = config_id or frame["model"]
    frame["endpoint"] = endpoint
    if dataset is not None:
        frame["dataset"] = dataset
    return finish(frame, path=Path(source))


def _parse_line(line: str, source: str | os.PathLike, number: int) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataFileError(source, f"not valid JSON ({exc.msg})", line=number) from exc
    if not isinstance(obj, dict):
        raise DataFileError(source, "a batch output line must be a JSON object", line=number)
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise DataFileError(source, "is missing", line=number, field="custom_id")
    for name in ("response", "error"):
        if obj.get(name) is not None and not isinstance(obj[name], dict):
            raise DataFileError(source, "must be an object or null", line=number, field=name)
    return obj


def _line(obj: dict, source: str | os.PathLike, number: int) -> BatchLine:
    response = obj.get("response") or {}
    body = response.get("body") or {}
    if not isinstance(body, dict):
        raise DataFileError(source, "must be a JSON object", line=number, field="response.body")
    status_code = response.get("status_code")
    if status_code is not None and not isinstance(status_code, int):
        raise DataFileError(source, f"not an integer ({status_code!r})", line=number,
                            field="response.status_code")
    error = obj.get("error") or body.get("error")
    usage = _usage(body.get("usage"), source, number)  # checked on failed lines too: a bad file is bad
    outcome: Answer | Failure
    if error is None and status_code is not None and 200 <= status_code < 300:
        outcome = Answer(text=_output_text(body), http_status=status_code, logprob_mean=_logprob_mean(body),
                         **usage)
    else:
        outcome = Failure(_error_type(error, status_code), status_code)
    return BatchLine(obj["custom_id"], body.get("model"), _created(body), outcome, source, number)


def _id_fields(line: BatchLine, pattern: re.Pattern | None) -> dict:
    """config_id, dataset, item_id and repeat as `pattern`'s named groups read them from the custom_id."""
    if pattern is None:
        return {}
    match = pattern.fullmatch(line.custom_id)
    if match is None:
        raise DataFileError(line.source, f"{line.custom_id!r} does not match id_pattern {pattern.pattern!r}",
                            line=line.line, field="custom_id")
    fields = {k: v for k, v in match.groupdict().items() if k in ID_FIELDS}
    if fields.get("repeat") is not None:
        if not fields["repeat"].isdigit():
            raise DataFileError(line.source, f"repeat {fields['repeat']!r} in custom_id is not an integer",
                                line=line.line, field="custom_id")
        fields["repeat"] = int(fields["repeat"])
    return fields


def _error_type(error: object, status_code: int | None) -> str:
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        if code:
            return str(code)
    return f"http_{status_code}" if status_code is not None else "batch_error"


def _usage(usage: object, source: str | os.PathLike, number: int) -> dict:
    if not isinstance(usage, dict):
        return {"usage_source": None}
    # chat/completions name them prompt/completion; the Responses API input/output
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    prompt_details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
    values = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": prompt_details.get("cached_tokens"),
        "reasoning_tokens": completion_details.get("reasoning_tokens"),
    }
    for name, value in values.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise DataFileError(source, f"not an integer ({value!r})", line=number, field=f"usage.{name}")
    return {**values, "usage_source": "server"}


def _created(body: dict) -> dt.datetime | None:
    stamp = body.get("created", body.get("created_at"))
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc) if isinstance(stamp, (int, float)) else None


def _first_choice(body: dict) -> dict:
    choices = body.get("choices")
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}


def _output_text(body: dict) -> str | None:
    choice = _first_choice(body)
    if choice:
        message = choice.get("message")
        return message.get("content") if isinstance(message, dict) else choice.get("text")
    parts = [part.get("text", "") for item in body.get("output") or [] if isinstance(item, dict)
             for part in item.get("content") or [] if isinstance(part, dict)
             and part.get("type") == "output_text"]
    return "".join(parts) if parts else None


def _logprob_mean(body: dict) -> float | None:
    logprobs = _first_choice(body).get("logprobs")
    if not isinstance(logprobs, dict):
        return None
    if isinstance(logprobs.get("content"), list):  # chat completions
        values = [token.get("logprob") for token in logprobs["content"] if isinstance(token, dict)]
    else:  # legacy completions
        values = logprobs.get("token_logprobs") or []
    values = [v for v in values if isinstance(v, (int, float))]
    return float(np.mean(values)) if values else None
