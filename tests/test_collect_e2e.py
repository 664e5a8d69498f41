"""End to end on the real embedded LLM: collect a small grid, check the table, kill and resume."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from toolkit.collect import collect
from toolkit.local_server import EmbeddedServer
from toolkit.runner import plan
from toolkit.config import load_config
from toolkit.schema import ARROW_SCHEMA, REQUEST_COLUMNS, to_arrow
from toolkit.store import JOURNAL, load_run, read_journal, read_manifest

pytestmark = pytest.mark.llm
REPO = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, **grid) -> Path:
    raw = {
        "name": "e2e", "tasks": ["capitals"], "items_per_task": 20, "seed": 3,
        "evals_dir": str(REPO / "data" / "evals"), "prompts_dir": str(REPO / "data" / "prompts"),
        "endpoints": [{"name": "embedded", "kind": "embedded"}],
        "grid": {"prompt_variants": ["zero_shot", "few_shot_3"], "max_tokens": [6, {"tokens": 12, "stop": False}],
                 "concurrency": [2], "repeats": 1, **grid},
    }
    path = tmp_path / "e2e.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("e2e")
    summary = collect(write_config(tmp_path), runs_root=tmp_path / "runs", run_id="small")
    return summary, load_run(summary.run_dir)


def test_every_design_column_is_present_with_its_dtype(collected):
    summary, table = collected
    assert list(table.columns) == list(REQUEST_COLUMNS)
    assert to_arrow(table).schema.equals(ARROW_SCHEMA)
    assert len(table) == 2 * 2 * 20 and summary.errors == 0
    assert table["request_id"].is_unique
    assert (table["usage_source"] == "estimated").all()  # llama-cpp-python sends no usage in streams
    assert table["endpoint"].str.startswith("127.0.0.1:").all()
    assert (summary.run_dir / "server.log").stat().st_size > 0
    manifest = read_manifest(summary.run_dir)
    assert manifest["status"] == "complete" and manifest["requests"] == 80
    assert manifest["eval_sets"][0]["sha256"] and manifest["versions"]["openai"]


def test_timings_are_consistent(collected):
    _, table = collected
    assert (table["ttft_s"] > 0).all()
    assert (table["e2e_s"] >= table["ttft_s"]).all()
    tail = table["e2e_s"] - table["ttft_s"] - table["tbt_s"].map(sum)
    assert (tail >= -1e-9).all()
    # at the token cap the stream ends right after the last token, so the gaps cover the decode time;
    # with a stop sequence one more (stop) token is generated after the last content chunk
    at_cap = tail[table["max_tokens"] == 12]
    assert at_cap.median() < 0.01 and (at_cap < 0.25).all()
    assert (table["completion_tokens"] <= table["max_tokens"]).all()
    assert (table["prompt_tokens"] > 0).all()
    assert set(table["sequence"]) == set(range(len(table)))


def test_few_shot_beats_zero_shot_on_capitals(collected):
    _, table = collected
    accuracy = table.groupby("prompt_variant")["correct"].mean()
    assert accuracy["few_shot_3"] > accuracy["zero_shot"]


def test_kill_and_resume_gives_the_same_request_ids(tmp_path):
    config_path = write_config(tmp_path)
    expected_ids = {p.request_id for p in plan(load_config(config_path))}
    with EmbeddedServer() as server:
        command = [sys.executable, "-m", "toolkit.cli", "collect", str(config_path), "--runs-root",
                   str(tmp_path / "runs"), "--run-id", "killed", "--base-url", server.base_url]
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal = tmp_path / "runs" / "killed" / JOURNAL
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not journal.exists() or len(read_journal(journal)) < 15):
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        before = read_journal(journal)
        assert 15 <= len(before) < len(expected_ids)
        summary = collect(config_path, resume=tmp_path / "runs" / "killed", base_url=server.base_url)
    table = load_run(summary.run_dir)
    assert set(table["request_id"]) == expected_ids and table["request_id"].is_unique
    assert summary.sent == len(expected_ids) - len({row["request_id"] for row in before})
    assert set(table["sequence"]) == set(range(len(table)))  # the resumed session continues the count
