"""How well the latency model (toolkit.analysis.latency_model) predicts requests it never saw.

Per provider and model: the median absolute percentage error of the predicted p50 e2e on held-out
requests (k-fold over requests) and on requests longer than any it was fitted on (fitted on the
shorter half of output lengths, tested on the longer half), and how often a held-out request stays
under its predicted p95.  Default data: the repo's data/public/llmperf, imported into a temporary
run dir, plus data/runs/sample when present; `--run-dir` replaces them with your own runs.
Writes benchmarks/results/latency_model.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from _common import REPO, write_result
from toolkit.analysis.latency_model import heldout_errors, heldout_predictions
from toolkit.importers import import_to_run_dir
from toolkit.store import load_run

LLMPERF = REPO / "data" / "public" / "llmperf"
SAMPLE = REPO / "data" / "runs" / "sample"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 folds instead of 5 (the data is the same)")
    parser.add_argument("--run-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="a run dir to evaluate (repeatable); default: data/public/llmperf + data/runs/sample")
    parser.add_argument("--folds", type=int, default=None, help="k of the k-fold (default 5, 3 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folds = args.folds or (3 if args.quick else 5)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        run_dirs = args.run_dir or default_run_dirs(Path(scratch))
        if not run_dirs:
            print("no run dirs: data/public/llmperf and data/runs/sample are both missing",
                  file=sys.stderr)
            return 1
        runs = [evaluate(path, folds=folds, seed=args.seed) for path in run_dirs]
    for run in runs:
        for split, row in run["overall"].items():
            print(f"{run['run']}: {split} MAPE {row['mape_pct']:.1f}% over {row['n_heldout']} held-out "
                  f"requests, p95 coverage {row['p95_coverage']:.0%}", file=sys.stderr)
    write_result("latency_model", {"folds": folds, "seed": args.seed, "runs": runs,
                                   "seconds": round(time.perf_counter() - started, 1)}, quick=args.quick)
    return 0


def default_run_dirs(scratch: Path) -> list[Path]:
    dirs = []
    if LLMPERF.is_dir():
        dirs.append(import_to_run_dir("llmperf", LLMPERF, scratch / "llmperf"))
    if SAMPLE.is_dir() and (SAMPLE / "manifest.json").exists():
        dirs.append(SAMPLE)
    return dirs


def evaluate(run_dir: Path, *, folds: int, seed: int) -> dict:
    """Held-out errors of one run dir: per group and split, and pooled per split."""
    frame = load_run(run_dir)
    predictions = heldout_predictions(frame, folds=folds, seed=seed)
    groups = heldout_errors(predictions)
    pooled = heldout_errors(predictions, by=())
    return {
        "run": run_dir.name if run_dir != SAMPLE else "data/runs/sample",
        "requests": len(frame),
        "overall": {row["split"]: _clean(row) for row in pooled.to_dict("records")},
        "groups": [_clean(row) for row in groups.to_dict("records")],
    }


def _clean(row: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if not pd.isna(v)}


if __name__ == "__main__":
    sys.exit(main())
