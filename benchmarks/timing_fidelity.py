"""Timing fidelity: TTFT and every inter-token gap as the collector records them, against the times
the scripted server actually sent each token, at 1, 16 and 64 concurrent streams.

The server runs in its own process (ScriptedProcess), so it does not share the collector's event
loop; both read CLOCK_MONOTONIC through `time.perf_counter_ns`, so its log of token send times is
the ground truth.  The collector is the real one (`toolkit.collect.collect`: plan, retries,
grading, journal).  Errors reported, per level:

  gap_error_ms        |recorded gap - gap between the server's two sends|   (harness + transit jitter)
  ttft_error_ms       recorded TTFT - (server's first send - server's receipt)  (harness + both transits)
  ttft_error_warm_ms  the same without each level's first `concurrency` requests (the first wave)
  gap_vs_script_ms    |recorded gap - scripted gap|   (what a user comparing with the script sees)
  server_late_ms      server's send - scripted due time   (the test server's own lateness, for context)
  client_cpu_share    CPU seconds of this process per wall second (1.0 = one core saturated)
  server_cpu_share    the same for the scripted server's process

Each level streams 20 tokens 10 ms apart (100 tokens/s per stream, so 6,400 chunks/s at 64
streams); a last level repeats 64 streams at 40 ms gaps (25 tokens/s per stream), closer to what a
loaded server gives each of 64 streams, to show where the client's CPU stops being the limit.
Targets: median gap error < 1 ms and p99 < 5 ms at 64 streams; TTFT error p99 < 5 ms at 16 and 64.

Each level's server is freshly started and first answers a few rounds of warm-up requests (its
own first-time work is not the client's error).  The server stamps a request's receipt when its
handler starts, so when 64 requests arrive within a millisecond (the first of each connection, all
started together) the later ones' wait for the server to reach them counts as TTFT error although
the client measured it correctly: the first wave is reported on its own (`ttft_error_first_wave_ms`)
next to the warm requests.  The same measurement with `collect --workers 2` is workers_fidelity.py's.
"""
from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from _common import parse_args, summary_ms, write_config, write_result
from toolkit.collect import collect
from toolkit.endpoints import Connection
from toolkit.measure import Request, stream_request
from toolkit.store import load_run
from toolkit.testing import Behaviour, ScriptedProcess

TTFT_S, TOKENS = 0.05, 20
# (concurrency, gap between tokens, items per dataset): 4 datasets x 5 variants x items requests per level
LEVELS_QUICK = ((1, 0.01, 1), (16, 0.01, 8), (64, 0.01, 32), (64, 0.04, 32))
LEVELS_FULL = ((1, 0.01, 5), (16, 0.01, 40), (64, 0.01, 160), (64, 0.04, 160))


async def warm_up(base_url: str, level: int) -> None:
    """Two rounds of `level` requests of each API, so the freshly started server's own first-time work
    (imports, caches, accepting connections) is not taken for the client's error."""
    async with Connection("warm-up", base_url, "none").client(timeout_s=30, max_connections=level) as client:
        for api, prompt in (("completions", "warm up"), ("chat", [{"role": "user", "content": "warm up"}])) * 2:
            await asyncio.gather(*(stream_request(client, Request(api, "scripted", prompt, 8, 0.0),
                                                  request_id=f"warm-up-{uuid.uuid4()}") for _ in range(level)))


def measure_level(level: int, gap_s: float, items: int, tmp: Path) -> dict:
    args = ["--ttft", str(TTFT_S), "--gap", str(gap_s), "--tokens", str(TOKENS)]
    with ScriptedProcess(args) as server:
        asyncio.run(warm_up(server.base_url, level))
        config = write_config(tmp / f"c{level}-{gap_s}", server.base_url, concurrency=level, items_per_dataset=items)
        me = psutil.Process()
        server_process = next(child for child in me.children() if "toolkit.testing.scripted_server" in child.cmdline())
        cpu_before = [sum(process.cpu_times()[:2]) for process in (me, server_process)]
        summary = collect(config, runs_root=tmp / "runs", run_id=f"c{level}-gap{gap_s}")
        cpu_share = [(sum(process.cpu_times()[:2]) - before) / summary.elapsed_s
                     for process, before in zip((me, server_process), cpu_before)]
        log = {attempt["key"]: attempt for attempt in server.fetch_log()}
    table = load_run(summary.run_dir)
    if summary.errors or len(table) != summary.planned:
        raise RuntimeError(f"concurrency {level}: {summary.errors} errors, {len(table)} of {summary.planned} rows")
    first_wave = table["sequence"] < level  # the first request of each connection, all started together
    return {"concurrency": level, "gap_s": gap_s, "requests": len(table),
            "elapsed_s": round(summary.elapsed_s, 3), "chunks_per_s": round(level / gap_s),
            "client_cpu_share": round(cpu_share[0], 2), "server_cpu_share": round(cpu_share[1], 2),
            "load_average_1m": round(os.getloadavg()[0], 2), **errors_of(table.to_dict("records"), log, gap_s),
            "ttft_error_warm_ms": errors_of(table[~first_wave].to_dict("records"), log, gap_s)["ttft_error_ms"],
            "ttft_error_first_wave_ms": errors_of(table[first_wave].to_dict("records"), log, gap_s)["ttft_error_ms"]}


