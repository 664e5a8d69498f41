"""An exact-match response cache in one SQLite file: the same request body to the same endpoint
gets the stored answer back, with the usage and timings of the request that first produced it.

The key hashes (endpoint host, model, request body as canonical JSON), so any change to the
prompt, the sampling settings or the output cap is a different entry.  Entries older than
`ttl_s` are ignored and deleted.  Hit and miss counts live in the same file, so `frontier cache
stats` reports them across runs.  One process with many coroutines may share a `ResponseCache`:
every call is a short synchronous transaction under a lock.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import DataFileError
from toolkit.measure import Request, StreamResult, Usage

log = logging.getLogger("toolkit")

DEFAULT_PATH = Path("data/cache/responses.sqlite")
FORMAT = "frontier-response-cache"
FORMAT_VERSION = "1"
_WAY_OUT = "remove it with `frontier cache clear --path {path}` (the cache only saves time and money)"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, stored_at REAL NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS responses_stored_at ON responses (stored_at);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def cache_key(endpoint: str, model: str, body: dict[str, Any]) -> str:
    """SHA-256 of (endpoint host, model, request body) as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps({"endpoint": endpoint, "model": model, "body": body}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def request_key(endpoint: str, request: Request) -> str:
    """The cache key of a `measure.Request` sent to `endpoint` (a host, never a URL with a key)."""
    return cache_key(endpoint, request.model, request.body())


@dataclass(frozen=True)
class CachedResponse:
    """A stored answer: its text and usage, and the timings of the request that produced it."""

    text: str
    usage: Usage | None
    ttft_s: float | None
    e2e_s: float
    tbt_s: list[float] = field(default_factory=list)
    server_s: float | None = None
    logprob_tokens: int | None = None
    logprob_mean: float | None = None
    finish_reason: str | None = None
    stored_at: dt.datetime | None = None

    @classmethod
    def from_result(cls, result: StreamResult) -> CachedResponse:
        return cls(result.text, result.usage, result.ttft_s, result.e2e_s, list(result.tbt_s), result.server_s,
                   result.logprob_tokens, result.logprob_mean, result.finish_reason)


@dataclass(frozen=True)
class CacheStats:
    path: Path
    hits: int
    misses: int
    entries: int
    size_bytes: int
    oldest: dt.datetime | None
    newest: dt.datetime | None

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else math.nan


class ResponseCache:
    """The SQLite response cache at `path` (created with its folder if missing).

    A file that is not SQLite, or an SQLite file that is not a response cache, raises
    `DataFileError` naming the path; `frontier cache clear --path PATH` removes it.
    `clock` (seconds since the epoch) is a parameter so expiry can be tested without waiting.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH, *, ttl_s: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if ttl_s is not None and not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0 or None, got {ttl_s!r}")
        self.path, self.ttl_s, self._clock = Path(path), ttl_s, clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise DataFileError(self.path, f"cannot open the response cache: {exc}") from exc
        try:
            self._setup()
        except DataFileError:
            self._db.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise DataFileError(self.path, f"not a readable response cache (SQLite: {exc}); "
                                + _WAY_OUT.format(path=self.path)) from exc
        self.purge_expired()

    def _setup(self) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise DataFileError(self.path, "is an SQLite database but not a frontier response cache "
                                f"(tables: {', '.join(sorted(tables))}); " + _WAY_OUT.format(path=self.path))
        # WAL with synchronous=NORMAL: a commit is an append without fsync, so a lookup (which
        # bumps a counter) stays well under a millisecond; a crash may lose only the last commits.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        stored = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        if not stored:
            self._db.executemany("INSERT INTO meta VALUES (?, ?)", [("format", FORMAT), ("version", FORMAT_VERSION)])
        elif stored.get("format") != FORMAT or stored.get("version") != FORMAT_VERSION:
            raise DataFileError(self.path, f"response cache format {stored.get('format')!r} version "
                                f"{stored.get('version')!r} is not {FORMAT!r} {FORMAT_VERSION!r}; "
                                + _WAY_OUT.format(path=self.path))
        self._db.executemany("INSERT OR IGNORE INTO counters VALUES (?, 0)", [("hits",), ("misses",)])

    def _expired_before(self) -> float | None:
        return None if self.ttl_s is None else self._clock() - self.ttl_s

    def get(self, key: str) -> CachedResponse | None:
        """The stored response for `key`, or None (a miss) if absent or expired; counts the lookup."""
        with self._lock:
            row = self._db.execute("SELECT stored_at, payload FROM responses WHERE key = ?", (key,)).fetchone()
            cutoff = self._expired_before()
            if row is not None and cutoff is not None and row[0] < cutoff:
                self._db.execute("DELETE FROM responses WHERE key = ?", (key,))
                row = None
            self._db.execute("UPDATE counters SET value = value + 1 WHERE name = ?",
                             ("misses" if row is None else "hits",))
        if row is None:
            return None
        return _decode(row[1], row[0], self.path, key)

    def put(self, key: str, response: StreamResult | CachedResponse) -> None:
        """Store (or replace) the response for `key`, stamped now."""
        if isinstance(response, StreamResult):
            response = CachedResponse.from_result(response)
        payload = json.dumps(_encode(response), ensure_ascii=False)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, self._clock(), payload))

    def purge_expired(self) -> int:
        """Delete entries older than the TTL; returns how many."""
        cutoff = self._expired_before()
        if cutoff is None:
            return 0
        with self._lock:
            return self._db.execute("DELETE FROM responses WHERE stored_at < ?", (cutoff,)).rowcount

    def stats(self) -> CacheStats:
        """Lookups counted so far (across processes and runs), live entries, file size and age span."""
        self.purge_expired()
        with self._lock:
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            entries, oldest, newest = self._db.execute(
                "SELECT COUNT(*), MIN(stored_at), MAX(stored_at) FROM responses").fetchone()
        size = sum(p.stat().st_size for p in _files(self.path) if p.exists())
        return CacheStats(self.path, counters.get("hits", 0), counters.get("misses", 0), entries, size,
                          _stamp(oldest), _stamp(newest))

    def clear(self) -> None:
        """Delete every entry and reset the counters."""
        with self._lock:
            self._db.execute("DELETE FROM responses")
            self._db.execute("UPDATE counters SET value = 0")
            self._db.execute("VACUUM")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class CacheHit:
    """A cache hit as the runner records it: the stored answer, served in `lookup_s` seconds."""

    response: CachedResponse
    lookup_s: float

    def as_result(self) -> StreamResult:
        """A StreamResult whose TTFT and e2e are the lookup time, with the stored text and usage."""
        r = self.response
        return StreamResult(text=r.text, ttft_s=self.lookup_s, e2e_s=self.lookup_s, tbt_s=[], server_s=None,
                            usage=r.usage, logprob_tokens=r.logprob_tokens, logprob_mean=r.logprob_mean,
                            finish_reason=r.finish_reason)


def lookup_or_none(cache: ResponseCache | None, key: str) -> CacheHit | None:
    """Look `key` up in `cache` (None means caching is off) and time the lookup with perf_counter_ns."""
    if cache is None:
        return None
    start = time.perf_counter_ns()
    response = cache.get(key)
    elapsed_s = (time.perf_counter_ns() - start) * 1e-9
    return None if response is None else CacheHit(response, elapsed_s)


def clear_path(path: str | Path) -> str:
    """Empty the cache at `path`; a file that is not a readable cache is deleted. Says what it did."""
    path = Path(path)
    if not path.exists():
        return f"{path}: no cache there"
    try:
        with ResponseCache(path) as cache:
            entries = cache.stats().entries
            cache.clear()
        return f"{path}: removed {entries} entries and reset the counters"
    except DataFileError as exc:
        for part in _files(path):
            part.unlink(missing_ok=True)
        return f"{path}: deleted the unreadable file ({exc})"


def _files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _stamp(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


def _encode(response: CachedResponse) -> dict:
    usage = response.usage
    return {
        "text": response.text, "ttft_s": response.ttft_s, "e2e_s": response.e2e_s, "tbt_s": response.tbt_s,
        "server_s": response.server_s, "logprob_tokens": response.logprob_tokens,
        "logprob_mean": response.logprob_mean, "finish_reason": response.finish_reason,
        "usage": None if usage is None else {"prompt_tokens": usage.prompt_tokens,
                                             "completion_tokens": usage.completion_tokens,
                                             "cached_tokens": usage.cached_tokens,
                                             "reasoning_tokens": usage.reasoning_tokens},
    }


def _decode(payload: str, stored_at: float, path: Path, key: str) -> CachedResponse:
    try:
        data = json.loads(payload)
        usage = None if data["usage"] is None else Usage(**data["usage"])
        return CachedResponse(data["text"], usage, data["ttft_s"], data["e2e_s"], data["tbt_s"], data["server_s"],
                              data["logprob_tokens"], data["logprob_mean"], data["finish_reason"],
                              _stamp(stored_at))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataFileError(path, f"entry {key[:12]}... is damaged ({exc}); "
                            + _WAY_OUT.format(path=path), field="payload") from exc


def _stats_command(args: argparse.Namespace) -> int:
    if not Path(args.path).exists():
        print(f"{args.path}: no cache yet (it is created by the first run with `cache: response`)")
        return 0
    with ResponseCache(args.path) as cache:
        stats = cache.stats()
    rate = "n/a" if math.isnan(stats.hit_rate) else f"{stats.hit_rate:.1%}"
    span = (f"{stats.oldest:%Y-%m-%d %H:%M:%S} .. {stats.newest:%Y-%m-%d %H:%M:%S} UTC"
            if stats.oldest and stats.newest else "-")
    print(f"path      {stats.path}\nentries   {stats.entries}\nsize      {stats.size_bytes / 1e6:.2f} MB\n"
          f"hits      {stats.hits}\nmisses    {stats.misses}\nhit rate  {rate}\nstored    {span}")
    return 0


def _clear_command(args: argparse.Namespace) -> int:
    print(clear_path(args.path))
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `frontier cache stats [--path]` and `frontier cache clear [--path]`."""
    cache = subparsers.add_parser("cache", help="inspect or empty the response cache")
    commands = cache.add_subparsers(dest="cache_command", required=True)
    for name, func, text in (("stats", _stats_command, "entries, size, hits and misses"),
                             ("clear", _clear_command, "delete every entry (or an unreadable cache file)")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--path", type=Path, default=DEFAULT_PATH, help=f"cache file (default {DEFAULT_PATH})")
        command.set_defaults(func=func)
