"""The analysis notebooks: committed clean and thin, and they run on any run dir.

Each notebook is executed once on the main run (the shipped sample when present, else a synthetic
run) through `built_report`, which test_report.py shares, plus a few runs on import-shaped data.
"""
import ast
from pathlib import Path

import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from synthetic_runs import REPORT_PARAMETERS, built_report, main_run_dir, make_run, scratch_dir
from toolkit import load_run, present

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
PARAMETERS = {
    "01_accuracy": ["run_dir", "dataset", "confidence", "alpha"],
    "02_cost_model": ["run_dir", "value_usd", "error_cost_usd", "failure_cost_usd", "human_accuracy", "human_cost_usd",
                      "monthly_volume", "machine_usd_per_hour", "model_prices"],
    "03_latency": ["run_dir", "ttft_target_s", "tpot_target_s", "e2e_target_s", "what_if_output_tokens",
                   "what_if_prompt_tokens"],
    "04_frontier": ["run_dir", "target_accuracy", "value_usd", "error_cost_usd", "failure_cost_usd", "latency_budget_s",
                    "latency_quantile", "machine_usd_per_hour", "model_prices", "cost_basis", "basis_usd_per_mtok",
                    "reference_points"],
}
# Conclusions every notebook must reach on the main run (which is graded and timed).
KEY_OUTPUTS = {
    "01_accuracy": ["Most accurate: **", "pairs of configurations differ significantly",
                    "Best configuration per dataset:"],
    "02_cost_model": ["Prices from table", "With a success worth 2.50 USD", "Highest expected value: **"],
    "03_latency": ["Fastest: **", "Claim: 100 output tokens are ~10x faster than 1000.",
                   "so 1000 tokens take", "Measured directly in this run", "**Answer:**"],
    "04_frontier": ["configurations are on the Pareto front (accuracy up, p90 end-to-end latency down",
                    "Rule: ", "its break-even accuracy (E + (f·F + c) / (1 − f)) / (V + E), with V = 2.50 USD, E = 2.00 USD",
                    "Self-hosted cost: "],
    "05_caching_batch": ["Baseline ", "USD a month"],
    "07_traffic": ["**Arrivals**: ", "**Cost**: priced as **", "**batch** saves"],
}


ALL_NOTEBOOKS = sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9]*.ipynb"))


def test_the_four_analysis_notebooks_exist():
    assert set(PARAMETERS) <= set(ALL_NOTEBOOKS)


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_notebooks_are_committed_clean_and_thin(name: str):
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert code[0].metadata.get("tags") == ["parameters"]
    assert all("parameters" not in c.metadata.get("tags", []) for c in code[1:])
    # the parameters cell holds only literal defaults
    for statement in ast.parse(code[0].source).body:
        assert isinstance(statement, ast.Assign)
        ast.literal_eval(statement.value)
    # the next cell validates every parameter through toolkit.params before anything else runs
    declared = list(papermill.inspect_notebook(str(path)))
    assert declared == [s.targets[0].id for s in ast.parse(code[0].source).body]  # papermill sees them all
    assert "from toolkit.params import" in code[1].source and "resolve_run_dir(run_dir)" in code[1].source
    for parameter in declared[1:]:
        assert f'check("{parameter}", {parameter},' in code[1].source or f"resolve_run_dir({parameter}" in code[1].source
    for cell in code:
        tree = ast.parse(cell.source)
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
    if name in PARAMETERS:
        assert declared == PARAMETERS[name]


def outputs(nb: nbformat.NotebookNode, kind: str) -> list[str]:
    return [o["data"][kind] for c in nb.cells for o in c.get("outputs", []) if kind in o.get("data", {})]


def errors(nb: nbformat.NotebookNode) -> list[str]:
    return [f"{o['ename']}: {o['evalue']}" for c in nb.cells for o in c.get("outputs", [])
            if o["output_type"] == "error"]


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_notebook_runs_on_the_main_run(name: str):
    nb = nbformat.read(built_report().parent / f"{name}.ipynb", as_version=4)
    assert errors(nb) == []
    markdown = "\n".join(outputs(nb, "text/markdown"))
    for key in KEY_OUTPUTS.get(name, []):
        assert key in markdown
    assert outputs(nb, "image/png"), "every notebook draws at least one figure"
    assert outputs(nb, "text/html"), "every notebook shows at least one table"


def test_parameters_reach_only_the_notebooks_that_declare_them():
    out = built_report().parent
    injected = {name: next(c.source for c in nbformat.read(out / f"{name}.ipynb", as_version=4).cells
                           if "injected-parameters" in c.metadata.get("tags", []))
                for name in PARAMETERS}
    assert "value_usd = 2.5" in injected["02_cost_model"]
    assert "latency_quantile = 0.9" in injected["04_frontier"]
    assert "value_usd" not in injected["01_accuracy"] and "latency_quantile" not in injected["03_latency"]
    assert all(f'run_dir = "{main_run_dir().resolve()}"' in source for source in injected.values())
    assert "value_usd" in PARAMETERS["02_cost_model"] and "latency_quantile" in PARAMETERS["04_frontier"]
    assert REPORT_PARAMETERS == {"value_usd": 2.5, "latency_quantile": 0.9}


