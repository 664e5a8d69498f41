"""`frontier collect --workers N`: the grid sharded over Ray worker processes (toolkit/sharded.py).

Most tests share one local Ray instance (started once: it takes seconds) that `collect_sharded` uses
as it finds it; the CLI tests start and stop their own, as a user's run does, and check that no Ray
process outlives them.  The scripted server logs every request it receives, which is the ground
truth for "sent again" and "in flight".
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import ray
import yaml

from processes import alive
from scripted_runs import REPO, open_loop_config, write_config
from toolkit.collect import collect
from toolkit.config import with_overrides
from toolkit.config_file import load_config
from toolkit.errors import EndpointError
from toolkit.pacing import achieved_rate
from toolkit.runner import plan
from toolkit.schema import SETTING_COLUMNS
from toolkit.sharded import collect_sharded, split_phase
from toolkit.store import load_run, part_names, read_manifest
from toolkit.testing import Behaviour, Script, ScriptedServer

SAME_IN_BOTH = ["request_id", "config_id", *SETTING_COLUMNS, "dataset", "item_id", "repeat", "status", "attempts",
                "concurrency", "phase", "output_text", "correct", "prompt_tokens", "completion_tokens"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def most_in_flight(table: pd.DataFrame) -> int:
    """The most requests of `table` that were out at the same moment (from start to last byte)."""
    starts = table["started_at"]
    events = sorted([(t, 1) for t in starts] + [(t, -1) for t in starts + pd.to_timedelta(table["e2e_s"], unit="s")],
                    key=lambda event: (event[0], event[1]))
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_a_phase_is_split_by_slots_so_the_level_stays_the_total_in_flight():
    requests = list(range(10))
    assert split_phase(requests, 4, 2) == [(2, [0, 2, 4, 6, 8]), (2, [1, 3, 5, 7, 9])]
    assert split_phase(requests, 3, 2) == [(2, [0, 2, 3, 5, 6, 8, 9]), (1, [1, 4, 7])]
    assert split_phase(requests, 1, 2) == [(1, requests)]  # a level below the workers uses fewer workers


def test_two_workers_collect_the_demo_grid_to_the_same_table_as_one_process(tmp_path, local_ray):
    """data/configs/demo.yaml (992 requests at levels 4, 1, 2 and 8, a response-cache subgrid) against
    the scripted server."""
    demo = REPO / "data" / "configs" / "demo.yaml"
    with ScriptedServer(Script(Behaviour(tokens=4, ttft_s=0.005, gap_s=0.002))) as server:
        sharded = collect_sharded(demo, workers=2, runs_root=tmp_path / "runs", run_id="two", base_url=server.base_url)
        single = collect(demo, runs_root=tmp_path / "runs", run_id="one", base_url=server.base_url)
    two, one = load_run(sharded.run_dir), load_run(single.run_dir)
    assert sharded.sent == len(two) == len(one) == sharded.planned == 992 and sharded.errors == 0
    assert list(two.columns) == list(one.columns)
    pd.testing.assert_frame_equal(two[SAME_IN_BOTH].sort_values("request_id", ignore_index=True),
                                  one[SAME_IN_BOTH].sort_values("request_id", ignore_index=True))
    assert two["cache_hit"].sum() == one["cache_hit"].sum() > 0  # the workers share the run's cache file
    # each shard its own part, sequences unique and in phase order across shards
    assert sorted(p.name for p in sharded.run_dir.glob("requests*.parquet")) == [
        part_names("shard-01")[1], part_names("shard-02")[1]]
    assert two["sequence"].is_unique
    by_phase = two.groupby("phase")["sequence"].agg(["min", "max"])
    assert (by_phase["max"].iloc[:-1].to_numpy() < by_phase["min"].iloc[1:].to_numpy()).all()
    manifest = read_manifest(sharded.run_dir)
    assert manifest["status"] == "complete" and manifest["requests"] == 992 and manifest["parts"] == [
        "shard-01", "shard-02"]
    # a level below the workers runs on one of them
    assert [(p["concurrency"], p["workers"]) for p in manifest["phases"]] == [(4, 2), (1, 1), (2, 2), (8, 2)]
    assert sum(p["sent"] for p in manifest["phases"]) == 992
    assert len({shard["pid"] for shard in manifest["sessions"][-1]["shards"]}) == 2
    sent = two[~two["cache_hit"]]  # a cache hit is answered without a request
    for level, phase in sent.groupby("concurrency"):  # the level is the total in flight over both workers
        assert most_in_flight(phase) <= level


def test_two_workers_keep_one_processs_open_loop_schedule_and_its_rate(tmp_path, local_ray):
    """200 requests due at 50/s over both workers: each request falls due when one process would have sent it,
    and the phase's arrivals, the sum of the two shards', are the rate asked for."""
    with ScriptedServer(Script(Behaviour(ttft_s=0.03, gap_s=0.005, tokens=6))) as server:
        path = open_loop_config(tmp_path, server.base_url, rate_per_s=50)
        sharded = collect_sharded(path, workers=2, runs_root=tmp_path / "runs", run_id="two")
        single = collect(path, runs_root=tmp_path / "runs", run_id="one")
        received = [a.received_ns / 1e9 for a in server.log[:200]]  # the sharded run's
    two, one = load_run(sharded.run_dir), load_run(single.run_dir)
    assert sharded.sent == len(two) == len(one) == 200 and sharded.errors == 0 and sharded.stop_reason is None

    def due_after_start(table: pd.DataFrame) -> pd.Series:
        due = table.set_index("request_id")["scheduled_at"]
        return ((due - due.min()).dt.total_seconds()).sort_index()

    pd.testing.assert_series_equal(due_after_start(two), due_after_start(one), atol=1e-5)
    assert (two["send_lag_s"] >= 0).all() and two["sequence"].is_unique
    assert two.groupby(two["sequence"] % 2)["request_id"].count().tolist() == [100, 100]  # both shards sent
    (phase,) = read_manifest(sharded.run_dir)["phases"]
    arrival = phase["arrival"]
    assert phase["workers"] == 2 and arrival["requests"] == 200 and arrival["max_in_flight"] == 32
    assert arrival["achieved_rate_per_s"] == pytest.approx(50, rel=0.02)
    assert arrival["max_send_lag_s"] == pytest.approx(two["send_lag_s"].max())
    assert achieved_rate(received, min(received)) == pytest.approx(50, rel=0.05)  # as the server saw them


def test_an_open_loop_duration_cuts_the_phase_over_workers_as_in_one_process(tmp_path, local_ray):
    with ScriptedServer(Script(Behaviour(ttft_s=0.01, gap_s=0.002, tokens=3))) as server:
        path = open_loop_config(tmp_path, server.base_url, rate_per_s=40, duration_s=0.5)
        sharded = collect_sharded(path, workers=2, runs_root=tmp_path / "runs", run_id="cut")
    assert sharded.sent == 20 and "sends 20 of the phase's 200 planned requests" in sharded.stop_reason
    (phase,) = read_manifest(sharded.run_dir)["phases"]
    assert phase["planned"] == 200 and phase["sent"] == phase["arrival"]["requests"] == 20


def test_a_killed_worker_is_resumed_with_nothing_lost_and_nothing_ok_sent_again(tmp_path, local_ray):
    with ScriptedServer(Script(Behaviour(tokens=5, ttft_s=0.02, gap_s=0.01))) as server:
        config = write_config(tmp_path, server.base_url, datasets=["capitals", "sentiment"], items=12,
                              concurrency=4)
        planned = {p.request_id for p in plan(load_config(config))}
        run_dir = tmp_path / "runs" / "killed"
        killed = []

        def kill_shard_two(done: int, _errors: dict) -> None:
            if done >= 20 and not killed:
                (shard,) = [s for s in read_manifest(run_dir)["sessions"][-1]["shards"] if s["part"] == "shard-02"]
                os.kill(shard["pid"], signal.SIGKILL)
                killed.append((time.perf_counter_ns(), shard["pid"]))

        first = collect_sharded(config, workers=2, runs_root=tmp_path / "runs", run_id="killed",
                                on_progress=kill_shard_two)
        assert killed and not alive(killed[0][1])
        assert first.stop_reason and "shard-02" in first.stop_reason and "died" in first.stop_reason
        kept = load_run(run_dir)
        assert read_manifest(run_dir)["status"] == "stopped" and 20 <= len(kept) < len(planned)
        ok_before = set(kept.loc[kept["status"] == "ok", "request_id"])
        resumed = collect_sharded(config, workers=2, resume=run_dir)
        log = list(server.log)
    table = load_run(run_dir)
    assert resumed.already_done == len(ok_before) and resumed.sent == len(planned) - len(ok_before)
    assert set(table["request_id"]) == planned and len(table) == len(planned) and (table["status"] == "ok").all()
    assert table["sequence"].is_unique
    sends = Counter(attempt.key for attempt in log)
    assert set(sends) == planned
    assert all(sends[request_id] == 1 for request_id in ok_before)  # an ok request is never sent again
    # only what the killed worker had in flight (2 of the level's 4) is sent twice
    assert sum(n - 1 for n in sends.values()) <= 2
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "complete" and [s["status"] for s in manifest["sessions"]] == ["stopped", "complete"]


def test_max_cost_holds_across_workers(tmp_path, local_ray):
    # gpt-4o-mini: 0.15 USD per million input tokens, so 1,000 prompt tokens cost 0.00015 USD
    behaviour = Behaviour(ttft_s=0.1, gap_s=0.0, tokens=4, prompt_tokens=1000)
    with ScriptedServer(Script(default=behaviour)) as server:
        raw = {"name": "budget", "datasets": ["capitals"], "items_per_dataset": 80,
               "evals_dir": str(REPO / "data" / "evals"), "prompts_dir": str(REPO / "data" / "prompts"),
               "endpoints": [{"name": "scripted", "base_url": server.base_url, "models": ["gpt-4o-mini"]}],
               "grid": {"prompt_variants": ["zero_shot"], "max_tokens": [8], "concurrency": [2]}}
        config = tmp_path / "budget.yaml"
        config.write_text(yaml.safe_dump(raw))
        summary = collect_sharded(config, workers=2, runs_root=tmp_path / "runs", run_id="budget",
                                  max_cost_usd=0.003)
    table = load_run(summary.run_dir)
    assert summary.stop_reason and "max_cost_usd=0.003" in summary.stop_reason
    # 20 requests reach the budget; a budget per worker would allow 40.  A worker learns what the other
    # spent every 0.2 s (at ~10 requests/s each: 2 more each) and has 1 more in flight; 2 more for a busy machine
    assert 20 <= len(table) <= 28 and (table["status"] == "ok").all() and table["request_id"].is_unique
    assert (table["sequence"] % 2).value_counts().min() >= 8  # both workers spent (shard k: sequences k + 2j)


def test_requests_per_minute_holds_across_workers(tmp_path, local_ray):
    with ScriptedServer(Script(Behaviour(tokens=3, ttft_s=0.0, gap_s=0.0))) as server:
        config = write_config(tmp_path, server.base_url, datasets=["capitals"], items=30, variants=["zero_shot"],
                              concurrency=2, limits={"requests_per_minute": 20})
        run_dir = tmp_path / "runs" / "rpm"
        reached = []

        def stop_three_seconds_after_twenty(done: int, _errors: dict) -> None:
            if done >= 20 and not reached:
                reached.append(time.monotonic())
            if reached and time.monotonic() - reached[0] > 3:
                raise KeyboardInterrupt  # as Ctrl-C would: the run keeps what it has

        with pytest.raises(KeyboardInterrupt):
            collect_sharded(config, workers=2, runs_root=tmp_path / "runs", run_id="rpm",
                            on_progress=stop_three_seconds_after_twenty)
    table = load_run(run_dir)
    # 20 a minute over both workers (10 each): 20 went out at once, the other 10 wait for the minute
    assert len(table) == 20 and table["request_id"].is_unique and (table["status"] == "ok").all()
    started = table["started_at"].sort_values()
    assert (started.iloc[-1] - started.iloc[0]).total_seconds() < 60
    assert read_manifest(run_dir)["status"] == "interrupted"
    assert not list(run_dir.glob("journal*.jsonl"))  # folded into the parts


def test_a_refused_key_stops_the_run_with_the_same_error_as_one_process(tmp_path, local_ray):
    with ScriptedServer(Script(Behaviour(tokens=2)), api_key="the-right-key") as server:
        config = write_config(tmp_path, server.base_url, datasets=["capitals"], items=4, variants=["zero_shot"],
                              concurrency=2)
        with pytest.raises(EndpointError, match=r"endpoint 'scripted' refused the key \(HTTP 401\)"):
            collect_sharded(config, workers=2, runs_root=tmp_path / "runs", run_id="refused")
    assert read_manifest(tmp_path / "runs" / "refused")["status"] == "interrupted"


def cli(*args: str, env: dict | None = None, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "toolkit.cli", "collect", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **options)


def test_without_ray_workers_say_how_to_install_it_and_plain_collect_works(tmp_path):
    without_ray = "import sys; sys.modules['ray'] = None; from toolkit.cli import main; sys.exit(main(sys.argv[1:]))"
    with ScriptedServer(Script(Behaviour(tokens=2))) as server:
        config = write_config(tmp_path, server.base_url, datasets=["capitals"], items=3, variants=["zero_shot"])
        runs = str(tmp_path / "runs")
        asked = subprocess.run([sys.executable, "-c", without_ray, "collect", str(config), "--workers", "2",
                                "--runs-root", runs], cwd=REPO, capture_output=True, text=True, timeout=120)
        plain = subprocess.run([sys.executable, "-c", without_ray, "collect", str(config), "--runs-root", runs,
                                "--run-id", "plain"], cwd=REPO, capture_output=True, text=True, timeout=120)
        no_workers = subprocess.run([sys.executable, "-c", without_ray, "collect", str(config), "--runs-root", runs,
                                     "--ray-address", "127.0.0.1:6379"], cwd=REPO, capture_output=True, text=True,
                                    timeout=120)
    assert asked.returncode == 2
    assert "need Ray, which is not installed: pip install 'frontier-toolkit[ray]'" in asked.stderr
    assert plain.returncode == 0, plain.stderr
    assert no_workers.returncode == 2 and "--ray-address needs --workers N" in no_workers.stderr
    assert len(load_run(tmp_path / "runs" / "plain")) == 3 and sorted(os.listdir(runs)) == ["plain"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_line(process: subprocess.Popen, text: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    for line in process.stdout:
        if text in line:
            return
        assert time.monotonic() < deadline, f"no {text!r} from {process.args}"
    raise AssertionError(f"{process.args} ended before {text!r}: {process.wait()}")


def test_a_two_node_cluster_on_loopback_collects_with_ray_address(tmp_path):
    port = free_port()
    node = ["start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats", "--block"]
    ray_bin = str(Path(sys.executable).parent / "ray")
    # Ray's token authentication off for this throwaway loopback cluster: the head, the second node and
    # the driver would otherwise need one token file between them (a real cluster: see Ray's token-auth docs)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    nodes, below = [], set()
    try:
        for extra in (["--head", "--port", str(port), "--include-dashboard=false"], ["--address", f"127.0.0.1:{port}"]):
            nodes.append(subprocess.Popen([ray_bin, *node, *extra], cwd=REPO, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, env=env))
            wait_for_line(nodes[-1], "Ray runtime started")
        with ScriptedServer(Script(Behaviour(tokens=4, ttft_s=0.01, gap_s=0.004))) as server:
            config = write_config(tmp_path, server.base_url, datasets=["capitals"], items=10, concurrency=2)
            run = cli(str(config), "--workers", "2", "--ray-address", f"127.0.0.1:{port}",
                      "--runs-root", str(tmp_path / "runs"), "--run-id", "cluster", env=env)
            out, err = run.communicate(timeout=300)
            assert run.returncode == 0, err
        for process in nodes:
            below |= descendants(process.pid)
    finally:
        for process in nodes:
            process.terminate()  # `ray start --block` stops its node's processes on SIGTERM
        for process in nodes:
            process.wait(timeout=60)
            process.stdout.close()
    table = load_run(tmp_path / "runs" / "cluster")
    assert len(table) == 50 and (table["status"] == "ok").all() and table["request_id"].is_unique
    shards = read_manifest(tmp_path / "runs" / "cluster")["sessions"][-1]["shards"]
    assert len({shard["ray_node"] for shard in shards}) == 2  # one worker on each node
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert below and not [pid for pid in below if alive(pid)]


@pytest.mark.llm
def test_two_workers_on_the_embedded_server_end_to_end_leave_no_process_behind(tmp_path):
    """The real embedded LLM, started once by the driver with one slot per request in flight in total."""
    config = REPO / "data" / "configs" / "smoke.yaml"
    run = cli(str(config), "--workers", "2", "--concurrency", "2", "--runs-root", str(tmp_path / "runs"),
              "--run-id", "smoke")
    below = set()
    while run.poll() is None:
        below |= descendants(run.pid)
        time.sleep(0.5)
    out, err = run.communicate()
    run_dir = tmp_path / "runs" / "smoke"
    assert run.returncode == 0, err
    table = load_run(run_dir)
    planned = {p.request_id for p in plan(with_overrides(load_config(config), concurrency=2))}
    assert set(table["request_id"]) == planned and len(table) == len(planned) == 40
    assert (table["status"] == "ok").all() and (table["usage_source"] == "server").all()
    assert table["output_text"].str.len().gt(0).any() and table["correct"].notna().any()
    manifest = read_manifest(run_dir)
    (server,) = manifest["embedded_server"]
    assert server["slots"] == 2 and manifest["parts"] == ["shard-01", "shard-02"]
    assert {p.name for p in run_dir.glob("requests*.parquet")} == {"requests-shard-01.parquet",
                                                                  "requests-shard-02.parquet"}
    assert below and not [pid for pid in below if alive(pid)]  # Ray's processes and the server are gone
