"""The HTTP client every streamed request goes through: one aiohttp connection pool per endpoint.

Why not the `openai` SDK or httpx2: measured against the scripted server at 64 in flight on 2 cores
(benchmarks/harness_throughput.py), the SDK's request building (`_transform`, `deepcopy`, pydantic)
and httpx2's pure-Python HTTP/1.1 stack (h11, httpcore2's pool) cost ~600 us of CPU per request of 8
chunks, against ~150 us for aiohttp with its C parser; at 64 streams x 100 chunks/s that CPU time is
what delays every timestamp.  The request is the one the SDK sends, for every endpoint (OpenAI
proper included): `POST {base_url}/chat/completions` or `/completions`, the same JSON body,
`Authorization: Bearer <key>` (the key read from the environment, held in memory only) and the
SDK's `OpenAI-Organization` / `OpenAI-Project` from `OPENAI_ORG_ID` / `OPENAI_PROJECT_ID` when set.
The certificate store is httpcore2's (the one the SDK used), proxies come from the environment as
httpx2 reads them, and failures surface as the SDK's exceptions (`openai.RateLimitError`,
`APITimeoutError`, ...), so the retry rules in `retries.py` see what they saw before.
"""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpcore2
import httpx2
import openai
import yarl

log = logging.getLogger("toolkit")

SendHook = Callable[[], Awaitable[None]]
_ACCEPT_ALLOWANCE_S = 0.05

# the SDK's mapping of an HTTP status to its exception class (openai's `_make_status_error`)
_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
    404: openai.NotFoundError, 409: openai.ConflictError, 422: openai.UnprocessableEntityError,
    429: openai.RateLimitError}


class SendTimes:
    """When one request went out, filled in by aiohttp's trace hooks: the moment its bytes were handed
    to the socket, and how long opening a connection for it took (0 on a pooled connection)."""

    __slots__ = ("wire_ns", "connecting_since_ns", "connect_ns")

    def __init__(self) -> None:
        self.wire_ns: int | None = None
        self.connecting_since_ns = 0
        self.connect_ns = 0

    def sent_ns(self, fallback_ns: int) -> int:
        """The moment the request's timings count from: when its bytes reached the socket, moved back by
        the time it spent opening a connection (network time, which counts), so only the client's own
        delay between starting the request and writing it (event-loop turns) is left out;
        `fallback_ns` (taken before the request started) when no write was seen."""
        return (self.wire_ns if self.wire_ns is not None else fallback_ns) - self.connect_ns


async def _connecting(session: object, context: Any, params: object) -> None:
    context.trace_request_ctx.connecting_since_ns = time.perf_counter_ns()


async def _connected(session: object, context: Any, params: object) -> None:
    times = context.trace_request_ctx
    times.connect_ns = time.perf_counter_ns() - times.connecting_since_ns


async def _on_the_wire(session: object, context: Any, params: object) -> None:
    times = context.trace_request_ctx
    if times.wire_ns is None:  # headers and body leave together in the first write
        times.wire_ns = time.perf_counter_ns()


def _trace_config() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(_connecting)
    trace.on_connection_create_end.append(_connected)
    trace.on_request_chunk_sent.append(_on_the_wire)
    return trace


