"""Self-hosted cost by phase (machine_time.machine_seconds): a request pays its share of the wall time of
the phase it ran in, so more requests in flight are cheaper only when the server really serves them
at once.  Checked against the scripted server run serially (one slot) and in parallel."""
from __future__ import annotations

import pandas as pd
import pytest

from scripted_runs import write_config
from toolkit.collect import collect
from toolkit.machine_time import machine_seconds, pricing_rules
from toolkit.pricing import load_price_table, price_requests
from toolkit.schema import coerce_requests
from toolkit.store import load_run, read_manifest
from toolkit.testing import Behaviour, Script, ScriptedServer

USD_PER_HOUR = 3.6  # 0.001 USD per second of machine time
T0 = pd.Timestamp("2026-01-01", tz="UTC")


def collect_levels(tmp_path, *, serial: bool, name: str) -> pd.DataFrame:
    # 500 ms per request: long against the client's own turnaround between requests at concurrency 1,
    # which is machine time the server spends idle and is rightly charged
    script = Script(Behaviour(ttft_s=0.2, gap_s=0.1, tokens=4))
    with ScriptedServer(script, serial=serial) as server:
        path = write_config(tmp_path / name, server.base_url, datasets=["capitals"], items=8,
                            variants=["zero_shot"], concurrency=[1, 4])
        collect(path, runs_root=tmp_path / "runs", run_id=name)
    return load_run(tmp_path / "runs" / name)


def cost_per_request(table: pd.DataFrame) -> pd.Series:
    prices = load_price_table(machine_usd_per_hour=USD_PER_HOUR)
    return table.assign(usd=price_requests(table, prices)).groupby("concurrency")["usd"].mean()


def wall_per_request(table: pd.DataFrame) -> pd.Series:
    done = table["started_at"] + pd.to_timedelta(table["e2e_s"], unit="s")
    spans = table.assign(done=done).groupby("concurrency").agg(first=("started_at", "min"), last=("done", "max"),
                                                               n=("request_id", "size"))
    return (spans["last"] - spans["first"]).dt.total_seconds() / spans["n"]


def test_a_serial_server_is_no_cheaper_with_more_requests_in_flight(tmp_path):
    table = collect_levels(tmp_path, serial=True, name="serial")
    e2e = table.groupby("concurrency")["e2e_s"].median()
    assert e2e[4] > 2.5 * e2e[1]  # requests really queued behind each other
    cost = cost_per_request(table)
    assert cost[4] >= 0.9 * cost[1]
    # the phase total is the phase's wall time at the hourly rate
    assert (cost * 1e3).to_numpy() == pytest.approx(wall_per_request(table).to_numpy(), rel=1e-6)


def test_a_parallel_server_is_cheaper_in_proportion_to_its_throughput(tmp_path):
    table = collect_levels(tmp_path, serial=False, name="parallel")
    cost = cost_per_request(table)
    wall = wall_per_request(table)
    assert cost[4] < 0.5 * cost[1]
    assert cost[4] / cost[1] == pytest.approx(wall[4] / wall[1], rel=1e-6)
    phases = read_manifest(tmp_path / "runs" / "parallel")["phases"]
    assert [(p["phase"], p["concurrency"], p["sent"]) for p in phases] == [(0, 1, 8), (1, 4, 8)]
    assert sorted(table["phase"].unique()) == [0, 1]


def test_a_resumed_session_gets_phases_of_its_own(tmp_path):
    with ScriptedServer(Script(Behaviour(tokens=2))) as server:
        path = write_config(tmp_path, server.base_url, datasets=["capitals"], items=6, variants=["zero_shot"],
                            concurrency=[1, 2])
        collect(path, runs_root=tmp_path / "runs", run_id="r", max_requests=3)
        collect(path, resume=tmp_path / "runs" / "r")
    table = load_run(tmp_path / "runs" / "r")
    first = table.sort_values("sequence")["phase"].tolist()
    assert first[:3] == [0, 0, 0] and set(first[3:]) == {1, 2}
    assert [p["phase"] for p in read_manifest(tmp_path / "runs" / "r")["phases"]] == [0, 1, 2]


