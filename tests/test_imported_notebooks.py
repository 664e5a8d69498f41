"""`frontier import` on every folder of `data/public/`, and the notebooks on what it gives.

Each kind is imported through the CLI into a scratch run dir and reported once with
`toolkit.report.build_report`.  A full report runs six notebooks at ~8 s each on two busy cores,
so each kind runs the notebooks that matter for it (`NOTEBOOKS`): the latency notebook on
latency-only data, accuracy on accuracy-only data, cascades and the frontier where there is
something to cascade; the cascade notebook runs on every kind, since it must say what it cannot show.
FrugalGPT's per-query format has no shipped file, so the test writes one from real HEADLINES queries
and FrugalGPT's own prices (answers simulated); OpenAI Batch output likewise.  AlpacaEval's data is
CC BY-NC and not shipped: its files are written in AlpacaEval's format by `public_data`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from public_data import PUBLIC, write_alpacaeval
from toolkit import present, resources
from toolkit.analysis.cascade_study import NO_SIGNAL
from toolkit.cli import main as frontier
from toolkit.report import build_report
from toolkit.store import load_run

REFERENCE = PUBLIC / "frugalgpt" / "summary_HEADLINES_e8_full_2024.csv"
NOTEBOOKS = {
    "llmperf": ["03_latency", "06_cascades"],
    "alpacaeval": ["01_accuracy", "06_cascades"],
    "frugalgpt": ["04_frontier", "06_cascades"],
    "openai_batch": ["03_latency", "06_cascades"],
    "azure2023": ["07_traffic"],
    "mooncake": ["07_traffic"],
}
# service -> share of items it gets right (simulated); the prices are FrugalGPT's serviceinfo.json
SERVICES = {"google/gemini-1.5-flash-8b": 0.55, "openaichat/gpt-4o-mini": 0.72, "openaichat/gpt-4-turbo": 0.86}
BATCH_PATTERN = r"(?P<dataset>[^/]+)/(?P<item_id>[^/]+)/r(?P<repeat>\d+)/(?P<config_id>.+)"


def write_frugalgpt(path: Path, n: int = 80, seed: int = 0) -> Path:
    """FrugalGPT's per-query format (_id, answer, ref_answer, cost, model) on real HEADLINES test queries."""
    queries = pd.read_csv(PUBLIC / "frugalgpt" / "queries" / "HEADLINES" / "test.csv", header=None,
                          names=["query", "ref_answer", "_id"]).head(n)
    prices = json.loads((PUBLIC / "frugalgpt" / "prices" / "serviceinfo.json").read_text())
    rng = np.random.default_rng(seed)
    ease = rng.random(n)  # one difficulty per query, so the services' mistakes overlap as real ones do
    labels = ["up", "down", "none", "neutral"]
    rows = []
    for service, skill in SERVICES.items():
        provider, model = service.split("/", 1)
        price = prices[provider][model]
        for (_, query), e in zip(queries.iterrows(), ease):
            right = e < skill if rng.random() > 0.1 else rng.random() < skill
            answer = query["ref_answer"] if right else rng.choice([x for x in labels if x != query["ref_answer"]])
            cost = len(query["query"]) / 4 * price["cost_input"] + price["cost_output"]
            rows.append({"_id": str(query["_id"]), "answer": answer, "ref_answer": query["ref_answer"],
                         "cost": cost, "model": service})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_batch(path: Path) -> Path:
    """Batch output of two models on four capitals items, with logprobs and usage."""
    answers = {"gpt-4o-mini": ["Paris", "Rome", "Berlin", "Madird"], "gpt-4o": ["Paris", "Rome", "Berlin", "Madrid"]}
    lines = []
    for model, texts in answers.items():
        for i, text in enumerate(texts):
            body = {"id": f"c{i}", "object": "chat.completion", "created": 1711652795 + i, "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text},
                                 "logprobs": {"content": [{"token": text, "logprob": -0.1 * (i + 1)}]}}],
                    "usage": {"prompt_tokens": 40 + i, "completion_tokens": 2, "total_tokens": 42 + i}}
            lines.append({"id": f"batch_req_{model}_{i}", "custom_id": f"capitals/q{i}/r0/{model}",
                          "response": {"status_code": 200, "request_id": f"req_{i}", "body": body}, "error": None})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("imported")


@pytest.fixture(scope="module")
def imported(scratch: Path) -> dict[str, Path]:
    """Every kind imported with `frontier import KIND PATH -o RUN_DIR`."""
    sources = {
        "llmperf": (PUBLIC / "llmperf", []),  # upstream's raw_data/ layout, as the README says
        "alpacaeval": (write_alpacaeval(scratch / "alpacaeval"), []),
        "frugalgpt": (write_frugalgpt(scratch / "HEADLINES.csv"), []),
        "openai_batch": (write_batch(scratch / "batch_output.jsonl"), ["-O", f"id_pattern={BATCH_PATTERN}"]),
        "azure2023": (PUBLIC / "traces" / "azure2023", []),
        "mooncake": (PUBLIC / "traces" / "mooncake", []),
    }
    runs = {}
    for kind, (path, options) in sources.items():
        out = scratch / "runs" / kind
        assert frontier(["import", kind, str(path), "-o", str(out), *options]) == 0
        runs[kind] = out
    return runs


