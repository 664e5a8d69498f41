"""Sending replayed requests on time from one event loop.

Building a request cost the openai client 1 to 3 ms of CPU here, and 5 to 15 ms when a neighbour
on the machine slows the core: any request due meanwhile goes out late.  So each request is built
ahead, one at a time and only in a quiet moment (no built request due within `QUIET_S`), and then held
in a send hook (`hold_until_due`) until it is due; the bookkeeping after an answer
(the journal) waits for a quiet moment too.  Measured at 50 Poisson arrivals/s against the scripted
server on 2 cores, this took the p99 send lag from 10 to 30 ms (each request built when due) to about
1.5 ms; a run disturbed by other work on the machine still sees up to about 12 ms.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from toolkit.pacing import Due

START_S = 0.025  # a phase's first request is due this long after it starts: time to build it
AHEAD_S = 0.5  # a request is built at most this long before it is due
QUIET_S = 0.020  # a build, or a journal write, waits while a built request is due within this
EARLY_WAKE_S = 0.001  # a held request wakes this early and yields to the loop until it is due


@dataclass
class Release:
    """One replayed request: when it is due, and when the hook let it go (None: not sent)."""

    request_id: str
    sequence: int
    due: Due
    sent_s: float | None = None  # time.monotonic() at the send
    started_at: dt.datetime | None = None
    built: asyncio.Event = field(default_factory=asyncio.Event)  # waiting in the hook, or failed before it
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # sent, or failed

    def send_now(self) -> None:
        self.sent_s, self.started_at = time.monotonic(), dt.datetime.now(dt.UTC)
        self.gone.set()

    def settle(self) -> None:
        """Whatever became of the request, nothing waits for it any more."""
        self.built.set()
        self.gone.set()


# the request the current task sends: each task has its own context, so the one hook finds its request
_RELEASE: ContextVar[Release | None] = ContextVar("replay_release", default=None)


def hold(release: Release) -> None:
    """Make the current task's next HTTP request wait in `hold_until_due` for `release`'s due time."""
    _RELEASE.set(release)


async def hold_until_due() -> None:
    """A send hook (`StreamClient.before_send`): hold a replayed request, already built, until it is
    due, and note the send."""
    release = _RELEASE.get()
    if release is not None:
        release.built.set()
        await sleep_until(release.due.monotonic_s)
        release.send_now()


async def sleep_until(due: float) -> None:
    """Sleep until `due` on the event loop's clock, then yield to the loop until it is reached: the loop's
    timer wakes up to a millisecond late (epoll rounds its timeout up), and a spin of at most
    `EARLY_WAKE_S` halves the p99 of the wake-up delay on a busy 2-core machine."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, due - EARLY_WAKE_S - loop.time()))
    while loop.time() < due:
        await asyncio.sleep(0)  # other requests' streams keep running meanwhile


class Pacer:
    """The requests built and not yet sent, so that other work can wait for a quiet moment."""

    def __init__(self) -> None:
        self._held: list[Release] = []

    def add(self, release: Release) -> None:
        self._held.append(release)

    async def quiet(self) -> None:
        """Return once no built request is due within `QUIET_S`."""
        loop = asyncio.get_running_loop()
        while True:
            self._held = [release for release in self._held if not release.gone.is_set()]
            if not self._held:
                return
            first = min(self._held, key=lambda release: release.due.monotonic_s)
            if first.due.monotonic_s - loop.time() > QUIET_S:
                return
            await first.gone.wait()
