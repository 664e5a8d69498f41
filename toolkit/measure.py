"""Time one streamed request: TTFT, every inter-token gap, end to end, usage, logprobs and the
server's own timings where it reports them (llama.cpp's `timings`: prefill, decode, cached tokens).

Clock: `time.perf_counter_ns`.  It starts when the request's bytes are handed to the socket, less the
time it took to open a connection where the request needed a new one (`stream_client.SendTimes`), so
TTFT includes connection set-up, the server's queue and prompt processing, as a user sees it, but not
the client's own request building nor the event loop's delay in getting to the write (up to several
ms when 64 streams share the loop).  A chunk's time is taken when the network read that brought it
returns, before any parsing.  Only chunks that carry content count as tokens (a role-only first chunk
of a chat stream does not).  A stream that ends with neither a finish reason nor `[DONE]` was cut
short: it raises `DroppedStream` rather than passing for a (short or empty) answer.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import httpx2
from openai import APIError

from toolkit.stream_client import SendTimes, StreamClient, client_timeout, status_error, transport_error

Api = Literal["completions", "chat"]
_NS = 1e-9


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ServerTimings:
    """The server's own account of one request (llama.cpp's `timings` object)."""

    prefill_s: float | None
    decode_s: float | None
    cached_tokens: int | None


class DroppedStream(Exception):
    """The response stream ended without a finish reason or `[DONE]`: the answer may be cut short."""


@dataclass(frozen=True, slots=True)
class StreamResult:
    """What one successful streamed request measured."""

    text: str
    ttft_s: float | None
    e2e_s: float
    tbt_s: list[float]
    server_s: float | None
    usage: Usage | None
    logprob_tokens: int | None
    logprob_mean: float | None
    finish_reason: str | None
    timings: ServerTimings | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """One request body, independent of which API carries it."""

    api: Api
    model: str
    prompt: str | list[dict[str, str]]
    max_tokens: int
    temperature: float
    stop: tuple[str, ...] = ()
    logprobs: bool = False

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens,
                                "temperature": self.temperature}
        if self.api == "chat":
            body["messages"] = self.prompt
            if self.logprobs:
                body["logprobs"] = True
        else:
            body["prompt"] = self.prompt
            if self.logprobs:
                body["logprobs"] = 1
        if self.stop:
            body["stop"] = list(self.stop)
        return body


def usage_from(raw: Any) -> Usage | None:
    """Read an OpenAI usage object (or dict), including cached and reasoning token details."""
    if raw is None:
        return None
    get = raw.get if isinstance(raw, dict) else (lambda key: getattr(raw, key, None))
    prompt_details = get("prompt_tokens_details")
    completion_details = get("completion_tokens_details")
    return Usage(
        prompt_tokens=get("prompt_tokens"),
        completion_tokens=get("completion_tokens"),
        cached_tokens=_detail(prompt_details, "cached_tokens"),
        reasoning_tokens=_detail(completion_details, "reasoning_tokens"),
    )


def _detail(details: Any, key: str) -> int | None:
    if details is None:
        return None
    return details.get(key) if isinstance(details, dict) else getattr(details, key, None)


def timings_from(raw: Any) -> ServerTimings | None:
    """Read llama.cpp's `timings` (`prompt_ms`, `predicted_ms`, `cache_n`); None when absent or not a dict."""
    if not isinstance(raw, dict):
        return None

    def seconds(key: str) -> float | None:
        value = raw.get(key)
        return float(value) / 1000 if isinstance(value, int | float) else None

    cached = raw.get("cache_n")
    return ServerTimings(seconds("prompt_ms"), seconds("predicted_ms"),
                         cached if isinstance(cached, int) else None)


def _processing_seconds(headers: Any) -> float | None:
    value = headers.get("openai-processing-ms") if headers is not None else None
    try:
        return float(value) / 1000 if value is not None else None
    except ValueError:
        return None


