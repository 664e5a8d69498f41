"""Serve an aiohttp application on loopback from a background thread, for in-process test servers.

The thread runs its own event loop, so a test's synchronous client (the `openai` client, httpx2)
talks to the server over a real socket while the test body stays plain blocking code.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Self

from aiohttp import web

from toolkit.errors import EndpointError


async def start_runner(app: web.Application, host: str, port: int, *, handler_cancellation: bool = False,
                       backlog: int = 128) -> tuple[web.AppRunner, int]:
    """Start serving `app` on host:port (0 picks a free port); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=handler_cancellation,
                           shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog)
    await site.start()
    return runner, runner.addresses[0][1]


class BackgroundServer:
    """An aiohttp application on a daemon thread with its own event loop.

    `start()` binds (port 0 picks a free port, then `port` holds the real one) and `stop()` runs the
    application's shutdown hooks (`app.on_shutdown`) and closes the loop; `with` does both.
    `handler_cancellation` ends a handler when its client goes away (a stalled or streaming answer).
    """

    def __init__(self, app: web.Application, *, name: str, host: str, port: int,
                 handler_cancellation: bool = False, backlog: int = 128) -> None:
        self.host, self.port, self.name = host, port, name
        self._application = app
        self._handler_cancellation, self._backlog = handler_cancellation, backlog
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> Self:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_runner(self._application, self.host, self.port,
                         handler_cancellation=self._handler_cancellation, backlog=self._backlog), self._loop)
        try:
            self._runner, self.port = future.result(timeout=10)
        except OSError as exc:
            self.stop()
            raise EndpointError(f"{self.name} cannot listen on {self.host}:{self.port}: {exc}") from exc
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
