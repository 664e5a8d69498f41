"""07_traffic on every vendor format of production traces (files built in each vendor's documented
format by the importers' own tests), and on the demo-shaped sample run."""
from pathlib import Path

import nbformat
import papermill
import pytest

import test_importers_helicone as helicone
import test_importers_langfuse as langfuse
import test_importers_langsmith as langsmith
import test_importers_otel as otel
from toolkit import resources
from toolkit.cli import main as frontier

WRITERS = {
    "otel": lambda tmp: otel.collector_file(tmp),
    "langfuse": lambda tmp: langfuse.api_page(tmp, langfuse.SPAN, langfuse.generation("g1"), langfuse.ANTHROPIC,
                                              langfuse.FAILED, langfuse.EVENT),
    "langsmith": lambda tmp: langsmith.jsonl(tmp, langsmith.CHAIN, langsmith.llm_run("r1"), langsmith.FAILED,
                                             langsmith.OLDER),
    "helicone": lambda tmp: helicone.jsonl(tmp, helicone.request("r1"), helicone.OLDER, helicone.ANTHROPIC,
                                           helicone.LIMITED),
}


def markdown(nb: nbformat.NotebookNode) -> str:
    return "\n".join(o["data"]["text/markdown"] for c in nb.cells for o in c.get("outputs", [])
                     if "text/markdown" in o.get("data", {}))


@pytest.mark.parametrize("kind", list(WRITERS))
def test_the_traffic_notebook_reads_every_vendor_format(tmp_path: Path, kind: str):
    source = WRITERS[kind](tmp_path)
    run_dir = tmp_path / "run"
    assert frontier(["import", kind, str(source), "-o", str(run_dir)]) == 0
    out = tmp_path / "07_traffic.ipynb"
    papermill.execute_notebook(str(resources.notebooks_dir() / "07_traffic.ipynb"), str(out),
                               parameters={"run_dir": str(run_dir)}, progress_bar=False, cwd=str(tmp_path))
    text = markdown(nbformat.read(out, as_version=4))
    assert "**Arrivals**: " in text and "**Cost**: priced as **" in text
    assert "**batch** saves" in text and "response cache" in text
    # these traces carry TTFT: percentiles and where the time goes, per model
    assert "Fastest: **" in text and "first token" in text