@pytest.fixture(scope="module")
def reports(scratch: Path, imported: dict[str, Path]):
    """One report per kind over its notebooks, built on first use; returns the executed notebooks."""
    built: dict[str, dict[str, nbformat.NotebookNode]] = {}

    def report(kind: str) -> dict[str, nbformat.NotebookNode]:
        if kind not in built:
            notebooks = scratch / "notebooks" / kind
            notebooks.mkdir(parents=True, exist_ok=True)  # a retry after a failed build shows its own error
            for name in NOTEBOOKS[kind]:
                shutil.copy(resources.notebooks_dir() / f"{name}.ipynb", notebooks)
            parameters = {"reference_points": str(REFERENCE)} if kind == "frugalgpt" else {}
            index = build_report(imported[kind], out_root=scratch / "reports", parameters=parameters,
                                 notebooks_dir=notebooks)
            built[kind] = {name: nbformat.read(index.parent / f"{name}.ipynb", as_version=4)
                           for name in NOTEBOOKS[kind]}
        return built[kind]
    return report


def markdown(nb: nbformat.NotebookNode) -> str:
    return "\n".join(o["data"]["text/markdown"] for c in nb.cells for o in c.get("outputs", [])
                     if "text/markdown" in o.get("data", {}))


def errors(nb: nbformat.NotebookNode) -> list[str]:
    return [f"{o['ename']}: {o['evalue']}" for c in nb.cells for o in c.get("outputs", [])
            if o["output_type"] == "error"]


def test_every_public_folder_imports(imported: dict[str, Path]):
    folders = {p.name for p in PUBLIC.iterdir() if p.is_dir() and p.name != "traces"}
    folders |= {p.name for p in (PUBLIC / "traces").iterdir() if p.is_dir()}
    assert folders <= set(imported)  # a new public data set needs its importer here
    assert len(load_run(imported["azure2023"])) == 8819 and len(load_run(imported["mooncake"])) == 12031
    llmperf = load_run(imported["llmperf"])
    assert len(llmperf) == 2100 and llmperf["config_id"].nunique() == 14
    assert (llmperf["prompt_tokens"].dropna() == 550).all() and llmperf["correct"].isna().all()
    alpaca = load_run(imported["alpacaeval"])
    assert len(alpaca) == 42 and alpaca["ttft_s"].isna().all() and alpaca["correct"].notna().sum() == 41
    frugal = load_run(imported["frugalgpt"])
    assert len(frugal) == 240 and sorted(frugal["config_id"].unique()) == sorted(SERVICES)
    assert (frugal["correct"] == (frugal["output_text"] == frugal["expected"])).all()
    batch = load_run(imported["openai_batch"])
    assert len(batch) == 8 and batch["batch"].all() and batch["logprob_mean"].notna().all()


@pytest.mark.parametrize("kind", list(NOTEBOOKS))
def test_the_notebooks_run_on_every_import(reports, kind: str):
    executed = reports(kind)
    assert {name: errors(nb) for name, nb in executed.items()} == {name: [] for name in executed}


def test_latency_only_llmperf(reports):
    latency, cascades = (markdown(reports("llmperf")[n]) for n in ("03_latency", "06_cascades"))
    assert "Per group, end-to-end latency = TTFT + overhead + per-token time x output tokens" in latency
    assert "(prompt length not varied enough to fit: held constant)" in latency  # llmperf sends 550 tokens
    assert "How good is the model? on held-out requests (k-fold)" in latency
    assert "**No cascades**: no graded requests, so there is nothing to cascade." in cascades


def test_accuracy_only_alpacaeval(reports):
    accuracy, cascades = (markdown(reports("alpacaeval")[n]) for n in ("01_accuracy", "06_cascades"))
    assert "Most accurate: **" in accuracy
    assert "No cascade was evaluated (see the notes)." in cascades and NO_SIGNAL in cascades
    assert "An oracle router that knew which configuration is right" in cascades
    assert "left out for lack of a price" in cascades


def test_frugalgpt_cascades_and_published_points(reports):
    frontier, cascades = (markdown(reports("frugalgpt")[n]) for n in ("04_frontier", "06_cascades"))
    assert "The cheapest cascade that matches the best single configuration" in cascades
    assert ("Published points (FrugalGPT summary_HEADLINES_e8_full_2024.csv, dataset HEADLINES): the best single "
            "model, **gpt-4-turbo**, reaches 85.6% at 3.33 USD per 1,000; the cheapest FrugalGPT cascade that "
            "matches it reaches 87.0% at 0.192 USD per 1,000, 94.2% less.") in frontier
    assert "cascade point" in frontier


def test_openai_batch_says_what_it_lacks(reports):
    latency, cascades = (markdown(reports("openai_batch")[n]) for n in ("03_latency", "06_cascades"))
    assert present.NO_TIMINGS in latency
    assert "**No cascades**: no graded requests, so there is nothing to cascade." in cascades


def test_traffic_notebook_on_the_public_traces(reports):
    azure, mooncake = (markdown(reports(kind)["07_traffic"]) for kind in ("azure2023", "mooncake"))
    assert "**Arrivals**: 8819 requests over" in azure and "bursty" in azure
    assert "priced as **gpt-4o-mini**" in azure and "prompt caching (no prefix hashes" in azure
    assert "**Arrivals**: 12031 requests over" in mooncake
    assert "**prompt caching** saves" in mooncake and "touching 30.3% of the requests" in mooncake
    assert "an extrapolation" in mooncake  # its prompts are far longer than the sample's
