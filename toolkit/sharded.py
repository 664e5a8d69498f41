"""`frontier collect --workers N`: one collect config's grid sent by N worker processes through Ray,
on this machine (a local Ray instance frontier starts and stops) or on an existing Ray cluster.

The driver (this process) plans, holds the run dir's lock, starts the embedded server once (one slot
per request in flight in total) and runs the plan phase by phase, so a concurrency level stays the
total in flight across workers: in each phase worker k gets every request whose slot (position mod
level) is k mod N, and that many slots of the level (`split_phase`); a level below N uses only
`level` workers, one request in flight each.  The phase number is the driver's, the same in every
shard, so machine time (a phase's wall time shared among its requests) still adds up.  Shard k of a
phase numbers its requests first + k, stride = the phase's workers, so sequences never collide.

Each shard writes its own journal and Parquet part (`store.part_names("shard-01")`); `load_run`
reads the parts as one table.  The rate limits are split among the shards of a phase in proportion to
their slots (each shard keeps its one-minute window across phases); the spent total of `max_cost_usd`,
the progress counts and a stop of any shard go through one Ray actor (`RunTotals`) that every shard
reports to every `REPORT_EVERY_S`, so the run stops within that much spending of the budget.
A worker that dies ends the run as stopped: `--resume` sends every request that has no ok record.
The workers of one machine share the response cache's SQLite file.

An open-loop phase (`grid.arrival`) keeps one process's schedule (`runner.open_loop_offsets`): its
requests are split as a closed loop's are, each keeping its due time, and every shard counts from
one UTC start `OPEN_LOOP_START_S` ahead, so the phase's arrivals are the rate asked for in all (on a
cluster, within the machines' clock offsets).  The manifest's entry adds the shards up
(`arrival_report`: the achieved rate is every request over the last send of any shard).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

from toolkit.cache import ResponseCache
from toolkit.collect import (CollectSummary, base_urls, cache_path, end_session, open_run, prepared_config,
                             record_pricer, start_session)
from toolkit.config import Arrival, CollectConfig
from toolkit.endpoints import connect
from toolkit.errors import FrontierError, ParameterError
from toolkit.pacing import RateLimiter
from toolkit.runner import (Collector, PlannedRequest, Schedule, arrival_report, concurrency_phases, duration_stop,
                            open_loop_offsets, plan, warn_if_behind)
from toolkit.schema import RequestRecord
from toolkit.store import Journal, finalize, has_records, load_run, part_names

INSTALL_RAY = "pip install 'frontier-toolkit[ray]'"
REPORT_EVERY_S = 0.2
PLACEMENT_TIMEOUT_S = 120.0  # a cluster without a free CPU per worker never starts them
# an open-loop phase starts this long after the driver hands it out, so every shard has its share and its
# connections open by then (a shard that has not is late, and its requests' send_lag_s say by how much)
OPEN_LOOP_START_S = 0.5


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise ParameterError(f"--workers and --ray-address need Ray, which is not installed: {INSTALL_RAY}") from None
    return ray


def shard_parts(workers: int) -> list[str]:
    return [f"shard-{k + 1:02d}" for k in range(workers)]


def split_phase(requests: list[PlannedRequest], level: int, workers: int) -> list[tuple[int, list[PlannedRequest]]]:
    """(slots in flight, requests) of each worker used in one phase: request i goes to the worker
    owning slot i mod level, slot s belonging to worker s mod workers, so each worker's share of the
    requests is its share of the level and the slots add up to the level."""
    used = min(workers, level)
    shards = [(level // workers + (k < level % workers), []) for k in range(used)]
    for position, request in enumerate(requests):
        shards[position % level % workers][1].append(request)
    return shards


class RunTotals:
    """The whole run's counts, spent total and stop reason, shared by the shards (a Ray actor)."""

    def __init__(self) -> None:
        self.done, self.cost_usd = 0, 0.0
        self.error_types: Counter[str] = Counter()
        self.stop_reason: str | None = None

    def add(self, done: int, error_types: dict[str, int], cost_usd: float) -> tuple[float, str | None]:
        self.done += done
        self.error_types.update(error_types)
        self.cost_usd += cost_usd
        return self.cost_usd, self.stop_reason

    def stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason

    def snapshot(self) -> tuple[int, dict[str, int], float, str | None]:
        return self.done, dict(self.error_types), self.cost_usd, self.stop_reason


