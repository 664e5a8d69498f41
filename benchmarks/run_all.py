"""Run every benchmark in sequence (`--quick` passes through); exit non-zero if one fails or does not
write its result file.  Speed targets are reported in the results, never turned into a failure."""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("timing_fidelity", "harness_throughput", "memory", "latency_model", "analysis_scale", "load_sweep",
              "traffic_scale", "replay_fidelity", "workers_fidelity", "workers_memory")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark in its under-a-minute form")
    args = parser.parse_args()
    failed = []
    for name in BENCHMARKS:
        result = HERE / "results" / f"{name}.json"
        started = time.time()
        print(f"== {name}", flush=True)
        code = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if args.quick else [])],
                              check=False).returncode
        written = result.exists() and result.stat().st_mtime >= started
        if code != 0 or not written:
            failed.append(f"{name} (exit code {code}{'' if written else ', no new ' + str(result)})")
        print(f"== {name}: {'ok' if code == 0 and written else 'FAILED'} in {time.time() - started:.0f} s", flush=True)
    if failed:
        print("failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
