"""Import a LangSmith runs export: one row per LLM run, latency and usage, no grades.

Where each field's meaning comes from (LangSmith docs "Run (span) data format",
docs.langchain.com/langsmith/run-data-format; the SDK's `langsmith.schemas.Run` and `UsageMetadata`,
reference.langchain.com/python/langsmith/schemas; "Calculate token-based costs for traces" and
"Metadata parameters reference", docs.langchain.com/langsmith/ls-metadata-parameters):
- `run_type` ("Type of run, e.g., 'llm', 'chain', 'tool'"): `llm` is a model call; other types are
  skipped and counted in the manifest, as are runs still `pending` (no end yet).
- `start_time`, `end_time`, `first_token_time` (the first streamed token): ISO 8601 times in UTC
  (the API writes them without a zone), so `ttft_s` = first_token_time - start_time and `e2e_s` =
  end_time - start_time.
- `prompt_tokens` (input tokens, "Sum of all input token types", so cached ones included),
  `completion_tokens`, `prompt_token_details.cache_read` ("Input tokens that were cached and there
  was a cache hit"), `completion_token_details.reasoning`.
- `total_cost` (else `prompt_cost` + `completion_cost`), USD as a number or decimal string:
  LangSmith's price from its model pricing map, kept as `reported_cost_usd` and compared with the
  toolkit's price in the manifest, never used as the cost.
- the model, in LangSmith's own order of precedence: `extra.metadata.ls_model_name`, then
  `extra.invocation_params.model`, `.model_name`, `.model_id`; `ls_provider` labels the endpoint;
  `ls_max_tokens` / `ls_temperature` (else the invocation params) the settings.
- `status` (`success`, `error`, `pending`) and `error` (the exception text; its last line is kept).
- `inputs` (the prompt, when exported) is hashed into `prompt_hash`, never stored.
Files: a JSON array, the runs query page (`{"runs": [...]}`), or JSON lines.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pandas as pd

from toolkit.errors import DataFileError
from toolkit.importers._common import build_manifest
from toolkit.importers._traffic import (Where, compare_reported_costs, count, first_token_seconds, non_negative,
                                        prompt_hash, read_records, require_object, setting, span_seconds,
                                        timestamp, traffic_table)

KIND = "langsmith"
VERSION = "1"
MODEL_PARAMS = ("model", "model_name", "model_id")  # after metadata.ls_model_name, LangSmith's order


def import_langsmith(path: str | os.PathLike, *, run_id: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a LangSmith runs export into a requests table (finished `llm` runs only)."""
    path = Path(path)
    rows: list[dict] = []
    skipped: Counter[str] = Counter()
    for where, record in read_records(path, list_keys=("runs", "data")):
        record = require_object(record, where)
        run_type = record.get("run_type")
        if run_type is None:
            raise where.error("run_type", "is missing")
        if run_type != "llm":
            skipped[f"run_type {run_type}"] += 1
        elif record.get("status") == "pending":
            skipped["status pending (not finished)"] += 1
        else:
            rows.append(_row(record, where))
    if not rows:
        raise DataFileError(path, f"no finished llm runs in this file (skipped: {dict(skipped) or 'none'})")
    run_id = run_id or f"{KIND}-{path.stem}"
    table = traffic_table(rows, run_id, path)
    notes = [
        "One row per finished run of run_type llm; other run types and pending runs are skipped and counted.",
        "prompt_tokens = prompt_tokens (all input token types, cached included), cached_tokens = "
        "prompt_token_details.cache_read, reasoning_tokens = completion_token_details.reasoning.",
        "ttft_s = first_token_time - start_time where present; e2e_s = end_time - start_time; naive times are UTC.",
        "reported_cost_usd = total_cost (else prompt_cost + completion_cost): LangSmith's price, compared with "
        "the toolkit's in reported_cost, never used as the cost.",
        "endpoint = metadata ls_provider (LangSmith keeps no host); error_message = the last line of error.",
    ]
    manifest = build_manifest(kind=KIND, version=VERSION, run_id=run_id, sources=[path], table=table, notes=notes,
                              skipped_runs=dict(skipped), reported_cost=compare_reported_costs(table))
    return table, manifest


def _row(record: dict, where: Where) -> dict:
    if not isinstance(record.get("id"), str) or not record["id"]:
        raise where.error("id", "is missing")
    start = timestamp(record.get("start_time"), where, "start_time")
    end = timestamp(record.get("end_time"), where, "end_time")
    first = timestamp(record.get("first_token_time"), where, "first_token_time", required=False)
    extra = record.get("extra") if isinstance(record.get("extra"), dict) else {}
    metadata = extra.get("metadata") or record.get("metadata") or {}
    params = extra.get("invocation_params") or {}
    if not isinstance(metadata, dict) or not isinstance(params, dict):
        raise where.error("extra", "metadata and invocation_params must be objects")
    model = metadata.get("ls_model_name") or next((params[k] for k in MODEL_PARAMS if params.get(k)), None)
    prompt = count(record.get("prompt_tokens"), where, "prompt_tokens")
    cached = count(_detail(record, "prompt_token_details", where).get("cache_read"), where,
                   "prompt_token_details.cache_read")
    if cached is not None and prompt is not None and cached > prompt:
        raise where.error("prompt_token_details.cache_read", f"{cached} cached tokens exceed {prompt} prompt tokens")
    completion = count(record.get("completion_tokens"), where, "completion_tokens")
    failed = record.get("status") == "error" or bool(record.get("error"))
    return {
        "request_id": record["id"],
        "config_id": model or "unknown",
        "model": model,
        "dataset": record.get("session_name") or KIND,
        "endpoint": metadata.get("ls_provider") or "unknown",
        "batch": False,
        "cache_hit": False,
        "started_at": start,
        "e2e_s": span_seconds(start, end, where, "end_time"),  # checked first: an end before the start
        "ttft_s": first_token_seconds(start, first, end, where, "first_token_time"),
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "completion_tokens": completion,
        "reasoning_tokens": count(_detail(record, "completion_token_details", where).get("reasoning"), where,
                                  "completion_token_details.reasoning"),
        "usage_source": "server" if prompt is not None or completion is not None else None,
        "max_tokens": setting(metadata.get("ls_max_tokens", params.get("max_tokens")), whole=True),
        "temperature": setting(metadata.get("ls_temperature", params.get("temperature"))),
        "status": "error" if failed else "ok",
        "error_type": "reported_error" if failed else None,
        "error_message": _last_line(record.get("error")) if failed else None,
        "reported_cost_usd": _reported_cost(record, where),
        "prompt_hash": prompt_hash(_prompt(record.get("inputs"))),
    }


def _detail(record: dict, field: str, where: Where) -> dict:
    value = record.get(field) or {}
    if not isinstance(value, dict):
        raise where.error(field, f"expected an object of named counts, got {value!r:.60}")
    return value


def _reported_cost(record: dict, where: Where) -> float | None:
    total = non_negative(record.get("total_cost"), where, "total_cost")
    if total is not None:
        return total
    parts = [non_negative(record.get(f), where, f) for f in ("prompt_cost", "completion_cost")]
    return sum(p for p in parts if p is not None) if any(p is not None for p in parts) else None


def _prompt(inputs: object) -> object:
    # LangChain chat runs keep the messages under "messages"; anything else is hashed whole
    return inputs.get("messages", inputs) if isinstance(inputs, dict) else inputs


def _last_line(error: object) -> str | None:
    lines = [line.strip() for line in str(error or "").splitlines() if line.strip()]
    return lines[-1] if lines else None

