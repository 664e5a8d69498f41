"""Memory per worker: resident set size of each Ray worker of `collect --workers 2` over 100,000
requests per worker (10,000 with --quick) against a scripted server with zero delays, at 64 in flight
in total.

Each worker's pid comes from the run's manifest (the session lists where every shard runs); RSS is
sampled four times a second with the whole run's count of recorded requests (what the progress bar
shows).  A worker that keeps nothing per request stays flat between the first sample past 10% of the
run and the last one before the end (the workers are stopped once the run is done, so "100%" is the
last sample taken while they still ran).
"""
from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from _common import ITEMS_PER_REPEAT, parse_args, write_config, write_result
from toolkit.sharded import collect_sharded
from toolkit.testing import ScriptedProcess

WORKERS = 2
CONCURRENCY = 64
FLAT_MB = 20.0  # as memory.py: growth from 10% to the end counted as flat (a worker that frees memory is flat too)


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    per_worker = 10_000 if args.quick else 100_000
    requests = per_worker * WORKERS
    done = 0
    workers: dict[str, psutil.Process] = {}
    samples: list[dict] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.wait(0.25):
            row = {"t_s": round(time.monotonic() - started, 2), "requests_done": done}
            try:
                row.update({part: round(process.memory_info().rss / 2**20, 1) for part, process in workers.items()})
            except psutil.NoSuchProcess:  # the run is over: its workers are gone
                return
            if workers:
                samples.append(row)

    def on_progress(count: int, error_types: dict[str, int]) -> None:
        nonlocal done
        done = count

    with ScriptedProcess(["--tokens", "8"]) as server, tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), server.base_url, concurrency=CONCURRENCY,
                              repeats=-(-requests // ITEMS_PER_REPEAT), max_requests=requests)
        run_dir = Path(tmp) / "runs" / "workers-memory"

        def on_start(pending: int) -> None:  # the manifest now says where each shard runs
            shards = json.loads((run_dir / "manifest.json").read_text())["sessions"][-1]["shards"]
            workers.update({shard["part"]: psutil.Process(shard["pid"]) for shard in shards})

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            summary = collect_sharded(config, workers=WORKERS, runs_root=Path(tmp) / "runs", run_id=run_dir.name,
                                      on_start=on_start, on_progress=on_progress)
        finally:
            stop.set()
            sampler.join()
    if summary.errors or summary.sent != requests:
        raise RuntimeError(f"{summary.sent} of {requests} requests sent, {summary.errors} errors")
    after_tenth = [row for row in samples if row["requests_done"] >= requests * 0.1]
    if len(after_tenth) < 2:
        raise RuntimeError(f"too few RSS samples past 10% of the run ({len(after_tenth)}): run without --quick")
    first, last = after_tenth[0], after_tenth[-1]
    per_part = {part: {"rss_mb_at_10%": first[part], "rss_mb_at_end": last[part],
                       "max_rss_mb_after_10%": max(row[part] for row in after_tenth),
                       "growth_mb": round(last[part] - first[part], 1)} for part in workers}
    flat = all(values["growth_mb"] < FLAT_MB for values in per_part.values())
    print(f"{requests} requests over {WORKERS} workers in {summary.elapsed_s:.1f} s "
          f"({requests / summary.elapsed_s:.0f}/s); RSS from {first['requests_done']} to {last['requests_done']} done: "
          + "; ".join(f"{part} {v['rss_mb_at_10%']:.0f} -> {v['rss_mb_at_end']:.0f} MB ({v['growth_mb']:+.1f})"
                      for part, v in per_part.items())
          + f" ({'flat' if flat else 'GROWING'})")
    step = max(1, len(samples) // 60)
    write_result("workers_memory", {
        "workers": WORKERS, "requests_per_worker": per_worker, "concurrency": CONCURRENCY,
        "elapsed_s": round(summary.elapsed_s, 1), "workers_rss": per_part, "flat": flat, "flat_threshold_mb": FLAT_MB,
        "measured_from_to_requests_done": [first["requests_done"], last["requests_done"]],
        "timeline": samples[::step]}, quick=args.quick)
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
