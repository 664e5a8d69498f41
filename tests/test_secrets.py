"""No API key in anything the toolkit writes: collect (ok, 429, 400, 5xx and 401 paths whose
messages echo the key), the batch file path, and the HTML report, with every log record captured.

The key is a random canary read from the environment variable the config names.  A small server
echoes it back the way providers and proxies do (whole, masked, or in an `Authorization` line);
afterwards every file written, every log record and every message shown is scanned for it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scripted_runs import write_config
from toolkit import cli
from toolkit.batch import build_batch_input, ingest, run_batch_file, write_jsonl
from toolkit.config_file import load_config
from toolkit.runner import plan
from toolkit.store import load_run
from toolkit.testing import Behaviour, Script, ScriptedServer

CANARY = f"sk-canary-{secrets.token_hex(16)}"
ENV = "FRONTIER_TEST_CANARY_KEY"


def fragments(key: str) -> list[str]:
    """The key and every 8-character piece of its random part: a partial leak is a leak."""
    random_part = key.removeprefix("sk-canary-")
    return [key] + [random_part[i:i + 8] for i in range(len(random_part) - 7)]


def leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return [piece for piece in fragments(CANARY) if piece in text]


class EchoingServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible stream whose error messages repeat the caller's key; per-request faults by
    `X-Client-Request-Id` (the collector's and the batch runner's tracing header)."""

    faults: dict[str, str] = {}
    attempts: Counter = Counter()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        request_id = self.headers.get("X-Client-Request-Id", "")
        self.attempts[request_id] += 1
        fault = self.faults.get(request_id)
        if key != CANARY or fault == "401":
            masked = f"{key[:14]}{'*' * 20}{key[-4:]}"
            return self.error(401, f"Incorrect API key provided: {masked}. You can find your API key at ...")
        if fault == "429":
            return self.error(429, f"Rate limit reached for key {key} on requests per min.", retry_after="0")
        if fault == "400":
            return self.error(400, f"bad request; headers were Authorization: Bearer {key}")
        if fault == "502":  # a proxy's HTML error page, not JSON
            return self.reply(502, "text/html", f"<html>upstream refused {key}</html>".encode())
        chat = "messages" in body
        if not body.get("stream"):
            choice = ({"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}
                      if chat else {"index": 0, "text": "Paris", "finish_reason": "stop"})
            answer = {"id": "x", "object": "chat.completion" if chat else "text_completion", "created": 0,
                      "model": "scripted", "choices": [choice],
                      "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
            return self.reply(200, "application/json", json.dumps(answer).encode())
        delta = {"delta": {"content": "Paris"}} if chat else {"text": "Paris"}
        chunk = {"id": "x", "object": "chat.completion.chunk" if chat else "text_completion", "created": 0,
                 "model": "scripted", "choices": [{"index": 0, "finish_reason": None, **delta}]}
        usage = {"id": "x", "object": chunk["object"], "created": 0, "model": "scripted", "choices": [],
                 "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
        stream = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n"
        self.reply(200, "text/event-stream", stream.encode())

    def error(self, status: int, message: str, retry_after: str | None = None) -> None:
        payload = {"error": {"message": message, "type": "invalid_request_error", "code": str(status)}}
        self.reply(status, "application/json", json.dumps(payload).encode(),
                   {"Retry-After": retry_after} if retry_after else {})

    def reply(self, status: int, kind: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echoing():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def key_in_env(monkeypatch):
    monkeypatch.setenv(ENV, CANARY)


def scan_tree(root: Path) -> dict[str, list[str]]:
    """Every file below `root` whose bytes (or, for Parquet, decoded cells) contain the canary."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        hits = leaks(path.read_bytes())
        if path.suffix == ".parquet":  # compressed pages: scan the decoded values too
            hits += leaks(pq.read_table(path).to_pandas().to_csv())
        if hits:
            found[str(path)] = hits
    return found


def test_collect_keeps_the_key_out_of_every_file_message_and_log(tmp_path, echoing, key_in_env, capsys, caplog):
    caplog.set_level(logging.DEBUG)  # every library's debug records included
    config = write_config(tmp_path / "configs", echoing, datasets=["capitals"], items=10,
                          variants=["zero_shot", "chat"], concurrency=1, api_key_env=ENV,
                          retry={"max_attempts": 2})
    order = [p.request_id for p in plan(load_config(config))]
    EchoingServer.faults = {order[1]: "429", order[2]: "400", order[3]: "502", order[12]: "401"}
    journal_snapshots: list[bytes] = []
    runs = tmp_path / "runs"

    assert cli.main(["-v", "collect", str(config), "--runs-root", str(runs), "--run-id", "canary"]) == 2
    shown = capsys.readouterr()
    assert "frontier: error: endpoint 'scripted' refused the key (HTTP 401)" in shown.err
    table = load_run(runs / "canary")
    assert len(table) == 12 and set(table.loc[table["status"] == "error", "http_status"]) == {429, 400, 502}
    assert (table.set_index("request_id").loc[order[1], "attempts"]) == 2  # the 429 was retried
    assert table["error_message"].str.contains("[redacted]", regex=False).sum() == 2  # 429, 400; 502 has no body

    # the journal, while it exists, holds the same messages: resume and watch it grow
    EchoingServer.faults = {order[13]: "429", order[14]: "400"}
    from toolkit.collect import collect

    collect(config, resume=runs / "canary",
            on_record=lambda record: journal_snapshots.append((runs / "canary" / "journal.jsonl").read_bytes()))
    assert len(journal_snapshots) == 20 - (table["status"] == "ok").sum() and b"[redacted]" in journal_snapshots[-1]
    assert not [leaks(snapshot) for snapshot in journal_snapshots if leaks(snapshot)]
    assert scan_tree(tmp_path) == {}
    assert not leaks(shown.out + shown.err)
    records = [f"{r.name} {r.levelname} {r.getMessage()} {r.args!r}" for r in caplog.records]
    # the toolkit's own debug records were captured (its HTTP client, aiohttp, logs nothing per request)
    assert any("toolkit" == r.name for r in caplog.records)
    assert [r for r in records if leaks(r)] == []


def test_batch_file_run_and_ingest_keep_the_key_out(tmp_path, echoing, key_in_env, caplog):
    caplog.set_level(logging.DEBUG)
    config = write_config(tmp_path / "configs", echoing, datasets=["capitals"], items=4, variants=["chat"],
                          api_key_env=ENV)
    lines = build_batch_input(load_config(config))
    ids = [line["custom_id"] for line in lines]
    EchoingServer.faults = {ids[0]: "401", ids[1]: "400", ids[2]: "502"}
    write_jsonl(lines, tmp_path / "batch" / "input.jsonl")
    summary = run_batch_file(tmp_path / "batch" / "input.jsonl", tmp_path / "batch" / "output.jsonl",
                             base_url=echoing, api_key=CANARY, concurrency=2)
    assert summary.failed == 3
    output = (tmp_path / "batch" / "output.jsonl").read_text(encoding="utf-8").splitlines()
    table = ingest(output, [], config, tmp_path / "runs" / "batch")
    assert len(table) == 4 and (table["status"] == "error").sum() == 3
    assert list(scan_tree(tmp_path)) == []  # error bodies that echo the key are redacted in output.jsonl
    assert [r.getMessage() for r in caplog.records if leaks(r.getMessage())] == []


def test_report_and_server_log_of_a_run_collected_with_the_key_hold_no_key(tmp_path, key_in_env):
    from toolkit.collect import collect
    from toolkit.report import build_report

    grid = {"datasets": ["capitals"], "items": 10, "variants": ["zero_shot", "chat"], "concurrency": 2,
            "api_key_env": ENV}
    first = plan(load_config(write_config(tmp_path / "configs", None, **grid)))[0].request_id
    script = Script(Behaviour(tokens=2, text="Paris"), rules={first: [Behaviour(fault="429", retry_after_s=0)]})
    with ScriptedServer(script, api_key=CANARY) as server:
        config = write_config(tmp_path / "configs", server.base_url, **grid)
        summary = collect(config, runs_root=tmp_path / "runs", run_id="canary")
        server_log = json.dumps([dataclasses.asdict(attempt) for attempt in server.log], default=str)
    assert summary.errors == 0 and "429" in server_log and not leaks(server_log)
    index = build_report(summary.run_dir, out_root=tmp_path / "reports", parameters={"machine_usd_per_hour": 1.0})
    assert index.is_file() and len(list(index.parent.glob("*.html"))) >= 2
    assert len(list(index.parent.glob("*.ipynb"))) >= 2
    assert scan_tree(tmp_path) == {}