@dataclasses.dataclass
class _Unreported:
    done: int = 0
    cost_usd: float = 0.0
    error_types: Counter[str] = dataclasses.field(default_factory=Counter)


class Shard:
    """One worker's part of a run (a Ray actor): its journal and Parquet part, its share of the rate
    limits (one window across phases) and its reports to the run's `RunTotals`."""

    def __init__(self, config: CollectConfig, run_id: str, run_dir: str, part: str, urls: dict[str, str | None],
                 totals: object, cache_path: str | None) -> None:
        self.config, self.run_id, self.run_dir, self.part, self.totals = config, run_id, Path(run_dir), part, totals
        self.cache_path = cache_path
        self.connections = {e.name: connect(e, base_url=urls[e.name]) for e in config.endpoints}
        self.limiter = RateLimiter(None, None)
        self.cost_of = record_pricer(config) if config.limits.max_cost_usd is not None else None
        # the budget and max_requests are the driver's and RunTotals'; the error rate stays each shard's own
        self.shard_config = dataclasses.replace(
            config, limits=dataclasses.replace(config.limits, max_cost_usd=None, max_requests=None))
        self.unreported, self.reporting = _Unreported(), _Unreported()
        self.known_cost_usd, self.run_stop_reason = 0.0, None

    async def where(self) -> dict:
        import ray

        return {"part": self.part, "host": socket.gethostname(), "pid": os.getpid(),
                "ray_node": ray.get_runtime_context().get_node_id()}

    async def run_phase(self, requests: list[PlannedRequest], *, in_flight: int, share: float, phase: int,
                        first_sequence: int, sequence_stride: int, schedule: Schedule | None = None) -> dict:
        """Send one phase's share (open loop: at `schedule`); the phase entry of this shard, its counts and
        why it stopped."""
        limits = self.config.limits
        self.limiter.rpm = None if limits.requests_per_minute is None else limits.requests_per_minute * share
        self.limiter.tpm = None if limits.tokens_per_minute is None else limits.tokens_per_minute * share
        with contextlib.ExitStack() as stack:
            journal = stack.enter_context(Journal(self.run_dir, part_names(self.part)[0]))
            cache = stack.enter_context(ResponseCache(self.cache_path, ttl_s=self.config.cache.ttl_s)) \
                if self.cache_path else None
            collector = Collector(self.shard_config, self.run_id, self.connections, journal, cache=cache,
                                  first_sequence=first_sequence, first_phase=phase, sequence_stride=sequence_stride,
                                  limiter=self.limiter, shared_limit=self._shared_limit)
            reporter = asyncio.create_task(self._report_every(REPORT_EVERY_S))
            try:
                await collector.run(requests, in_flight=in_flight, schedule=schedule)
            finally:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
                await self._report()
        if collector.stop_reason:
            await self.totals.stop.remote(collector.stop_reason)
        return {"phase": collector.phases[0] if collector.phases else None, "sent": collector.sent,
                "errors": collector.errors, "stop_reason": collector.stop_reason}

    def _shared_limit(self, record: RequestRecord) -> str | None:
        unreported = self.unreported
        unreported.done += 1
        if record.status != "ok":
            unreported.error_types[record.error_type or "unknown"] += 1
        if self.cost_of is not None:
            unreported.cost_usd += self.cost_of(record)
        if self.run_stop_reason:
            return self.run_stop_reason
        budget = self.config.limits.max_cost_usd
        spent = self.known_cost_usd + self.reporting.cost_usd + unreported.cost_usd
        if budget is not None and spent >= budget:
            return f"spent {spent:.4f} USD over all workers, reaching max_cost_usd={budget}"
        return None

    async def _report_every(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            await self._report()

    async def _report(self) -> None:
        self.reporting, self.unreported = self.unreported, _Unreported()
        batch = self.reporting
        if batch.done:
            self.known_cost_usd, self.run_stop_reason = await self.totals.add.remote(
                batch.done, dict(batch.error_types), batch.cost_usd)
        self.reporting = _Unreported()


@contextlib.contextmanager
def ray_session(ray: ModuleType, workers: int, address: str | None) -> Iterator[None]:
    """A local Ray instance of `workers` CPUs (or a connection to the cluster at `address`) for the
    duration; a Ray this process already started (a notebook, a test) is used as it is and left running."""
    if ray.is_initialized():
        yield
        return
    main_thread = threading.current_thread() is threading.main_thread()
    on_sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
    if address is None:
        # "local": a new instance even where another Ray runs on this machine (ray.init() would join it)
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    if main_thread:  # ray.init installs its own, which exits with status 1 instead of stopping cleanly (130)
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        ray.shutdown()


def collect_sharded(config: CollectConfig | str | Path, *, workers: int, ray_address: str | None = None,
                    runs_root: Path = Path("data/runs"), resume: Path | None = None,
                    items_per_dataset: int | None = None, concurrency: int | None = None, run_id: str | None = None,
                    base_url: str | None = None, max_cost_usd: float | None = None, max_requests: int | None = None,
                    on_start: Callable[[int], None] | None = None,
                    on_progress: Callable[[int, dict[str, int]], None] | None = None) -> CollectSummary:
    """`collect` with the grid sent by `workers` Ray workers (see the module doc); `on_progress(done,
    error_types)` is called every `REPORT_EVERY_S` with the whole run's counts."""
    ray = import_ray()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers: must be an integer > 0, got {workers!r}")
    config = prepared_config(config, items_per_dataset=items_per_dataset, concurrency=concurrency,
                             max_cost_usd=max_cost_usd, max_requests=max_requests)
    if ray_address is not None and any(c.cache for c in config.configs()):
        # one SQLite file: safe between the processes of one machine, not over a network file system
        raise ParameterError(f"{config.path}: the response cache cannot be shared by the machines of a Ray "
                             "cluster; collect a config with `cache` on one machine (--workers without --ray-address)")
    if config.limits.max_cost_usd is not None:
        record_pricer(config)  # an unknown price fails here, before anything is sent
    planned = plan(config)
    started = time.monotonic()
    parts = shard_parts(workers)
    with contextlib.ExitStack() as stack:
        run = open_run(stack, config, runs_root=runs_root, resume=resume, run_id=run_id)
        pending = [p for p in planned if p.request_id not in run.ok_ids]
        already_done, stop_reason = len(planned) - len(pending), None
        limit = config.limits.max_requests
        if limit is not None and len(pending) > limit:
            pending, stop_reason = pending[:limit], f"reached max_requests={limit}"
        urls = base_urls(stack, config, run, base_url=base_url, pending=bool(pending))
        connections = {e.name: connect(e, base_url=urls[e.name]) for e in config.endpoints}
        run.manifest["parts"] = sorted({*run.manifest.get("parts", []), *parts})
        status, phases, totals_seen = "interrupted", [], (0, {}, 0.0, None)
        try:
            with ray_session(ray, workers, ray_address):
                totals = ray.remote(RunTotals).options(num_cpus=0).remote()
                shard_class = ray.remote(Shard).options(num_cpus=1, scheduling_strategy="SPREAD")
                cache = cache_path(config, run.run_dir)
                if cache is not None:
                    with ResponseCache(cache, ttl_s=config.cache.ttl_s):
                        pass  # created here once: two workers creating it at the same moment would collide
                shards = [shard_class.remote(config, run.manifest["run_id"], str(run.run_dir.resolve()), part,
                                             urls, totals, cache and str(cache.resolve())) for part in parts]
                try:
                    where = _placed(ray, shards, ray_address)
                    start_session(config, run, connections, planned, len(pending), workers=workers,
                                  ray_address=ray_address, shards=where)
                    if on_start is not None:
                        on_start(len(pending))
                    run_stop = _run_phases(ray, shards, totals, config, pending, run.first_sequence,
                                           run.first_phase, phases, on_progress)
                    stop_reason = run_stop or stop_reason
                    status = "stopped" if stop_reason else "complete"
                finally:
                    with contextlib.suppress(Exception):  # a cluster gone away: the counts stay unknown
                        totals_seen = ray.get(totals.snapshot.remote(), timeout=10)
                    for actor in (*shards, totals):  # no shard may write after its journal is folded below
                        ray.kill(actor)
        finally:
            for part in parts:
                journal = run.run_dir / part_names(part)[0]
                if journal.exists() and journal.stat().st_size:
                    finalize(run.run_dir, part)
                journal.unlink(missing_ok=True)  # a worker that journaled nothing leaves an empty one
            table = load_run(run.run_dir) if has_records(run.run_dir) else None
            done, error_types = totals_seen[0], totals_seen[1]
            end_session(run, table, status=status, sent=done, stop_reason=stop_reason, phases=phases,
                        errors=sum(error_types.values()))
    return CollectSummary(run.run_dir, len(planned), already_done, done, sum(error_types.values()),
                          time.monotonic() - started, stop_reason)


def _placed(ray: ModuleType, shards: list, ray_address: str | None) -> list[dict]:
    """Where each shard runs (part, host, pid), once every one has started."""
    try:
        return ray.get([shard.where.remote() for shard in shards], timeout=PLACEMENT_TIMEOUT_S)
    except ray.exceptions.RayActorError as exc:  # its __init__ failed: no key in its environment, no toolkit
        raise ParameterError(f"a Ray worker could not start: {' '.join(str(exc).split())[:500]}") from None
    except ray.exceptions.GetTimeoutError:
        where = f"the Ray cluster at {ray_address}" if ray_address else "the local Ray instance"
        raise ParameterError(f"{where} did not start {len(shards)} workers (one CPU each) within "
                             f"{PLACEMENT_TIMEOUT_S:g} s: ask for fewer --workers") from None


def _run_phases(ray: ModuleType, shards: list, totals: object, config: CollectConfig, pending: list[PlannedRequest],
                first_sequence: int, first_phase: int, phases: list[dict],
                on_progress: Callable[[int, dict[str, int]], None] | None) -> str | None:
    """Send `pending` phase by phase over the shards, appending each phase's manifest entry to `phases`;
    why the run stopped early, or None."""
    sequence, phase_number = first_sequence, first_phase
    arrival = config.grid.arrival
    for level, requests in concurrency_phases(pending):
        planned, cut = len(requests), None
        if arrival is None:
            split = split_phase(requests, level, len(shards))
            schedules = [None] * len(split)
        else:  # one schedule for the phase, each request keeping its due time on whichever shard sends it
            offsets = open_loop_offsets(config, phase_number, planned)
            if len(offsets) < planned:
                requests, cut = requests[:len(offsets)], duration_stop(arrival, len(offsets), planned)
            start_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=OPEN_LOOP_START_S)
            timed = split_phase(list(zip(requests, offsets)), level, len(shards))
            split = [(in_flight, [request for request, _ in pairs]) for in_flight, pairs in timed]
            schedules = [Schedule([offset for _, offset in pairs], start_at) for _, pairs in timed]
        refs = {shard.run_phase.remote(assigned, in_flight=in_flight, share=in_flight / level, phase=phase_number,
                                       first_sequence=sequence + k, sequence_stride=len(split), schedule=schedule): k
                for k, (shard, (in_flight, assigned), schedule) in enumerate(zip(shards, split, schedules))}
        waiting = list(refs)
        while waiting:
            _, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=REPORT_EVERY_S)
            if on_progress is not None:
                done, error_types, _, _ = ray.get(totals.snapshot.remote())
                on_progress(done, error_types)
        results, died = [], []
        for ref, k in refs.items():
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayActorError as exc:
                died.append(f"shard-{k + 1:02d} ({' '.join(str(exc).split())[:200]})")
            except ray.exceptions.RayTaskError as exc:  # say a refused key as one process would, without Ray's trace
                if isinstance(exc.cause, FrontierError):
                    raise exc.cause from None
                raise
        entries = [r["phase"] for r in results if r["phase"]]
        phases.append({"phase": phase_number, "concurrency": level, "planned": planned,
                       "workers": len(split), "sent": sum(r["sent"] for r in results),
                       "started_at": min((e["started_at"] for e in entries), default=None),
                       "ended_at": max((e["ended_at"] for e in entries), default=None)})
        if arrival is not None:
            phases[-1]["arrival"] = _open_loop_phase(arrival, level, [e["arrival"] for e in entries])
            warn_if_behind(phase_number, phases[-1]["arrival"])
        sequence += len(split) * max(len(assigned) for _, assigned in split)
        phase_number += 1
        if died:
            return f"the worker of {', '.join(died)} died; its requests without an ok record are sent by --resume"
        stop = next((r["stop_reason"] for r in results if r["stop_reason"]), cut)
        if stop:
            return stop
    return None


def _open_loop_phase(arrival: Arrival, level: int, shards: list[dict]) -> dict:
    """One open-loop phase's manifest entry from its shards' (each timed from the phase's shared start)."""
    spans = [entry["span_s"] for entry in shards if entry["span_s"] is not None]
    lags = [entry["max_send_lag_s"] for entry in shards if entry["max_send_lag_s"] is not None]
    return arrival_report(arrival, level, requests=sum(entry["requests"] for entry in shards),
                          span_s=max(spans, default=None), max_send_lag_s=max(lags, default=None))
