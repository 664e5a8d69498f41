"""A scripted OpenAI-compatible server: exact timing and injected faults, so tests know the truth.

Speaks `/v1/chat/completions`, `/v1/completions` (streaming SSE and plain JSON) and `/v1/models`.
Each request is answered by the `Behaviour` its `Script` picks for (request key, attempt number).
The request key is the `X-Client-Request-Id` header (OpenAI's tracing header, which the collector sends
with the request_id) or `X-Request-Id` when the client sends one, else the prompt text
(completions: `prompt`; chat: the content of the last message). Run it in-process with
`ScriptedServer`, or in its own process with `python -m toolkit.testing.scripted_server`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from bisect import bisect_right
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache, partial
from itertools import accumulate
from typing import Mapping, Sequence

from aiohttp import web

from toolkit.errors import EndpointError, ParameterError

STREAM_FAULTS = ("reset", "reset_mid", "stall", "malformed", "no_usage", "empty_choices", "truncated")
_ERROR_TYPES = {401: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error",
                502: "bad_gateway", 503: "service_unavailable"}
_CREATED = int(time.time())
_DONE = b"data: [DONE]\n\n"
_MALFORMED = b'data: {"id": "broken", "choices": [\n\n'


@dataclass(frozen=True)
class Behaviour:
    """What the server does for one attempt.

    Timing: token i (from 0) is sent ttft_s + (gap 0 + ... + gap i-1) after the request arrived,
    gap j being gaps_s[j] where given, else gap_s; chat sends a role-only chunk at once. A
    non-streaming answer comes when its last token would have. `text`, split at word starts, replaces
    the "tok1 tok2 ..." answer of `tokens` tokens. Usage: completion_tokens = tokens +
    reasoning_tokens; prompt_tokens, unless given, is the prompt's word count; `usage=False` sends
    none. `openai-processing-ms` is sent only when processing_ms is set.
    Faults: an HTTP status ("429", "500", "502", "503", ...; Retry-After: retry_after_s if set);
    "reset" (TCP RST before any byte); "stall" (stall_s of silence, then the normal answer);
    "no_usage"; and, after fault_after_tokens tokens (or all of them), "reset_mid" (RST),
    "malformed" (an SSE line of broken JSON, then the rest), "empty_choices" (one chunk with
    `choices: []`, then the rest) and "truncated" (the body ends cleanly, with neither a finish
    reason nor [DONE]). Non-streaming: the answer is dropped, truncated, or has no choices.
    """

    ttft_s: float = 0.0
    gap_s: float = 0.0
    gaps_s: tuple[float, ...] = ()
    tokens: int = 8
    text: str | None = None
    usage: bool = True
    prompt_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    fault: str | None = None
    fault_after_tokens: int = 0
    retry_after_s: float | None = None
    stall_s: float = 30.0
    processing_ms: float | None = None

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in STREAM_FAULTS and not _is_status(self.fault):
            raise ParameterError(f'Behaviour field "fault": unknown fault {self.fault!r}; expected an '
                                 f'HTTP status like "429" or one of {", ".join(STREAM_FAULTS)}')

    def pieces(self) -> tuple[str, ...]:
        """The answer's tokens in order; joined they give the full answer text."""
        if self.text is not None:
            return tuple(re.findall(r"\s*\S+", self.text))
        return tuple(f"{' ' if i > 1 else ''}tok{i}" for i in range(1, self.tokens + 1))

    def offsets_s(self) -> tuple[float, ...]:
        """When each token is due, in seconds after the request arrived."""
        due, out = self.ttft_s, []
        for i in range(len(self.pieces())):
            out.append(due)
            due += self.gaps_s[i] if i < len(self.gaps_s) else self.gap_s
        return tuple(out)


def _is_status(fault: str) -> bool:
    return len(fault) == 3 and fault.isdigit() and 400 <= int(fault) <= 599


