"""collect(): the response cache inside a collection, and stopping at a dollar budget."""
from pathlib import Path

import yaml

from toolkit.collect import collect
from toolkit.store import load_run
from toolkit.testing.scripted_server import Behaviour, Script, ScriptedServer

REPO = Path(__file__).resolve().parents[1]


def test_repeats_of_a_cached_config_are_hits_with_tiny_latency(tmp_path):
    behaviour = Behaviour(ttft_s=0.05, gap_s=0.005, tokens=4)
    with ScriptedServer(Script(default=behaviour)) as server:
        raw = {
            "name": "cached", "datasets": ["capitals"], "items_per_dataset": 5,
            "evals_dir": str(REPO / "data" / "evals"), "prompts_dir": str(REPO / "data" / "prompts"),
            "endpoints": [{"name": "scripted", "base_url": server.base_url, "models": ["scripted"]}],
            "grid": {"prompt_variants": ["zero_shot"], "max_tokens": [8], "repeats": 3,
                     "cache": ["off", "response"]},
            "order": "grouped",
        }
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump(raw))
        summary = collect(config, runs_root=tmp_path / "runs", run_id="r")
        sent_to_server = len(server.log)
    table = load_run(summary.run_dir)
    cached = table[table["config_id"].str.endswith("/cache")]
    uncached = table[~table["config_id"].str.endswith("/cache")]
    assert len(cached) == len(uncached) == 15
    assert not uncached["cache_hit"].any()
    assert cached["cache_hit"].sum() == 10  # repeats 1 and 2 of each of the 5 items
    assert sent_to_server == 15 + 5
    hits = cached[cached["cache_hit"]]
    assert (hits["e2e_s"] < 0.02).all() and (hits["status"] == "ok").all()
    misses = cached[~cached["cache_hit"]].set_index("item_id")["output_text"]
    assert (hits.set_index("item_id")["output_text"] == misses.reindex(hits["item_id"]).values).all()
    assert (summary.run_dir / "responses.sqlite").exists()


def test_max_cost_stops_the_run_and_keeps_what_it_collected(tmp_path):
    behaviour = Behaviour(ttft_s=0.0, gap_s=0.0, tokens=4, prompt_tokens=1000)
    with ScriptedServer(Script(default=behaviour)) as server:
        raw = {
            "name": "budget", "datasets": ["capitals"], "items_per_dataset": 50,
            "evals_dir": str(REPO / "data" / "evals"), "prompts_dir": str(REPO / "data" / "prompts"),
            "endpoints": [{"name": "scripted", "base_url": server.base_url, "models": ["gpt-4o-mini"]}],
            "grid": {"prompt_variants": ["zero_shot"], "max_tokens": [8]},
        }
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump(raw))
        # gpt-4o-mini: 0.15 USD per million input tokens -> 1,000 prompt tokens cost 0.00015 USD
        summary = collect(config, runs_root=tmp_path / "runs", run_id="r", max_cost_usd=0.0015)
    table = load_run(summary.run_dir)
    assert summary.stop_reason and "max_cost_usd" in summary.stop_reason
    assert 9 <= len(table) <= 11 and (table["status"] == "ok").all()
