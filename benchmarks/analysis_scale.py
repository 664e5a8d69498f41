"""Analysis scale: the notebooks' code, cell by cell, on a synthetic 1,000,000-row run (100,000 with
--quick; 100,000,000 with --huge), timed per cell, with the peak memory of each notebook.

The run comes from `toolkit.testing.synthetic` (24 configurations over an API model and the
embedded gemma model, 4 datasets, 3 repeats per item, 1% errors) and is saved as a run dir; a run
of more than `CHUNKED_FROM` rows is written to Parquet a million rows at a time
(`write_synthetic_parquet`), never all in memory, and deleted after.  Every
`notebooks/[0-9]*.ipynb` is then executed the way papermill runs it for a report: in a fresh
process of its own (as each notebook gets its own kernel), its parameters cell with the defaults
and `run_dir` pointing at the synthetic run, then each code cell in order, with the Agg backend and
each cell's figures rendered to PNG.  A cell's time is split into `load_s` (`load_run`, `load_sample`, `open_run`: reading the
parquet), `figure_s` (toolkit.plots calls and rendering) and `seconds`, the analysis itself; the
report index's headline runs as one more process.  Peak memory is each process's ru_maxrss
(resident set: imports, the table and everything derived from it); the result's peak is the
largest.  Targets (issue 13), on 2 cores, reported, not asserted: 1,000,000 rows, analyses under 15 s and
every peak under 1 GB; 100,000,000 rows, under 10 minutes and 3 GB.  A notebook process whose resident
set passes `--memory-limit-mb` is killed (the machine is shared) and recorded as such.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import json
import multiprocessing
import pstats
import queue
import resource
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import psutil  # noqa: E402

from _common import REPO, write_result  # noqa: E402
from toolkit import plots, present, pricing, store  # noqa: E402
from toolkit.analysis import frontier  # noqa: E402
from toolkit.testing.synthetic import synthetic_requests, write_synthetic_parquet  # noqa: E402

TARGETS = {1_000_000: (15.0, 1024.0), 100_000_000: (600.0, 3072.0)}  # rows: (analyses s, peak MB)
CHUNKED_FROM = 10_000_000
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))
# The report index's headline, with the notebooks' default parameters
HEADLINE = {"value_usd": 1.0, "error_cost_usd": 2.0, "target_accuracy": None, "latency_budget_s": 2.0,
            "latency_quantile": 0.95}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Stopwatch:
    """Seconds spent inside the functions it wraps."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function: Callable) -> Callable:
        @functools.wraps(function)
        def timed(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
        return timed

    def lap(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


class Recorder:
    """One row per timed piece: wall and CPU seconds, RSS after it and the peak so far."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.process = psutil.Process()

    def add(self, notebook: str, label: str, seconds: float, cpu_s: float, **extra: float) -> None:
        row = {"notebook": notebook, "step": label, "seconds": round(seconds, 3), "cpu_s": round(cpu_s, 3),
               **{k: round(v, 3) for k, v in extra.items()},
               "rss_mb": round(self.process.memory_info().rss / 2**20, 1), "peak_mb": round(peak_mb(), 1)}
        self.rows.append(row)
        parts = "".join(f" {k.removesuffix('_s')} {v:5.2f}" for k, v in extra.items() if v >= 0.005)
        print(f"{notebook:<18} {label[:58]:<58} {seconds:7.2f} s{parts}  peak {row['peak_mb']:6.0f} MB", flush=True)

    def time(self, notebook: str, label: str, work: Callable[[], object]) -> object:
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        self.add(notebook, label, time.perf_counter() - wall, time.process_time() - cpu)
        return result

    def total(self, key: str = "seconds", notebook: str | None = None) -> float:
        return round(sum(r.get(key, 0.0) for r in self.rows
                         if r["notebook"] != "setup" and notebook in (None, r["notebook"])), 2)


def code_cells(path: Path) -> tuple[str, list[tuple[int, str]]]:
    """The parameters cell's source and the other code cells (1-based cell number, source)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    parameters, rest = "", []
    for number, cell in enumerate(cells, start=1):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            parameters = source
        else:
            rest.append((number, source))
    return parameters, rest


def render_figures() -> None:
    for number in plt.get_fignums():
        plt.figure(number).savefig(io.BytesIO(), format="png")
    plt.close("all")


def run_notebook(path: Path, run_dir: Path, record: Recorder) -> None:
    loads, figures = Stopwatch(), Stopwatch()
    plots_proxy = types.SimpleNamespace(**{name: figures.wrap(getattr(plots, name)) for name in plots.__all__})
    parameters, cells = code_cells(path)
    namespace: dict = {"__name__": "__main__"}
    exec(compile(parameters, f"{path.name}:parameters", "exec"), namespace)
    namespace["run_dir"] = str(run_dir)
    for number, source in cells:
        wall, cpu = time.perf_counter(), time.process_time()
        exec(compile(source, f"{path.name}:cell {number}", "exec"), namespace)
        # after the imports cell, route these names through stopwatches
        for name in ("load_run", "load_sample", "open_run"):
            if namespace.get(name) is getattr(store, name):
                namespace[name] = loads.wrap(getattr(store, name))
        if namespace.get("plots") is plots:
            namespace["plots"] = plots_proxy
        started = time.perf_counter()
        render_figures()
        figures.seconds += time.perf_counter() - started
        seconds, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        load_s, figure_s = loads.lap(), figures.lap()
        label = f"{number:>2} " + next(line for line in source.splitlines() if line.strip())
        record.add(path.stem, label, seconds - load_s - figure_s, cpu_s, load_s=load_s, figure_s=figure_s)


def notebook_process(path: Path, run_dir: Path, profile: Path | None, results: multiprocessing.Queue) -> None:
    """Run one notebook (or the headline when `path` is None) in this process; send back rows and peak."""
    record = Recorder()
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    if path is None:
        wall, cpu = time.perf_counter(), time.process_time()
        loaded = store.open_run(run_dir)
        record.add("report", "open_run", 0.0, time.process_time() - cpu, load_s=time.perf_counter() - wall)
        record.time("report", "frontier.headline", lambda: frontier.headline(
            loaded, pricing.price_table_for(loaded), manifest=store.read_manifest(run_dir),
            labels=present.config_labels(loaded),
            **HEADLINE))
    else:
        run_notebook(path, run_dir, record)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    results.put((record.rows, peak_mb()))


def make_run(rows: int, chunked: bool, run_dir: Path, results: multiprocessing.Queue) -> None:
    record = Recorder()
    if chunked:
        run_dir.mkdir(parents=True)
        store.write_manifest(run_dir, {"run_id": "scale"})
        record.time("setup", "write_synthetic_parquet (chunks of 1,000,000)",
                    lambda: write_synthetic_parquet(run_dir / store.REQUESTS, rows))
    else:
        frame = record.time("setup", "synthetic_requests", lambda: synthetic_requests(rows))
        record.time("setup", "save_run (parquet, zstd)", lambda: store.save_run(run_dir, frame, {"run_id": "scale"}))
    results.put((record.rows, peak_mb()))


class OverMemory(RuntimeError):
    """A notebook process passed the memory limit and was killed."""


def in_process(target: Callable, *args: object, limit_mb: float | None = None) -> tuple[list[dict], float]:
    """Run `target(*args, queue)` in a fresh spawned process; return its rows and its peak RSS.
    Past `limit_mb` of resident memory the process is killed and `OverMemory` raised."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=target, args=(*args, results))
    process.start()
    # the notebook's file name, not its path: the results are committed and a user's checkout lies elsewhere
    what = f"{target.__name__}({args[0].name if isinstance(args[0], Path) else args[0]})"
    watched, seen_mb = psutil.Process(process.pid), 0.0
    while True:
        with contextlib.suppress(queue.Empty):
            return_value = results.get(timeout=0.5)
            break
        with contextlib.suppress(psutil.NoSuchProcess):  # it may have just exited
            seen_mb = max(seen_mb, watched.memory_info().rss / 2**20)
        if limit_mb is not None and seen_mb > limit_mb:
            process.kill()
            process.join()
            raise OverMemory(f"{what}: killed at {seen_mb:.0f} MB resident (limit {limit_mb:.0f} MB)")
        if not process.is_alive() and results.empty():
            process.join()
            raise RuntimeError(f"{what} exited with code {process.exitcode}")
    rows, peak = return_value
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{what} exited with code {process.exitcode}")
    return rows, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000")
    parser.add_argument("--huge", action="store_true", help="100,000,000 rows, written to disk in chunks")
    parser.add_argument("--chunked", action="store_true",
                        help=f"write the run in chunks as runs over {CHUNKED_FROM:,} rows are (to try that path)")
    parser.add_argument("--memory-limit-mb", type=float, default=None,
                        help="kill a notebook process past this resident memory (default: 3 x the target)")
    parser.add_argument("--rows", type=int, default=None, help="rows of the synthetic run (overrides --quick)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write a cProfile of the notebooks to this file and print its top 30 by own time")
    parser.add_argument("--only", default=None,
                        help="comma-separated: run only the notebooks whose name contains one of these "
                             "(and the headline when one is 'report'), e.g. 01,02,report")
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 100_000_000 if args.huge else 1_000_000)
    target_s, target_mb = TARGETS[100_000_000 if rows > CHUNKED_FROM else 1_000_000]
    limit_mb = args.memory_limit_mb or 3 * target_mb
    record = Recorder()
    peaks: dict[str, float] = {}
    failed: dict[str, str] = {}
    errors: dict[str, str] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "scale"
        setup_rows, peaks["setup"] = in_process(make_run, rows, args.chunked or rows > CHUNKED_FROM, run_dir)
        record.rows += setup_rows
        profiles = []
        wanted = None if args.only is None else [part.strip() for part in args.only.split(",") if part.strip()]
        chosen = [*NOTEBOOKS, None] if wanted is None else (
            [n for n in NOTEBOOKS if any(part in n.stem for part in wanted)] + ([None] if "report" in wanted else []))
        for notebook in chosen:
            name = "report" if notebook is None else notebook.stem
            profile = None if args.profile is None else Path(tmp) / f"{name}.prof"
            try:
                notebook_rows, peaks[name] = in_process(notebook_process, notebook, run_dir, profile, limit_mb=limit_mb)
            except OverMemory as exc:
                failed[name], peaks[name] = str(exc), limit_mb
                print(f"{name:<18} {exc}", flush=True)
                continue
            except RuntimeError as exc:  # its traceback is above; the other notebooks still run
                errors[name] = str(exc)
                print(f"{name:<18} failed: {exc}", flush=True)
                continue
            record.rows += notebook_rows
            print(f"{name:<18} peak RSS {peaks[name]:.0f} MB", flush=True)
            profiles += [str(profile)] if profile is not None else []
        if profiles:
            stats = pstats.Stats(*profiles)
            stats.dump_stats(args.profile)
    analyses_s, load_s, figure_s = record.total(), record.total("load_s"), record.total("figure_s")
    peak = max(v for k, v in peaks.items() if k != "setup")
    by_notebook = {name: {"analyses_s": record.total(notebook=name), "load_s": record.total("load_s", name),
                          "figure_s": record.total("figure_s", name), "peak_rss_mb": round(peaks[name], 1)}
                   for name in peaks if name != "setup"}
    print(f"\n{rows:,} rows: analyses {analyses_s:.1f} s (target {target_s:.0f} s), load_run {load_s:.1f} s, "
          f"figures {figure_s:.1f} s; peak RSS {peak:.0f} MB (target {target_mb:.0f} MB; generating and saving the "
          f"run: {peaks['setup']:.0f} MB); wall {time.perf_counter() - started:.0f} s")
    for name, totals in by_notebook.items():
        print(f"  {name:<18} analyses {totals['analyses_s']:6.1f} s  load_run {totals['load_s']:5.1f} s  "
              f"figures {totals['figure_s']:5.1f} s  peak {totals['peak_rss_mb']:6.0f} MB")
    if args.profile is not None:
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(30)
    write_result("analysis_scale_100m" if rows > CHUNKED_FROM else "analysis_scale", {
        # `met` holds for the notebooks run: with --only, those alone
        "rows": rows, "only": args.only, "analyses_s": analyses_s, "load_s": load_s, "figure_s": figure_s,
        "total_s": round(analyses_s + load_s + figure_s, 2), "peak_rss_mb": round(peak, 1),
        "setup_peak_rss_mb": round(peaks["setup"], 1), "target_s": target_s, "target_mb": target_mb,
        "met": {"time": not failed and not errors and analyses_s <= target_s,
                "memory": not failed and not errors and peak <= target_mb},
        "killed_over_memory": failed, "failed": errors, "notebooks": by_notebook, "steps": record.rows}, quick=rows < 1_000_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
