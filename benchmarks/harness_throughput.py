"""Harness throughput: requests per second through the full collector (plan, streaming measurement,
grading, journal, progress callback) against a scripted server with zero delays, at concurrency 64,
next to a bare `openai` client loop sending the same requests at the same concurrency to the same
server.  The ratio says what the harness costs on top of the client it is built on; a third loop
(httpx2 and json.loads, no SDK) shows the ceiling of the transport itself.

The server runs in its own process.  Each loop's CPU time in this process per request is reported
too: unlike requests/s it hardly moves when other work shares the machine.  A cProfile of a slice of
the collector run lists where the client process spends its time.  Targets: 1,000 requests/s on 2
cores and at least 2x the bare `openai` loop in the same run (reported, not asserted).

The collector streams through aiohttp rather than the `openai` SDK (toolkit/stream_client.py says
why); the bare `openai` loop is the SDK as a user would call it, on its own httpx2 stack.
"""
from __future__ import annotations

import asyncio
import cProfile
import io
import json
import pstats
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import openai

from _common import ITEMS_PER_REPEAT, REPO, parse_args, write_config, write_result
from toolkit.collect import collect
from toolkit.config_file import load_config
from toolkit.runner import plan, request_for
from toolkit.testing import ScriptedProcess

CONCURRENCY = 64
TOKENS = 8


def run_collector(config: Path, runs: Path, run_id: str) -> tuple[int, float]:
    done = 0

    def progress(record: object) -> None:  # what the CLI's progress bar hooks into
        nonlocal done
        done += 1

    summary = collect(config, runs_root=runs, run_id=run_id, on_record=progress)
    if summary.errors or done != summary.sent:
        raise RuntimeError(f"collector run {run_id}: {summary.errors} errors, {done} of {summary.sent} recorded")
    return summary.sent, summary.elapsed_s


async def bare_openai_loop(base_url: str, config: Path, requests: int) -> float:
    """The same request bodies, streamed and read to the end by the plain async openai client."""
    bodies = [request_for(p) for p in plan(load_config(config))][:requests]
    limits = httpx2.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0,
                                http_client=httpx2.AsyncClient(limits=limits, timeout=30))
    queue = list(reversed(bodies))

    async def worker() -> None:
        while queue:
            request = queue.pop()
            resource = client.chat.completions if request.api == "chat" else client.completions
            stream = await resource.create(**request.body(), stream=True, stream_options={"include_usage": True})
            async for _ in stream:
                pass

    started = time.perf_counter()
    async with client:
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


async def bare_httpx2_loop(base_url: str, config: Path, requests: int) -> float:
    """The transport's own ceiling: the same bodies streamed with httpx2, each SSE line parsed by json."""
    bodies = [request_for(p) for p in plan(load_config(config))][:requests]
    limits = httpx2.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    queue = list(reversed(bodies))
    paths = {"chat": "/chat/completions", "completions": "/completions"}

    async def worker(http: httpx2.AsyncClient) -> None:
        while queue:
            request = queue.pop()
            body = {**request.body(), "stream": True, "stream_options": {"include_usage": True}}
            async with http.stream("POST", base_url + paths[request.api], json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        json.loads(line[6:])

    started = time.perf_counter()
    async with httpx2.AsyncClient(limits=limits, timeout=30, headers={"Authorization": "Bearer none"}) as http:
        await asyncio.gather(*(worker(http) for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


def profile_collector(config: Path, runs: Path) -> list[dict]:
    profiler = cProfile.Profile()
    profiler.enable()
    run_collector(config, runs, "profiled")
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt
    rows = []
    for (filename, line, function), (_, calls, tottime, cumtime, _) in sorted(
            stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:15]:
        where = filename.split("site-packages/")[-1].removeprefix(f"{REPO}/")
        rows.append({"function": f"{where}:{line}({function})", "calls": calls,
                     "self_share": round(tottime / total, 3), "cumulative_s": round(cumtime, 3)})
    return rows


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(run: Callable[[], float], requests: int) -> tuple[float, float]:
    """(seconds `run` reports, CPU microseconds of this process per request)."""
    before = cpu_s()
    seconds = run()
    return seconds, (cpu_s() - before) / requests * 1e6


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    requests = 2_000 if args.quick else 20_000
    repeats = -(-requests // ITEMS_PER_REPEAT)
    started = time.monotonic()
    with ScriptedProcess(["--tokens", str(TOKENS)]) as server, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = write_config(tmp / "cfg", server.base_url, concurrency=CONCURRENCY, repeats=repeats,
                              max_requests=requests)
        warm_up = write_config(tmp / "cfg-warm-up", server.base_url, concurrency=CONCURRENCY, max_requests=500)
        run_collector(warm_up, tmp / "runs", "warm-up")  # imports, connections, template caches
        sent = 0

        def collector_run() -> float:
            nonlocal sent
            sent, seconds = run_collector(config, tmp / "runs", "timed")
            return seconds

        collector_s, collector_cpu = timed(collector_run, requests)
        baseline_s, baseline_cpu = timed(lambda: asyncio.run(bare_openai_loop(server.base_url, config, requests)),
                                         requests)
        transport_s, transport_cpu = timed(lambda: asyncio.run(bare_httpx2_loop(server.base_url, config, requests)),
                                           requests)
        profile_config = write_config(tmp / "cfg-profile", server.base_url, concurrency=CONCURRENCY,
                                      repeats=1, max_requests=min(requests, 1_000))
        hotspots = profile_collector(profile_config, tmp / "runs")
    collector_rps, baseline_rps = sent / collector_s, requests / baseline_s
    ratio = collector_rps / baseline_rps
    print(f"collector: {sent} requests in {collector_s:.2f} s = {collector_rps:.0f} req/s, "
          f"{collector_cpu:.0f} us CPU a request (plan, grading, journal and final Parquet included)")
    print(f"bare openai client: {requests} requests in {baseline_s:.2f} s = {baseline_rps:.0f} req/s, "
          f"{baseline_cpu:.0f} us CPU a request")
    print(f"bare httpx2 + json (no openai SDK): {requests / transport_s:.0f} req/s, "
          f"{transport_cpu:.0f} us CPU a request")
    print(f"collector / bare client = {ratio:.2f} (target >= 2: {'met' if ratio >= 2 else 'missed'}); "
          f"target 1000 req/s: {'met' if collector_rps >= 1000 else 'missed'}")
    for row in hotspots[:8]:
        print(f"  {row['self_share']:6.1%}  {row['function']}")
    write_result("harness_throughput", {
        "concurrency": CONCURRENCY, "tokens_per_answer": TOKENS, "requests": requests,
        "collector": {"seconds": round(collector_s, 3), "requests_per_s": round(collector_rps, 1),
                      "cpu_us_per_request": round(collector_cpu, 1)},
        "bare_openai_client": {"seconds": round(baseline_s, 3), "requests_per_s": round(baseline_rps, 1),
                               "cpu_us_per_request": round(baseline_cpu, 1)},
        "bare_httpx2_json": {"seconds": round(transport_s, 3), "requests_per_s": round(requests / transport_s, 1),
                             "cpu_us_per_request": round(transport_cpu, 1)},
        "ratio_collector_to_bare": round(ratio, 3),
        "target": {"requests_per_s_at_least": 1000, "ratio_to_bare_at_least": 2.0,
                   "met": collector_rps >= 1000 and ratio >= 2},
        "profile_top_self_time": hotspots, "elapsed_s": round(time.monotonic() - started, 1)}, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
