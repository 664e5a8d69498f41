"""`StreamClient`: the request it sends (URL, headers, body), errors as the openai SDK's exceptions
with no key in them, proxies from the environment, and a first request on a fresh pool timed like a
warm one."""
from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from toolkit.endpoints import Connection
from toolkit.measure import Request, stream_request
from toolkit.retries import error_kind, retry_after_s
from toolkit.stream_client import _environment_proxy
from toolkit.testing import Behaviour, Script, ScriptedServer

KEY = f"sk-test-{secrets.token_hex(12)}"


class _Recording(BaseHTTPRequestHandler):
    """Answers one streamed token, or the status its prompt names, echoing the key in error bodies as
    some providers do; keeps every request's path, headers and body."""

    seen: list[tuple[str, dict[str, str], dict]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, dict(self.headers), body))
        status = int(body["prompt"]) if body.get("prompt", "").isdigit() else 200
        if status != 200:
            payload = json.dumps({"error": {"message": f"refused {self.headers['Authorization']}"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "1.5")
        else:
            chunk = json.dumps({"choices": [{"index": 0, "text": "Paris", "finish_reason": "stop"}]}).encode()
            if body.get("prompt") == "not utf-8":  # a server that sends broken bytes inside a token
                chunk = chunk.replace(b"Paris", b"Pa\xffris")
            payload = b"data: " + chunk + b"\n\ndata: [DONE]\n\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def recording():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def send(base_url: str, request: Request, request_id: str | None = None):
    async def run():
        async with Connection("r", base_url, KEY).client(timeout_s=5, max_connections=2) as client:
            return await stream_request(client, request, request_id=request_id)

    return asyncio.run(run())


def test_the_request_is_the_sdks_url_headers_and_body(recording, monkeypatch):
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_123")
    _Recording.seen.clear()
    result = send(recording, Request("completions", "m", "q", 8, 0.5, ("\n",), logprobs=True), request_id="abc")
    assert result.text == "Paris" and result.finish_reason == "stop"
    ((path, headers, body),) = _Recording.seen
    assert path == "/v1/completions"
    assert headers["Authorization"] == f"Bearer {KEY}" and headers["Content-Type"] == "application/json"
    assert headers["X-Client-Request-Id"] == "abc" and headers["OpenAI-Project"] == "proj_123"
    assert body == {"model": "m", "max_tokens": 8, "temperature": 0.5, "prompt": "q", "logprobs": 1,
                    "stop": ["\n"], "stream": True, "stream_options": {"include_usage": True}}


def test_bytes_that_are_not_utf_8_become_replacement_characters_not_a_crash(recording):
    result = send(recording, Request("completions", "m", "not utf-8", 8, 0.0))
    assert result.text == "Pa\ufffdris" and result.finish_reason == "stop"


@pytest.mark.parametrize(("status", "kind", "error_type"), [
    (429, openai.RateLimitError, "rate_limited"), (401, openai.AuthenticationError, "auth"),
    (400, openai.BadRequestError, "bad_request"), (503, openai.InternalServerError, "server_error")])
def test_an_error_status_is_the_sdks_exception_with_retry_after_and_no_key(recording, status, kind, error_type):
    with pytest.raises(kind) as caught:
        send(recording, Request("completions", "m", str(status), 8, 0.0))
    exc = caught.value
    assert error_kind(exc) == (error_type, status) and retry_after_s(exc) == 1.5
    assert str(exc) == f"Error code: {status} - refused Bearer {KEY}"  # the body's message, as the SDK words it
    assert KEY not in repr(exc.request.headers) and KEY not in repr(exc.response.request.headers)


def test_an_unreachable_endpoint_is_a_connection_error_without_the_key():
    with pytest.raises(openai.APIConnectionError) as caught:
        send("http://127.0.0.1:9/v1", Request("chat", "m", [{"role": "user", "content": "q"}], 8, 0.0))
    assert error_kind(caught.value)[0] == "connection" and KEY not in str(caught.value)
    assert caught.value.request.url == "http://127.0.0.1:9/v1/chat/completions"


def test_proxies_come_from_the_environment_as_httpx2_reads_them(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert _environment_proxy("https://api.openai.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert _environment_proxy("https://api.openai.com/v1") == "http://proxy.internal:3128"
    assert _environment_proxy("http://127.0.0.1:8000/v1") is None
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    assert _environment_proxy("https://api.openai.com/v1") is None


def test_a_first_request_on_a_fresh_pool_is_timed_like_a_warm_one():
    # Requests started together on a fresh pool used to wait in their TTFT while the others opened
    # their connections (~100 ms each at 16 in flight); the pool is now opened before the first send.
    behaviour = Behaviour(ttft_s=0.05, tokens=2)
    in_flight = 16

    async def waves(base_url: str) -> list[list[float]]:
        async with Connection("s", base_url, "k").client(timeout_s=5, max_connections=in_flight) as client:
            ttfts = []
            for wave in range(3):
                results = await asyncio.gather(*(
                    stream_request(client, Request("completions", "scripted", "q", 8, 0.0),
                                   request_id=f"{wave}-{i}") for i in range(in_flight)))
                ttfts.append([result.ttft_s for result in results])
            return ttfts

    with ScriptedServer(Script(behaviour)) as server:
        first, *warm = asyncio.run(waves(server.base_url))
    warm_median = statistics.median(ttft for wave in warm for ttft in wave)
    assert warm_median >= behaviour.ttft_s
    assert statistics.median(first) < 1.5 * warm_median and max(first) < 1.5 * max(max(wave) for wave in warm)
