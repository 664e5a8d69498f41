"""HTML reports: execute every analysis notebook on a run dir with papermill, render each to HTML.

`build_report` writes `reports/<run_id>/<notebook>.ipynb` (executed) and `<notebook>.html` (code
hidden, figures embedded as base64 PNG), then `index.html` (`report_index`) with the headline numbers
(`frontier.headline`: the best configuration by the documented rule, its accuracy, latency and
cost, its break-even accuracy and the prices used) and links to every notebook.  The headline
uses the same parameter values as the notebooks: each notebook's defaults, overridden by
`parameters`.  A report holds only what the run dir holds; run dirs never contain keys.
"""
from __future__ import annotations

import argparse
import ast
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import yaml

from toolkit.errors import FrontierError, NotebookError, ParameterError
from toolkit import resources
from toolkit.params import ModelPrices, check, resolve_run_dir, run_checks
from toolkit.report_index import render_index, render_unanswered_index
from toolkit.store import open_run, read_manifest
from toolkit.warehouse import RunDirs

if TYPE_CHECKING:
    from toolkit.analysis.frontier import Headline

# papermill, nbconvert, nbformat, jupyter_client and the analysis modules are imported inside the
# functions that use them: the CLI registers this module on every start, and they take seconds.

log = logging.getLogger("toolkit")
# nbconvert's lab template has no alt attribute to fill, so its "alternative text is missing"
# warning (one per page) is noise a notebook author cannot act on.
_nbconvert_log = logging.getLogger("toolkit.nbconvert")
_nbconvert_log.setLevel(logging.ERROR)

NOTEBOOK_GLOB = "[0-9]*.ipynb"
# characters of a report folder named after several runs (file systems allow 255)
MAX_FOLDER_NAME = 100
# Parameters the index's headline reads, with the checks the notebooks apply to them.
HEADLINE_PARAMETERS: dict[str, tuple[object, float | None, float | None]] = {
    "value_usd": (float, 0, None), "error_cost_usd": (float, 0, None),
    "target_accuracy": (float | None, 0, 1), "latency_budget_s": (float, 0, None),
    "latency_quantile": (float, 0.5, 1), "machine_usd_per_hour": (float | None, 0, None),
    "failure_cost_usd": (float | None, 0, None),
    "model_prices": (ModelPrices | None, None, None),
}


@dataclass(frozen=True)
class NotebookRun:
    """One executed notebook of a report; `error` is set when it failed."""

    name: str
    ipynb: Path
    html: Path
    seconds: float
    error: NotebookError | None = None
    title: str | None = None


