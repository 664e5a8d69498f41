"""Open-loop arrivals (`grid.arrival`): the config, the seeded schedule, and a run against the scripted
server that must deliver its target rate and never hide the client's own queueing."""
from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pandas as pd
import pytest

from scripted_runs import arrival_config, open_loop_config, write_config
from toolkit.analysis.latency import request_metrics
from toolkit.collect import collect
from toolkit.config import with_overrides
from toolkit.config_file import load_config
from toolkit.errors import ConfigError
from toolkit.pacing import achieved_rate, arrival_offsets
from toolkit.store import load_run
from toolkit.testing import Behaviour, Script, ScriptedServer


def test_offsets_start_at_zero_span_the_rate_and_are_seeded_and_irregular():
    offsets = arrival_offsets(201, 50.0, random.Random(3))
    assert offsets[0] == 0.0 and offsets[-1] == pytest.approx(200 / 50.0)
    assert all(b >= a for a, b in zip(offsets, offsets[1:]))
    assert offsets == arrival_offsets(201, 50.0, random.Random(3))
    assert offsets != arrival_offsets(201, 50.0, random.Random(4))
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    # exponential gaps: the standard deviation is about the mean (a fixed-rate clock's would be 0)
    assert 0.8 < statistics.stdev(gaps) / statistics.mean(gaps) < 1.2
    assert arrival_offsets(1, 5.0, random.Random(0)) == [0.0] and arrival_offsets(0, 5.0, random.Random(0)) == []


def test_achieved_rate_counts_every_delay_up_to_the_last_send():
    due = arrival_offsets(201, 50.0, random.Random(1))
    assert achieved_rate(due, 0.0) == pytest.approx(50.0)  # sent when due: the target exactly
    assert achieved_rate([2 * t for t in due], 0.0) == pytest.approx(25.0)  # falling behind: half the rate
    assert achieved_rate([*due[:-1], due[-1] + 0.2], 0.0) == pytest.approx(200 / 4.2)  # the last one late
    assert achieved_rate([5.0], 5.0) is None and achieved_rate([], 0.0) is None


def test_arrival_config_sets_the_bound_and_the_config_id(tmp_path):
    path = arrival_config(tmp_path, "http://127.0.0.1:9/v1", {"rate_per_s": 2.5, "max_in_flight": 16},
                          datasets=["capitals"], variants=["zero_shot"])
    config = load_config(path)
    assert config.grid.arrival.rate_per_s == 2.5 and config.grid.concurrency == (16,)
    (only,) = config.configs()
    assert only.concurrency == 16 and only.config_id == "scripted/zero_shot/mt8/T0/r2.5/c16"
    default = load_config(arrival_config(tmp_path / "default", "http://127.0.0.1:9/v1", {"rate_per_s": 1}))
    assert default.grid.concurrency == (32,)  # also the embedded server's slots: not hundreds
    # --concurrency bounds an open-loop run's requests in flight
    override = with_overrides(config, concurrency=4)
    assert override.grid.arrival.max_in_flight == 4 and override.configs()[0].concurrency == 4


@pytest.mark.parametrize("arrival, message", [
    ({"rate_per_s": 0}, 'field "grid.arrival.rate_per_s": must be a finite number > 0, got 0.0'),
    ({"rate_per_s": float("inf")}, 'field "grid.arrival.rate_per_s": must be a finite number > 0, got inf'),
    ({"rate_per_s": "fast"}, 'field "grid.arrival.rate_per_s": must be int or float'),
    ({}, 'field "grid.arrival.rate_per_s": is required'),
    ({"rate_per_s": 5, "duration_s": -1}, 'field "grid.arrival.duration_s": must be a finite number > 0'),
    ({"rate_per_s": 5, "max_in_flight": 0}, 'field "grid.arrival.max_in_flight": must be a finite number > 0'),
    ({"rate_per_s": 5, "burst": 2}, "unknown key(s): grid.arrival.burst"),
])
def test_bad_arrival_settings_name_their_key(tmp_path, arrival, message):
    path = arrival_config(tmp_path, "http://127.0.0.1:9/v1", arrival)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)


def test_arrival_and_concurrency_levels_exclude_each_other(tmp_path):
    path = arrival_config(tmp_path, "http://127.0.0.1:9/v1", {"rate_per_s": 5}, concurrency=[1, 4])
    with pytest.raises(ConfigError, match=r'field "grid.concurrency": open-loop grid.arrival sets the load'):
        load_config(path)


