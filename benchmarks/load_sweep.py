"""The embedded server under load: throughput and latency at 1, 2, 4 and 8 requests in flight.

Collects few-shot answers (capitals and sentiment, `few_shot_3`, at most 16 tokens with the dataset's
stop sequence) from the real embedded llama-server through the full collector, one phase per level,
then reads each level's throughput off the requests table: requests (and output tokens) completed
per second of the phase's wall time (first send to last byte), with p50/p95 TTFT and e2e and the
server's own prefill/decode times.  Target: at 8 in flight, throughput >= 1.6x that at 1.
Writes benchmarks/results/load_sweep.json.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from _common import REPO, parse_args, write_result
from toolkit.collect import collect
from toolkit.store import load_run

LEVELS = (1, 2, 4, 8)
TARGET_RATIO = 1.6


def write_config(directory: Path, items: int) -> Path:
    raw = {
        "name": "load-sweep", "datasets": ["capitals", "sentiment"], "items_per_dataset": items, "seed": 3,
        "order": "shuffled", "evals_dir": str(REPO / "data" / "evals"), "prompts_dir": str(REPO / "data" / "prompts"),
        "endpoints": [{"name": "embedded", "kind": "embedded"}],
        "grid": {"prompt_variants": ["few_shot_3"], "max_tokens": [16], "concurrency": list(LEVELS)},
        "retry": {"max_attempts": 3, "timeout_s": 120},
        "limits": {"max_error_rate": 0.5},
    }
    path = directory / "load_sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def per_level(table: pd.DataFrame) -> list[dict]:
    ok = table[table["status"] == "ok"]
    done = table["started_at"] + pd.to_timedelta(table["e2e_s"].astype(float).fillna(0.0), unit="s")
    levels = []
    for level, part in ok.groupby("concurrency", sort=True):
        phase = table[table["concurrency"] == level]
        wall = (done[phase.index].max() - phase["started_at"].min()).total_seconds()
        tokens = float(part["completion_tokens"].astype(float).sum())
        levels.append({
            "in_flight": int(level), "requests": len(part), "errors": int(len(phase) - len(part)),
            "wall_s": round(wall, 3), "requests_per_s": round(len(part) / wall, 3),
            "output_tokens_per_s": round(tokens / wall, 2),
            **{f"{q}_{m}": round(float(np.percentile(part[m].astype(float), p)), 4)
               for m in ("ttft_s", "e2e_s") for q, p in (("p50", 50), ("p95", 95))},
            "mean_server_prefill_s": round(float(part["server_prefill_s"].astype(float).mean()), 4),
            "mean_server_decode_s": round(float(part["server_decode_s"].astype(float).mean()), 4),
            "usage_source": sorted(part["usage_source"].dropna().unique().tolist()),
        })
    return levels


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    items = 8 if args.quick else 40  # per dataset: 16 or 80 requests per level
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        summary = collect(write_config(Path(scratch), items), runs_root=Path(scratch) / "runs", run_id="sweep")
        table = load_run(summary.run_dir)
    levels = per_level(table)
    rate = {level["in_flight"]: level["requests_per_s"] for level in levels}
    ratio = rate[max(rate)] / rate[min(rate)] if len(rate) > 1 else float("nan")
    result = {
        "levels": levels, "ratio_8_to_1": round(ratio, 3), "target_ratio": TARGET_RATIO,
        "meets_target": bool(ratio >= TARGET_RATIO), "errors": summary.errors,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_result("load_sweep", result, quick=args.quick)
    for level in levels:
        print(f"{level['in_flight']} in flight: {level['requests_per_s']:.2f} req/s, "
              f"{level['output_tokens_per_s']:.1f} tok/s, p50 e2e {level['p50_e2e_s']:.3f} s, "
              f"p95 e2e {level['p95_e2e_s']:.3f} s")
    print(f"throughput at 8 / at 1: {ratio:.2f}x (target {TARGET_RATIO}x)")
    return 0 if summary.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
