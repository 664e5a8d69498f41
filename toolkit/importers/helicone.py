"""Import a Helicone request export (JSON lines, JSON or CSV): latency and usage per request, no grades.

Where each field's meaning comes from (Helicone/helicone: the `HeliconeRequest` row type in
`packages/llm-mapper/types.ts`, the rows `POST /v1/request/query-clickhouse` returns; the export
tool `examples/export/typescript/index.ts`, i.e. `npx @helicone/export`, which writes those rows as
JSON lines or JSON, or as CSV with the columns response_id, response_created_at, response_status,
request_created_at, request_body, request_properties, request_user_id, model, prompt_tokens,
completion_tokens, latency, cost; docs.helicone.ai/tools/export):
- `request_id` (CSV: `response_id`), `request_created_at` (the request reached the proxy),
  `response_created_at`; `delay_ms` (JSON) or `latency` (CSV), the proxy's request-to-response time
  in milliseconds, is `e2e_s` where present, else response_created_at - request_created_at.
- `time_to_first_token`, milliseconds.  A first token 0 ms after the request is not a time anyone
  measured (Helicone stores 0 for a request it did not time, e.g. not streamed): it reads as null
  and is counted in the manifest.
- `prompt_tokens`, `completion_tokens`, `total_tokens`, `prompt_cache_read_tokens`,
  `prompt_cache_write_tokens`, `prompt_audio_tokens`, `completion_audio_tokens`.  Whether
  `prompt_tokens` includes the cache reads depends on Helicone's version and the provider: its
  current OpenAI mapping stores prompt_tokens - cached - audio (and completion - audio), keeping
  the provider's `total_tokens`; Anthropic reports input_tokens without cache reads and writes;
  older Helicone stored OpenAI's prompt_tokens whole.  So each row is settled by its own total: if
  total = prompt + cache reads + writes + audio + completion (+ output audio), the parts were apart
  and are added back (`prompt_tokens` includes cached tokens here); if total = prompt + completion,
  they were inside.  A row whose total settles neither, or has none, is an error unless
  `cache_in_prompt_tokens=True/False` says which.
- `model` (Helicone's resolved model; else `response_model`, `request_model`), `provider`,
  `target_url` (its host is the endpoint).
- `response_status`: HTTP status of the provider's answer; 2xx is ok, anything else an error row.
- `costUSD` (CSV: `cost`): Helicone's price, kept as `reported_cost_usd` and compared with the
  toolkit's in the manifest, never used as the cost.
- `request_body` (with `--include-body`): its `messages` (or `prompt`, `input`) are hashed into
  `prompt_hash`, never stored.
Helicone's own response cache is not marked: `cache_hit` is the toolkit's cache, and it answered none.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from toolkit.importers._common import build_manifest
from toolkit.importers._traffic import (Where, compare_reported_costs, count, non_negative, prompt_hash, read_records,
                                        require_object, span_seconds, timestamp, traffic_table)

KIND = "helicone"
VERSION = "1"
IN_PARTS = ("prompt_cache_read_tokens", "prompt_cache_write_tokens", "prompt_audio_tokens")
OUT_PARTS = ("completion_audio_tokens",)
PROMPT_KEYS = ("messages", "prompt", "input")


def import_helicone(path: str | os.PathLike, *, run_id: str | None = None,
                    cache_in_prompt_tokens: bool | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a Helicone export into a requests table.

    `cache_in_prompt_tokens` says whether `prompt_tokens` already includes cache reads, writes and
    audio; by default each row's `total_tokens` decides (see the module docstring).
    """
    path = Path(path)
    tally: Counter[str] = Counter()
    rows = [_row(require_object(record, where), where, cache_in_prompt_tokens, tally)
            for where, record in read_records(path, list_keys=("data",), csv=True)]
    run_id = run_id or f"{KIND}-{path.stem}"
    table = traffic_table(rows, run_id, path)
    notes = [
        "e2e_s = delay_ms (CSV: latency) / 1000 where present, else response_created_at - request_created_at; "
        "ttft_s = time_to_first_token / 1000, a 0 read as not measured. Both are the proxy's times: from the "
        "request reaching Helicone, so the client's network leg to the proxy is not in them.",
        "prompt_tokens includes cache reads and writes: added back where Helicone stored them apart, settled "
        "per row by total_tokens (cache_parts in the manifest counts how each row was read).",
        "status ok for 2xx response_status, else error with http_status.",
        "reported_cost_usd = costUSD (CSV: cost): Helicone's price, compared with the toolkit's in "
        "reported_cost, never used as the cost. Helicone's own response cache is not marked in cache_hit.",
    ]
    manifest = build_manifest(kind=KIND, version=VERSION, run_id=run_id, sources=[path], table=table, notes=notes,
                              cache_parts={k: v for k, v in tally.items() if k != "ttft 0 ms read as missing"},
                              ttft_zero_read_as_missing=tally["ttft 0 ms read as missing"],
                              reported_cost=compare_reported_costs(table))
    return table, manifest


