"""Batch requests: a config grid as an OpenAI Batch input file, submitted, polled, downloaded and
ingested into a normal run directory; or run against any OpenAI-compatible server, since
self-hosted servers have no Batch API (like vLLM's `run_batch`).

`custom_id` is the collector's `request_id`, so a batch answer joins back to its plan (dataset,
item, expected answer, configuration) and compares item by item with the same grid run online.
Batch rows carry `batch = True` and no timings: a batch has no per-request latency, only the
turnaround of the whole batch (created -> completed), which the manifest records.
API keys are read from environment variables only and never logged or stored.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai
import pandas as pd

from toolkit import __version__
from toolkit.collect import describe_config
from toolkit.config import CollectConfig, EndpointConfig, load_config
from toolkit.endpoints import OPENAI_BASE_URL, Connection
from toolkit.errors import DataFileError, EndpointError, RunDirError
from toolkit.importers.openai_batch import parse_batch_output
from toolkit.runner import plan, request_for
from toolkit.store import MANIFEST, load_run, save_run

log = logging.getLogger("toolkit")

URLS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
TERMINAL = ("completed", "failed", "expired", "cancelled")
RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)
SIDECAR_SUFFIX = ".batch.json"


def build_batch_input(config: CollectConfig, *, items_per_task: int | None = None) -> list[dict]:
    """One Batch input line per planned request: custom_id = request_id, POST, url, body (no stream)."""
    lines = []
    for planned in plan(config, items_per_task=items_per_task):
        request = request_for(planned)
        lines.append({"custom_id": planned.request_id, "method": "POST", "url": URLS[request.api],
                      "body": request.body()})
    return lines


def split_batch_input(lines: Iterable[dict]) -> dict[tuple[str, str], list[dict]]:
    """Lines grouped by (url, model): an OpenAI batch takes one endpoint and one model per file."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for line in lines:
        groups.setdefault((line["url"], line["body"]["model"]), []).append(line)
    return groups


