"""The HTML report: one real build on the main run (shared with test_notebooks.py), plus tiny notebooks
for failure handling and the CLI."""
import argparse
import html
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from synthetic_runs import built_report, main_run_dir, make_run
from toolkit import load_run
from toolkit.errors import NotebookError, ParameterError, RunDirError
from toolkit.report import (build_report, effective_parameters, find_kernel, notebook_title, parse_parameters,
                            register_cli, render_html, report_folder)

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9]*.ipynb"))


def test_index_links_every_notebook_and_shows_the_headline():
    index = built_report()
    page = index.read_text(encoding="utf-8")
    for notebook in NOTEBOOKS:
        assert f'href="{notebook.stem}.html"' in page and f'href="{notebook.stem}.ipynb"' in page
        assert (index.parent / f"{notebook.stem}.html").is_file()
        assert (index.parent / f"{notebook.stem}.ipynb").is_file()
    assert "Best configuration: <strong>" in page or "<strong>No configuration meets the targets</strong>" in page
    assert "<th>p90 end-to-end latency</th>" in page  # latency_quantile=0.9 reached the headline
    assert "With a success worth 2.50 USD and an error costing 2.00 USD" in page  # given V, default E
    # no target_accuracy: each configuration is held to its own break-even accuracy
    assert "its break-even accuracy (E + (f·F + c) / (1 − f)) / (V + E), with V = 2.50 USD, E = 2.00 USD" in page
    assert '<img alt="accuracy against cost per 1,000 requests' in page  # the frontier figure is on the index
    assert "<th>error rate</th>" in page
    assert "breaks even at" in page and "Prices from table frontier-default" in page
    assert '<a href="01_accuracy.html">Accuracy per configuration</a>' in page  # notebooks by their titles
    assert "<tr><td>value_usd</td><td>2.5</td></tr>" in page
    assert "failed" not in page.split("<h2>Notebooks</h2>")[1].split("<h2>")[0]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_pages_embed_figures_and_hide_code(notebook: Path):
    page = (built_report().parent / f"{notebook.stem}.html").read_text(encoding="utf-8")
    assert 'src="data:image/png;base64,' in page
    source = nbformat.read(notebook, as_version=4)
    code_lines = {line.strip() for cell in source.cells if cell.cell_type == "code"
                  for line in cell.source.splitlines() if len(line.strip()) >= 20}
    shown = [line for line in code_lines if html.escape(line, quote=False) in page or line in page]
    assert shown == []
    assert f'run_dir = "{main_run_dir().resolve()}"' not in page  # papermill's injected cell is code too
    assert "Warning" not in page and "Traceback" not in page
    assert 'src="http' not in page  # self-contained: nothing loaded from a CDN


