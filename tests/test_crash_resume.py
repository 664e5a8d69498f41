"""Crash safety: `frontier collect` killed with SIGKILL at seeded random points, then `--resume`d.

The collector runs as a child process (`python -m toolkit.cli collect`) against a scripted server in
this process, whose log shows every request as it arrived.  Each kill leaves a run dir that loads;
the resumed sessions finish the plan with the same request_ids, none missing, none recorded twice,
and no request that was journaled before a kill is ever sent again.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from scripted_runs import REPO, write_config
from toolkit.collect import collect
from toolkit.config_file import load_config
from toolkit.runner import plan
from toolkit.store import JOURNAL, REQUESTS, Journal, _drop_cut_last_line, load_run, read_journal, read_manifest
from toolkit.testing import Behaviour, Script, ScriptedServer

KILLS = 5


def cli(config: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "toolkit.cli", "collect", str(config), *args]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def journal_lines(run_dir: Path) -> int:
    try:
        return (run_dir / JOURNAL).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the collector"
        time.sleep(0.002)


def kill(process: subprocess.Popen) -> None:
    assert process.poll() is None, "the kill must land while the collector runs"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_sigkill_at_random_points_then_resume_loses_and_doubles_nothing(tmp_path):
    rng = random.Random(20260601)
    behaviour = Behaviour(tokens=5, ttft_s=0.01, gap_s=0.004)
    with ScriptedServer(Script(behaviour)) as server:
        # the config names no server: each session is pointed at it with --base-url
        config = write_config(tmp_path, None, datasets=["capitals", "sentiment"], items=30, concurrency=8)
        planned = {p.request_id for p in plan(load_config(config))}
        run_dir = tmp_path / "runs" / "crashy"
        kill_times_ns, journaled_before_kill = [], []
        for session in range(KILLS + 1):
            args = ("--runs-root", str(tmp_path / "runs"), "--run-id", "crashy") if session == 0 else (
                "--resume", str(run_dir))
            args += ("--base-url", server.base_url)
            start_lines = journal_lines(run_dir)
            process = cli(config, *args)
            if session == KILLS:  # the last session runs to completion
                assert process.wait(timeout=120) == 0, process.stderr.read()
                break
            if session == 2:  # somewhere in start-up: imports, plan, reading the run so far
                time.sleep(rng.uniform(0.0, 1.0))
            else:  # in the middle of collecting: after a random number of new journal lines
                target = start_lines + rng.randint(1, 40)
                wait_for(lambda: journal_lines(run_dir) >= target or process.poll() is not None)
                time.sleep(rng.uniform(0.0, 0.02))
            kill(process)
            kill_times_ns.append(time.perf_counter_ns())
            process.stderr.close()
            # whatever the kill interrupted, the run dir loads and holds only planned requests, once each
            table = load_run(run_dir)
            assert set(table["request_id"]) <= planned and table["request_id"].is_unique
            journaled_before_kill.append(set(table["request_id"]))
            assert len(table) < len(planned), "the collector finished before it was killed"
        log = list(server.log)
    assert len(kill_times_ns) == KILLS and len(journaled_before_kill[-1]) > len(journaled_before_kill[0])

    table = load_run(run_dir)
    assert set(table["request_id"]) == planned and len(table) == len(planned)
    assert (table["status"] == "ok").all() and table["sequence"].is_unique
    assert not (run_dir / JOURNAL).exists() and (run_dir / REQUESTS).exists()
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "complete" and manifest["requests"] == len(planned)
    assert len(manifest["sessions"]) >= KILLS  # a kill during start-up may come before the session is written
    # Nothing recorded before a kill is sent again afterwards; only requests in flight at a kill
    # (at most 8 per kill) are sent twice.
    for kill_ns, done in zip(kill_times_ns, journaled_before_kill):
        assert not [a.key for a in log if a.received_ns > kill_ns and a.key in done]
    sends = Counter(a.key for a in log)
    assert set(sends) == planned
    assert sum(n - 1 for n in sends.values()) <= 8 * KILLS


def test_a_journal_cut_mid_line_is_read_and_resumed(tmp_path):
    with ScriptedServer(Script(Behaviour(tokens=3))) as server:
        config = write_config(tmp_path, server.base_url, datasets=["capitals"], items=12, variants=["zero_shot"],
                              concurrency=2, limits={"max_requests": 5})
        first = collect(config, runs_root=tmp_path / "runs", run_id="cut")
        ids = {p.request_id for p in plan(load_config(config))}
        kept = load_run(first.run_dir)
        lost = next(iter(ids - set(kept["request_id"])))
        # A kill in the middle of a write: the last record lacks its end and newline.
        fragment = f'{{"run_id": "cut", "request_id": "{lost}", "status": "o'
        (first.run_dir / JOURNAL).write_text(fragment, encoding="utf-8")
        assert read_journal(first.run_dir / JOURNAL) == []
        assert set(load_run(first.run_dir)["request_id"]) == set(kept["request_id"])
        config = write_config(tmp_path, server.base_url, datasets=["capitals"], items=12, variants=["zero_shot"],
                              concurrency=2)
        summary = collect(config, resume=first.run_dir)
        sent = Counter(a.key for a in server.log)
    table = load_run(summary.run_dir)
    assert summary.already_done == 5 and summary.sent == 7 and set(table["request_id"]) == ids
    assert sent[lost] == 1 and set(sent.values()) == {1}  # the cut request was sent, once


def test_sigterm_stops_cleanly_and_folds_the_journal(tmp_path):
    with ScriptedServer(Script(Behaviour(tokens=3, ttft_s=0.02))) as server:
        config = write_config(tmp_path, server.base_url, datasets=["capitals"], items=100, variants=["zero_shot"],
                              concurrency=2)
        run_dir = tmp_path / "runs" / "term"
        process = cli(config, "--runs-root", str(tmp_path / "runs"), "--run-id", "term")
        wait_for(lambda: journal_lines(run_dir) >= 10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 130
        assert "interrupted; what was collected is kept (continue with --resume)" in process.stderr.read()
        process.stderr.close()
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "interrupted" and not (run_dir / JOURNAL).exists()
    assert 10 <= manifest["requests"] == len(load_run(run_dir)) < 100


@pytest.mark.parametrize("block", [3, 1 << 16])
@pytest.mark.parametrize("kept, fragment", [('{"request_id": "a"}\n', '{"request_id": "b", "st'),
                                            ("", '{"request_id": "b"'), ('{"request_id": "a"}\n', "")])
def test_the_cut_fragment_is_dropped_before_the_next_append(tmp_path, block, kept, fragment):
    path = tmp_path / JOURNAL
    path.write_text(kept + fragment, encoding="utf-8")
    _drop_cut_last_line(path, block=block)
    assert path.read_text(encoding="utf-8") == kept
    with Journal(tmp_path):  # what a resumed session does before its first append
        pass
    assert path.read_text(encoding="utf-8") == kept


def test_the_fast_journal_reader_equals_the_line_reader_also_on_a_cut_journal(tmp_path):
    import datetime as dt

    import pandas as pd

    from toolkit.schema import RequestRecord, coerce_requests, from_arrow
    from toolkit.store import journal_table

    with Journal(tmp_path) as journal:
        for i in range(30):
            ok = i % 3 != 0
            journal.append(RequestRecord(
                run_id="r", request_id=f"id{i}", config_id="c", model="m", prompt_variant="v", max_tokens=8,
                temperature=0.7, dataset="d", item_id=f"item{i}", repeat=0, endpoint="127.0.0.1:1",
                started_at=dt.datetime(2026, 1, 1, 12, 0, i, 123456, tzinfo=dt.UTC), status="ok" if ok else "error",
                attempts=1 + i % 2, concurrency=4, sequence=i, ttft_s=0.1 if ok else None, tbt_s=[0.01] * 3 if ok else [],
                output_text="Bogotá 😀" if ok else None, correct=ok if ok else None, http_status=None if ok else 503,
                error_type=None if ok else "server_error", error_message=None if ok else "Error code: 503"))
    path = tmp_path / JOURNAL
    path.write_bytes(path.read_bytes() + b'{"run_id": "r", "request_id": "id30", "sta')  # a kill mid-write
    fast = from_arrow(journal_table(path))
    assert len(fast) == 30 and fast["output_text"].iloc[1] == "Bogotá 😀"
    pd.testing.assert_frame_equal(fast, coerce_requests(pd.DataFrame(read_journal(path))))