def _row(record: dict, where: Where, cache_in_prompt: bool | None, tally: Counter[str]) -> dict:
    request_id = record.get("request_id") or record.get("response_id")
    if not isinstance(request_id, str) or not request_id:
        raise where.error("request_id", "is missing")
    start = timestamp(record.get("request_created_at"), where, "request_created_at")
    end = timestamp(record.get("response_created_at"), where, "response_created_at", required=False)
    latency_field = "delay_ms" if record.get("delay_ms") not in (None, "") else "latency"
    e2e = non_negative(record.get(latency_field), where, latency_field, scale=1e-3)
    if e2e is None:
        if end is None:
            raise where.error("response_created_at", "is missing, and so are delay_ms and latency")
        e2e = span_seconds(start, end, where, "response_created_at")
    elif end is not None:
        span_seconds(start, end, where, "response_created_at")  # a response before its request is broken
    ttft = non_negative(record.get("time_to_first_token"), where, "time_to_first_token", scale=1e-3)
    if ttft == 0:
        tally["ttft 0 ms read as missing"] += 1
        ttft = None
    if ttft is not None and ttft > e2e:
        raise where.error("time_to_first_token", f"{ttft * 1e3:g} ms is longer than the request ({e2e * 1e3:g} ms)")
    status = _status(record.get("response_status"), where)
    failed = not 200 <= status < 300
    http = 100 <= status < 600
    model = record.get("model") or record.get("response_model") or record.get("request_model")
    prompt, completion = _tokens(record, where, cache_in_prompt, tally)
    cost_field = "costUSD" if record.get("costUSD") not in (None, "") else "cost"
    return {
        "request_id": request_id,
        "config_id": record.get("request_model") or model or "unknown",
        "model": model,
        "dataset": KIND,
        "endpoint": _host(record.get("target_url")) or record.get("provider") or "unknown",
        "batch": False,
        "cache_hit": False,
        "started_at": start,
        "ttft_s": ttft,
        "e2e_s": e2e,
        "prompt_tokens": prompt,
        "cached_tokens": count(record.get("prompt_cache_read_tokens"), where, "prompt_cache_read_tokens"),
        "completion_tokens": completion,
        "usage_source": "server" if prompt is not None or completion is not None else None,
        "status": "error" if failed else "ok",
        "error_type": ("rate_limited" if status == 429 else "http_error" if http else "no_http_status")
        if failed else None,
        "http_status": status if failed and http else None,
        "error_message": f"Helicone response_status {status}" if failed and not http else None,
        "reported_cost_usd": non_negative(record.get(cost_field), where, cost_field),
        "prompt_hash": prompt_hash(_prompt(record.get("request_body"))),
    }


def _tokens(record: dict, where: Where, cache_in_prompt: bool | None,
            tally: Counter[str]) -> tuple[int | None, int | None]:
    prompt = count(record.get("prompt_tokens"), where, "prompt_tokens")
    completion = count(record.get("completion_tokens"), where, "completion_tokens")
    parts_in = sum(count(record.get(f), where, f) or 0 for f in IN_PARTS)
    parts_out = sum(count(record.get(f), where, f) or 0 for f in OUT_PARTS)
    if prompt is None or completion is None or parts_in + parts_out == 0:
        tally["no cache or audio parts"] += 1
        return prompt, completion
    if cache_in_prompt is None:
        total = count(record.get("total_tokens"), where, "total_tokens")
        apart, inside = prompt + parts_in + completion + parts_out, prompt + completion
        if total is None:
            raise where.error("total_tokens", f"is missing, so nothing says whether prompt_tokens includes the "
                                              f"{parts_in + parts_out} cache and audio tokens: pass "
                                              "cache_in_prompt_tokens=true or false to say which")
        if total == apart:
            cache_in_prompt = False
        elif total == inside:
            cache_in_prompt = True
        else:
            raise where.error("total_tokens", f"is {total}, neither {apart} (cache and audio tokens apart from "
                                              f"prompt_tokens) nor {inside} (inside them): pass "
                                              "cache_in_prompt_tokens=true or false to say which")
    if cache_in_prompt:
        tally["parts inside prompt_tokens"] += 1
        return prompt, completion
    tally["parts apart, added to prompt_tokens"] += 1
    return prompt + parts_in, completion + parts_out


def _status(value: object, where: Where) -> int:
    """The response status as an integer; one outside 100-599 is not an HTTP status: the row is an
    error without http_status, and the code is kept in error_message."""
    if value is None or value == "":
        raise where.error("response_status", "is missing")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise where.error("response_status", f"not a number ({value!r})") from None
    if isinstance(value, bool) or number != int(number):
        raise where.error("response_status", f"not a whole number ({value!r})")
    return int(number)


def _host(url: object) -> str | None:
    return urlparse(url).hostname if isinstance(url, str) and url else None


def _prompt(body: object) -> object:
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError:
            return body
    if not isinstance(body, dict):
        return None
    return next((body[key] for key in PROMPT_KEYS if key in body), None)
