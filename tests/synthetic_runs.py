"""Synthetic run directories with a known ground truth, for notebook, report and overview tests.

Latency follows e2e = TTFT + DECODE_S_PER_TOKEN x (completion_tokens - 1) and
TTFT = TTFT_BASE_S + PREFILL_S_PER_TOKEN x prompt_tokens, with small noise, so fitted slopes and
what-if ratios have closed forms.  `graded=False` mimics latency-only imports (llmperf),
`timed=False` mimics accuracy-only imports (AlpacaEval).  `built_report` executes the notebooks
once per test process for test_notebooks.py and test_report.py together.
"""
from __future__ import annotations

import atexit
import datetime as dt
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.schema import coerce_requests
from toolkit.store import save_run

TTFT_BASE_S = 0.1
PREFILL_S_PER_TOKEN = 0.002
DECODE_S_PER_TOKEN = 0.02
# config_id -> (model, prompt_variant, prompt_tokens, true accuracy, error share)
CONFIGS = {
    "small/zero_shot": ("gemma-3-270m-q4_k_m", "zero_shot", 20, 0.35, 0.0),
    "small/few_shot": ("gemma-3-270m-q4_k_m", "few_shot_3", 120, 0.55, 0.0),
    "api/zero_shot": ("gpt-4o-mini", "zero_shot", 20, 0.9, 0.05),
}
DATASETS = ("capitals", "arithmetic")


def synthetic_requests(*, items: int = 20, graded: bool = True, timed: bool = True,
                       seed: int = 0, run_id: str = "synthetic") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    clock = 0.0
    for config_id, (model, variant, prompt, accuracy, error_share) in CONFIGS.items():
        for dataset in DATASETS:
            for item in range(items):
                failed = rng.random() < error_share
                completion = int(rng.integers(1, 80))
                ttft = TTFT_BASE_S + PREFILL_S_PER_TOKEN * prompt + abs(rng.normal(0, 0.005))
                gaps = [DECODE_S_PER_TOKEN + float(rng.normal(0, 0.001)) for _ in range(completion - 1)]
                e2e = ttft + sum(gaps)
                correct = bool(rng.random() < accuracy)
                row = {
                    "run_id": run_id, "request_id": f"{config_id}/{dataset}/{item}",
                    "config_id": config_id, "model": model, "prompt_variant": variant,
                    "max_tokens": 80, "temperature": 0.0, "dataset": dataset,
                    "item_id": f"{dataset}-{item:04d}", "repeat": 0, "endpoint": "127.0.0.1:1",
                    "batch": False, "cache_hit": False,
                    "started_at": start + dt.timedelta(seconds=clock), "status": "ok",
                    "attempts": 1, "concurrency": 1, "sequence": len(rows),
                    "prompt_tokens": prompt + int(rng.integers(0, 5)), "completion_tokens": completion,
                    "usage_source": "server", "output_text": "x", "expected": "x" if graded else None,
                    "grader": "exact" if graded else None,
                    "correct": correct if graded else None, "score": float(correct) if graded else None,
                    "ttft_s": ttft if timed else None, "e2e_s": e2e if timed else None,
                    "tbt_s": gaps if timed else None,
                }
                if failed:
                    row |= {"status": "error", "error_type": "http_500", "http_status": 500,
                            "completion_tokens": None, "ttft_s": None, "e2e_s": None, "tbt_s": None,
                            "correct": None, "score": None, "output_text": None}
                rows.append(row)
                clock += e2e + 0.01
    return coerce_requests(pd.DataFrame(rows))


def make_run(path: Path, **options: object) -> Path:
    """Write a synthetic run dir at `path` (its name is the run id) and return it."""
    frame = synthetic_requests(run_id=path.name, **options)  # type: ignore[arg-type]
    manifest = {"run_id": path.name, "source": "synthetic test run", "configs": list(CONFIGS)}
    return save_run(path, frame, manifest)


SAMPLE_RUN = Path(__file__).resolve().parent.parent / "data" / "runs" / "sample"
REPORT_PARAMETERS = {"value_usd": 2.5, "latency_quantile": 0.9}


@functools.cache
def scratch_dir() -> Path:
    """One temporary folder per test process, removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="frontier-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def main_run_dir() -> Path:
    """The shipped sample run when it exists, else a synthetic run: what notebooks are tested on."""
    if (SAMPLE_RUN / "requests.parquet").exists():
        return SAMPLE_RUN
    return make_run(scratch_dir() / "synthetic")


@functools.cache
def built_report() -> Path:
    """index.html of one report on `main_run_dir()`, built once per test process (4 notebook runs)."""
    from toolkit.report import build_report

    return build_report(main_run_dir(), out_root=scratch_dir() / "reports", parameters=REPORT_PARAMETERS)