@dataclass(frozen=True)
class Script:
    """Picks the Behaviour for an attempt: a per-key plan (attempt n gets plan[n-1]), else the
    seeded fault mix, else `default` (also for every attempt past a plan's end)."""

    default: Behaviour = Behaviour()
    rules: Mapping[str, Sequence[Behaviour]] = field(default_factory=dict)
    mix: tuple[tuple[str, float], ...] = ()
    seed: int = 0
    max_faults_per_request: int = 0

    @classmethod
    def fault_mix(cls, probabilities: Mapping[str, float], seed: int,
                  max_faults_per_request: int = 3, default: Behaviour = Behaviour()) -> Script:
        """Each attempt of a key fails with fault f at probability p[f] (seeded by seed and key, so
        independent of arrival order), until max_faults_per_request faults; faults keep default's
        other fields (retry_after_s, fault_after_tokens, stall_s)."""
        for name, p in probabilities.items():
            replace(default, fault=name)  # validates the name
            if not 0.0 <= p <= 1.0:
                raise ParameterError(f'fault_mix: probability of "{name}" is {p}, not in [0, 1]')
        if sum(probabilities.values()) > 1.0:
            raise ParameterError(f"fault_mix: probabilities sum to {sum(probabilities.values())} > 1")
        return cls(default=default, mix=tuple(probabilities.items()), seed=seed,
                   max_faults_per_request=max_faults_per_request)

    def plan(self, key: str) -> tuple[Behaviour, ...]:
        """The behaviours of the first attempts of `key`; later attempts get `default`."""
        if key in self.rules or not self.mix:
            return tuple(self.rules.get(key, ()))
        rng, out = random.Random(f"{self.seed}\0{key}"), []
        names, bounds = [n for n, _ in self.mix], list(accumulate(p for _, p in self.mix))
        for _ in range(self.max_faults_per_request):
            i = bisect_right(bounds, rng.random())
            if i == len(names):
                break
            out.append(replace(self.default, fault=names[i]))
        return tuple(out)

    def behaviour(self, key: str, attempt: int) -> Behaviour:
        if not self.rules and not self.mix:
            return self.default
        plan = self.plan(key)
        return plan[attempt - 1] if attempt <= len(plan) else self.default


@dataclass
class Attempt:
    """One attempt as the server saw it; times are time.perf_counter_ns() in the server process."""

    key: str
    attempt: int
    behaviour: Behaviour
    endpoint: str
    stream: bool
    received_ns: int
    token_ns: list[int] = field(default_factory=list)
    done_ns: int | None = None


@dataclass(frozen=True)
class _Encoded:
    head: bytes
    tokens: tuple[bytes, ...]
    tail: bytes
    empty: bytes
    body: bytes
    offsets_s: tuple[float, ...]


def _usage(b: Behaviour, prompt_tokens: int) -> dict:
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(b.pieces()) + b.reasoning_tokens}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if b.cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": b.cached_tokens}
    if b.reasoning_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": b.reasoning_tokens}
    return usage


@lru_cache(maxsize=1024)
def _encode(b: Behaviour, chat: bool, model: str, prompt_tokens: int, include_usage: bool) -> _Encoded:
    """Every byte of the response, built once per distinct (behaviour, request shape)."""
    kind = "chat.completion" if chat else "text_completion"
    base = {"id": "chatcmpl-scripted" if chat else "cmpl-scripted", "created": _CREATED, "model": model}

    def sse(choices: list, **extra: object) -> bytes:
        obj = {**base, "object": kind + ".chunk" if chat else kind, "choices": choices, **extra}
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    def choice(piece: str | None, finish: str | None = None) -> dict:
        if not chat:
            return {"text": piece or "", "index": 0, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "delta": {} if piece is None else {"content": piece},
                "logprobs": None, "finish_reason": finish}

    with_usage = b.usage and b.fault != "no_usage"
    usage = _usage(b, prompt_tokens)
    head = sse([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                 "finish_reason": None}]) if chat else b""
    tail = sse([choice(None, "stop")])
    if include_usage and with_usage:
        tail += sse([], usage=usage)
    answer = "".join(b.pieces())
    message = ({"index": 0, "message": {"role": "assistant", "content": answer}, "logprobs": None,
                "finish_reason": "stop"} if chat else
               {"text": answer, "index": 0, "logprobs": None, "finish_reason": "stop"})
    whole = {**base, "object": kind, "choices": [] if b.fault == "empty_choices" else [message]}
    if with_usage:
        whole["usage"] = usage
    body = b'{"broken": ' if b.fault in ("malformed", "truncated") else json.dumps(whole).encode()
    return _Encoded(head, tuple(sse([choice(p)]) for p in b.pieces()), tail + _DONE, sse([]), body,
                    b.offsets_s())


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return web.json_response({"error": {"message": message, "type": kind, "param": None,
                                        "code": "invalid_api_key" if status == 401 else kind}},
                             status=status, headers=headers)


def _reset(request: web.Request) -> web.Response:
    # SO_LINGER 0 makes close() send a TCP RST instead of a FIN: the client sees a reset.
    # The kernel still delivers the bytes already sent before it reports the reset.
    transport = request.transport
    if transport is not None:
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                      struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=499)  # never reaches the client


def _prompt(body: dict, chat: bool) -> str:
    if chat:
        messages = body.get("messages") or [{}]
        content = messages[-1].get("content", "")
        return content if isinstance(content, str) else " ".join(
            part.get("text", "") for part in content if isinstance(part, dict))
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