def errors_of(rows: list[dict], log: dict[str, dict], gap_s: float) -> dict[str, dict]:
    due = Behaviour(ttft_s=TTFT_S, gap_s=gap_s, tokens=TOKENS).offsets_s()
    scripted_gaps = [b - a for a, b in zip(due, due[1:])]
    gap_error, ttft_error, vs_script, late = [], [], [], []
    for row in rows:
        sent = log[row["request_id"]]
        token_ns = sent["token_ns"]
        if len(token_ns) != TOKENS or len(row["tbt_s"]) != TOKENS - 1:
            raise RuntimeError(f"request {row['request_id']}: {len(row['tbt_s'])} gaps recorded, "
                               f"{len(token_ns)} tokens sent")
        sent_gaps = [(b - a) / 1e9 for a, b in zip(token_ns, token_ns[1:])]
        gap_error += [abs(m - s) for m, s in zip(row["tbt_s"], sent_gaps)]
        vs_script += [abs(m - s) for m, s in zip(row["tbt_s"], scripted_gaps)]
        ttft_error.append(row["ttft_s"] - (token_ns[0] - sent["received_ns"]) / 1e9)
        late += [(t - sent["received_ns"]) / 1e9 - d for t, d in zip(token_ns, due)]
    return {"gap_error_ms": summary_ms(gap_error), "ttft_error_ms": summary_ms(ttft_error),
            "gap_vs_script_ms": summary_ms(vs_script), "server_late_ms": summary_ms(late)}


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        levels = [measure_level(level, gap_s, items, Path(tmp))
                  for level, gap_s, items in (LEVELS_QUICK if args.quick else LEVELS_FULL)]
    for result in levels:
        gap, ttft, warm = result["gap_error_ms"], result["ttft_error_ms"], result["ttft_error_warm_ms"]
        print(f"{result['concurrency']:>2} streams, {result['gap_s'] * 1000:.0f} ms gaps ({result['chunks_per_s']:>4} "
              f"chunks/s, CPU client {result['client_cpu_share']:.2f} server {result['server_cpu_share']:.2f}): "
              f"{result['requests']:>5} requests; gap error median {gap['median']:.3f} ms, p99 {gap['p99']:.3f} ms; "
              f"TTFT error median {ttft['median']:.3f} ms, p99 {ttft['p99']:.3f} ms (warm p99 {warm['p99']:.3f} ms)")
    top = next(r for r in levels if r["concurrency"] == 64 and r["gap_s"] == 0.01)["gap_error_ms"]
    ttft_p99 = {r["concurrency"]: r["ttft_error_ms"]["p99"] for r in levels
                if r["concurrency"] in (16, 64) and r["gap_s"] == 0.01}
    target = {"concurrency": 64, "gap_s": 0.01, "gap_error_median_ms_below": 1.0,
              "gap_error_p99_ms_below": 5.0, "gap_met": top["median"] < 1.0 and top["p99"] < 5.0,
              "ttft_error_p99_ms_below": 5.0, "ttft_met": all(p99 < 5.0 for p99 in ttft_p99.values())}
    print(f"targets in one process: gap error at 64 streams, 10 ms gaps (median < 1 ms, p99 < 5 ms) "
          f"{'met' if target['gap_met'] else 'missed'}; TTFT error p99 < 5 ms at 16 and 64 streams "
          f"{'met' if target['ttft_met'] else 'missed'}")
    write_result("timing_fidelity", {"script": {"ttft_s": TTFT_S, "tokens": TOKENS}, "levels": levels,
                                     "target": target, "elapsed_s": round(time.monotonic() - started, 1)},
                 quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
