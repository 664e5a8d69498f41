"""Answer a Batch input file ourselves against any OpenAI-compatible server, as a Batch API would,
since self-hosted servers have none (like vLLM's `run_batch`): OpenAI's output format, retries of
429/5xx, and a sidecar JSON shaped like a Batch, so ingest records the turnaround.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2

from toolkit.batch.files import read_batch_input, write_jsonl
from toolkit.endpoints import Connection

RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)
SIDECAR_SUFFIX = ".batch.json"


@dataclass(frozen=True)
class BatchFileSummary:
    """What `run_batch_file` did, shaped like a Batch (`as_batch`) so ingest records the turnaround."""

    requests: int
    completed: int
    failed: int
    created_at: float
    completed_at: float
    host: str

    def as_batch(self) -> dict:
        return {"id": f"local-{int(self.created_at)}", "status": "completed", "host": self.host,
                "created_at": self.created_at, "completed_at": self.completed_at,
                "request_counts": {"total": self.requests, "completed": self.completed, "failed": self.failed}}


def sidecar_path(output_path: str | os.PathLike) -> Path:
    """Where `frontier batch run` keeps the summary of the run that wrote `output_path`."""
    output_path = Path(output_path)
    return output_path.with_name(output_path.name + SIDECAR_SUFFIX)


def write_sidecar(output_path: str | os.PathLike, summary: BatchFileSummary) -> Path:
    path = sidecar_path(output_path)
    path.write_text(json.dumps(summary.as_batch(), indent=2), encoding="utf-8")
    return path


def read_sidecar(output_path: str | os.PathLike) -> dict | None:
    """The Batch-shaped summary written beside `output_path`, or None when there is none."""
    path = sidecar_path(output_path)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


async def answer_lines(lines: list[dict], *, base_url: str, api_key: str | None = None, concurrency: int = 16,
                       timeout_s: float = 600.0, max_attempts: int = 3,
                       on_done: Callable[[dict], None] | None = None) -> list[dict]:
    """Send every batch input line to an OpenAI-compatible `base_url`; Batch output objects, in input order.

    HTTP 429/5xx and transport errors are retried (`max_attempts` in all), as a Batch API does; a
    line that still fails has `error` set ({code, message}) and no response.
    """
    connection = Connection("batch", base_url.rstrip("/"), api_key or "")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx2.AsyncClient(timeout=timeout_s, limits=limits, headers=headers) as http:
        async def one(line: dict) -> dict:
            async with gate:
                out = await _answer(http, connection, line, max_attempts)
            if on_done is not None:
                on_done(out)
            return out

        return list(await asyncio.gather(*(one(line) for line in lines)))


async def _answer(http: httpx2.AsyncClient, connection: Connection, line: dict, max_attempts: int) -> dict:
    url = connection.base_url + line["url"].removeprefix("/v1")
    custom_id = line["custom_id"]
    out: dict[str, Any] = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id,
                           "response": None, "error": None}
    # the collector's tracing header, so a server log matches rows whether sent online or in a batch
    headers = {"X-Client-Request-Id": custom_id} if custom_id.isascii() and len(custom_id) <= 512 else {}
    for attempt in range(1, max_attempts + 1):
        try:
            response = await http.post(url, json=line["body"], headers=headers)
        except httpx2.TransportError as exc:
            kind = "timeout" if isinstance(exc, httpx2.TimeoutException) else "connection_error"
            out["error"] = {"code": kind, "message": connection.redact(f"{type(exc).__name__}: {exc}")}
        else:
            try:
                body = response.json()
            except ValueError:
                body = {"error": {"message": connection.redact(response.text[:500]), "type": "invalid_response",
                                  "code": None}}
            if not 200 <= response.status_code < 300:  # an error body may echo the key
                body = _redacted(body, connection)
            out["error"] = None
            out["response"] = {"status_code": response.status_code,
                               "request_id": response.headers.get("x-request-id") or f"req_{uuid.uuid4().hex}",
                               "body": body}
            if response.status_code not in RETRY_STATUS:
                return out
        if attempt < max_attempts:
            await asyncio.sleep(0.5 * 2 ** (attempt - 1) * random.uniform(0.5, 1.0))
    return out


def _redacted(value: Any, connection: Connection) -> Any:
    """`value` (parsed JSON) with every string passed through `connection.redact`."""
    if isinstance(value, str):
        return connection.redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item, connection) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item, connection) for item in value]
    return value


def is_success(out: dict) -> bool:
    response = out.get("response") or {}
    return out.get("error") is None and 200 <= int(response.get("status_code") or 0) < 300


def run_batch_file(input_path: str | os.PathLike, output_path: str | os.PathLike, *, base_url: str,
                   api_key: str | None = None, concurrency: int = 16, error_path: str | os.PathLike | None = None,
                   timeout_s: float = 600.0, on_done: Callable[[dict], None] | None = None) -> BatchFileSummary:
    """Run a Batch input file against any OpenAI-compatible server and write OpenAI's output format.

    Successful lines go to `output_path`; failed ones to `error_path`, or (without one) also to
    `output_path`, as vLLM's run_batch does.  Lines keep their input order.
    """
    lines = read_batch_input(input_path)
    created = time.time()
    outputs = asyncio.run(answer_lines(lines, base_url=base_url, api_key=api_key, concurrency=concurrency,
                                       timeout_s=timeout_s, on_done=on_done))
    completed = time.time()
    ok = [o for o in outputs if is_success(o)]
    failed = [o for o in outputs if not is_success(o)]
    write_jsonl(ok if error_path is not None else outputs, output_path)
    if error_path is not None:
        write_jsonl(failed, error_path)
    host = urlsplit(base_url).netloc.rpartition("@")[2]
    return BatchFileSummary(len(lines), len(ok), len(failed), created, completed, host)
