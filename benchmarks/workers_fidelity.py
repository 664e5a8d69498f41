"""Timing fidelity with `collect --workers 2`: TTFT and inter-token gaps as two Ray worker processes
record them, against the scripted server's own send times, at 16 and 64 streams in total, next to
one process (`timing_fidelity.measure_level`) on the same levels in the same run.

The measurement is timing_fidelity's (`errors_of`): the server runs in its own process and logs
when it received each request and sent each token on CLOCK_MONOTONIC, which every process on the
machine shares.  One local Ray instance (2 CPUs) serves every level, so its start-up (seconds) is
not in the figures; each level still starts its two workers.  The one-process figures here come from
the same run (before Ray starts), so the two are compared on the same load.  On a 2-core machine the two workers,
the driver, Ray's own processes and the server share the cores, so this is what sharding buys (or
costs) when the client machine is no bigger.
Targets (issue 13): at 64 streams with 2 workers gap error median < 1 ms and p99 < 5 ms; TTFT
error p99 < 5 ms at 16 and 64 streams.

Then the open-loop ceiling: an arrival grid (`grid.arrival`, at most 64 in flight) of 3,000 requests at 500,
1,000 and 2,000 requests/s (1,000 at 1,000/s with --quick), one process against 2 workers, each on a fresh
server: the rate achieved (`arrival_report`:
every request over the last send) and the send lag (how late each request went out after it fell due).
Reported, no target.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import ray

from _common import parse_args, summary_ms, write_config, write_result
from timing_fidelity import TOKENS, TTFT_S, errors_of, measure_level
from toolkit.collect import collect
from toolkit.sharded import collect_sharded
from toolkit.store import load_run, read_manifest
from toolkit.testing import ScriptedProcess

WORKERS = 2
# (streams in total, gap between tokens, items per dataset): 4 datasets x 5 variants x items requests
LEVELS_QUICK = ((16, 0.01, 8), (64, 0.01, 32))
LEVELS_FULL = ((16, 0.01, 40), (64, 0.01, 160))
# answers of 4 tokens in about 16 ms: 64 in flight allow 4,000 requests/s (Little's law), so the client is the limit
OPEN_LOOP_MAX_IN_FLIGHT, OPEN_LOOP_TTFT_S, OPEN_LOOP_GAP_S = 64, 0.01, 0.002
# (rates, items per dataset): 4 datasets x 5 variants x items requests per rate
OPEN_LOOP_QUICK, OPEN_LOOP_FULL = ((1000,), 50), ((500, 1000, 2000), 150)


def measure_workers(level: int, gap_s: float, items: int, tmp: Path) -> dict:
    args = ["--ttft", str(TTFT_S), "--gap", str(gap_s), "--tokens", str(TOKENS)]
    with ScriptedProcess(args) as server:
        config = write_config(tmp / f"w{level}-{gap_s}", server.base_url, concurrency=level, items_per_dataset=items)
        summary = collect_sharded(config, workers=WORKERS, runs_root=tmp / "runs", run_id=f"w{level}-gap{gap_s}")
        log = {attempt["key"]: attempt for attempt in server.fetch_log()}
    table = load_run(summary.run_dir)
    if summary.errors or len(table) != summary.planned:
        raise RuntimeError(f"{level} streams over {WORKERS} workers: {summary.errors} errors, "
                           f"{len(table)} of {summary.planned} rows")
    rows = table.to_dict("records")
    # past each worker's first request per slot (new connections): worker k numbers its j-th request k + 2j
    warm = table[table["sequence"] >= level + WORKERS].to_dict("records")
    return {"concurrency": level, "workers": WORKERS, "gap_s": gap_s, "requests": len(table),
            "elapsed_s": round(summary.elapsed_s, 3), "chunks_per_s": round(level / gap_s),
            "load_average_1m": round(os.getloadavg()[0], 2), **errors_of(rows, log, gap_s),
            "ttft_error_warm_ms": errors_of(warm, log, gap_s)["ttft_error_ms"]}


def measure_open_loop(rate: int, workers: int | None, items: int, tmp: Path) -> dict:
    """`rate` requests/s open loop, in one process (`workers` None) or over `workers` Ray workers."""
    with ScriptedProcess(["--ttft", str(OPEN_LOOP_TTFT_S), "--gap", str(OPEN_LOOP_GAP_S), "--tokens", "4"]) as server:
        name = f"open{rate}-{workers or 1}"
        config = write_config(tmp / name, server.base_url, items_per_dataset=items,
                              arrival={"rate_per_s": rate, "max_in_flight": OPEN_LOOP_MAX_IN_FLIGHT})
        summary = (collect(config, runs_root=tmp / "runs", run_id=name) if workers is None else
                   collect_sharded(config, workers=workers, runs_root=tmp / "runs", run_id=name))
    table = load_run(summary.run_dir)
    if summary.errors or len(table) != summary.planned:
        raise RuntimeError(f"{name}: {summary.errors} errors, {len(table)} of {summary.planned} rows")
    (phase,) = read_manifest(summary.run_dir)["phases"]
    return {"target_rate_per_s": rate, "workers": workers or 1, "requests": len(table),
            "achieved_rate_per_s": round(phase["arrival"]["achieved_rate_per_s"], 1),
            "send_lag_ms": summary_ms(table["send_lag_s"]), "load_average_1m": round(os.getloadavg()[0], 2)}


def line(result: dict, who: str) -> str:
    gap, ttft = result["gap_error_ms"], result["ttft_error_ms"]
    return (f"{result['concurrency']:>2} streams, {who}: {result['requests']:>5} requests in {result['elapsed_s']:.1f} s; "
            f"gap error median {gap['median']:.3f} ms, p99 {gap['p99']:.3f} ms; TTFT error median "
            f"{ttft['median']:.3f} ms, p99 {ttft['p99']:.3f} ms")


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    started = time.monotonic()
    levels = LEVELS_QUICK if args.quick else LEVELS_FULL
    open_rates, open_items = OPEN_LOOP_QUICK if args.quick else OPEN_LOOP_FULL
    with tempfile.TemporaryDirectory() as tmp:
        # one process first: measure_level reads the CPU time of this process's only child, the server
        single = [measure_level(level, gap_s, items, Path(tmp)) for level, gap_s, items in levels]
        open_single = [measure_open_loop(rate, None, open_items, Path(tmp)) for rate in open_rates]
        ray.init(address="local", num_cpus=WORKERS, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        try:
            sharded = [measure_workers(level, gap_s, items, Path(tmp)) for level, gap_s, items in levels]
            open_sharded = [measure_open_loop(rate, WORKERS, open_items, Path(tmp)) for rate in open_rates]
        finally:
            ray.shutdown()
    for two, one in zip(sharded, single):
        print(line(two, f"{WORKERS} workers"))
        print(line(one, "1 process "))
    for result in (*open_single, *open_sharded):
        lag = result["send_lag_ms"]
        print(f"open loop at {result['target_rate_per_s']:>5,}/s, {result['workers']} process(es): achieved "
              f"{result['achieved_rate_per_s']:,.0f}/s; send lag median {lag['median']:.2f} ms, p99 {lag['p99']:.2f} ms")
    top = next(r for r in sharded if r["concurrency"] == 64)
    target = {"workers": WORKERS, "gap_error_median_ms_below": 1.0, "gap_error_p99_ms_below": 5.0,
              "ttft_error_p99_ms_below": 5.0,
              "gap_met_at_64": top["gap_error_ms"]["median"] < 1.0 and top["gap_error_ms"]["p99"] < 5.0,
              "ttft_met_at_16_and_64": all(r["ttft_error_ms"]["p99"] < 5.0 for r in sharded)}
    print(f"targets with {WORKERS} workers: gap at 64 streams {'met' if target['gap_met_at_64'] else 'missed'}, "
          f"TTFT p99 at 16 and 64 {'met' if target['ttft_met_at_16_and_64'] else 'missed'}")
    write_result("workers_fidelity", {"script": {"ttft_s": TTFT_S, "tokens": TOKENS}, "workers": sharded,
                                      "one_process": single, "target": target,
                                      "open_loop": {"one_process": open_single, "workers": open_sharded},
                                      "elapsed_s": round(time.monotonic() - started, 1)}, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
