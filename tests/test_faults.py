"""Fault injection through the whole collector: every fault the scripted server knows, at once.

A 1,000-request run (4 datasets x 50 items x 5 prompt variants) meets a seeded mix of 429s with
Retry-After, 500/502/503, resets before the first byte and mid-stream, stalls longer than the client
timeout, broken SSE lines, streams without usage and empty-choices chunks.  The script says, per
request, which attempt succeeds (`Script.plan`), so the recorded `status`, `attempts`, `error_type`
and `http_status` are checked against that ground truth, as are the server's own attempt log and the
waits between attempts.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import pandas as pd
import pytest

from scripted_runs import ERROR_TYPE, expected_outcome, write_config
from toolkit.collect import collect
from toolkit.config_file import load_config
from toolkit.errors import EndpointError
from toolkit.runner import plan
from toolkit.store import load_run, read_manifest
from toolkit.testing import STREAM_FAULTS, Behaviour, Script, ScriptedServer

MIX = {"429": 0.05, "500": 0.03, "502": 0.03, "503": 0.03, "reset": 0.03, "reset_mid": 0.03,
       "stall": 0.02, "malformed": 0.03, "no_usage": 0.03, "empty_choices": 0.03, "truncated": 0.03}
RETRY_AFTER_S = 0.2
TIMEOUT_S = 1.5  # generous: a loaded CI machine must not turn a slow answer into a timeout
MAX_ATTEMPTS = 3
TOKENS = 6
DEFAULT = Behaviour(tokens=TOKENS, ttft_s=0.002, gap_s=0.001, retry_after_s=RETRY_AFTER_S,
                    fault_after_tokens=2, stall_s=3.0)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    """The 1,000-request run: (script, planned ids, records as journaled, table, server log)."""
    tmp = tmp_path_factory.mktemp("faults")
    script = Script.fault_mix(MIX, seed=11, max_faults_per_request=3, default=DEFAULT)
    journaled = []
    with ScriptedServer(script) as server:
        path = write_config(tmp, server.base_url, items=50, concurrency=32,
                            retry={"max_attempts": MAX_ATTEMPTS, "timeout_s": TIMEOUT_S})
        planned = [p.request_id for p in plan(load_config(path))]
        summary = collect(path, runs_root=tmp / "runs", run_id="faults", on_record=journaled.append)
        log = list(server.log)
    return script, planned, journaled, summary, load_run(summary.run_dir), log


def test_the_script_exercises_every_fault_and_both_outcomes(faulty_run):
    script, planned, *_ = faulty_run
    assert len(planned) == 1000 and len(set(planned)) == 1000
    faults = Counter(b.fault for key in planned for b in script.plan(key))
    assert set(faults) == set(MIX) and set(STREAM_FAULTS) | {"429", "500", "502", "503"} == set(MIX)
    outcomes = Counter(expected_outcome(script, key, MAX_ATTEMPTS)[:2] for key in planned)
    assert outcomes[("error", MAX_ATTEMPTS)] >= 5 and outcomes[("ok", 2)] >= 50 and outcomes[("ok", 3)] >= 5


def test_every_planned_request_is_recorded_exactly_once(faulty_run):
    _, planned, journaled, summary, table, _ = faulty_run
    counts = Counter(record.request_id for record in journaled)
    assert set(counts) == set(planned) and set(counts.values()) == {1}
    assert len(table) == 1000 and table["request_id"].is_unique and set(table["request_id"]) == set(planned)
    assert summary.sent == 1000 and summary.stop_reason is None
    assert sorted(table["sequence"]) == list(range(1000))
    manifest = read_manifest(summary.run_dir)
    assert manifest["status"] == "complete" and manifest["requests"] == 1000
    assert manifest["errors"] == summary.errors == int((table["status"] == "error").sum())


def test_status_attempts_and_error_kind_match_the_script(faulty_run):
    script, _, _, _, table, _ = faulty_run
    for row in table.itertuples():
        status, attempts, last_fault = expected_outcome(script, row.request_id, MAX_ATTEMPTS)
        assert (row.status, row.attempts) == (status, attempts), row.request_id
        if status == "ok":
            assert row.output_text == " ".join(f"tok{i}" for i in range(1, TOKENS + 1))
            assert pd.isna(row.error_type) and pd.isna(row.http_status)
            assert row.usage_source == ("estimated" if last_fault == "no_usage" else "server")
            assert row.completion_tokens == TOKENS
        else:
            assert row.error_type == ERROR_TYPE[last_fault], row.request_id
            http = int(last_fault) if last_fault.isdigit() else None
            assert (None if pd.isna(row.http_status) else row.http_status) == http
            assert row.error_message and pd.isna(row.ttft_s) and pd.isna(row.output_text)


def test_the_server_saw_exactly_the_recorded_attempts(faulty_run):
    _, _, _, _, table, log = faulty_run
    seen = defaultdict(list)
    for attempt in log:
        seen[attempt.key].append(attempt.attempt)
    recorded = dict(zip(table["request_id"], table["attempts"]))
    assert set(seen) == set(recorded)
    assert all(seen[key] == list(range(1, recorded[key] + 1)) for key in recorded)  # no hidden retries


def test_retry_after_is_honoured_between_attempts(faulty_run):
    _, _, _, _, _, log = faulty_run
    by_key = defaultdict(list)
    for attempt in log:
        by_key[attempt.key].append(attempt)
    waits = [(later.received_ns - earlier.received_ns) / 1e9
             for attempts in by_key.values() for earlier, later in zip(attempts, attempts[1:])
             if earlier.behaviour.fault in ("429", "500", "502", "503")]
    assert len(waits) > 100 and min(waits) >= RETRY_AFTER_S


def test_retry_after_beyond_backoff_max_wins_and_without_it_backoff_is_used(tmp_path):
    path = write_config(tmp_path, None, datasets=["capitals"], items=6, variants=["zero_shot"], concurrency=6)
    keys = [p.request_id for p in plan(load_config(path))]
    told, untold = keys[:3], keys[3:]
    rules = {**{k: [Behaviour(fault="429", retry_after_s=0.4)] for k in told},
             **{k: [Behaviour(fault="503"), Behaviour(fault="reset")] for k in untold}}
    with ScriptedServer(Script(Behaviour(tokens=2), rules=rules)) as server:
        path = write_config(tmp_path, server.base_url, datasets=["capitals"], items=6, variants=["zero_shot"],
                            concurrency=6, retry={"backoff_base_s": 0.02, "backoff_max_s": 0.05})
        collect(path, runs_root=tmp_path / "runs", run_id="retry-after")
        log = list(server.log)
    received = defaultdict(list)
    for attempt in log:
        received[attempt.key].append(attempt.received_ns / 1e9)
    told_waits = [b - a for k in told for a, b in zip(received[k], received[k][1:])]
    untold_waits = [b - a for k in untold for a, b in zip(received[k], received[k][1:])]
    assert len(told_waits) == 3 and min(told_waits) >= 0.4  # above backoff_max_s: the header rules
    assert len(untold_waits) == 6 and max(untold_waits) < 0.3  # jittered 0.01-0.02 s, then 0.02-0.04 s
    table = load_run(tmp_path / "runs" / "retry-after")
    assert dict(zip(table["request_id"], table["attempts"])) == {**dict.fromkeys(told, 2), **dict.fromkeys(untold, 3)}


def test_the_timing_kept_is_the_successful_attempts(faulty_run):
    script, _, _, _, table, _ = faulty_run
    ok = table[table["status"] == "ok"]
    stalled = [row for row in ok.itertuples()
               if any(b.fault == "stall" for b in script.plan(row.request_id)[:row.attempts - 1])]
    assert stalled and all(row.e2e_s < TIMEOUT_S for row in stalled)  # not the stalled attempt
    assert (ok["ttft_s"] > 0).all() and (ok["e2e_s"] >= ok["ttft_s"]).all()
    assert (ok["tbt_s"].map(len) == TOKENS - 1).all()  # cut-off tokens of failed attempts are gone


def test_a_401_mid_run_stops_with_endpoint_error_and_keeps_what_was_collected(tmp_path):
    path = write_config(tmp_path, None, datasets=["capitals"], items=40, variants=["zero_shot", "chat"],
                        concurrency=4)
    order = [p.request_id for p in plan(load_config(path))]
    script = Script(Behaviour(tokens=3), rules={order[50]: [Behaviour(fault="401")]})
    with ScriptedServer(script) as server:
        path = write_config(tmp_path, server.base_url, datasets=["capitals"], items=40,
                            variants=["zero_shot", "chat"], concurrency=4)
        with pytest.raises(EndpointError, match=r"endpoint 'scripted' refused the key \(HTTP 401\)"):
            collect(path, runs_root=tmp_path / "runs", run_id="auth")
        run_dir = tmp_path / "runs" / "auth"
        kept = load_run(run_dir)
        # 4 workers: when the 401 came back, at most 3 others were in flight, finishing or cancelled
        assert 47 <= len(kept) <= 53 and (kept["status"] == "ok").all()
        assert set(kept["request_id"]) <= set(order[:54]) - {order[50]}
        manifest = read_manifest(run_dir)
        assert manifest["status"] == "interrupted" and manifest["requests"] == len(kept)
        summary = collect(path, resume=run_dir)  # the key works again: the resumed run completes
    table = load_run(run_dir)
    assert summary.sent == 80 - len(kept) and set(table["request_id"]) == set(order)
    assert table.loc[table["request_id"] == order[50], "attempts"].item() == 1  # a fresh request

