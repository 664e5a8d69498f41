"""What the benchmarks share: a config aimed at a scripted server, percentiles, the result file."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATASETS = ("capitals", "sentiment", "dates", "arithmetic")
VARIANTS = ("zero_shot", "few_shot_1", "few_shot_3", "few_shot_5", "chat")
ITEMS_PER_REPEAT = 788 * len(VARIANTS)  # every item of the four datasets in every variant


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a smaller run that takes under a minute")
    return parser.parse_args()


def write_config(directory: Path, base_url: str, *, concurrency: int | None = None, arrival: dict | None = None,
                 items_per_dataset: int | None = None, repeats: int = 1, max_requests: int | None = None,
                 datasets: Sequence[str] = DATASETS) -> Path:
    """A collect config over the repo's datasets, aimed at `base_url`, with errors never stopping it: closed
    loop at `concurrency`, or open loop at `arrival` (`grid.arrival`)."""
    load = {"arrival": arrival} if arrival is not None else {"concurrency": [concurrency]}
    raw = {
        "name": "bench", "datasets": list(datasets), "items_per_dataset": items_per_dataset, "seed": 1,
        "evals_dir": str(REPO / "data" / "evals"), "prompts_dir": str(REPO / "data" / "prompts"),
        "endpoints": [{"name": "scripted", "base_url": base_url, "models": ["scripted"]}],
        "grid": {"prompt_variants": list(VARIANTS), "max_tokens": [32], **load, "repeats": repeats},
        "retry": {"max_attempts": 1, "timeout_s": 30.0},
        "limits": {"max_error_rate": 1.0, "max_requests": max_requests},
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99 and max of `values_s`, in milliseconds."""
    values = np.asarray(values_s, dtype=float) * 1000
    if values.size == 0:
        return {"n": 0}
    return {"n": int(values.size), "median": round(float(np.median(values)), 4),
            "p90": round(float(np.percentile(values, 90)), 4), "p99": round(float(np.percentile(values, 99)), 4),
            "max": round(float(values.max()), 4)}


def machine() -> dict[str, object]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average_1m_at_end": round(load[0], 2)}


def write_result(name: str, result: dict, *, quick: bool) -> Path:
    """Write `benchmarks/results/<name>.json`; an OSError here must fail the benchmark (exit non-zero)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "quick": quick, "finished_at": dt.datetime.now(dt.UTC).isoformat(),
               "machine": machine(), **result}
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)}", file=sys.stderr)
    return path