def rows(phase, starts, e2es, **extra) -> pd.DataFrame:
    return coerce_requests(pd.DataFrame({
        "run_id": "r", "request_id": [f"{phase}-{i}" for i in range(len(starts))], "model": "m",
        "endpoint": "h", "status": "ok", "phase": phase,
        "started_at": [T0 + pd.Timedelta(seconds=s) for s in starts], "e2e_s": e2es, **extra}))


def test_shares_follow_the_servers_own_work_and_add_up_to_the_phase_wall_time():
    frame = rows(0, [0, 0, 0], [1.0, 2.0, 3.0], server_prefill_s=[0.1, 0.1, 0.1],
                 server_decode_s=[0.4, 0.9, 0.4])
    shares = machine_seconds(frame)
    assert shares["machine_s"].sum() == pytest.approx(3.0)  # first send at 0, last byte at 3
    assert shares["machine_s"].tolist() == pytest.approx([0.75, 1.5, 0.75])  # by prefill + decode
    assert set(shares["machine_rule"]) == {"phase"}


def test_without_a_phase_each_request_pays_its_own_e2e_and_the_rule_says_so():
    frame = pd.concat([rows(None, [0, 0], [1.0, 2.0]),
                       rows(0, [0, 1], [0.5, 0.5], cache_hit=[True, False])], ignore_index=True)
    frame["request_id"] = [f"x{i}" for i in range(len(frame))]
    shares = machine_seconds(frame)
    assert shares["machine_s"].tolist() == pytest.approx([1.0, 2.0, 0.0, 1.5])
    assert shares["machine_rule"].astype(str).tolist() == ["e2e", "e2e", "cache_hit", "phase"]
    rules = pricing_rules(frame, load_price_table(machine_usd_per_hour=1.0))
    assert dict(zip(rules["rule"], rules["requests"])) == {"cache_hit": 1, "e2e": 2, "phase": 1}
    assert rules["description"].str.len().min() > 20


def test_load_run_shares_machine_time_over_the_whole_run_so_subsets_keep_their_cost(tmp_path):
    table = collect_levels(tmp_path, serial=True, name="subset")
    prices = load_price_table(machine_usd_per_hour=USD_PER_HOUR)
    whole = price_requests(table, prices)
    half = table[table["item_id"].isin(sorted(table["item_id"].unique())[:8])]
    assert price_requests(half, prices).to_numpy() == pytest.approx(whole[half.index].to_numpy())


def test_batch_answers_share_the_span_of_their_batch():
    frame = rows(None, [0, 4, 10, 10], [None] * 4, batch=True)
    shares = machine_seconds(frame)
    assert shares["machine_s"].tolist() == pytest.approx([2.5] * 4)
    assert set(shares["machine_rule"].astype(str)) == {"batch"}


def test_a_missing_run_id_or_endpoint_groups_with_an_empty_one():
    # phase 1 of (run "", endpoint "h"): sent at 0 and 1, done at 2 and 4 -> wall 4 s, shared by work 1 : 3
    start = pd.Timestamp("2026-01-01", tz="UTC")
    frame = coerce_requests(pd.DataFrame([
        {"run_id": None, "endpoint": "h", "phase": 1, "started_at": start, "e2e_s": 2.0, "status": "ok",
         "server_prefill_s": 0.5, "server_decode_s": 0.5},
        {"run_id": "", "endpoint": "h", "phase": 1, "started_at": start + pd.Timedelta(seconds=1), "e2e_s": 3.0,
         "status": "ok", "server_prefill_s": 1.0, "server_decode_s": 2.0},
        {"run_id": "", "endpoint": None, "phase": 1, "started_at": start, "e2e_s": 5.0, "status": "ok"},
        {"run_id": "", "endpoint": "", "phase": 1, "started_at": start + pd.Timedelta(seconds=5), "e2e_s": 1.0,
         "status": "ok"},
    ]))
    machine = machine_seconds(frame)
    assert machine["machine_s"].tolist() == pytest.approx([1.0, 3.0, 6 * 5 / 6, 6 * 1 / 6])
    assert machine["machine_rule"].astype(str).tolist() == ["phase"] * 4
