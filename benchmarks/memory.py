"""Memory: resident set size of the collecting process over a 100,000-request run (10,000 with
--quick) against a scripted server with zero delays, at concurrency 64.

RSS is sampled four times a second and read exactly when 10%, 50% and 100% of the requests are
recorded; a collector that journals each request and keeps nothing per request in memory stays
flat between 10% and 100%.  The peak (ru_maxrss) also covers planning and the final fold of the
journal into requests.parquet, which loads the whole table once, so it is reported on its own.
"""
from __future__ import annotations

import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from _common import ITEMS_PER_REPEAT, parse_args, write_config, write_result
from toolkit.collect import collect
from toolkit.testing import ScriptedProcess

CONCURRENCY = 64
MARKS = (0.1, 0.5, 1.0)
FLAT_MB = 20.0  # growth from 10% to 100% counted as flat (allocator noise, caches warming up)


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    requests = 10_000 if args.quick else 100_000
    me = psutil.Process()
    at_start = rss_mb(me)
    done = 0
    at_mark: dict[str, float] = {}
    marks = {round(requests * mark): f"{mark:.0%}" for mark in MARKS}
    samples: list[tuple[float, int, float]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.wait(0.25):
            samples.append((round(time.monotonic() - started, 2), done, round(rss_mb(me), 1)))

    def on_record(record: object) -> None:
        nonlocal done
        done += 1
        if done in marks:
            at_mark[marks[done]] = round(rss_mb(me), 1)

    sampler = threading.Thread(target=sample, daemon=True)
    with ScriptedProcess(["--tokens", "8"]) as server, tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), server.base_url, concurrency=CONCURRENCY,
                              repeats=-(-requests // ITEMS_PER_REPEAT), max_requests=requests)
        sampler.start()
        try:
            summary = collect(config, runs_root=Path(tmp) / "runs", run_id="memory", on_record=on_record)
        finally:
            stop.set()
            sampler.join()
        parquet_mb = (summary.run_dir / "requests.parquet").stat().st_size / 2**20
    if summary.errors or done != requests:
        raise RuntimeError(f"{done} of {requests} requests recorded, {summary.errors} errors")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    growth = at_mark["100%"] - at_mark["10%"]
    during = [rss for _, count, rss in samples if count >= requests * 0.1]
    step = max(1, len(samples) // 60)
    print(f"{requests} requests in {summary.elapsed_s:.1f} s; RSS at start {at_start:.0f} MB, "
          + ", ".join(f"at {mark} {value:.0f} MB" for mark, value in at_mark.items())
          + f"; growth 10%->100% {growth:+.1f} MB ({'flat' if abs(growth) < FLAT_MB else 'GROWING'}); "
          f"peak {peak_mb:.0f} MB (incl. the final fold into a {parquet_mb:.1f} MB parquet)")
    write_result("memory", {
        "requests": requests, "concurrency": CONCURRENCY, "elapsed_s": round(summary.elapsed_s, 1),
        "rss_mb": {"start": round(at_start, 1), **at_mark, "max_while_collecting_after_10%": max(during, default=None),
                   "peak_ru_maxrss": round(peak_mb, 1)},
        "growth_10_to_100_mb": round(growth, 1), "flat": abs(growth) < FLAT_MB, "flat_threshold_mb": FLAT_MB,
        "requests_parquet_mb": round(parquet_mb, 2),
        "timeline": [{"t_s": t, "requests_done": n, "rss_mb": rss} for t, n, rss in samples[::step]]},
        quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
