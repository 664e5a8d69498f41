"""The collector: expand a config grid into requests, send them with bounded concurrency and rate
limits, retry what is worth retrying, grade the answers and journal every finished request at once.

`request_id` is a hash of (config, dataset, item, repeat), so a resumed run plans exactly the same
ids and sends only those without an `ok` record.  Requests run in one phase per concurrency level;
within a phase the send order is seeded-shuffled (or grouped by configuration) and recorded in
`sequence`, because the server's prefix cache makes latency depend on it.

With `grid.arrival` a phase runs open loop: each request falls due at a seeded Poisson arrival time
(absolute, on the event loop's monotonic clock, so no delay accumulates) and is sent then, whether
or not earlier requests have finished.  Each record keeps when it was due (`scheduled_at`) and how
late it went out (`send_lag_s`), so queueing in the client is measured instead of hidden, and the
phase entry reports the rate achieved against the target.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2
import openai

from toolkit.cache import ResponseCache, lookup_or_none, request_key
from toolkit.config import Arrival, CollectConfig, Config
from toolkit.datasets import Item, load_dataset
from toolkit.endpoints import Connection, TokenCounter
from toolkit.errors import EndpointError
from toolkit.measure import Request, StreamResult, stream_request
from toolkit.pacing import Due, RateLimiter, WallClock, arrival_offsets, rate_over
from toolkit.prompts import DatasetSpec, load_dataset_spec, render
from toolkit.records import Answer, Failure, request_record, stream_answer
from toolkit.retries import RETRYABLE, describe_error, error_kind, retry_delay_s
from toolkit.schema import RequestRecord
from toolkit.store import Journal
from toolkit.stream_client import StreamClient

log = logging.getLogger("toolkit")

T = TypeVar("T")


def run_stoppably(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, where SIGTERM stops the run as Ctrl-C does: the main task is cancelled, unwinds
    (every request in flight is journalled as cut off) and the caller gets a KeyboardInterrupt.  A
    KeyboardInterrupt raised wherever the signal happens to land can cut the HTTP client's connection pool
    mid-update, and its close then hangs."""
    return asyncio.run(_cancelled_by_sigterm(main))


async def _cancelled_by_sigterm(main: Coroutine[Any, Any, T]) -> T:
    if threading.current_thread() is not threading.main_thread():  # only the main thread receives signals
        return await main
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    before = signal.getsignal(signal.SIGTERM)
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await main
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)  # which leaves SIG_DFL: put the caller's handler back
        signal.signal(signal.SIGTERM, before)


@dataclass(frozen=True)
class PlannedRequest:
    request_id: str
    config: Config
    dataset: DatasetSpec
    item: Item
    repeat: int
    prompt: str | list[dict[str, str]]  # rendered once per variant and item, shared by its requests


def request_id_for(config_id: str, dataset: str, item_id: str, repeat: int) -> str:
    return hashlib.sha1(f"{config_id}\x1f{dataset}\x1f{item_id}\x1f{repeat}".encode()).hexdigest()[:16]


def plan(config: CollectConfig, *, items_per_dataset: int | None = None) -> list[PlannedRequest]:
    """Every request the collect config asks for, grouped by concurrency phase, in send order."""
    datasets = []
    for name in config.datasets:
        spec = load_dataset_spec(config.prompts_dir, name)
        datasets.append((spec, load_dataset(config.evals_dir / f"{name}.jsonl").items))
    configs = config.configs()
    # each config's items: its subgrid's count, else the collect config's; an `items_per_dataset`
    # argument caps both
    limits = {c.config_id: min((n for n in (c.items_per_dataset or config.items_per_dataset, items_per_dataset) if n),
                               default=None) for c in configs}
    datasets = [(spec, items[:max((n or len(items) for n in limits.values()), default=0)]) for spec, items in datasets]
    # Every prompt rendered now: an unknown variant or an item its template cannot render fails before
    # anything is sent (a field missing from one item would otherwise stop the run when that item's turn
    # comes), and no request spends its turn rendering.
    prompts = {(variant_name, spec.name, item.item_id): render(spec.variant(variant_name), item)
               for variant_name in dict.fromkeys(c.prompt_variant for c in configs)
               for spec, items in datasets for item in items}
    planned: list[PlannedRequest] = []
    rng = random.Random(config.seed)
    for level in dict.fromkeys(c.concurrency for c in configs):
        phase = [PlannedRequest(request_id_for(c.config_id, spec.name, item.item_id, repeat), c, spec, item, repeat,
                                prompts[c.prompt_variant, spec.name, item.item_id])
                 for c in configs if c.concurrency == level
                 for spec, items in datasets for item in items[:limits[c.config_id]]
                 for repeat in range(c.repeats)]
        if config.order == "shuffled":
            rng.shuffle(phase)
        planned.extend(phase)
    return planned