def _chunk_content(chunk: dict[str, Any], api: Api) -> tuple[str, str | None, list[float]]:
    """Text, finish reason and token logprobs carried by one chunk (a decoded SSE event)."""
    choices = chunk.get("choices") or []
    if not choices:
        return "", None, []
    choice = choices[0]
    logprobs = choice.get("logprobs") or {}
    # chat, and llama-server's completions: {"content": [{"token", "logprob"}, ...]};
    # OpenAI's legacy completions: {"tokens": [...], "token_logprobs": [...]}
    values = logprobs.get("token_logprobs") or [entry.get("logprob") for entry in logprobs.get("content") or []]
    if api == "chat":
        text = (choice.get("delta") or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    return text, choice.get("finish_reason"), [value for value in values if value is not None]


async def _sse_events(body: aiohttp.StreamReader) -> AsyncIterator[tuple[int, bytes]]:
    """(arrival time, data) of each server-sent event, read to the end of the body so the connection
    can be reused.  An event's time is when the network read that brought its first byte returned,
    before any parsing; the bytes are split into events here (a blank line ends one), which costs a
    fraction of decoding them to text lines first."""
    pending = b""
    since = 0
    async for chunk in body.iter_any():
        arrived = time.perf_counter_ns()
        if not pending:
            since = arrived
        pending += chunk
        if b"\r" in pending:  # CRLF or CR line ends; a last CR may be the first half of a CRLF
            held = pending.endswith(b"\r")
            pending = pending[:-1] if held else pending
            pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if held else b"")
        if b"\n\n" not in pending:
            continue
        *blocks, pending = pending.split(b"\n\n")
        for block in blocks:
            data = _event_data(block)
            if data is not None:
                yield since, data
            since = arrived  # the events after the first began in this read
    if pending:
        data = _event_data(pending)
        if data is not None:
            yield since, data


def _event_data(block: bytes) -> bytes | None:
    """The data of one event (its `data:` lines joined by newlines); None for an event without data
    (a comment such as a keep-alive `: ping`)."""
    if block.startswith(b"data: ") and b"\n" not in block:
        return block[6:]
    lines = [line[5:].removeprefix(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


async def stream_request(client: StreamClient, request: Request, *, timeout_s: float | None = None,
                         request_id: str | None = None) -> StreamResult:
    """Send `request` with streaming and time it; API and transport errors propagate to the caller
    as the openai SDK's exceptions (`stream_client`).

    `request_id` goes out as OpenAI's `X-Client-Request-Id` tracing header, so server logs can be
    matched to rows of the requests table.  `timeout_s` is the client's (`StreamClient.timeout_s`)
    unless given.
    """
    path = "/chat/completions" if request.api == "chat" else "/completions"
    url = client.url(path)
    body = request.body()
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    data = json.dumps(body).encode()
    headers = {"X-Client-Request-Id": request_id} if request_id is not None else None
    timeout = {} if timeout_s is None or timeout_s == client.timeout_s else {"timeout": client_timeout(timeout_s)}
    session = await client.session()
    for hook in client.before_send:
        await hook()
    pieces: list[str] = []
    token_times: list[int] = []
    logprobs: list[float] = []
    usage = finish_reason = timings = None
    done = False
    sent = SendTimes()
    started = time.perf_counter_ns()
    try:
        async with session.post(url, data=data, headers=headers, proxy=client.proxy, trace_request_ctx=sent,
                                **timeout) as response:
            if response.status >= 400:
                raise status_error(response.status, list(response.headers.items()), await response.read(), url)
            server_s = _processing_seconds(response.headers)
            async for arrived, event in _sse_events(response.content):
                if event.startswith(b"[DONE]"):
                    done = True
                    continue
                text = event.decode(errors="replace")  # as a str, json need not guess the encoding
                chunk = json.loads(text)
                if not isinstance(chunk, dict):
                    raise json.JSONDecodeError("server-sent event is not a JSON object", text, 0)
                if chunk.get("error"):  # vLLM and llama.cpp report a failure during generation this way
                    error = chunk["error"]
                    message = error.get("message") if isinstance(error, dict) else None
                    raise APIError(message if isinstance(message, str) and message else
                                   "An error occurred during streaming", httpx2.Request("POST", url), body=error)
                if chunk.get("usage") is not None:
                    usage = usage_from(chunk["usage"])
                if "timings" in chunk:  # llama.cpp sends running timings; the last chunk's are final
                    timings = timings_from(chunk["timings"])
                text, finish, chunk_logprobs = _chunk_content(chunk, request.api)
                finish_reason = finish or finish_reason
                if chunk_logprobs:
                    logprobs.extend(chunk_logprobs)
                if text:
                    pieces.append(text)
                    token_times.append(arrived)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise transport_error(exc, url) from exc
    end = time.perf_counter_ns()
    start = sent.sent_ns(started)
    if not done and finish_reason is None:
        raise DroppedStream(f"the stream ended without a finish reason or [DONE] after {len(pieces)} "
                            f"content chunks ({(end - start) * _NS * 1000:.0f} ms)")
    ttft_s = (token_times[0] - start) * _NS if token_times else None
    gaps = [(later - earlier) * _NS for earlier, later in zip(token_times, token_times[1:])]
    return StreamResult(
        text="".join(pieces), ttft_s=ttft_s, e2e_s=(end - start) * _NS, tbt_s=gaps,
        server_s=server_s, usage=usage,
        logprob_tokens=len(logprobs) if logprobs else None,
        logprob_mean=math.fsum(logprobs) / len(logprobs) if logprobs else None,
        finish_reason=finish_reason, timings=timings,
    )