def test_stderr_goes_to_the_log_not_the_page(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    nb = new_notebook(cells=[new_markdown_cell("# A title\n\ntext"), new_code_cell("x")])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stderr", text="RuntimeWarning: noise\n"),
                           nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    with caplog.at_level("WARNING", logger="toolkit"):
        page = render_html(path)
    assert "kept" in page and "noise" not in page and "<script src=" not in page
    assert "executed.ipynb: a cell wrote to stderr: RuntimeWarning: noise" in caplog.text
    assert notebook_title(path) == "A title"


def test_parameters_are_resolved_before_any_notebook_runs(tmp_path: Path):
    with pytest.raises(ParameterError) as info:
        build_report(main_run_dir(), out_root=tmp_path, parameters={"valu_usd": 1.0})
    assert str(info.value).startswith(f"parameter valu_usd: no notebook in {REPO_ROOT / 'notebooks'} declares it; "
                                      "declared: alpha, ")
    assert ", value_usd, " in str(info.value)
    with pytest.raises(ParameterError, match=r"^parameter value_usd: expected a number, got 'abc' \(str\)$"):
        build_report(main_run_dir(), out_root=tmp_path, parameters={"value_usd": "abc"})
    with pytest.raises(ParameterError, match="parameter run_dir: give the run directory as RUN_DIR"):
        build_report(main_run_dir(), out_root=tmp_path, parameters={"run_dir": "x"})
    with pytest.raises(RunDirError, match="parameter run_dir: run directory '/nonexistent/run' not found"):
        build_report("/nonexistent/run", out_root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no kernel was started, nothing written


@pytest.mark.parametrize("given, message", [
    ({"confidence": "abc"}, r"parameter confidence: expected a number, got 'abc' \(str\)"),  # 01 and 05 only
    ({"prompt_tokens": 100}, r"parameter shared_prefix_tokens: must be <= 100.0, got 1200"),  # 05's default
    ({"stages": ["a", 2]}, r"parameter stages\[1\]: expected a string, got 2 \(int\)"),  # 06 only
    ({"signal": "votes"}, r"parameter signal: must be one of 'auto', 'logprob_mean', 'agreement', 'score'"),
])
def test_every_notebook_checks_its_parameters_before_any_runs(tmp_path: Path, given, message):
    """A value only a late notebook checks fails before the first notebook starts, not after all ran."""
    with pytest.raises(ParameterError, match=f"^{message}"):
        build_report(make_run(tmp_path / "run"), out_root=tmp_path / "reports", parameters=given)
    assert not (tmp_path / "reports").exists()


def tiny_notebook(path: Path, *code: str) -> Path:
    nb = new_notebook(cells=[new_markdown_cell("# tiny"),
                             new_code_cell('run_dir = "data/runs/sample"\nvalue_usd = 1.0',
                                           metadata={"tags": ["parameters"]}),
                             *(new_code_cell(c) for c in code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_a_failing_notebook_names_its_cell_and_keeps_its_partial_output(tmp_path: Path):
    notebooks = tmp_path / "notebooks"
    tiny_notebook(notebooks / "01_fine.ipynb", "print(value_usd * 2)")
    tiny_notebook(notebooks / "02_broken.ipynb", 'print("before")', "1 / 0", 'print("never")')
    with pytest.raises(NotebookError) as info:
        build_report(main_run_dir(), out_root=tmp_path / "reports", notebooks_dir=notebooks,
                     parameters={"value_usd": 3.0})
    error = info.value
    assert (error.notebook, error.cell) == ("02_broken.ipynb", 4)  # markdown, parameters, print, 1 / 0
    assert error.error == "ZeroDivisionError: division by zero (in `1 / 0`)"
    partial = Path(error.output_path)
    assert partial.parent.parent == tmp_path / "reports" and partial.name == "02_broken.ipynb"
    executed = nbformat.read(partial, as_version=4)
    outputs = [o for c in executed.cells for o in c.get("outputs", [])]
    assert any(o.get("text") == "before\n" for o in outputs)
    assert any(o.get("ename") == "ZeroDivisionError" for o in outputs)
    assert not any(o.get("text") == "never\n" for o in outputs)
    debug_page = partial.with_suffix(".html").read_text(encoding="utf-8")
    assert "ZeroDivisionError" in debug_page
    index = (partial.parent / "index.html").read_text(encoding="utf-8")
    assert "failed at cell 4: ZeroDivisionError: division by zero" in index
    fine = nbformat.read(partial.parent / "01_fine.ipynb", as_version=4)
    assert [o["text"] for c in fine.cells for o in c.get("outputs", [])] == ["6.0\n"]


def test_cli_report_command(tmp_path: Path, capsys: pytest.CaptureFixture):
    notebooks = tmp_path / "notebooks"
    tiny_notebook(notebooks / "01_echo.ipynb", "print(repr(value_usd), run_dir)")
    parser = argparse.ArgumentParser(prog="frontier")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", str(main_run_dir()), "-p", "value_usd=2.5", "--out", str(tmp_path / "out"),
                              "--notebooks", str(notebooks)])
    assert args.func(args) == 0
    index = Path(capsys.readouterr().out.strip())
    assert index.name == "index.html" and index.parent.parent == tmp_path / "out" and index.is_file()
    echoed = nbformat.read(index.parent / "01_echo.ipynb", as_version=4)
    printed = [o["text"] for c in echoed.cells for o in c.get("outputs", []) if o.get("name") == "stdout"]
    assert printed == [f"2.5 {main_run_dir().resolve()}\n"]


def test_parse_parameters_reads_yaml_scalars():
    assert parse_parameters(["value_usd=2.5", "dataset=null", "what_if_output_tokens=[10, 100]",
                             "name=abc", "flag=true", "note=a=b"]) == {
        "value_usd": 2.5, "dataset": None, "what_if_output_tokens": [10, 100], "name": "abc", "flag": True,
        "note": "a=b"}
    with pytest.raises(ParameterError, match=r"^-p 'value_usd': expected name=value, e.g. -p value_usd=2.5$"):
        parse_parameters(["value_usd"])
    with pytest.raises(ParameterError, match="expected name=value"):
        parse_parameters(["=3"])


def test_effective_parameters_take_defaults_then_given_values():
    declared = {Path("01.ipynb"): {"a": {"default": "1.5"}, "b": {"default": "[1, 2]"}},
                Path("02.ipynb"): {"a": {"default": "9"}, "c": {"default": "os.getcwd()"}}}
    assert effective_parameters(declared, {"b": [3]}) == {"a": 1.5, "b": [3], "c": "os.getcwd()"}


def test_find_kernel_runs_this_interpreter():
    name = find_kernel()
    command = KernelSpecManager().get_kernel_spec(name).argv[0]
    # jupyter_client replaces a bare "python" with sys.executable when it starts the kernel
    assert command in ("python", "python3") or Path(command).resolve() == Path(sys.executable).resolve()


def test_registering_the_cli_stays_cheap():
    # the CLI imports this module on every start: the notebook machinery must load only when used
    code = ("import sys, toolkit.report; heavy = {'papermill', 'nbconvert', 'nbformat', 'statsmodels'}; "
            "print(sorted(heavy & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_cli_report_on_several_runs_analyses_them_as_one(tmp_path: Path, capsys: pytest.CaptureFixture):
    days = [make_run(tmp_path / f"grid-day-{day}", seed=day) for day in (1, 2, 3)]
    notebooks = tmp_path / "notebooks"
    tiny_notebook(notebooks / "01_echo.ipynb", "from toolkit import load_run\nprint(run_dir, len(load_run(run_dir)))")
    parser = argparse.ArgumentParser(prog="frontier")
    register_cli(parser.add_subparsers(dest="command", required=True))
    by_pattern = parser.parse_args(["report", str(tmp_path / "grid-day-[12]"), str(days[2]),
                                    "--out", str(tmp_path / "out"), "--notebooks", str(notebooks)])
    assert by_pattern.func(by_pattern) == 0
    index = Path(capsys.readouterr().out.strip())
    assert index.parent == tmp_path / "out" / "grid-day-1+grid-day-2+grid-day-3" and index.is_file()
    assert "grid-day-1 + grid-day-2 + grid-day-3" in index.read_text(encoding="utf-8")
    echoed = nbformat.read(index.parent / "01_echo.ipynb", as_version=4)
    printed = [o["text"] for c in echoed.cells for o in c.get("outputs", []) if o.get("name") == "stdout"]
    requests = sum(len(load_run(day)) for day in days)
    assert printed == [f"{[str(day.resolve()) for day in days]} {requests}\n"]


def test_a_report_on_many_runs_is_named_after_the_first(tmp_path: Path):
    days = [tmp_path / f"a-long-run-name-of-day-{day:02d}" for day in range(12)]
    manifest = {"run_id": "x + y", "runs": [{"run_id": day.name} for day in days[:-1]] + [{"run_id": "not safe!"}]}
    assert report_folder(days, manifest) == "a-long-run-name-of-day-00+11-more"
    assert report_folder(days[-2:], manifest | {"runs": manifest["runs"][-2:]}) == (
        "a-long-run-name-of-day-10+a-long-run-name-of-day-11")  # an unsafe id gives its folder's name
    assert report_folder(days[0], {"run_id": "a/b"}) == "a-long-run-name-of-day-00"
    assert report_folder(days[:1], {"run_id": "day"}) == "day"  # a pattern that matched one run dir


def test_a_stopped_report_leaves_the_previous_one(tmp_path: Path):
    """Ctrl-C half-way through `frontier report`: the previous report stays whole, nothing half-written
    is left beside it, and the message is about the report (not collect's --resume)."""
    run = make_run(tmp_path / "run")
    notebooks = tmp_path / "notebooks"
    tiny_notebook(notebooks / "01_echo.ipynb", "print(value_usd)")
    out = tmp_path / "reports"
    index = build_report(run, out_root=out, notebooks_dir=notebooks)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    marker = tmp_path / "second-started"
    tiny_notebook(notebooks / "02_slow.ipynb", f"open({str(marker)!r}, 'w').close()", "import time; time.sleep(120)")
    report = subprocess.Popen([sys.executable, "-m", "toolkit.cli", "report", str(run), "--out", str(out),
                               "--notebooks", str(notebooks), "-p", "value_usd=5"], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and report.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), report.communicate()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")]  # the new report is rendered aside
    report.send_signal(signal.SIGINT)
    stdout, stderr = report.communicate(timeout=60)
    assert report.returncode == 130
    assert stderr.endswith(f"frontier: report stopped; nothing in {out} was changed (a previous report is left "
                           "as it was)\n")
    assert "--resume" not in stderr and stdout == ""
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in out.iterdir()] == [index.parent.name]


def test_a_finished_report_replaces_the_previous_one_whole(tmp_path: Path):
    run = make_run(tmp_path / "run")
    notebooks = tmp_path / "notebooks"
    tiny_notebook(notebooks / "01_echo.ipynb", "print(value_usd)")
    tiny_notebook(notebooks / "02_gone.ipynb", "print(2)")
    out = tmp_path / "reports"
    index = build_report(run, out_root=out, notebooks_dir=notebooks)
    (notebooks / "02_gone.ipynb").unlink()
    assert build_report(run, out_root=out, notebooks_dir=notebooks, parameters={"value_usd": 7}) == index
    assert sorted(p.name for p in out.iterdir()) == [index.parent.name]  # no temporary folder left
    assert sorted(p.name for p in index.parent.iterdir()) == ["01_echo.html", "01_echo.ipynb", "index.html"]
    echoed = nbformat.read(index.parent / "01_echo.ipynb", as_version=4)
    assert [o["text"] for c in echoed.cells for o in c.get("outputs", [])] == ["7\n"]


def test_cli_price_option_reaches_the_notebooks_and_a_bad_one_fails_first(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture):
    notebooks = tmp_path / "notebooks"
    nb = new_notebook(cells=[new_code_cell('run_dir = "data/runs/sample"\nmodel_prices = None',
                                           metadata={"tags": ["parameters"]}),
                             new_code_cell("from toolkit.params import ModelPrices, check\n"
                                           'model_prices = check("model_prices", model_prices, ModelPrices | None)'),
                             new_code_cell("print({m: p.output_usd_per_mtok for m, p in model_prices.items()})")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebooks.mkdir()
    nbformat.write(nb, notebooks / "01_prices.ipynb")
    parser = argparse.ArgumentParser(prog="frontier")
    register_cli(parser.add_subparsers(dest="command", required=True))
    common = [str(make_run(tmp_path / "run")), "--out", str(tmp_path / "out"), "--notebooks", str(notebooks)]
    args = parser.parse_args(["report", *common, "--price", "acme-a=1,2", "--price", "acme-b=3,4,0.5"])
    assert args.func(args) == 0
    index = Path(capsys.readouterr().out.strip())
    echoed = nbformat.read(index.parent / "01_prices.ipynb", as_version=4)
    assert [o["text"] for c in echoed.cells for o in c.get("outputs", []) if o.get("name") == "stdout"] == [
        "{'acme-a': 2.0, 'acme-b': 4.0}\n"]
    bad = parser.parse_args(["report", *common, "--out", str(tmp_path / "bad"), "--price", "acme-a=1;2"])
    with pytest.raises(ParameterError, match=r"^parameter model_prices: price 'acme-a=1;2': expected 2 or 3 numbers"):
        bad.func(bad)
    assert not (tmp_path / "bad").exists()
    both = parser.parse_args(["report", *common, "--price", "a=1,2", "-p", "model_prices=['b=1,2']"])
    with pytest.raises(ParameterError, match="give prices with --price or with -p model_prices, not both"):
        both.func(both)


def test_a_run_where_every_request_failed_says_so_on_its_index(tmp_path: Path):
    from toolkit.schema import coerce_requests
    from toolkit.store import save_run
    from synthetic_runs import synthetic_requests

    frame = synthetic_requests(items=3, run_id="all-failed")
    frame = coerce_requests(frame.assign(status="error", error_type="server_error", http_status=503,
                                         error_message="upstream overloaded", correct=None, score=None,
                                         e2e_s=None, ttft_s=None))
    run = save_run(tmp_path / "all-failed", frame, {"run_id": "all-failed"})
    index = build_report(run, out_root=tmp_path / "reports")
    page = index.read_text(encoding="utf-8")
    assert f"Every one of the {len(frame)} requests failed" in page
    assert f"server_error (HTTP 503): {len(frame)}" in page and "upstream overloaded" in page
    assert "No notebook was run" in page
    assert "0.0%" not in page and list(index.parent.glob("*.ipynb")) == []


def test_an_empty_run_says_it_holds_no_requests(tmp_path: Path):
    from toolkit.schema import empty_requests
    from toolkit.store import save_run

    run = save_run(tmp_path / "empty", empty_requests(), {"run_id": "empty"})
    page = build_report(run, out_root=tmp_path / "reports").read_text(encoding="utf-8")
    assert "This run holds no requests" in page