class _App:
    """The request handlers and the state they share: attempt counters and the log."""

    def __init__(self, script: Script, api_key: str | None, model: str, serial: bool = False) -> None:
        self.script, self.model = script, model
        self.bearer = None if api_key is None else f"Bearer {api_key}"
        self.log: list[Attempt] = []
        self.attempts: defaultdict[str, int] = defaultdict(int)
        # like a server with one slot: a request waits for the one before it to finish
        self.one_at_a_time = asyncio.Lock() if serial else None

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", partial(self.complete, chat=True))
        app.router.add_post("/v1/completions", partial(self.complete, chat=False))
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/_scripted/log", self.dump_log)
        return app

    async def models(self, request: web.Request) -> web.Response:
        if self.bearer is not None and request.headers.get("Authorization") != self.bearer:
            return _error(401, "Incorrect API key provided.")
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": _CREATED, "owned_by": "scripted"}]})

    async def dump_log(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(a) for a in self.log])

    async def complete(self, request: web.Request, chat: bool) -> web.StreamResponse:
        if self.one_at_a_time is None:
            return await self._answer(request, chat)
        async with self.one_at_a_time:
            return await self._answer(request, chat)

    async def _answer(self, request: web.Request, chat: bool) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        received, start = time.perf_counter_ns(), loop.time()  # so no token is stamped early
        if self.bearer is not None and request.headers.get("Authorization") != self.bearer:
            return _error(401, "Incorrect API key provided.")
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            return _error(400, f"request body is not JSON: {exc}")
        prompt = _prompt(body, chat)
        key = request.headers.get("X-Client-Request-Id") or request.headers.get("X-Request-Id") or prompt
        self.attempts[key] += 1
        b = self.script.behaviour(key, self.attempts[key])
        stream = bool(body.get("stream"))
        rec = Attempt(key, self.attempts[key], b, "chat" if chat else "completions", stream, received)
        self.log.append(rec)
        if b.fault == "stall":
            await asyncio.sleep(b.stall_s)
        if b.fault == "reset":
            return _reset(request)
        if b.fault is not None and _is_status(b.fault):
            retry = {} if b.retry_after_s is None else {"Retry-After": f"{b.retry_after_s:g}"}
            return _error(int(b.fault), f"scripted fault {b.fault}", retry)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        prompt_tokens = len(prompt.split()) if b.prompt_tokens is None else b.prompt_tokens
        enc = _encode(b, chat, str(body.get("model", self.model)), prompt_tokens, include_usage)
        headers = {} if b.processing_ms is None else {"openai-processing-ms": f"{b.processing_ms:g}"}
        offsets = enc.offsets_s
        if not stream:
            await asyncio.sleep(max(0.0, start + (offsets[-1] if offsets else b.ttft_s) - loop.time()))
            if b.fault == "reset_mid":
                return _reset(request)
            rec.done_ns = time.perf_counter_ns()
            return web.Response(body=enc.body, headers=headers, content_type="application/json")
        resp = web.StreamResponse(headers=headers)
        resp.content_type = "text/event-stream"
        await resp.prepare(request)
        # Chunks already due go out in one write: fewer syscalls, same timestamps.
        pending = [enc.head] if enc.head else []
        strike = min(b.fault_after_tokens, len(enc.tokens))
        for i in range(len(enc.tokens) + 1):
            if i == strike and b.fault == "reset_mid":
                await _flush(resp, pending, rec, i)
                _reset(request)
                return resp
            if i == strike and b.fault == "truncated":
                await _flush(resp, pending, rec, i)
                await resp.write_eof()
                return resp
            if i == strike and b.fault in ("malformed", "empty_choices"):
                pending.append(_MALFORMED if b.fault == "malformed" else enc.empty)
            if i == len(enc.tokens):
                break
            delay = start + offsets[i] - loop.time()
            if delay > 0:
                await _flush(resp, pending, rec, i)
                await asyncio.sleep(delay)
            pending.append(enc.tokens[i])
        pending.append(enc.tail)
        await _flush(resp, pending, rec, len(enc.tokens))
        rec.done_ns = time.perf_counter_ns()
        return resp


async def _flush(resp: web.StreamResponse, pending: list[bytes], rec: Attempt, tokens: int) -> None:
    """Send the pending chunks; stamp the tokens among them (up to `tokens`) with the send time."""
    if pending:
        rec.token_ns.extend([time.perf_counter_ns()] * (tokens - len(rec.token_ns)))
        await resp.write(b"".join(pending))
        pending.clear()


