"""The scripted server's HTTP side: the aiohttp handlers, the SSE and JSON bytes they send, the attempt log.

Every byte of an answer is encoded once per distinct (behaviour, request shape) and cached, so the
streaming loop only sleeps and writes: the server's own overhead stays far below the timings it plays.
"""
from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from functools import lru_cache, partial
from typing import Mapping

from aiohttp import web

from toolkit.testing.script import Behaviour, Script, is_status

_ERROR_TYPES = {401: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error",
                502: "bad_gateway", 503: "service_unavailable"}
_CREATED = int(time.time())
_DONE = b"data: [DONE]\n\n"
_MALFORMED = b'data: {"id": "broken", "choices": [\n\n'


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


class ScriptedApp:
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
        if b.fault is not None and is_status(b.fault):
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

