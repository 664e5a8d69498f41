"""Time one streamed request: TTFT, every inter-token gap, end to end, usage, logprobs and the
server's own timings where it reports them (llama.cpp's `timings`: prefill, decode, cached tokens).

Clock: `time.perf_counter_ns`, started when the HTTP client sends the request (`stamp_send`, an httpx
request hook; else just before the request is handed to the openai client), so TTFT includes
connection set-up, the server's queue and prompt processing, as a user sees it, but not the openai
SDK's own request building (about 0.7 ms, with spikes of several ms under load).  Only
chunks that carry content count as tokens (a role-only first chunk of a chat stream does not).
A stream that ends with neither a finish reason nor `[DONE]` was cut short: it raises `DroppedStream`
rather than passing for a (short or empty) answer.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx2
from openai import APIError, AsyncOpenAI

Api = Literal["completions", "chat"]
_NS = 1e-9
_SENT_NS = "frontier_sent_ns"


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


async def stamp_send(request: httpx2.Request) -> None:
    """httpx request hook: note when the request goes out, for `stream_request`'s clock."""
    request.extensions[_SENT_NS] = time.perf_counter_ns()


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


async def _sse_events(response: httpx2.Response) -> AsyncIterator[tuple[int, str]]:
    """(arrival time, data) of each server-sent event, read to the end of the body so the connection
    can be reused; the time is taken when the event's first line arrives, before any parsing."""
    data: list[str] = []
    arrived = 0
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            if not data:
                arrived = time.perf_counter_ns()
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield arrived, "\n".join(data)
            data = []
    if data:
        yield arrived, "\n".join(data)


async def stream_request(client: AsyncOpenAI, request: Request, *, timeout_s: float,
                         request_id: str | None = None) -> StreamResult:
    """Send `request` with streaming and time it; API and transport errors propagate to the caller.

    `request_id` goes out as OpenAI's `X-Client-Request-Id` tracing header, so server logs can be
    matched to rows of the requests table.
    """
    body = request.body()
    if request_id is not None:
        body["extra_headers"] = {"X-Client-Request-Id": request_id}
    resource = client.chat.completions if request.api == "chat" else client.completions
    start = time.perf_counter_ns()
    raw = await resource.with_raw_response.create(
        **body, stream=True, stream_options={"include_usage": True}, timeout=timeout_s)
    start = raw.http_request.extensions.get(_SENT_NS, start)
    server_s = _processing_seconds(raw.headers)
    pieces: list[str] = []
    token_times: list[int] = []
    logprobs: list[float] = []
    usage = finish_reason = timings = None
    done = False
    response = raw.http_response
    try:
        # Events are decoded here rather than by the SDK's chunk models, which cost several times
        # more CPU per chunk; at 64 streams that CPU time delayed every timestamp (benchmarks/).
        async for arrived, data in _sse_events(response):
            if data.startswith("[DONE]"):
                done = True
                continue
            chunk = json.loads(data)
            if not isinstance(chunk, dict):
                raise json.JSONDecodeError("server-sent event is not a JSON object", data, 0)
            if chunk.get("error"):  # vLLM and llama.cpp report a failure during generation this way
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else None
                raise APIError(message if isinstance(message, str) and message else
                               "An error occurred during streaming", response.request, body=error)
            if chunk.get("usage") is not None:
                usage = usage_from(chunk["usage"])
            if "timings" in chunk:  # llama.cpp sends running timings; the last chunk's are final
                timings = timings_from(chunk["timings"])
            text, finish, chunk_logprobs = _chunk_content(chunk, request.api)
            finish_reason = finish or finish_reason
            logprobs.extend(chunk_logprobs)
            if text:
                pieces.append(text)
                token_times.append(arrived)
    finally:
        await response.aclose()
    end = time.perf_counter_ns()
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
