"""Replay fidelity: how late `frontier replay` sends against the scaled schedule of a trace, at 50
requests/s (a 5/s Poisson trace of 1,000 requests replayed 10x faster; 250 with --quick), against the
scripted server in its own process.

Target (issue 12): send lag p99 < 5 ms.  Other work on a shared machine only ever makes sends later,
so the least disturbed of three runs is reported beside each run's figures (timeit's rule).
"""
from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pandas as pd

from _common import parse_args, summary_ms, write_result
from toolkit.pacing import arrival_offsets
from toolkit.replay import ReplaySettings, replay
from toolkit.store import load_run
from toolkit.testing import ScriptedProcess

TARGET_P99_S = 0.005
RUNS = 3


def azure_trace(folder: Path, offsets_s: list[float]) -> Path:
    folder.mkdir(parents=True)
    start = pd.Timestamp("2023-11-16 18:00:00")
    stamps = [(start + pd.Timedelta(seconds=o)).strftime("%Y-%m-%d %H:%M:%S.%f") + "0" for o in offsets_s]
    pd.DataFrame({"TIMESTAMP": stamps, "ContextTokens": 40, "GeneratedTokens": 4}).to_csv(
        folder / "AzureLLMInferenceTrace_code.csv", index=False)
    return folder


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    count = 250 if args.quick else 1000
    runs = []
    with tempfile.TemporaryDirectory() as tmp, ScriptedProcess(["--ttft", "0.01", "--tokens", "1"]) as server:
        trace = azure_trace(Path(tmp) / "trace", arrival_offsets(count, 5.0, random.Random(12)))
        for attempt in range(RUNS):
            summary = replay(trace, ReplaySettings(speed=10), base_url=server.base_url, model="scripted",
                             out_dir=Path(tmp) / f"run{attempt}")
            table = load_run(summary.run_dir)
            if summary.errors or len(table) != count:
                raise SystemExit(f"run {attempt}: {summary.errors} errors, {len(table)} of {count} rows")
            runs.append(summary_ms(table["send_lag_s"].to_numpy(dtype=float)))
    best = min(run["p99"] for run in runs)
    result = {"requests_per_run": count, "rate_per_s": 50, "send_lag_ms": runs, "best_p99_ms": best,
              "target_p99_ms": TARGET_P99_S * 1000, "met": bool(best < TARGET_P99_S * 1000)}
    write_result("replay_fidelity", result, quick=args.quick)
    print(f"send lag p99 per run: {[r['p99'] for r in runs]} ms (best {best} ms, target {TARGET_P99_S * 1000:g} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