@pytest.fixture(scope="module")
def import_shaped_runs() -> dict[str, Path]:
    return {"latency-only": make_run(scratch_dir() / "latency-only", graded=False),
            "accuracy-only": make_run(scratch_dir() / "accuracy-only", timed=False)}


@pytest.mark.parametrize(("run", "name", "expected"), [
    ("latency-only", "01_accuracy", present.NO_GRADES),
    ("latency-only", "02_cost_model", present.NO_GRADES),
    ("latency-only", "04_frontier", "(no graded requests, so accuracy is not checked)"),
    ("accuracy-only", "03_latency", present.NO_TIMINGS),
])
def test_notebooks_say_what_an_imported_run_lacks(import_shaped_runs, tmp_path: Path, run: str, name: str,
                                                  expected: str):
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(out), kernel_name="python3",
                               parameters={"run_dir": str(import_shaped_runs[run])}, progress_bar=False,
                               cwd=str(NOTEBOOK_DIR))
    nb = nbformat.read(out, as_version=4)
    assert errors(nb) == []
    assert expected in "\n".join(outputs(nb, "text/markdown"))


@pytest.mark.parametrize("name", ["01_accuracy", "03_latency"])
def test_notebooks_analyse_several_runs_of_one_grid_together(tmp_path: Path, name: str):
    days = [make_run(tmp_path / f"grid-day-{day}", seed=day) for day in (1, 2)]
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(out), kernel_name="python3",
                               parameters={"run_dir": str(tmp_path / "grid-day-*")}, progress_bar=False,
                               cwd=str(NOTEBOOK_DIR))
    nb = nbformat.read(out, as_version=4)
    assert errors(nb) == []
    text = "\n".join(outputs(nb, "text/markdown"))
    assert all(key in text for key in KEY_OUTPUTS[name][:2])
    requests = sum(len(load_run(day)) for day in days)
    assert f"{requests:,} requests" in text or f"{requests} requests" in text


def test_no_monthly_volume_means_no_monthly_figures(tmp_path: Path):
    # 02 and 05 read monthly_volume the same way: a number, or None for no monthly projection
    out = tmp_path / "05.ipynb"
    papermill.execute_notebook(str(NOTEBOOK_DIR / "05_caching_batch.ipynb"), str(out), kernel_name="python3",
                               parameters={"run_dir": str(main_run_dir()), "monthly_volume": None},
                               progress_bar=False, cwd=str(NOTEBOOK_DIR))
    nb = nbformat.read(out, as_version=4)
    assert errors(nb) == []
    markdown = "\n".join(outputs(nb, "text/markdown"))
    assert "No `monthly_volume` given, so there is no monthly what-if." in markdown and "a month" not in markdown


def test_a_bad_parameter_fails_at_once_naming_it(tmp_path: Path):
    out = tmp_path / "bad.ipynb"
    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(str(NOTEBOOK_DIR / "02_cost_model.ipynb"), str(out), kernel_name="python3",
                                   parameters={"run_dir": str(main_run_dir()), "value_usd": "abc"},
                                   progress_bar=False, cwd=str(NOTEBOOK_DIR))
    assert info.value.ename == "ParameterError"
    assert info.value.evalue == "parameter value_usd: expected a number, got 'abc' (str)"
    assert 'check("value_usd", value_usd, float, min=0)' in info.value.source
    executed = [c for c in nbformat.read(out, as_version=4).cells
                if c.cell_type == "code" and c.execution_count is not None]
    assert len(executed) == 3  # defaults, injected parameters, the failing check: nothing after it


@pytest.mark.parametrize(("name", "parameters", "expected"), [
    ("06_cascades", {}, ["**Cost basis: output tokens**, because no model has a price",
                         "**2 of 2 models have no price**, so this basis stands in for prices: **acme-large**, "
                         "**acme-small** (not in prices.yaml", "On the held-out items"]),
    ("06_cascades", {"model_prices": ["acme-large=0.15,0.6"]},
     ["**1 of 2 models has no price**, so their cost is unknown and cost comparisons leave them out: **acme-small**",
      "--price MODEL=IN,OUT", "left out for lack of a price: small/few_shot, small/zero_shot",
      "On the held-out items"]),
    ("04_frontier", {"model_prices": ["acme-large=0.15,0.6"], "cost_basis": "output_tokens"},
     ['**Cost basis: output tokens**, as asked (`cost_basis = "output_tokens"`)',
      "configurations are on the Pareto front"]),
])
def test_notebooks_say_which_models_have_no_price_and_what_costs_stand_on(tmp_path: Path, name: str,
                                                                          parameters: dict, expected: list[str]):
    from synthetic_runs import synthetic_requests
    from toolkit.store import save_run

    frame = synthetic_requests(run_id="unpriced")
    frame["model"] = frame["model"].map({"gemma-3-270m-q4_k_m": "acme-small", "gpt-4o-mini": "acme-large"})
    run = save_run(tmp_path / "unpriced", frame, {"run_id": "unpriced"})
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(out), kernel_name="python3",
                               parameters={"run_dir": str(run), **parameters}, progress_bar=False,
                               cwd=str(NOTEBOOK_DIR))
    nb = nbformat.read(out, as_version=4)
    assert errors(nb) == []
    markdown = "\n".join(outputs(nb, "text/markdown"))
    for text in expected:
        assert text in markdown
