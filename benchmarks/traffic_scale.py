"""Traffic analyses at scale: 07_traffic's analyses on a 10,000,000-row synthetic trace (1,000,000
with --quick), written to Parquet by a child process and analysed where it lies, through DuckDB (as 07
reads a run with `open_run`), so the peak resident memory measured is the analyses', not the generator's.

Targets (issue 12): under 60 s and under 2 GB peak resident memory on 2 cores.  The trace: a day of
bursty arrivals (Poisson within minutes, the rate varying 4x over the day), lognormal prompt and
output lengths, conversations that resend their growing history (block hashes shared with the
conversation's earlier turns), and 10% exact repeats of earlier prompts.
"""
from __future__ import annotations

import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from _common import REPO, parse_args, write_result
from toolkit import warehouse
from toolkit.analysis import traffic
from toolkit.analysis.caching import LeverPrices
from toolkit.analysis.latency_model import main_group_model
from toolkit.store import load_run

TARGET_S, TARGET_GB = 60.0, 2.0
BLOCK = 512
PRICES = LeverPrices(input_usd_per_mtok=0.15, cached_input_usd_per_mtok=0.075, output_usd_per_mtok=0.6)


def synthetic_trace(n: int, seed: int = 0, chunk: int = 1_000_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # a rate that swings 4x over the day, then Poisson arrivals within it
    weights = 1 + 3 * np.sin(np.linspace(0, np.pi, 24)) ** 2
    seconds = np.sort(rng.choice(24, size=n, p=weights / weights.sum()) * 3600 + rng.uniform(0, 3600, n))
    prompt = np.clip(rng.lognormal(7.0, 1.0, n), 16, 128_000).astype(np.int64)
    output = np.clip(rng.lognormal(4.5, 1.0, n), 1, 8_000).astype(np.int64)
    conversation = rng.integers(0, n // 8, n)  # about 8 turns each
    chunks = []
    for begin in range(0, n, chunk):  # a chunk at a time: the block temporaries stay small
        rows = np.arange(begin, min(begin + chunk, n))
        blocks = -(-prompt[rows] // BLOCK)
        offsets = np.concatenate([[0], np.cumsum(blocks)]).astype(np.int32)
        owner = np.repeat(rows, blocks)
        position = np.arange(offsets[-1]) - np.repeat(offsets[:-1], blocks)
        # the first half of a prompt's blocks is its conversation's history, the rest its own
        shared = position < np.repeat(blocks // 2, blocks)
        hashes = np.where(shared, conversation[owner] * 1_000 + position, 10**12 + owner * 1_000 + position)
        chunks.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(hashes)))
    repeat = rng.random(n) < 0.1
    key = np.where(repeat, rng.integers(0, max(n // 10, 1), n), np.arange(n) + n)
    return pa.table({
        "started_at": pa.array((seconds * 1e6).astype(np.int64) + pd.Timestamp("2026-01-01").value // 1000).cast(
            pa.timestamp("us", tz="UTC")),
        # one model and one status: dictionary-encoded, as Parquet stores them (categories in pandas)
        "sequence": np.arange(n), "model": pa.DictionaryArray.from_arrays(np.zeros(n, np.int8), ["gpt-4o-mini"]),
        "status": pa.DictionaryArray.from_arrays(np.zeros(n, np.int8), ["ok"]),
        "prompt_tokens": prompt, "cached_tokens": np.zeros(n, dtype=np.int64), "completion_tokens": output,
        "prefix_hashes": pa.chunked_array(chunks), "prompt_hash": pa.array(key).cast(pa.string()),
    })


def write_trace(path: Path, n: int) -> None:
    pq.write_table(synthetic_trace(n), path, row_group_size=1_000_000)


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    rows = 1_000_000 if args.quick else 10_000_000
    fitted = main_group_model(load_run(REPO / "data" / "runs" / "sample"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.parquet"
        built = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(target=write_trace, args=(path, rows))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"generating the trace failed (exit {child.exitcode})")
        build_s = time.perf_counter() - built
        size_mb = path.stat().st_size / 2**20
        trace = warehouse.connect().read_parquet(str(path))
        steps: dict[str, float] = {}

        def timed(name: str, step):
            start = time.perf_counter()
            out = step()
            steps[name] = round(time.perf_counter() - start, 3)
            return out

        started = time.perf_counter()
        summary = timed("arrival_summary", lambda: traffic.arrival_summary(trace))
        timed("arrivals", lambda: traffic.arrivals(trace))
        timed("token_summary", lambda: traffic.token_summary(trace))
        timed("sample_for_figures", lambda: traffic.token_sample(trace))
        levers = timed("lever_savings", lambda: traffic.lever_savings(
            trace, PRICES, requests_per_month=float(summary["requests_per_month"].iloc[0]), latency=fitted[0]))
        analysis_s = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result = {
        "rows": rows, "build_s": round(build_s, 2), "parquet_mb": round(size_mb, 1),
        "analysis_s": round(analysis_s, 2), "steps_s": steps,
        "peak_rss_gb": round(peak_gb, 3), "targets": {"analysis_s": TARGET_S, "peak_rss_gb": TARGET_GB},
        "met": bool(analysis_s < TARGET_S and peak_gb < TARGET_GB) if not args.quick else None,
        "levers": levers[["lever", "saved_share", "touched_share"]].round(4).to_dict("records"),
    }
    write_result("traffic_scale", result, quick=args.quick)
    print(f"{rows:,} rows ({size_mb:.0f} MB of Parquet): analyses {analysis_s:.1f} s, peak RSS {peak_gb:.2f} GB")
    return 0 if args.quick or result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