def build_report(run_dir: RunDirs, *, out_root: Path = Path("reports"),
                 parameters: Mapping[str, object] | None = None, notebooks_dir: Path | None = None,
                 kernel_name: str | None = None, timeout_s: float = 600,
                 progress_bar: bool = False) -> Path:
    """Execute and render every `notebooks_dir/[0-9]*.ipynb` (default: the shipped notebooks) on `run_dir`;
    return the index path.  Several run dirs (a list, or glob patterns, as `load_run` takes them) are
    analysed as one table, in `reports/<run_id>+<run_id>...` (`report_folder`).

    `parameters` go to each notebook that declares them (papermill's `inspect_notebook`); a name
    no notebook declares is a `ParameterError`, as is a value that a notebook's own checks (the
    cell after its `parameters` cell) or the headline reject: all are checked before any notebook
    runs.  A failed notebook keeps its partial `.ipynb` and `.html`; the other notebooks and the
    index are still written, then the first failure is raised as `NotebookError` naming the
    notebook and the cell (1-based, counting every cell of the notebook as written, with the first
    line of its code).  The report is rendered into a hidden folder beside its place and moved
    there when done, so a build stopped half-way (Ctrl-C) leaves the previous report as it was.
    """
    import papermill

    from toolkit.analysis.rows import run_overview

    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else resources.notebooks_dir()
    run_path = resolve_run_dir(run_dir)
    frame = open_run(run_path)
    manifest = read_manifest(run_path)
    notebooks = sorted(Path(notebooks_dir).glob(NOTEBOOK_GLOB))
    if not notebooks:
        raise ParameterError(f"notebooks_dir: no notebooks matching {NOTEBOOK_GLOB} in {notebooks_dir}")
    declared = {nb: papermill.inspect_notebook(str(nb)) for nb in notebooks}
    given = dict(parameters or {})
    _check_declared(given, declared, notebooks_dir)
    for notebook in notebooks:
        _check_values(notebook, declared[notebook], given)
    effective = effective_parameters(declared, given)
    answered = run_overview(frame).at[0, "ok"] > 0
    head = _headline(frame, manifest, effective) if answered else None
    kernel = (kernel_name or find_kernel()) if answered else None

    out_dir = Path(out_root) / report_folder(run_path, manifest)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # beside out_dir, so the final rename stays on one filesystem
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        runs = []
        if head is None:  # nothing answered: say so on the index instead of failing every notebook
            page = render_unanswered_index(frame, manifest.get("run_id") or out_dir.name)
            (work / "index.html").write_text(page, encoding="utf-8")
            _move_into_place(work, out_dir)
            return out_dir / "index.html"
        for notebook in notebooks:
            mine = {k: v for k, v in given.items() if k in declared[notebook]}
            if "run_dir" in declared[notebook]:
                mine["run_dir"] = [str(path) for path in run_path] if isinstance(run_path, list) else str(run_path)
            runs.append(_execute(notebook, work, out_dir, mine, kernel=kernel, timeout_s=timeout_s,
                                 progress_bar=progress_bar))
        (work / "index.html").write_text(render_index(head, runs, effective), encoding="utf-8")
        _move_into_place(work, out_dir)
    except BaseException:  # stopped or broken half-way: the previous report stays as it was
        shutil.rmtree(work, ignore_errors=True)
        raise
    index = out_dir / "index.html"
    failed = next((r.error for r in runs if r.error is not None), None)
    if failed is not None:
        raise failed
    return index


