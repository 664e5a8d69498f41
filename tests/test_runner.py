"""The collector's own logic: plan, ids, send order, concurrency, retries, stops and rate limits.

Fault injection at scale is in test_faults.py, kill/resume in test_crash_resume.py; here each test
pins one rule of runner.py, pacing.py or retries.py against the scripted server's log or a closed form.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
import openai
import pytest

from scripted_runs import write_config
from toolkit import pacing
from toolkit.collect import collect
from toolkit.config_file import load_config
from toolkit.pacing import RateLimiter
from toolkit.retries import error_kind, retry_after_s
from toolkit.runner import plan, request_id_for
from toolkit.store import load_run
from toolkit.testing import Behaviour, Script, ScriptedServer


def test_request_id_is_a_stable_hash_of_config_item_and_repeat():
    expected = hashlib.sha1("cfg\x1fcapitals\x1fcapitals-0001\x1f2".encode()).hexdigest()[:16]
    assert request_id_for("cfg", "capitals", "capitals-0001", 2) == expected
    assert request_id_for("cfg", "capitals", "capitals-0001", 3) != expected


def test_plan_is_the_full_grid_seeded_shuffled_or_grouped(tmp_path):
    path = write_config(tmp_path, "http://127.0.0.1:9/v1", datasets=["capitals", "dates"], items=3,
                        variants=["zero_shot", "chat"], repeats=2)
    shuffled = plan(load_config(path))
    assert len(shuffled) == 2 * 3 * 2 * 2 and len({p.request_id for p in shuffled}) == 24
    assert [p.request_id for p in plan(load_config(path))] == [p.request_id for p in shuffled]
    grouped = plan(load_config(write_config(tmp_path, "http://127.0.0.1:9/v1", datasets=["capitals", "dates"],
                                            items=3, variants=["zero_shot", "chat"], repeats=2,
                                            order="grouped")))
    assert {p.request_id for p in grouped} == {p.request_id for p in shuffled}
    configs = [p.config.config_id for p in grouped]
    assert configs == sorted(configs, key=configs.index) and len(set(configs[:12])) == 1  # one block each
    assert [p.config.config_id for p in shuffled] != configs


def test_sequence_is_the_send_order_and_in_flight_matches_each_concurrency_level(tmp_path):
    with ScriptedServer(Script(Behaviour(tokens=2, ttft_s=0.03))) as server:
        path = write_config(tmp_path, server.base_url, datasets=["capitals"], items=12, variants=["zero_shot"],
                            concurrency=[1, 4])
        collect(path, runs_root=tmp_path / "runs", run_id="levels")
        log = list(server.log)
    table = load_run(tmp_path / "runs" / "levels").sort_values("sequence")
    assert list(table["sequence"]) == list(range(24))
    assert list(table["concurrency"]) == [1] * 12 + [4] * 12  # one phase per level, in config order
    arrivals = [a.key for a in sorted(log, key=lambda a: a.received_ns)]
    assert arrivals[:12] == list(table["request_id"][:12])  # concurrency 1: arrival order is sequence

    def most_in_flight(keys: set[str]) -> int:
        events = sorted([(a.received_ns, 1) for a in log if a.key in keys]
                        + [(a.done_ns, -1) for a in log if a.key in keys])
        level = peak = 0
        for _, step in events:
            level += step
            peak = max(peak, level)
        return peak

    assert most_in_flight(set(table["request_id"][:12])) == 1
    assert most_in_flight(set(table["request_id"][12:])) == 4


def test_max_requests_and_cost_budget_stop_the_run_and_say_why(tmp_path):
    with ScriptedServer(Script(Behaviour(tokens=2))) as server:
        path = write_config(tmp_path, server.base_url, datasets=["capitals"], items=20, variants=["zero_shot"],
                            concurrency=1, limits={"max_requests": 7})
        summary = collect(path, runs_root=tmp_path / "runs", run_id="capped")
        assert summary.sent == 7 and summary.stop_reason == "reached max_requests=7"
        path = write_config(tmp_path, server.base_url, datasets=["capitals"], items=20, variants=["zero_shot"],
                            concurrency=1, limits={"max_cost_usd": 0.05})
        summary = collect(path, runs_root=tmp_path / "runs", run_id="budget", cost_of=lambda record: 0.01)
    assert summary.sent == 5 and summary.stop_reason == "spent 0.0500 USD, reaching max_cost_usd=0.05"
    assert len(load_run(summary.run_dir)) == 5


def test_error_rate_stop_needs_the_minimum_number_of_requests(tmp_path):
    keys = [p.request_id for p in plan(load_config(write_config(
        tmp_path, None, datasets=["capitals"], items=40, variants=["zero_shot"], concurrency=1)))]
    failing = {k: [Behaviour(fault="400")] for k in keys[::2]}  # every other request is refused
    with ScriptedServer(Script(Behaviour(tokens=2), rules=failing)) as server:
        path = write_config(tmp_path, server.base_url, datasets=["capitals"], items=40, variants=["zero_shot"],
                            concurrency=1, limits={"max_error_rate": 0.4, "min_requests_for_error_rate": 10})
        summary = collect(path, runs_root=tmp_path / "runs", run_id="errors")
    # after 10 requests 5 failed: 5/10 > 0.4 stops the run, not request 1 (1/1) nor later
    assert summary.sent == 10 and summary.stop_reason == "error rate 5/10 passed max_error_rate=0.4"
    table = load_run(summary.run_dir)
    errors = table[table["status"] == "error"]
    assert len(errors) == 5 and (errors["http_status"] == 400).all() and (errors["attempts"] == 1).all()
    assert (errors["error_type"] == "bad_request").all()


def test_error_kinds_and_retry_after_parsing():
    request = httpx2.Request("POST", "http://x/v1/completions")

    def status(code: int, retry_after: str | None = None) -> openai.APIStatusError:
        response = httpx2.Response(code, request=request, headers={"retry-after": retry_after} if retry_after else {})
        return openai.OpenAI(api_key="k", base_url="http://x/v1")._make_status_error_from_response(response)

    assert error_kind(status(429)) == ("rate_limited", 429)
    assert error_kind(status(503)) == ("server_error", 503)
    assert error_kind(status(401)) == ("auth", 401)
    assert error_kind(status(404)) == ("bad_request", 404)
    assert error_kind(openai.APITimeoutError(request=request)) == ("timeout", None)
    assert error_kind(openai.APIConnectionError(request=request)) == ("connection", None)
    assert error_kind(httpx2.RemoteProtocolError("peer closed")) == ("connection", None)
    assert error_kind(json.JSONDecodeError("x", "{", 1)) == ("malformed_stream", None)
    assert retry_after_s(status(429, "2.5")) == 2.5 and retry_after_s(status(429, "-1")) == 0.0
    assert retry_after_s(status(429, "Wed, 21 Oct 2015 07:28:00 GMT")) is None  # falls back to backoff
    assert retry_after_s(status(429)) is None


def test_rate_limiter_keeps_a_sliding_minute(monkeypatch):
    clock = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(pacing.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pacing.asyncio, "sleep", fake_sleep)

    async def scenario() -> None:
        limiter = RateLimiter(requests_per_minute=2, tokens_per_minute=None)
        for at in (0.0, 10.0, 20.0):
            clock[0] = max(clock[0], at)
            await limiter.acquire(1)
        tokens = RateLimiter(requests_per_minute=None, tokens_per_minute=100)
        await tokens.acquire(60)
        await tokens.acquire(60)  # 120 > 100 in the window: waits for the first to leave it

    asyncio.run(scenario())
    assert slept == [40.0, pytest.approx(60.0 - 0.0)]


class _ErrorEventHandler(BaseHTTPRequestHandler):
    """Streams one token and then an SSE error event, as vLLM and llama.cpp do when generation fails;
    keys listed in `heal` answer properly from their second attempt on."""

    attempts: Counter = Counter()
    heal: set[str] = set()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        key = self.headers["X-Client-Request-Id"]
        self.attempts[key] += 1
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunk = {"id": "c", "object": "text_completion", "created": 0, "model": "m",
                 "choices": [{"index": 0, "text": "Paris", "finish_reason": None, "logprobs": None}]}
        self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if key in self.heal and self.attempts[key] > 1:
            self.wfile.write(b"data: [DONE]\n\n")
        else:
            self.wfile.write(b'data: {"error": {"message": "engine overloaded", "type": "server_error"}}\n\n')

    def log_message(self, *args: object) -> None:
        pass


def test_an_error_event_inside_the_stream_is_retried_and_recorded_not_raised(tmp_path):
    keys = [p.request_id for p in plan(load_config(write_config(
        tmp_path, None, datasets=["capitals"], items=4, variants=["zero_shot"])))]
    _ErrorEventHandler.heal = set(keys[:2])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ErrorEventHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        path = write_config(tmp_path, f"http://127.0.0.1:{server.server_port}/v1", datasets=["capitals"],
                            items=4, variants=["zero_shot"], retry={"max_attempts": 3})
        summary = collect(path, runs_root=tmp_path / "runs", run_id="events")
    finally:
        server.shutdown()
        server.server_close()
    table = load_run(summary.run_dir).set_index("request_id")
    assert summary.sent == 4 and summary.errors == 2
    assert list(table.loc[keys[:2], "attempts"]) == [2, 2] and (table.loc[keys[:2], "status"] == "ok").all()
    failed = table.loc[keys[2:]]
    assert (failed["status"] == "error").all() and (failed["attempts"] == 3).all()
    assert (failed["error_type"] == "stream_error").all()
    assert failed["error_message"].str.contains("engine overloaded").all()
    assert dict(_ErrorEventHandler.attempts) == {**dict.fromkeys(keys[:2], 2), **dict.fromkeys(keys[2:], 3)}


class _DroppingKeepAliveHandler(BaseHTTPRequestHandler):
    """Answers the first request on each connection and closes the connection on the next one without
    a word, as a server does when it drops an idle keep-alive connection the client just reused."""

    protocol_version = "HTTP/1.1"
    posts: Counter = Counter()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.posts[self.headers["X-Client-Request-Id"]] += 1
        self.answered = getattr(self, "answered", 0) + 1
        if self.answered > 1:
            self.close_connection = True  # "Server disconnected without sending a response"
            return
        chunk = {"id": "c", "object": "text_completion", "created": 0, "model": "m",
                 "choices": [{"index": 0, "text": "Lima", "finish_reason": "stop", "logprobs": None}]}
        body = b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_dropped_keep_alive_connection_is_retried_and_each_request_recorded_once(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DroppingKeepAliveHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    journaled = []
    try:
        path = write_config(tmp_path, f"http://127.0.0.1:{server.server_port}/v1", datasets=["capitals"], items=4,
                            variants=["zero_shot"], concurrency=1,
                            retry={"max_attempts": 3, "backoff_base_s": 0.01})
        summary = collect(path, runs_root=tmp_path / "runs", run_id="dropped", on_record=journaled.append)
    finally:
        server.shutdown()
        server.server_close()
    table = load_run(summary.run_dir).sort_values("sequence")
    assert summary.sent == 4 and summary.errors == 0 and (table["status"] == "ok").all()
    assert Counter(r.request_id for r in journaled) == Counter(dict.fromkeys(table["request_id"], 1))
    # the first request opens the connection; each later one meets the drop once, then a new connection
    assert list(table["attempts"]) == [1, 2, 2, 2]
    assert dict(_DroppingKeepAliveHandler.posts) == dict(zip(table["request_id"], [1, 2, 2, 2]))
