"""Time one streamed request: TTFT, every inter-token gap, end to end, usage and logprobs.

Clock: `time.perf_counter_ns`, started when the HTTP client sends the request (`stamp_send`, an httpx
request hook; else just before the request is handed to the openai client), so TTFT includes
connection set-up, the server's queue and prompt processing, as a user sees it, but not the openai
SDK's own request building (about 0.7 ms, with spikes of several ms under load).  Only
chunks that carry content count as tokens (a role-only first chunk of a chat stream does not).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx2
from openai import AsyncOpenAI

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


def _processing_seconds(headers: Any) -> float | None:
    value = headers.get("openai-processing-ms") if headers is not None else None
    try:
        return float(value) / 1000 if value is not None else None
    except ValueError:
        return None


def _chunk_content(chunk: Any, api: Api) -> tuple[str, str | None, list[float]]:
    """Text, finish reason and token logprobs carried by one chunk."""
    if not chunk.choices:
        return "", None, []
    choice = chunk.choices[0]
    if api == "chat":
        text = choice.delta.content or "" if choice.delta is not None else ""
        content = getattr(choice.logprobs, "content", None) if choice.logprobs is not None else None
        logprobs = [entry.logprob for entry in content or [] if entry.logprob is not None]
    else:
        text = choice.text or ""
        token_logprobs = getattr(choice.logprobs, "token_logprobs", None) if choice.logprobs is not None else None
        logprobs = [value for value in token_logprobs or [] if value is not None]
    return text, choice.finish_reason, logprobs


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
    stream = raw.parse()
    pieces: list[str] = []
    token_times: list[int] = []
    logprobs: list[float] = []
    usage = finish_reason = None
    async for chunk in stream:
        now = time.perf_counter_ns()
        if getattr(chunk, "usage", None) is not None:
            usage = usage_from(chunk.usage)
        text, finish, chunk_logprobs = _chunk_content(chunk, request.api)
        finish_reason = finish or finish_reason
        logprobs.extend(chunk_logprobs)
        if text:
            pieces.append(text)
            token_times.append(now)
    end = time.perf_counter_ns()
    ttft_s = (token_times[0] - start) * _NS if token_times else None
    gaps = [(later - earlier) * _NS for earlier, later in zip(token_times, token_times[1:])]
    return StreamResult(
        text="".join(pieces), ttft_s=ttft_s, e2e_s=(end - start) * _NS, tbt_s=gaps,
        server_s=server_s, usage=usage,
        logprob_tokens=len(logprobs) if logprobs else None,
        logprob_mean=math.fsum(logprobs) / len(logprobs) if logprobs else None,
        finish_reason=finish_reason,
    )
