"""A local stand-in for OpenAI's Files and Batches endpoints, good enough for the real `openai` client.

Speaks `POST /v1/files` (multipart), `GET /v1/files/{id}`, `GET /v1/files/{id}/content`,
`POST /v1/batches` and `GET /v1/batches/{id}`.  A batch is "processed" in the background by
forwarding each input line to an OpenAI-compatible `upstream` base_url (the scripted server, the
embedded LLM) with `toolkit.batch.answer_lines`, or by a canned `responder`; lines whose custom_id
is in `fail` go to the error file with that error code instead.  Status moves validating ->
in_progress -> finalizing -> completed (or failed, when an input line is invalid), with the
Unix timestamps a real batch has, so turnaround can be measured.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from toolkit.batch import answer_lines, is_success
from toolkit.testing.background import BackgroundServer

Responder = Callable[[dict], tuple[int, dict]]


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def describe(self) -> dict:
        return {"id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed"}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                        "code": None}}, status=status)


class _App:
    def __init__(self, upstream: str | None, responder: Responder | None, fail: Mapping[str, tuple[str, str]],
                 api_key: str | None, delay_s: float, concurrency: int) -> None:
        if (upstream is None) == (responder is None):
            raise ValueError("BatchServer needs exactly one of upstream (a base_url) or responder")
        self.upstream, self.responder, self.fail = upstream, responder, dict(fail)
        self.bearer = None if api_key is None else f"Bearer {api_key}"
        self.delay_s, self.concurrency = delay_s, concurrency
        self.files: dict[str, _File] = {}
        self.batches: dict[str, dict] = {}
        self.tasks: set[asyncio.Task] = set()

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self.auth])
        app.router.add_post("/v1/files", self.create_file)
        app.router.add_get("/v1/files/{file_id}", self.get_file)
        app.router.add_get("/v1/files/{file_id}/content", self.file_content)
        app.router.add_post("/v1/batches", self.create_batch)
        app.router.add_get("/v1/batches/{batch_id}", self.get_batch)
        app.on_shutdown.append(self.cancel_batches)
        return app

    async def cancel_batches(self, app: web.Application) -> None:
        """Stop the batches still being processed, so stopping the server does not wait on upstream."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    @web.middleware
    async def auth(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if self.bearer is not None and request.headers.get("Authorization") != self.bearer:
            return _error(401, "Incorrect API key provided.")
        return await handler(request)

    def _store(self, filename: str, purpose: str, content: bytes) -> _File:
        file = _File(f"file-{uuid.uuid4().hex[:24]}", filename, purpose, content, int(time.time()))
        self.files[file.id] = file
        return file

    async def create_file(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if upload is None or not hasattr(upload, "file") or not isinstance(purpose, str):
            return _error(400, "multipart fields 'file' and 'purpose' are required")
        return web.json_response(self._store(upload.filename, purpose, upload.file.read()).describe())

    async def get_file(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["file_id"])
        return _error(404, "No such File object") if file is None else web.json_response(file.describe())

    async def file_content(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["file_id"])
        if file is None:
            return _error(404, "No such File object")
        return web.Response(body=file.content, content_type="application/octet-stream")

    async def create_batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("input_file_id") not in self.files:
            return _error(400, f"no file {body.get('input_file_id')!r}")
        batch = {"id": f"batch_{uuid.uuid4().hex[:24]}", "object": "batch", "endpoint": body.get("endpoint"),
                 "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window", "24h"),
                 "status": "validating", "created_at": int(time.time()), "metadata": body.get("metadata"),
                 "request_counts": {"total": 0, "completed": 0, "failed": 0}}
        self.batches[batch["id"]] = batch
        task = asyncio.create_task(self.process(batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.json_response(batch)

    async def get_batch(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["batch_id"])
        return _error(404, "No such Batch object") if batch is None else web.json_response(batch)

    async def process(self, batch: dict) -> None:
        await asyncio.sleep(self.delay_s)
        lines, problems = [], []
        text = self.files[batch["input_file_id"]].content.decode("utf-8")
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                problems.append({"code": "invalid_json_line", "line": number, "message": "not JSON", "param": None})
                continue
            if line.get("url") != batch["endpoint"]:
                problems.append({"code": "mismatched_endpoint", "line": number, "param": "url",
                                 "message": f"url {line.get('url')!r} is not the batch's {batch['endpoint']!r}"})
            lines.append(line)
        if problems or not lines:
            batch.update(status="failed", failed_at=int(time.time()), errors={"object": "list", "data": problems or [
                {"code": "empty_file", "line": None, "message": "the input file has no requests", "param": None}]})
            return
        counts = batch["request_counts"]
        counts["total"] = len(lines)
        batch.update(status="in_progress", in_progress_at=int(time.time()))

        def count(out: dict) -> None:
            counts["completed" if is_success(out) else "failed"] += 1

        failing = [line for line in lines if line["custom_id"] in self.fail]
        forward = [line for line in lines if line["custom_id"] not in self.fail]
        if self.responder is not None:
            outputs = [self._canned(line) for line in forward]
            for out in outputs:
                count(out)
        else:
            outputs = await answer_lines(forward, base_url=self.upstream, concurrency=self.concurrency,
                                         on_done=count)
        for line in failing:
            code, message = self.fail[line["custom_id"]]
            outputs.append({"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line["custom_id"],
                            "response": None, "error": {"code": code, "message": message}})
            counts["failed"] += 1
        batch.update(status="finalizing", finalizing_at=int(time.time()))
        ok = [o for o in outputs if is_success(o)]
        bad = [o for o in outputs if not is_success(o)]
        for key, part in (("output_file_id", ok), ("error_file_id", bad)):
            if part:
                content = "".join(json.dumps(o) + "\n" for o in part).encode()
                batch[key] = self._store(f"{batch['id']}_{key[:-8]}.jsonl", "batch_output", content).id
        batch.update(status="completed", completed_at=int(time.time()))

    def _canned(self, line: dict) -> dict:
        status, body = self.responder(line)
        return {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line["custom_id"],
                "response": {"status_code": status, "request_id": f"req_{uuid.uuid4().hex}", "body": body},
                "error": None}


class BatchServer(BackgroundServer):
    """The Files + Batches stand-in on a background thread: `with BatchServer(upstream=url) as srv:`
    then `openai.OpenAI(base_url=srv.base_url, api_key="k")`.  `srv.batches` holds the batch objects."""

    def __init__(self, *, upstream: str | None = None, responder: Responder | None = None,
                 fail: Mapping[str, tuple[str, str]] | None = None, api_key: str | None = None,
                 delay_s: float = 0.0, concurrency: int = 8, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = _App(upstream, responder, fail or {}, api_key, delay_s, concurrency)
        super().__init__(self._app.build(), name="batch server", host=host, port=port)

    @property
    def batches(self) -> dict[str, dict]:
        return self._app.batches
