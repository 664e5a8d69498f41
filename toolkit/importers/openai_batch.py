"""Import OpenAI Batch API output (JSONL: one `{id, custom_id, response, error}` object per line).

A batch gives no timings (ttft/e2e null) but exact usage from each response body.  `custom_id` is
the request id; with `id_pattern` (a regex with named groups config_id, dataset, item_id, repeat)
it also says which eval item a line answers.  `parse_batch_output` is shared with the batch module.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.errors import DataFileError
from toolkit.importers._common import build_manifest, finish

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


def import_openai_batch(path: str | os.PathLike, *, run_id: str | None = None,
                        endpoint: str = DEFAULT_ENDPOINT, model: str | None = None,
                        config_id: str | None = None, id_pattern: str | None = None,
                        dataset: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a Batch output (or error) JSONL file into a requests table with batch = True."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "no such file")
    with path.open(encoding="utf-8") as handle:
        table = parse_batch_output(handle, source=path, endpoint=endpoint, model=model,
                                   config_id=config_id, id_pattern=id_pattern, dataset=dataset)
    run_id = run_id or f"{KIND}-{path.stem}"
    table["run_id"] = run_id
    manifest = build_manifest(kind=KIND, version=VERSION, run_id=run_id, sources=[path], table=table,
                              notes=NOTES, endpoint=endpoint)
    return table, manifest


def parse_batch_output(lines: Iterable[str], *, source: str | os.PathLike = "batch output",
                       endpoint: str = DEFAULT_ENDPOINT, model: str | None = None,
                       config_id: str | None = None, id_pattern: str | None = None,
                       dataset: str | None = None) -> pd.DataFrame:
    """Rows of the requests table (run_id unset) from Batch output lines; bad lines raise DataFileError."""
    pattern = re.compile(id_pattern) if id_pattern else None
    rows = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            rows.append(_row(_parse_line(line, source, number), source, number, pattern))
    if not rows:
        raise DataFileError(source, "the file is empty")
    frame = pd.DataFrame(rows)
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


def _row(obj: dict, source: str | os.PathLike, number: int, pattern: re.Pattern | None) -> dict:
    response = obj.get("response") or {}
    body = response.get("body") or {}
    if not isinstance(body, dict):
        raise DataFileError(source, "must be a JSON object", line=number, field="response.body")
    status_code = response.get("status_code")
    if status_code is not None and not isinstance(status_code, int):
        raise DataFileError(source, f"not an integer ({status_code!r})", line=number,
                            field="response.status_code")
    error = obj.get("error") or body.get("error")
    ok = error is None and status_code is not None and 200 <= status_code < 300
    row = {
        "request_id": obj["custom_id"],
        "model": body.get("model"),
        "batch": True,
        "cache_hit": False,
        "status": "ok" if ok else "error",
        "error_type": None if ok else _error_type(error, status_code),
        "http_status": status_code,
        "started_at": _created(body),
        "output_text": _output_text(body),
        "logprob_mean": _logprob_mean(body),
        **_usage(body.get("usage"), source, number),
    }
    if pattern is not None:
        match = pattern.fullmatch(obj["custom_id"])
        if match is None:
            raise DataFileError(source, f"{obj['custom_id']!r} does not match id_pattern {pattern.pattern!r}",
                                line=number, field="custom_id")
        row.update({k: v for k, v in match.groupdict().items() if k in ID_FIELDS})
        if row.get("repeat") is not None:
            if not row["repeat"].isdigit():
                raise DataFileError(source, f"repeat {row['repeat']!r} in custom_id is not an integer",
                                    line=number, field="custom_id")
            row["repeat"] = int(row["repeat"])
    return row


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
