"""Import a Langfuse observations export: one row per generation, latency and usage, no grades.

Where each field's meaning comes from (Langfuse's public API definition, `fern/apis/server/
definition/commons.yml`, type `Observation`/`ObservationsView`, as served by `GET
/api/public/observations` and its v2; and the docs page "Token & Cost Tracking",
langfuse.com/docs/observability/features/token-and-cost-tracking):
- `type`: `GENERATION` is a model call; every other type (`SPAN`, `EVENT`, `AGENT`, `TOOL`,
  `EMBEDDING`, ...) is skipped and counted in the manifest.
- `startTime`, `endTime`, `completionStartTime` ("The completion start time of the observation",
  set by the SDKs at the first streamed chunk): ISO 8601 times, so `ttft_s` = completionStartTime -
  startTime and `e2e_s` = endTime - startTime.
- `model` (v2: `providedModelName`), `modelParameters` (`max_tokens`, `temperature` when numeric).
- `usageDetails`: "Key is the name of the usage metric, value is the number of units consumed. The
  total key is the sum of all (non-total) usage metrics", so the keys are disjoint parts (the
  OpenAI integration files `prompt_tokens_details.cached_tokens` as `input_cached_tokens` and takes it
  out of `input`).  As Langfuse's own UI does ("summarizes all usage types that include the string
  input as input usage types, similarly output"), `prompt_tokens` = the sum of the keys containing
  "input", which puts cached tokens back in; `cached_tokens` = those that also name a cache read
  (`cache_read`, `cached`); `completion_tokens` = the keys containing "output";
  `reasoning_tokens` = those that also contain "reasoning".  A key with neither word is not
  counted and is listed in the manifest.
- `costDetails` ("the cost in USD ... The total key is the sum of all (non-total) cost metrics"),
  else `calculatedTotalCost` (v1) or `totalCost` (v2): kept as `reported_cost_usd` and compared
  with the toolkit's price in the manifest, never used as the cost.
- `level` `ERROR` marks a failed call (`statusMessage` says why).
- `input` (the prompt, when the export includes it) is hashed into `prompt_hash`, never stored.
Files: the API's JSON page (`{"data": [...]}`), a JSON array, or JSON lines (the UI export).
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

KIND = "langfuse"
VERSION = "1"
CACHE_READ_WORDS = ("cache_read", "cached")


def import_langfuse(path: str | os.PathLike, *, run_id: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a Langfuse observations export into a requests table (generations only)."""
    path = Path(path)
    rows: list[dict] = []
    skipped: Counter[str] = Counter()
    unclassified: Counter[str] = Counter()
    for where, record in read_records(path, list_keys=("data", "observations")):
        record = require_object(record, where)
        kind = record.get("type")
        if kind is None:
            raise where.error("type", "is missing")
        if kind != "GENERATION":
            skipped[f"type {kind}"] += 1
            continue
        rows.append(_row(record, where, unclassified))
    if not rows:
        raise DataFileError(path, f"no generations in this file (skipped: {dict(skipped) or 'none'})")
    run_id = run_id or f"{KIND}-{path.stem}"
    table = traffic_table(rows, run_id, path)
    notes = [
        "One row per observation of type GENERATION; other types are skipped and counted (skipped_observations).",
        "prompt_tokens = the usageDetails keys containing 'input' (cached ones included), cached_tokens = those "
        "naming a cache read, completion_tokens = the keys containing 'output', reasoning_tokens = those naming "
        "reasoning; keys with neither word are listed in unclassified_usage_keys and not counted.",
        "ttft_s = completionStartTime - startTime where present; e2e_s = endTime - startTime.",
        "reported_cost_usd = costDetails.total (else the sum of costDetails, calculatedTotalCost or totalCost): "
        "Langfuse's own price, compared with the toolkit's in reported_cost, never used as the cost.",
        "status error where level is ERROR (error_type reported_error, error_message = statusMessage).",
    ]
    manifest = build_manifest(kind=KIND, version=VERSION, run_id=run_id, sources=[path], table=table, notes=notes,
                              skipped_observations=dict(skipped), unclassified_usage_keys=dict(unclassified),
                              reported_cost=compare_reported_costs(table))
    return table, manifest


def _row(record: dict, where: Where, unclassified: Counter[str]) -> dict:
    if not isinstance(record.get("id"), str) or not record["id"]:
        raise where.error("id", "is missing")
    start = timestamp(record.get("startTime"), where, "startTime")
    end = timestamp(record.get("endTime"), where, "endTime")
    first = timestamp(record.get("completionStartTime"), where, "completionStartTime", required=False)
    usage = _details(record.get("usageDetails"), where, "usageDetails", count)
    tokens = _tokens(usage, unclassified)
    failed = record.get("level") == "ERROR"
    model = record.get("model") or record.get("providedModelName")
    parameters = record.get("modelParameters") if isinstance(record.get("modelParameters"), dict) else {}
    return {
        "request_id": record["id"],
        "config_id": model or "unknown",
        "model": model,
        "dataset": KIND,
        "endpoint": "unknown",  # Langfuse stores no host
        "batch": False,
        "cache_hit": False,
        "started_at": start,
        "e2e_s": span_seconds(start, end, where, "endTime"),  # checked first: an end before the start
        "ttft_s": first_token_seconds(start, first, end, where, "completionStartTime"),
        **tokens,
        "usage_source": "server" if usage else None,
        "max_tokens": setting(parameters.get("max_tokens"), whole=True),
        "temperature": setting(parameters.get("temperature")),
        "status": "error" if failed else "ok",
        "error_type": "reported_error" if failed else None,
        "error_message": (record.get("statusMessage") or None) if failed else None,
        "reported_cost_usd": _reported_cost(record, where),
        "prompt_hash": prompt_hash(record.get("input")),
    }


def _details(value: object, where: Where, field: str, parse) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise where.error(field, f"expected an object of named counts, got {value!r:.60}")
    return {key: parse(amount, where, f"{field}.{key}") for key, amount in value.items() if amount is not None}


def _tokens(usage: dict[str, int], unclassified: Counter[str]) -> dict[str, int | None]:
    if not usage:
        return {"prompt_tokens": None, "cached_tokens": None, "completion_tokens": None, "reasoning_tokens": None}
    parts = {key: amount for key, amount in usage.items() if key != "total"}
    inputs = {k: v for k, v in parts.items() if "input" in k}
    outputs = {k: v for k, v in parts.items() if "output" in k and k not in inputs}
    unclassified.update(k for k in parts if k not in inputs and k not in outputs)
    cached = [v for k, v in inputs.items() if any(word in k for word in CACHE_READ_WORDS)]
    reasoning = [v for k, v in outputs.items() if "reasoning" in k]
    return {  # a part the source does not name stays null: not reported is not zero
        "prompt_tokens": sum(inputs.values()) if inputs else None,
        "cached_tokens": sum(cached) if cached else None,
        "completion_tokens": sum(outputs.values()) if outputs else None,
        "reasoning_tokens": sum(reasoning) if reasoning else None,
    }


def _reported_cost(record: dict, where: Where) -> float | None:
    costs = _details(record.get("costDetails"), where, "costDetails", non_negative)
    if "total" in costs:
        return costs["total"]
    if costs:
        return sum(costs.values())
    for field in ("calculatedTotalCost", "totalCost"):
        cost = non_negative(record.get(field), where, field)
        if cost is not None:
            return cost
    return None