def _check_values(notebook: Path, declared: Mapping[str, Mapping[str, str]], given: Mapping[str, object]) -> None:
    """Run a notebook's own parameter checks (the code cell after its `parameters` cell) on the values it
    would get, so a bad `-p` fails before the first notebook starts rather than after all ran."""
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    tagged = [i for i, cell in enumerate(cells) if "parameters" in cell.metadata.get("tags", [])]
    after = [cell for cell in cells[tagged[0] + 1:] if cell.cell_type == "code"] if tagged else []
    if not after:
        return
    values = {}
    for name, info in declared.items():
        try:
            values[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            continue  # an expression: only the notebook's kernel can evaluate it
    values.update({name: value for name, value in given.items() if name in declared})
    run_checks(after[0].source, values)


def _move_into_place(work: Path, out_dir: Path) -> None:
    """Replace `out_dir` by the finished `work` folder: the old report is renamed aside and removed only
    once the new one is in place.  Ctrl-C waits until both renames are done."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old)  # a directory may replace an empty one
        os.replace(work, out_dir)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def effective_parameters(declared: Mapping[Path, Mapping[str, Mapping[str, str]]],
                         given: Mapping[str, object]) -> dict[str, object]:
    """Every declared parameter's value: the given one, else the first notebook's literal default."""
    values: dict[str, object] = {}
    for params in declared.values():
        for name, info in params.items():
            if name not in values:
                values[name] = _literal(info["default"])
    values.update(given)
    return values


def find_kernel() -> str:
    """A kernel that runs this interpreter: "python3" when it resolves to it, else any spec that does.

    jupyter_client starts a spec whose command is a bare `python` with the current interpreter, so
    the default ipykernel spec qualifies; a user-installed spec pointing elsewhere does not.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    names = sorted(manager.find_kernel_specs(), key=lambda n: n != "python3")
    for name in names:
        try:
            command = manager.get_kernel_spec(name).argv[0]
        except (NoSuchKernel, IndexError):
            continue
        if command in ("python", "python3") or _same_file(command, sys.executable):
            return name
    raise FrontierError(f"no Jupyter kernel runs {sys.executable}; install one with "
                        f"`{sys.executable} -m ipykernel install --sys-prefix`")


def parse_parameters(items: Sequence[str]) -> dict[str, object]:
    """`name=value` strings to a dict, each value read as a YAML scalar (`2.5` -> 2.5, `null` -> None)."""
    values: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ParameterError(f"-p {item!r}: expected name=value, e.g. -p value_usd=2.5")
        try:
            values[name.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ParameterError(f"-p {item!r}: the value is not a YAML scalar or list: {exc}") from exc
    return values


def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `frontier report RUN_DIR [RUN_DIR ...] [-p name=value ...] [--price MODEL=IN,OUT ...] [--out reports]`
    to a CLI's subcommands."""
    parser = subparsers.add_parser("report", help="execute the notebooks on a run dir into HTML reports")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="the run directory to report on; data/runs/sample is the shipped sample run "
                             "(unless the current directory has its own).  Several, or a quoted glob pattern "
                             "('runs/grid-2026-*'), are analysed as one table")
    parser.add_argument("-p", "--parameter", dest="parameters", action="append", default=[],
                        metavar="NAME=VALUE", help="a notebook parameter, value read as YAML (repeatable)")
    parser.add_argument("--price", dest="prices", action="append", default=[], metavar="MODEL=IN,OUT",
                        help="your price for a model in USD per million input and output tokens (a third "
                             "number: cached input); wins over every other price; repeatable; the same "
                             "as -p model_prices='[\"MODEL=IN,OUT\", ...]'")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for reports/<run_id>/")
    parser.add_argument("--notebooks", type=Path, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(func=_report_command)
    return parser


def _report_command(args: argparse.Namespace) -> int:
    try:
        run_dir = args.run_dirs[0] if len(args.run_dirs) == 1 else args.run_dirs
        index = build_report(run_dir, out_root=args.out, parameters=_with_prices(args),
                             notebooks_dir=args.notebooks, progress_bar=True)
    except KeyboardInterrupt:
        print(f"frontier: report stopped; nothing in {args.out} was changed (a previous report is left as it was)",
              file=sys.stderr)
        return 130
    print(index)
    return 0


def _with_prices(args: argparse.Namespace) -> dict[str, object]:
    parameters = parse_parameters(args.parameters)
    if args.prices:
        if "model_prices" in parameters:
            raise ParameterError("parameter model_prices: give prices with --price or with -p model_prices, "
                                 "not both")
        parameters["model_prices"] = list(args.prices)
    return parameters


def _check_declared(given: Mapping[str, object], declared: Mapping[Path, Mapping[str, object]],
                    notebooks_dir: Path) -> None:
    known = sorted({name for params in declared.values() for name in params})
    if "run_dir" in given:
        raise ParameterError("parameter run_dir: give the run directory as RUN_DIR, not as a parameter")
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ParameterError(f"parameter {unknown[0]}: no notebook in {notebooks_dir} declares it; "
                             f"declared: {', '.join(known)}")


def _headline(frame, manifest: dict, values: Mapping[str, object]) -> Headline:
    from toolkit import present, pricing
    from toolkit.analysis import frontier

    checked = {name: check(name, values[name], kind, min=low, max=high)
               for name, (kind, low, high) in HEADLINE_PARAMETERS.items() if name in values}
    prices = pricing.price_table_for(frame, checked.get("machine_usd_per_hour"),
                                     overrides=checked.get("model_prices"))
    return frontier.headline(frame, prices, manifest=manifest, value_usd=checked.get("value_usd"),
                             error_cost_usd=checked.get("error_cost_usd"),
                             target_accuracy=checked.get("target_accuracy"),
                             latency_budget_s=checked.get("latency_budget_s"),
                             latency_quantile=checked.get("latency_quantile", 0.95),
                             labels=present.config_labels(frame), failure_cost_usd=checked.get("failure_cost_usd"))


def _execute(notebook: Path, out_dir: Path, final_dir: Path, parameters: dict[str, object], *, kernel: str,
             timeout_s: float, progress_bar: bool) -> NotebookRun:
    """Execute `notebook` into `out_dir`; an error names the executed copy where it will end up, in `final_dir`."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    name = notebook.stem
    ipynb, page = out_dir / f"{name}.ipynb", out_dir / f"{name}.html"
    started = time.perf_counter()
    error = None
    try:
        # run in the caller's cwd, so a relative parameter (online_run_dir, reference_points) means what it
        # meant on the command line, wherever the notebooks are installed
        papermill.execute_notebook(str(notebook), str(ipynb), parameters=parameters, kernel_name=kernel,
                                   cwd=os.getcwd(), progress_bar=progress_bar,
                                   execution_timeout=timeout_s)
    except PapermillExecutionError as exc:
        first_line = next((line for line in exc.source.splitlines() if line.strip()), "").strip()
        error = NotebookError(notebook.name, _source_cell(notebook, exc.source, exc.cell_index),
                              f"{exc.ename}: {exc.evalue} (in `{first_line}`)", str(final_dir / ipynb.name))
    except (CellTimeoutError, DeadKernelError) as exc:
        error = NotebookError(notebook.name, None, f"{type(exc).__name__}: {exc}", str(final_dir / ipynb.name))
    seconds = time.perf_counter() - started
    log.info("%s executed in %.1f s%s", name, seconds, " (failed)" if error else "")
    page.write_text(render_html(ipynb), encoding="utf-8")
    return NotebookRun(name, final_dir / ipynb.name, final_dir / page.name, seconds, error, notebook_title(ipynb))


def render_html(ipynb: Path) -> str:
    """An executed notebook as one self-contained HTML page: outputs and Markdown only, PNG figures
    inline, no script loaded from elsewhere.

    Warnings a cell printed to stderr go to the log, not the page: they are for whoever builds
    the report, not for its readers (an error still shows, as its traceback output).
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(ipynb, as_version=4)
    for cell in nb.cells:
        stderr = [o for o in cell.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr"]
        for output in stderr:
            log.warning("%s: a cell wrote to stderr: %s", ipynb.name, output.get("text", "").strip())
        if stderr:
            cell.outputs = [o for o in cell.outputs if o not in stderr]
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, log=_nbconvert_log)
    body, _ = exporter.from_notebook_node(nb)
    # the pages carry no math and no widgets: the template's CDN scripts (MathJax, require.js) would only
    # make a self-contained page reach out to the internet
    return re.sub(r'<script[^>]*\ssrc="https?://[^"]*"[^>]*>\s*</script>\s*', "", body)


def notebook_title(ipynb: Path) -> str | None:
    """The first Markdown heading of a notebook (`# Accuracy per configuration`), or None."""
    import nbformat

    try:
        cells = nbformat.read(ipynb, as_version=4).cells
    except (OSError, ValueError):
        return None
    for cell in cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, flags=re.MULTILINE)
            if match:
                return match[1].strip()
    return None


def _source_cell(notebook: Path, source: str, fallback: int) -> int:
    """1-based position of the failed cell in the notebook as written (papermill counts its injected cell)."""
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    matches = [i for i, cell in enumerate(cells) if cell.source == source]
    return (matches[0] if matches else fallback) + 1


def _literal(source: str) -> object:
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return source  # not a literal (an expression): keep its text


def report_folder(run_path: Path | list[Path], manifest: dict) -> str:
    """The report's folder name: the run's id (its dir's name when the id is not a safe file name); for
    several runs their names joined by "+", or the first's and how many more when that is long."""
    paths = run_path if isinstance(run_path, list) else [run_path]
    if len(paths) == 1:  # a pattern may match one run dir
        return _safe_name(manifest.get("run_id"), paths[0].name)
    names = [_safe_name(own.get("run_id"), path.name) for own, path in zip(manifest["runs"], paths)]
    joined = "+".join(names)
    return joined if len(joined) <= MAX_FOLDER_NAME else f"{names[0]}+{len(names) - 1}-more"


def _safe_name(run_id: object, fallback: str) -> str:
    return str(run_id) if isinstance(run_id, str) and re.fullmatch(r"[\w.-]+", run_id) else fallback


def _same_file(command: str, executable: str) -> bool:
    try:
        return Path(command).resolve() == Path(executable).resolve()
    except OSError:
        return False