def test_open_loop_delivers_its_rate_and_latency_from_the_due_time_includes_the_lag(tmp_path):
    # 200 requests at 50/s, each answered in ~60 ms: about three in flight at a time, so a closed
    # loop of any fixed size would either queue them or fall short of the rate
    with ScriptedServer(Script(Behaviour(ttft_s=0.03, gap_s=0.005, tokens=6))) as server:
        path = open_loop_config(tmp_path, server.base_url, rate_per_s=50)
        summary = collect(path, runs_root=tmp_path / "runs", run_id="open")
        log = list(server.log)
    assert summary.sent == 200 and summary.errors == 0 and summary.stop_reason is None
    manifest = json.loads((tmp_path / "runs" / "open" / "manifest.json").read_text())
    (phase,) = manifest["phases"]
    arrival = phase["arrival"]
    assert arrival["target_rate_per_s"] == 50 and arrival["requests"] == 200
    assert arrival["achieved_rate_per_s"] == pytest.approx(50, rel=0.02)
    # the server saw that rate too (counted from its first arrival, which carries a TCP connect: 5%)
    received = [a.received_ns / 1e9 for a in log]
    assert achieved_rate(received, min(received)) == pytest.approx(50, rel=0.05)
    table = load_run(tmp_path / "runs" / "open")

    assert table["scheduled_at"].notna().all() and table["send_lag_s"].notna().all()
    assert (table["send_lag_s"] >= 0).all() and arrival["max_send_lag_s"] == pytest.approx(table["send_lag_s"].max())
    metrics = request_metrics(table)
    assert (metrics["e2e_from_scheduled_s"] >= metrics["e2e_s"]).all()
    assert (metrics["ttft_from_scheduled_s"] >= metrics["ttft_s"]).all()
    # started_at is the due time plus the lag (two clocks, so within a few milliseconds)
    drift = (table["started_at"] - table["scheduled_at"]).dt.total_seconds() - table["send_lag_s"]
    assert drift.abs().max() < 0.005
    # requests overlapped: sent on schedule, not after the previous one finished
    ends = sorted(zip(table["started_at"], table["started_at"] + pd.to_timedelta(table["e2e_s"], unit="s")))
    assert sum(b[0] < a[1] for a, b in zip(ends, ends[1:])) > 50


def test_a_full_in_flight_bound_makes_requests_late_and_the_lag_says_how_late(tmp_path):
    # a serial server answering in 50 ms cannot keep 40 requests/s: with one request in flight
    # allowed, each waits for the one before, and the lag grows instead of vanishing from latency
    with ScriptedServer(Script(Behaviour(ttft_s=0.04, gap_s=0.005, tokens=3)), serial=True) as server:
        path = open_loop_config(tmp_path, server.base_url, rate_per_s=40, duration_s=0.5, max_in_flight=1)
        summary = collect(path, runs_root=tmp_path / "runs", run_id="held")
    assert summary.sent == 20 and "sends 20 of the phase's 200 planned requests" in summary.stop_reason
    table = load_run(tmp_path / "runs" / "held").sort_values("scheduled_at")
    lag = table["send_lag_s"].to_numpy()
    assert lag[-1] > 0.3 and lag[-1] > lag[0]  # 20 x 50 ms of service against 0.5 s of schedule
    arrival = json.loads((tmp_path / "runs" / "held" / "manifest.json").read_text())["phases"][0]["arrival"]
    assert arrival["achieved_rate_per_s"] < 0.8 * 40


def test_closed_loop_rows_have_no_schedule(tmp_path):
    with ScriptedServer(Script(Behaviour(tokens=2))) as server:
        path = write_config(tmp_path, server.base_url, datasets=["capitals"], items=4, variants=["zero_shot"],
                            concurrency=2)
        collect(path, runs_root=tmp_path / "runs", run_id="closed")
    table = load_run(tmp_path / "runs" / "closed")
    assert table["scheduled_at"].isna().all() and table["send_lag_s"].isna().all()
    manifest = json.loads((tmp_path / "runs" / "closed" / "manifest.json").read_text())
    assert "arrival" not in manifest["phases"][0]