class StreamClient:
    """An endpoint's connection pool and request headers; `async with` (or `close()`) releases it.

    The aiohttp session is made on first use, inside the running event loop (aiohttp binds a session
    to its loop).  With keep-alive it then opens `max_connections` connections (TCP and TLS, no HTTP
    request) before the first request goes out: otherwise the first requests of a run, started
    together, each open a connection to a server busy accepting the others, and that set-up, which
    counts in TTFT, is an artefact of starting together (measured against the scripted server at 64
    in flight: TTFT 18-64 ms above the server's own in that first wave, 8-16 ms with the pool opened
    ahead, the rest being the server's queue).  A request that needs a new connection later (the
    server closed an idle one) still counts its set-up in its TTFT.  While any client is open, the
    objects that exist then (every imported module, the plan) sit out of the garbage collector's way
    (`gc.freeze`, undone when the last client closes): a full collection walked all ~150,000 of them
    and stalled the event loop for 40-200 ms, a delay every timestamp taken meanwhile carried.
    `before_send` hooks run before the send (replay holds each request there until it is due).
    `keep_alive=False` opens a new connection per request (llama-server closes its connection after
    every streamed answer while announcing keep-alive).
    """

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float, max_connections: int,
                 keep_alive: bool = True, before_send: Sequence[SendHook] = ()) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s, self.max_connections, self.keep_alive = timeout_s, max_connections, keep_alive
        self.before_send = tuple(before_send)
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                        "Accept": "application/json", "User-Agent": "frontier-toolkit"}
        for header, variable in (("OpenAI-Organization", "OPENAI_ORG_ID"), ("OpenAI-Project", "OPENAI_PROJECT_ID")):
            if os.environ.get(variable):
                self.headers[header] = os.environ[variable]
        self.proxy = _environment_proxy(self.base_url)
        self._session: aiohttp.ClientSession | None = None
        self._opening = asyncio.Lock()

    async def session(self) -> aiohttp.ClientSession:
        """The session, its connections opened (the first caller opens them; the others wait)."""
        if self._session is None:
            async with self._opening:
                if self._session is None:
                    connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0,
                                                     force_close=not self.keep_alive, ssl=_ssl_context())
                    session = aiohttp.ClientSession(connector=connector, timeout=client_timeout(self.timeout_s),
                                                    headers=self.headers,
                                                    trace_configs=[_trace_config()])
                    try:
                        if self.keep_alive:
                            await self._open_connections(session)
                    except BaseException:
                        await session.close()
                        raise
                    _freeze_heap()
                    self._session = session
        return self._session

    async def _open_connections(self, session: aiohttp.ClientSession) -> None:
        """Open the pool's connections and leave them idle in it: a connection that cannot be opened is
        left to the request that needs it, which reports the failure."""
        probe = aiohttp.ClientRequest("GET", yarl.URL(self.base_url), loop=asyncio.get_running_loop(),
                                      proxy=yarl.URL(self.proxy) if self.proxy else None)
        opened = await asyncio.gather(*(session.connector.connect(probe, [], session.timeout)
                                        for _ in range(self.max_connections)), return_exceptions=True)
        failures = [result for result in opened if isinstance(result, BaseException)]
        for result in opened:
            if not isinstance(result, BaseException):
                result.release()
        for failure in failures:
            if not isinstance(failure, aiohttp.ClientError | OSError | asyncio.TimeoutError):
                raise failure
        # Over plain TCP the kernel completes a connection before the server's event loop accepts it;
        # a server still accepting dozens of them delays the first requests it reads (~6 ms at 16 in
        # flight against the scripted server).  A pause far shorter than any run lets it catch up.
        await asyncio.sleep(_ACCEPT_ALLOWANCE_S)
        if failures:
            log.debug("%s: opened %d of %d connections ahead (%s)", self.base_url, len(opened) - len(failures),
                      len(opened), failures[0])

    def url(self, path: str) -> str:
        return self.base_url + path

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            _thaw_heap()

    async def __aenter__(self) -> StreamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """httpx2's timeout of `seconds` (the SDK's `timeout=`): for the connection, including the wait for a
    free one, and for each read, with no limit on the whole stream."""
    return aiohttp.ClientTimeout(total=None, connect=seconds, sock_connect=seconds, sock_read=seconds)


_open_clients = 0


def _freeze_heap() -> None:
    global _open_clients
    if _open_clients == 0:
        gc.freeze()
    _open_clients += 1


def _thaw_heap() -> None:
    global _open_clients
    _open_clients -= 1
    if _open_clients == 0:
        gc.unfreeze()


def _environment_proxy(url: str) -> str | None:
    """The proxy httpx2 would take from the environment (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) for `url`."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass_environment(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(parts.scheme) or proxies.get("all")


_SSL_CONTEXT = None


def _ssl_context() -> object:
    global _SSL_CONTEXT  # built once: loading the certificate store takes tens of milliseconds
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = httpcore2.default_ssl_context()
    return _SSL_CONTEXT


def transport_error(exc: BaseException, url: str) -> openai.APIConnectionError:
    """An aiohttp failure (or a read that timed out) as the SDK reports it."""
    request = httpx2.Request("POST", url)
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return openai.APITimeoutError(request=request)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return openai.APIConnectionError(message=f"Connection error ({detail})", request=request)  # the SDK's words


def status_error(status: int, headers: Sequence[tuple[str, str]], content: bytes, url: str) -> openai.APIStatusError:
    """An HTTP error response as the SDK reports it: its exception class for the status, the message from the
    body's `error.message` where there is one, the parsed body and the response (Retry-After is read off it)."""
    response = httpx2.Response(status, headers=list(headers), content=content, request=httpx2.Request("POST", url))
    text = content.decode("utf-8", errors="replace").strip()
    message = f"Error code: {status}"
    try:
        body: object = json.loads(text)
    except ValueError:
        body = text
    else:
        error = body.get("error", body) if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
            message += f" - {error['message']}"
    data = body.get("error", body) if isinstance(body, dict) else body
    kind = _STATUS_ERRORS.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return kind(message, response=response, body=data)