async def _start(app: _App, host: str, port: int) -> tuple[web.AppRunner, int]:
    # handler_cancellation ends a stalled or streaming handler when its client goes away.
    runner = web.AppRunner(app.build(), access_log=None, handler_cancellation=True,
                           shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    return runner, runner.addresses[0][1]


class ScriptedServer:
    """The scripted server on a background thread with its own event loop, for in-process tests.

    `with ScriptedServer(script) as srv: openai.OpenAI(base_url=srv.base_url, api_key="k")`;
    `srv.log` lists every attempt (`Attempt`) in arrival order.  `serial=True` answers one request
    at a time (the others wait, as on a server with one slot); the script's timings then start
    when a request's turn comes.
    """

    def __init__(self, script: Script = Script(), host: str = "127.0.0.1", port: int = 0,
                 api_key: str | None = None, model: str = "scripted", serial: bool = False) -> None:
        self._app = _App(script, api_key, model, serial)
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scripted-server",
                                        daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def log(self) -> list[Attempt]:
        return self._app.log

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> ScriptedServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(_start(self._app, self.host, self.port), self._loop)
        try:
            self._runner, self.port = future.result(timeout=10)
        except OSError as exc:
            self.stop()
            raise EndpointError(f"scripted server cannot listen on {self.host}:{self.port}: {exc}") from exc
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ScriptedProcess:
    """The scripted server in a child process, so it does not share the client's core.

    `ScriptedProcess(["--ttft", "0.05", "--tokens", "20"])` takes the CLI's options, starts it on a
    free port, waits for /v1/models and sets `base_url`; stop() (or leaving `with`) ends it.
    """

    def __init__(self, args: Sequence[str] = (), host: str = "127.0.0.1",
                 api_key: str | None = None, timeout_s: float = 20.0) -> None:
        cmd = [sys.executable, "-m", "toolkit.testing.scripted_server", "--host", host, "--port", "0",
               *(["--api-key", api_key] if api_key else []), *args]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = self._proc.stdout.readline().strip()  # the child prints its URL when bound
        if not self.base_url.startswith("http://"):
            self.stop()
            raise EndpointError(f"scripted server `{' '.join(cmd)}` exited with code "
                                f"{self._proc.returncode} before listening; its stderr says why")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._get("/v1/models")
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EndpointError(f"{self.base_url}/models did not answer: {exc}") from exc
                time.sleep(0.05)

    def _get(self, path: str) -> object:
        request = urllib.request.Request(self.base_url.removesuffix("/v1") + path, headers=self._auth)
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def fetch_log(self) -> list[dict]:
        """The child's attempt log, one dict per attempt with the fields of `Attempt`."""
        return self._get("/_scripted/log")  # type: ignore[return-value]

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()

    def __enter__(self) -> ScriptedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse_mix(text: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (part.split("=") for part in text.split(",") if part)}
    except ValueError as exc:
        raise ParameterError(f'--fault-mix "{text}": expected name=probability,...') from exc


async def _serve(app: _App, host: str, port: int) -> None:
    runner, port = await _start(app, host, port)
    print(f"http://{host}:{port}/v1", flush=True)  # the parent reads the URL from this line
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


_CLI_FIELDS = (  # flag, Behaviour field, type, help
    ("--ttft", "ttft_s", float, "seconds before the first token"),
    ("--gap", "gap_s", float, "seconds between tokens"),
    ("--tokens", "tokens", int, "tokens per answer"),
    ("--text", "text", str, "answer text, split into tokens at word starts (overrides --tokens)"),
    ("--cached-tokens", "cached_tokens", int, "usage.prompt_tokens_details.cached_tokens"),
    ("--reasoning-tokens", "reasoning_tokens", int, "usage.completion_tokens_details.reasoning_tokens"),
    ("--processing-ms", "processing_ms", float, "openai-processing-ms header value"),
    ("--retry-after", "retry_after_s", float, "Retry-After seconds sent with a 429"),
    ("--fault-after", "fault_after_tokens", int, "tokens sent before a mid-stream fault"),
    ("--stall", "stall_s", float, "seconds a stall lasts"),
)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m toolkit.testing.scripted_server",
                                description="Scripted OpenAI-compatible server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--api-key", default=None, help="answer 401 unless Authorization: Bearer KEY")
    p.add_argument("--model", default="scripted", help="the model /v1/models lists")
    for flag, name, kind, text in _CLI_FIELDS:
        p.add_argument(flag, dest=name, type=kind, default=getattr(Behaviour(), name), help=text)
    p.add_argument("--fault-mix", default="", help="e.g. 429=0.05,500=0.02,reset_mid=0.01")
    p.add_argument("--max-faults", type=int, default=3, help="faulted attempts per request, at most")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    default = Behaviour(**{name: getattr(a, name) for _, name, _, _ in _CLI_FIELDS})
    script = (Script.fault_mix(_parse_mix(a.fault_mix), a.seed, a.max_faults, default)
              if a.fault_mix else Script(default))
    asyncio.run(_serve(_App(script, a.api_key, a.model), a.host, a.port))


if __name__ == "__main__":
    main()