def request_for(planned: PlannedRequest) -> Request:
    """The request the collector sends for `planned` (Batch input files use the same)."""
    config = planned.config
    variant = planned.dataset.variant(config.prompt_variant)
    stop = planned.dataset.stop if config.stop else ()
    return Request(variant.api, config.model, planned.prompt, config.max_tokens, config.temperature, stop,
                   config.logprobs)


@dataclass
class Outcome:
    result: StreamResult | None
    attempts: int
    started_at: dt.datetime
    error_type: str | None = None
    http_status: int | None = None
    error_message: str | None = None
    sent_s: float | None = None  # time.monotonic() at started_at: the send the timings are from
    first_sent_s: float | None = None  # time.monotonic() at the first attempt's send


class Collector:
    """Runs planned requests against one connection per endpoint and journals each result."""

    def __init__(self, config: CollectConfig, run_id: str, connections: dict[str, Connection],
                 journal: Journal, *, first_sequence: int = 0, first_phase: int = 0,
                 cost_of: Callable[[RequestRecord], float] | None = None,
                 on_record: Callable[[RequestRecord], None] | None = None,
                 cache: ResponseCache | None = None, sequence_stride: int = 1,
                 limiter: RateLimiter | None = None,
                 shared_limit: Callable[[RequestRecord], str | None] | None = None) -> None:
        """Several collectors writing one run (shards) number their requests `first_sequence` + k x
        `sequence_stride`, may share one `limiter` across phases, and `shared_limit` (after each record)
        returns why the whole run must stop, or None."""
        self.collect_config, self.run_id, self.connections, self.journal = config, run_id, connections, journal
        self.cache = cache
        self.cost_of, self.on_record, self.shared_limit = cost_of, on_record, shared_limit
        self.limiter = limiter or RateLimiter(config.limits.requests_per_minute, config.limits.tokens_per_minute)
        self.clock = WallClock()
        self._sequence, self._sequence_stride = first_sequence, sequence_stride
        # A phase is one concurrency level of one session: its wall time, shared among its requests,
        # is what a self-hosted machine costs (pricing.machine_seconds).  `phases` goes to the manifest.
        self._phase = first_phase
        self.phases: list[dict] = []
        self.sent = self.errors = 0
        self.cost_usd = 0.0
        self.stop_reason: str | None = None
        self._clients: dict[str, StreamClient] = {}
        self._counters: dict[str, TokenCounter] = {}
        self._tokenize_http: httpx2.AsyncClient | None = None  # only an endpoint that counts tokens needs one

    async def run(self, planned: list[PlannedRequest], *, in_flight: int | None = None,
                  schedule: Schedule | None = None) -> None:
        """Send `planned` phase by phase, each phase's concurrency level in flight (`in_flight`: this
        many instead, a shard's share of the level); an open-loop shard's one phase at `schedule`."""
        try:
            for level, phase in concurrency_phases(planned):
                await self._run_phase(level if in_flight is None else in_flight, phase, schedule)
                if self.stop_reason:
                    break
        finally:
            for client in self._clients.values():
                await client.close()
            if self._tokenize_http is not None:
                await self._tokenize_http.aclose()

    async def _run_phase(self, level: int, phase: list[PlannedRequest], schedule: Schedule | None) -> None:
        queue = deque(phase)
        sent_before = self.sent
        entry = {"phase": self._phase, "concurrency": level, "planned": len(phase),
                 "started_at": dt.datetime.now(dt.UTC).isoformat()}
        self.phases.append(entry)

        async def worker() -> None:
            while queue and not self.stop_reason:
                await self._one(queue.popleft())

        arrival = self.collect_config.grid.arrival
        workers = [] if arrival else [asyncio.create_task(worker()) for _ in range(min(level, len(phase)))]
        try:
            if arrival:
                entry["arrival"] = await self._open_loop(arrival, level, phase, schedule)
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            raise
        finally:
            entry.update(ended_at=dt.datetime.now(dt.UTC).isoformat(), sent=self.sent - sent_before)
            self._phase += 1

    async def _open_loop(self, arrival: Arrival, level: int, phase: list[PlannedRequest],
                         schedule: Schedule | None) -> dict:
        """Send `phase` at its due times (`schedule`, else the phase's seeded schedule from now), at most
        `level` in flight; for the manifest, the target and the achieved rate and the largest send lag."""
        own = schedule is None
        if own:
            schedule = Schedule(open_loop_offsets(self.collect_config, self._phase, len(phase)))
        for config in {p.config.endpoint.name: p.config for p in phase}.values():
            await self._client(config).session()  # its connections open now, not while the first request is due
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(level)
        # the event loop's clock is time.monotonic(); a shard's phase starts at the UTC time all shards share
        origin = loop.time() if schedule.start_at is None else self.clock.monotonic_at(schedule.start_at)
        origin_at = self.clock.at(origin)
        tasks: list[asyncio.Task] = []
        dues: list[Due] = []
        try:
            for planned, offset in zip(phase, schedule.offsets):
                # an absolute due time, so a late wake-up delays one request, not every later one
                await asyncio.sleep(max(0.0, origin + offset - loop.time()))
                await slots.acquire()  # the wait for a free slot is part of send_lag_s
                if self.stop_reason:
                    slots.release()
                    break
                dues.append(Due(origin + offset, origin_at + dt.timedelta(seconds=offset)))
                tasks.append(asyncio.create_task(self._one(planned, dues[-1])))
                tasks[-1].add_done_callback(lambda _: slots.release())
            outcomes = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        if len(schedule.offsets) < len(phase) and not self.stop_reason:
            self.stop_reason = duration_stop(arrival, len(schedule.offsets), len(phase))
        sent = [(o, due) for o, due in zip(outcomes, dues) if o is not None and o.sent_s is not None]
        report = arrival_report(arrival, level, requests=len(sent),
                                span_s=max((o.first_sent_s - origin for o, _ in sent), default=None),
                                max_send_lag_s=max((o.sent_s - due.monotonic_s for o, due in sent), default=None))
        if own:  # a shard's share is judged with the other shards' (`sharded`)
            warn_if_behind(self._phase, report)
        return report

    def _client(self, config: Config) -> StreamClient:
        name = config.endpoint.name
        if name not in self._clients:
            levels = self.collect_config.max_concurrency
            self._clients[name] = self.connections[name].client(
                timeout_s=self.collect_config.retry.timeout_s, max_connections=max(levels, 1))
            tokenize_url = self.connections[name].tokenize_url
            if tokenize_url:
                if self._tokenize_http is None:
                    self._tokenize_http = httpx2.AsyncClient(timeout=self.collect_config.retry.timeout_s)
                self._counters[name] = TokenCounter(tokenize_url, self._tokenize_http)
        return self._clients[name]

    async def _one(self, planned: PlannedRequest, due: Due | None = None) -> Outcome | None:
        """Send (or answer from the cache) one request and journal it; None when a limit stopped it."""
        if self.collect_config.limits.max_requests is not None and self.sent >= self.collect_config.limits.max_requests:
            self.stop_reason = f"reached max_requests={self.collect_config.limits.max_requests}"
            return None
        request = request_for(planned)
        self.sent += 1
        sequence, self._sequence = self._sequence, self._sequence + self._sequence_stride
        cache_key = request_key(self._cache_endpoint(planned.config), request) if planned.config.cache else None
        hit = lookup_or_none(self.cache, cache_key) if cache_key else None
        if hit is not None:
            now = time.monotonic()
            outcome = Outcome(hit.as_result(), 1, self.clock.at(now), sent_s=now, first_sent_s=now)
        else:
            prompt_chars = len(request.prompt) if isinstance(request.prompt, str) else sum(
                len(m["content"]) for m in request.prompt)
            await self.limiter.acquire(prompt_chars // 4 + request.max_tokens)
            outcome = await self._send_with_retries(planned, request)
            if cache_key and self.cache is not None and outcome.result is not None:
                self.cache.put(cache_key, outcome.result)
        sending: dict[str, object] = {"phase": self._phase, "cache_hit": hit is not None}
        if due is not None:
            sending.update(scheduled_at=due.at, send_lag_s=outcome.sent_s - due.monotonic_s)
        record = await self._record(planned, request, outcome, sequence, sending)
        self.journal.append(record)
        self._account(record)
        return outcome

    def _cache_endpoint(self, config: Config) -> str:
        # the embedded server gets a new port every run; its identity is the model it serves
        if config.endpoint.kind == "embedded":
            return f"embedded:{config.model}"
        return self.connections[config.endpoint.name].host

    async def _send_with_retries(self, planned: PlannedRequest, request: Request) -> Outcome:
        policy = self.collect_config.retry
        client = self._client(planned.config)
        connection = self.connections[planned.config.endpoint.name]
        first_sent_s = None
        for attempt in range(1, policy.max_attempts + 1):
            sent_s = time.monotonic()
            started_at = self.clock.at(sent_s)
            first_sent_s = sent_s if first_sent_s is None else first_sent_s
            sent = {"sent_s": sent_s, "first_sent_s": first_sent_s}
            try:
                result = await stream_request(client, request, timeout_s=policy.timeout_s,
                                              request_id=planned.request_id)
                return Outcome(result, attempt, started_at, **sent)
            # openai.APIError that is no APIStatusError: an error event inside the stream (vLLM and
            # llama.cpp send `data: {"error": ...}` when generation fails); retried like a 5xx, and
            # recorded, instead of ending the whole run with a raw exception
            except (*RETRYABLE, openai.APIError) as exc:
                kind, status = error_kind(exc)
                if isinstance(exc, openai.APIStatusError) and not isinstance(exc, RETRYABLE):
                    message = connection.redact(describe_error(exc))
                    if kind == "auth":
                        raise EndpointError(f"endpoint {connection.name!r} refused the key (HTTP {status}): "
                                            f"{message}") from None
                    return Outcome(None, attempt, started_at, kind, status, message, **sent)
                if attempt == policy.max_attempts:
                    return Outcome(None, attempt, started_at, kind, status, connection.redact(describe_error(exc)), **sent)
                delay = retry_delay_s(exc, attempt, policy)
                log.debug("request %s attempt %d: %s; retrying in %.2f s", planned.request_id, attempt, kind, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns")

    async def _record(self, planned: PlannedRequest, request: Request, outcome: Outcome, sequence: int,
                      sending: dict[str, object]) -> RequestRecord:
        config = planned.config
        answer = (Failure(outcome.error_type, outcome.http_status, outcome.error_message) if outcome.result is None
                  else await self._answer(config, request, outcome.result))
        return request_record(planned, answer, run_id=self.run_id, sequence=sequence,
                              endpoint=self.connections[config.endpoint.name].host, started_at=outcome.started_at,
                              attempts=outcome.attempts, **sending)

    async def _answer(self, config: Config, request: Request, result: StreamResult) -> Answer:
        """`result` with its usage: the server's, else counted by the endpoint's tokenizer, else estimated."""
        counter = self._counters.get(config.endpoint.name)
        prompt_tokens = completion_tokens = None
        if result.usage is None and counter is not None:
            prompt_tokens = await counter.prompt_tokens(request.prompt)
            completion_tokens = result.logprob_tokens if result.logprob_tokens is not None else (
                await counter.count(result.text, with_bos=False) if result.text else 0)
        elif result.usage is None:
            completion_tokens = len(result.tbt_s) + (1 if result.ttft_s else 0)
        return stream_answer(result, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def _account(self, record: RequestRecord) -> None:
        limits = self.collect_config.limits
        if record.status != "ok":
            self.errors += 1
        if self.cost_of is not None:
            self.cost_usd += self.cost_of(record)
        if self.on_record is not None:
            self.on_record(record)
        if self.shared_limit is not None and (reason := self.shared_limit(record)):
            self.stop_reason = reason
        if limits.max_cost_usd is not None and self.cost_usd >= limits.max_cost_usd:
            self.stop_reason = f"spent {self.cost_usd:.4f} USD, reaching max_cost_usd={limits.max_cost_usd}"
        elif self.sent >= limits.min_requests_for_error_rate and self.errors / self.sent > limits.max_error_rate:
            self.stop_reason = (f"error rate {self.errors}/{self.sent} passed max_error_rate="
                                f"{limits.max_error_rate}")


def concurrency_phases(planned: list[PlannedRequest]) -> Iterator[tuple[int, list[PlannedRequest]]]:
    phase: list[PlannedRequest] = []
    for request in planned:
        if phase and request.config.concurrency != phase[0].config.concurrency:
            yield phase[0].config.concurrency, phase
            phase = []
        phase.append(request)
    if phase:
        yield phase[0].config.concurrency, phase


@dataclass(frozen=True)
class Schedule:
    """When an open-loop phase's requests fall due: seconds after its start, which is when the phase
    begins, or `start_at` (UTC), the moment every shard of the phase counts from."""

    offsets: list[float]
    start_at: dt.datetime | None = None


def open_loop_offsets(config: CollectConfig, phase: int, planned: int) -> list[float]:
    """The due offsets of open-loop phase `phase` (`arrival_offsets`): one per request sent, all
    `planned` or as many as `grid.arrival.duration_s` allows, seeded by the config's seed and the
    phase, so one process and the shards of `--workers` keep the same schedule."""
    arrival = config.grid.arrival
    count = planned if arrival.duration_s is None else min(planned, max(1, round(arrival.rate_per_s * arrival.duration_s)))
    return arrival_offsets(count, arrival.rate_per_s, random.Random(f"{config.seed}\x1farrival\x1f{phase}"))


def duration_stop(arrival: Arrival, sent: int, planned: int) -> str:
    return (f"grid.arrival.duration_s={arrival.duration_s:g} at {arrival.rate_per_s:g}/s "
            f"sends {sent} of the phase's {planned} planned requests")


def arrival_report(arrival: Arrival, max_in_flight: int, *, requests: int, span_s: float | None,
                   max_send_lag_s: float | None) -> dict:
    """An open-loop phase's manifest entry: `requests` sent, the last `span_s` after the first fell due,
    so the achieved rate counts every delay of the client (`achieved_rate`)."""
    return {"target_rate_per_s": arrival.rate_per_s, "achieved_rate_per_s": rate_over(requests, span_s),
            "requests": requests, "span_s": span_s, "max_in_flight": max_in_flight, "max_send_lag_s": max_send_lag_s}


def warn_if_behind(phase: int, report: dict) -> None:
    achieved, target = report["achieved_rate_per_s"], report["target_rate_per_s"]
    if achieved is not None and achieved < 0.98 * target:
        log.warning("open-loop phase %d sent %.3g requests/s of the %.3g asked for (largest send lag %.3g s): "
                    "the client, the rate limits or max_in_flight=%d held requests back",
                    phase, achieved, target, report["max_send_lag_s"], report["max_in_flight"])