def write_jsonl(lines: Iterable[dict], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def read_batch_input(path: str | os.PathLike) -> list[dict]:
    """Batch input lines, checked as OpenAI validates them (unique custom_id, POST, known url, body)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "no such file")
    lines, seen = [], set()
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFileError(path, f"not valid JSON ({exc.msg})", line=number) from exc
        for name, ok in (("custom_id", isinstance(line.get("custom_id"), str) and line["custom_id"]),
                         ("method", line.get("method") == "POST"),
                         ("url", line.get("url") in URLS.values()),
                         ("body", isinstance(line.get("body"), dict) and "model" in line["body"])):
            if not ok:
                raise DataFileError(path, f"invalid value {line.get(name)!r}", line=number, field=name)
        if line["custom_id"] in seen:
            raise DataFileError(path, f"duplicate custom_id {line['custom_id']!r}", line=number, field="custom_id")
        seen.add(line["custom_id"])
        lines.append(line)
    if not lines:
        raise DataFileError(path, "the file is empty")
    return lines


def submit(client: openai.OpenAI, input_path: str | os.PathLike, *, endpoint: str | None = None,
           completion_window: str = "24h", metadata: Mapping[str, str] | None = None) -> str:
    """Upload `input_path` (purpose "batch") and create a batch; returns the batch id.

    `endpoint` defaults to the one url all lines share (an error if they mix urls or models).
    """
    lines = read_batch_input(input_path)
    groups = split_batch_input(lines)
    if len(groups) > 1:
        raise DataFileError(input_path, f"mixes {len(groups)} (url, model) pairs; one batch takes one of each "
                            "(`frontier batch build` writes one file per pair)", field="url")
    endpoint = endpoint or next(iter(groups))[0]
    with Path(input_path).open("rb") as handle:
        uploaded = client.files.create(file=handle, purpose="batch")
    extra = {"metadata": dict(metadata)} if metadata else {}
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=endpoint,
                                  completion_window=completion_window, **extra)
    log.info("submitted batch %s (%d requests, file %s)", batch.id, len(lines), uploaded.id)
    return batch.id


@dataclass(frozen=True)
class BatchProgress:
    """Where a batch stands: for a progress bar, `bar.total = total; bar.n = done`."""

    batch_id: str
    status: str
    done: int
    failed: int
    total: int


def wait(client: openai.OpenAI, batch_id: str, *, poll_s: float = 30.0,
         on_progress: Callable[[BatchProgress], None] | None = None, timeout_s: float | None = None,
         sleep: Callable[[float], None] = time.sleep) -> Any:
    """Poll the batch until it is completed, failed, expired or cancelled; returns the final Batch."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        batch = client.batches.retrieve(batch_id)
        counts = batch.request_counts
        if on_progress is not None:
            done = counts.completed + counts.failed if counts else 0
            on_progress(BatchProgress(batch.id, batch.status, done, counts.failed if counts else 0,
                                      counts.total if counts else 0))
        if batch.status in TERMINAL:
            return batch
        if deadline is not None and time.monotonic() >= deadline:
            raise EndpointError(f"batch {batch_id} still {batch.status} after {timeout_s:g} s; "
                                f"check later with `frontier batch status {batch_id}`")
        sleep(poll_s)


def download(client: openai.OpenAI, batch: Any) -> tuple[list[str], list[str]]:
    """The output lines and the error lines of a finished batch (empty when it has no such file)."""
    def lines(file_id: str | None) -> list[str]:
        return [] if not file_id else [t for t in client.files.content(file_id).text.splitlines() if t.strip()]

    return lines(batch.output_file_id), lines(batch.error_file_id)


def _batch_info(batch: Any) -> dict:
    info = batch.model_dump() if hasattr(batch, "model_dump") else dict(batch or {})
    keep = ("id", "status", "endpoint", "input_file_id", "output_file_id", "error_file_id", "created_at",
            "in_progress_at", "completed_at", "failed_at", "expired_at", "request_counts", "host")
    out = {k: info.get(k) for k in keep if info.get(k) is not None}
    if out.get("created_at") is not None and out.get("completed_at") is not None:
        out["turnaround_s"] = float(out["completed_at"] - out["created_at"])
    return out


def _host_of(endpoint: EndpointConfig) -> str:
    if endpoint.base_url:
        return urlsplit(endpoint.base_url).netloc.rpartition("@")[2]
    return "embedded" if endpoint.kind == "embedded" else urlsplit(OPENAI_BASE_URL).netloc


def ingest(output_lines: Iterable[str], error_lines: Iterable[str], config: CollectConfig | str | Path,
           run_dir: str | os.PathLike, *, items_per_task: int | None = None, batch: Any = None,
           endpoint: str | None = None, run_id: str | None = None) -> pd.DataFrame:
    """Write a run dir from Batch output and error lines, joined to `config`'s plan by custom_id.

    Rows get the plan's configuration, dataset, item, repeat and expected answer, are graded with
    the task's grader, and carry batch = True with no timings.  `batch` (an openai Batch or its
    dict) puts the turnaround into the manifest.  A custom_id the plan does not know is a
    DataFileError; planned requests absent from both files are counted in the manifest.
    """
    if not isinstance(config, CollectConfig):
        config = load_config(config)
    run_dir = Path(run_dir)
    if (run_dir / MANIFEST).exists():
        raise RunDirError(f"{run_dir}: already a run directory; ingest into a new one")
    parts = [parse_batch_output(lines, source=name, endpoint=endpoint or "?")
             for lines, name in ((list(output_lines), "batch output"), (list(error_lines), "batch errors"))
             if any(t.strip() for t in lines)]
    if not parts:
        raise DataFileError("batch output", "both the output and the error lines are empty")
    table = pd.concat(parts, ignore_index=True)
    twice = table["request_id"][table["request_id"].duplicated()]
    if len(twice):
        raise DataFileError("batch output", f"custom_id {twice.iloc[0]!r} is answered twice (output and error "
                            "lines overlap)", field="custom_id")
    planned = plan(config, items_per_task=items_per_task)
    by_id = {p.request_id: (index, p) for index, p in enumerate(planned)}
    info = _batch_info(batch)
    run_id = run_id or run_dir.name
    rows = []
    for row in table.to_dict("records"):
        if row["request_id"] not in by_id:
            raise DataFileError("batch output", f"custom_id {row['request_id']!r} is not a request of config "
                                f"{config.name!r} ({config.path}) with items_per_task={items_per_task or config.items_per_task}",
                                field="custom_id")
        sequence, p = by_id[row["request_id"]]
        cell = p.config
        row.update(run_id=run_id, config_id=cell.config_id, model=cell.model, prompt_variant=cell.prompt_variant,
                   max_tokens=cell.max_tokens, temperature=cell.temperature, dataset=p.task.name,
                   item_id=p.item.item_id, repeat=p.repeat, expected=p.item.expected,
                   endpoint=endpoint or _host_of(cell.endpoint), concurrency=cell.concurrency, sequence=sequence,
                   attempts=1, batch=True, cache_hit=False)
        if pd.isna(row["started_at"]) and info.get("created_at") is not None:
            row["started_at"] = dt.datetime.fromtimestamp(info["created_at"], dt.UTC)
        if row["status"] == "ok":
            grade = p.task.grader(row["output_text"] or "", p.item.expected)
            row.update(score=grade.score, correct=grade.correct, grader=p.task.grader.name)
        rows.append(row)
    frame = pd.DataFrame(rows).sort_values("sequence", kind="stable").reset_index(drop=True)
    missing = len(set(by_id) - set(frame["request_id"]))
    if missing:
        log.warning("%d planned requests are in neither the batch output nor the error file", missing)
    manifest = {
        "run_id": run_id, "source": "batch", "toolkit_version": __version__,
        "config": describe_config(config, {}), "planned_requests": len(planned),
        "requests": len(frame), "errors": int((frame["status"] != "ok").sum()), "missing_requests": missing,
        "batch": info, "ingested_at": dt.datetime.now(dt.UTC).isoformat(), "status": "complete",
    }
    save_run(run_dir, frame, manifest)
    return load_run(run_dir)


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


# --- command line ------------------------------------------------------------------------------

def _api_key(env: str | None, base_url: str | None) -> str:
    key = os.environ.get(env) if env else None
    if key:
        return key
    if base_url is None or base_url.rstrip("/") == OPENAI_BASE_URL:
        raise EndpointError(f"OpenAI needs a key: set the environment variable {env or 'OPENAI_API_KEY'}")
    return "none"  # local servers take any key, the client insists on one


def _client(args: argparse.Namespace) -> openai.OpenAI:
    return openai.OpenAI(base_url=args.base_url or OPENAI_BASE_URL, api_key=_api_key(args.api_key_env, args.base_url),
                         max_retries=3)


def _progress_bar() -> tuple[Any, Callable[[BatchProgress], None]]:
    from tqdm import tqdm

    bar = tqdm(unit="req", dynamic_ncols=True)

    def update(progress: BatchProgress) -> None:
        bar.total = progress.total or None
        bar.n = progress.done
        bar.set_postfix(status=progress.status, failed=progress.failed, refresh=False)
        bar.refresh()

    return bar, update


def _build_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    groups = split_batch_input(build_batch_input(config, items_per_task=args.limit))
    output = Path(args.output)
    for (url, model), lines in groups.items():
        path = output
        if len(groups) > 1:
            kind = "chat" if url == URLS["chat"] else "completions"
            path = output.with_name(f"{output.stem}.{kind}.{re.sub(r'[^A-Za-z0-9._-]', '_', model)}{output.suffix}")
        write_jsonl(lines, path)
        print(f"{path}: {len(lines)} requests to {url} ({model})")
    return 0


def _submit_command(args: argparse.Namespace) -> int:
    client = _client(args)
    batch_id = submit(client, args.input)
    print(batch_id)
    if args.wait:
        bar, update = _progress_bar()
        try:
            batch = wait(client, batch_id, poll_s=args.poll_s, on_progress=update)
        finally:
            bar.close()
        print(f"{batch_id}: {batch.status}")
    return 0


def _status_command(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.wait:
        bar, update = _progress_bar()
        try:
            batch = wait(client, args.batch_id, poll_s=args.poll_s, on_progress=update)
        finally:
            bar.close()
    else:
        batch = client.batches.retrieve(args.batch_id)
    counts = batch.request_counts
    done = f"{counts.completed} completed, {counts.failed} failed of {counts.total}" if counts else "no counts yet"
    print(f"{batch.id}: {batch.status} ({done}); output {batch.output_file_id or '-'}, "
          f"errors {batch.error_file_id or '-'}")
    return 0


def _ingest_command(args: argparse.Namespace) -> int:
    source = Path(args.source)
    if source.is_file():
        output = source.read_text(encoding="utf-8").splitlines()
        errors = Path(args.errors).read_text(encoding="utf-8").splitlines() if args.errors else []
        sidecar = source.with_name(source.name + SIDECAR_SUFFIX)
        batch = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.exists() else None
        endpoint = args.endpoint or (batch or {}).get("host")
    else:
        client = _client(args)
        batch = client.batches.retrieve(args.source)
        if batch.status not in TERMINAL:
            raise EndpointError(f"batch {batch.id} is still {batch.status}; wait with "
                                f"`frontier batch status {batch.id} --wait`")
        output, errors = download(client, batch)
        endpoint = args.endpoint or urlsplit(str(client.base_url)).netloc
    table = ingest(output, errors, args.config, args.output, items_per_task=args.limit, batch=batch, endpoint=endpoint)
    print(f"{args.output}: {len(table)} requests, {int((table['status'] != 'ok').sum())} errors")
    return 0


def _run_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from toolkit.local_server import EmbeddedServer

    lines = read_batch_input(args.input)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    with contextlib.ExitStack() as stack:
        base_url = args.base_url
        if base_url is None:  # no server named: run the batch on the embedded LLM
            base_url = stack.enter_context(EmbeddedServer(log_path=Path(args.output).with_suffix(".server.log"))).base_url
        with tqdm(total=len(lines), unit="req", dynamic_ncols=True) as bar:
            summary = run_batch_file(args.input, args.output, base_url=base_url, api_key=key,
                                     concurrency=args.concurrency, error_path=args.errors,
                                     on_done=lambda _: bar.update())
    sidecar = Path(args.output).with_name(Path(args.output).name + SIDECAR_SUFFIX)
    sidecar.write_text(json.dumps(summary.as_batch(), indent=2), encoding="utf-8")
    print(f"{args.output}: {summary.completed} ok, {summary.failed} failed in "
          f"{summary.completed_at - summary.created_at:.1f} s")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `frontier batch build | submit | status | ingest | run`."""
    batch = subparsers.add_parser("batch", help="run a grid through a Batch API (or a local server) and ingest it")
    commands = batch.add_subparsers(dest="batch_command", required=True)

    def remote(command: argparse.ArgumentParser) -> None:
        command.add_argument("--base-url", default=None, help=f"Batch API base URL (default {OPENAI_BASE_URL})")
        command.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
        command.add_argument("--poll-s", type=float, default=30.0, help="seconds between status checks")

    build = commands.add_parser("build", help="write a config grid as Batch input JSONL")
    build.add_argument("config", type=Path)
    build.add_argument("-o", "--output", type=Path, required=True, metavar="INPUT.jsonl")
    build.add_argument("--limit", type=int, default=None, help="items per task (first N)")
    build.set_defaults(func=_build_command)

    submit_ = commands.add_parser("submit", help="upload an input file and create a batch; prints its id")
    submit_.add_argument("input", type=Path)
    submit_.add_argument("--wait", action="store_true", help="poll until the batch finishes")
    remote(submit_)
    submit_.set_defaults(func=_submit_command)

    status = commands.add_parser("status", help="show (or --wait for) a batch's status")
    status.add_argument("batch_id")
    status.add_argument("--wait", action="store_true")
    remote(status)
    status.set_defaults(func=_status_command)

    ingest_ = commands.add_parser("ingest", help="turn a finished batch (id or output file) into a run dir")
    ingest_.add_argument("source", help="BATCH_ID or OUTPUT.jsonl")
    ingest_.add_argument("--config", type=Path, required=True)
    ingest_.add_argument("-o", "--output", type=Path, required=True, metavar="RUN_DIR")
    ingest_.add_argument("--errors", type=Path, default=None, help="error JSONL (with an output file)")
    ingest_.add_argument("--limit", type=int, default=None, help="items per task used when building")
    ingest_.add_argument("--endpoint", default=None, help="host recorded in the rows")
    remote(ingest_)
    ingest_.set_defaults(func=_ingest_command)

    run = commands.add_parser("run", help="run an input file against any OpenAI-compatible server")
    run.add_argument("input", type=Path)
    run.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT.jsonl")
    run.add_argument("--base-url", default=None, help="OpenAI-compatible server (default: start the embedded LLM)")
    run.add_argument("--errors", type=Path, default=None, help="write failed lines here instead")
    run.add_argument("--api-key-env", default=None, help="environment variable holding the key")
    run.add_argument("--concurrency", type=int, default=16)
    run.set_defaults(func=_run_command)
