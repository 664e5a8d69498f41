"""When the collector may send: request and token budgets per minute, and the seeded open-loop
schedule with the rate it actually achieved.

Open-loop due times are absolute offsets from a phase's start, so a late wake-up delays one request
and not every later one; `achieved_rate` counts every delay of the client against it.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


class RateLimiter:
    """Requests-per-minute and tokens-per-minute budgets as a sliding one-minute window."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self._sent: deque[tuple[float, int]] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if self.rpm is None and self.tpm is None:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._sent and now - self._sent[0][0] >= 60:
                    self._sent.popleft()
                requests_ok = self.rpm is None or len(self._sent) < self.rpm
                tokens_ok = self.tpm is None or sum(t for _, t in self._sent) + tokens <= self.tpm or not self._sent
                if requests_ok and tokens_ok:
                    self._sent.append((now, tokens))
                    return
                await asyncio.sleep(max(60 - (now - self._sent[0][0]), 0.01))


def arrival_offsets(count: int, rate_per_s: float, rng: random.Random) -> list[float]:
    """Due times, in seconds after a phase starts, of `count` open-loop requests: the first at 0,
    then exponential (Poisson) gaps drawn from `rng`, scaled so that the last falls at
    (count - 1) / rate_per_s.

    The scaling conditions the Poisson process on delivering its rate: unscaled, 200 arrivals miss
    it by 7% (one standard deviation) by chance alone, and a client falling behind could not be told
    apart from an unlucky draw.  The gaps stay as irregular as a Poisson process's.
    """
    if count <= 0:
        return []
    gaps = [rng.expovariate(rate_per_s) for _ in range(count - 1)]
    total = sum(gaps)
    scale = (count - 1) / rate_per_s / total if total > 0 else 0.0
    return list(itertools.accumulate((gap * scale for gap in gaps), initial=0.0))


def achieved_rate(sent_s: Sequence[float], origin_s: float) -> float | None:
    """Requests sent per second: the requests after the first over the time from the schedule's
    start (when the first was due) to the last send, as the target counts them (`arrival_offsets`
    puts the last due time at (count - 1) / rate).  Every delay of the client up to its last send
    counts against it, so a client that falls behind cannot report the target.  None for fewer than
    two requests."""
    return rate_over(len(sent_s), max(sent_s) - origin_s if sent_s else None)


def rate_over(requests: int, span_s: float | None) -> float | None:
    """`requests` sent over `span_s` seconds from when the first fell due to the last send: the ones
    after the first, per second (`achieved_rate`).  None for fewer than two or no span."""
    if requests < 2 or span_s is None or span_s <= 0:
        return None
    return (requests - 1) / span_s


@dataclass(frozen=True)
class Due:
    """When an open-loop request falls due: on the event loop's clock and as a UTC time."""

    monotonic_s: float
    at: dt.datetime


class WallClock:
    """UTC times read off the monotonic clock from one anchor: a request's `started_at` and its monotonic
    send time then cannot disagree, as two separate clock reads can when the process is descheduled
    between them (milliseconds on a busy machine)."""

    def __init__(self) -> None:
        self.wall, self.monotonic = dt.datetime.now(dt.UTC), time.monotonic()

    def at(self, monotonic_s: float) -> dt.datetime:
        return self.wall + dt.timedelta(seconds=monotonic_s - self.monotonic)

    def monotonic_at(self, at: dt.datetime) -> float:
        return self.monotonic + (at - self.wall).total_seconds()

