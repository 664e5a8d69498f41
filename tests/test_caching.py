import datetime as dt
import math
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
from scipy import stats

from toolkit.analysis.caching import (LatencyModel, LeverPrices, TrafficMix, batch_savings, batch_vs_online,
                                      cacheable_tokens, lever_prices, mark_prefix_reuse, prefix_reuse,
                                      prompt_caching_savings, response_cache_savings, simulate)
from toolkit.present import (batch_text, prefix_reuse_text, prompt_caching_text, response_cache_text, simulate_text,
                             usd)
from toolkit.errors import ParameterError, PriceError
from toolkit.pricing import MachinePrice, Price, load_price_table
from toolkit.schema import coerce_requests
from toolkit.store import save_run

PRICES = load_price_table(overrides={"api-model": Price("api-model", 1.0, 0.25, 4.0, "test"),
                                     "local-model": MachinePrice(3.6, "test")},
                          use_genai_prices=False)
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_caching_batch.ipynb"


def table(rows: list[dict]) -> pd.DataFrame:
    base = {"run_id": "r", "prompt_variant": "zero_shot", "max_tokens": 8, "temperature": 0.0,
            "dataset": "capitals", "repeat": 0, "endpoint": "127.0.0.1:1", "batch": False, "cache_hit": False,
            "started_at": START, "status": "ok", "attempts": 1, "concurrency": 1, "prompt_tokens": 1000,
            "cached_tokens": 0, "completion_tokens": 100, "e2e_s": 2.0, "ttft_s": 0.5}
    full = [base | {"request_id": f"q{i}", "item_id": f"i{i}", "sequence": i, "config_id": r.get("model", "c")}
            | r for i, r in enumerate(rows)]
    return coerce_requests(pd.DataFrame(full))


def test_response_cache_savings_against_closed_forms():
    frame = table([{"model": "api-model", "cache_hit": i < 4, "e2e_s": 0.001 if i < 4 else 2.0} for i in range(10)]
                  + [{"model": "local-model", "cache_hit": i == 0, "e2e_s": 0.001 if i == 0 else 3.6}
                     for i in range(5)]
                  + [{"model": "api-model", "status": "error", "cache_hit": False}])
    out = response_cache_savings(frame, PRICES, by=["model"]).set_index("model")
    api, local = out.loc["api-model"], out.loc["local-model"]
    assert (api["requests"], api["hits"], api["hit_rate"]) == (10, 4, 0.4)  # the error row is left out
    assert api["hit_rate_low"] == pytest.approx(0.1682, abs=1e-4) and api["hit_rate_high"] == pytest.approx(0.6873, abs=1e-4)
    per_request = (1000 * 1.0 + 100 * 4.0) / 1e6
    assert api["usd_paid"] == pytest.approx(6 * per_request) and api["usd_without_cache"] == pytest.approx(10 * per_request)
    assert api["saved_share"] == pytest.approx(0.4) and api["usd_saved_per_1k"] == pytest.approx(1000 * 0.4 * per_request)
    assert (api["e2e_hit_s"], api["e2e_miss_s"], api["e2e_miss_low"], api["e2e_miss_high"]) == (0.001, 2.0, 2.0, 2.0)
    # a machine-priced hit would have cost what its misses cost: 3.6 s at 3.6 USD/h = 0.0036
    assert local["usd_paid"] == pytest.approx(4 * 0.0036) and local["usd_saved"] == pytest.approx(0.0036)
    assert "answered **40.0%** of 10 requests" in response_cache_text(response_cache_savings(
        frame[frame["model"] == "api-model"], PRICES, by=[]))
    assert response_cache_text(response_cache_savings(frame.assign(cache_hit=False), PRICES, by=[])).startswith(
        "**No response-cache hits in this run**")


def test_cacheable_tokens_follow_the_1024_minimum_and_128_steps():
    assert [cacheable_tokens(t) for t in (0, 1023, 1024, 1151, 1152, 2000)] == [0, 0, 1024, 1024, 1152, 1920]
    assert cacheable_tokens(np.array([500, 1300])).tolist() == [0, 1280]


def test_prompt_caching_savings_and_the_minimum_prompt_length():
    frame = table([{"model": "api-model", "prompt_tokens": 2000, "cached_tokens": 1536},
                   {"model": "api-model", "prompt_tokens": 500, "cached_tokens": 0},
                   {"model": "local-model", "prompt_tokens": 800, "cached_tokens": 700}])
    out = prompt_caching_savings(frame, PRICES, by=["model"]).set_index("model")
    api = out.loc["api-model"]
    cached_cost = (464 * 1.0 + 1536 * 0.25 + 100 * 4.0) / 1e6
    full = (2000 + 400) / 1e6 + (500 + 400) / 1e6
    assert api["usd_paid"] == pytest.approx(cached_cost + (500 + 400) / 1e6)
    assert api["usd_without_prompt_cache"] == pytest.approx(full)
    assert api["usd_saved"] == pytest.approx(1536 * 0.75 / 1e6)
    assert (api["below_minimum_share"], api["cached_share"], api["kind"]) == (0.5, 1536 / 2500, "tokens")
    assert (out.loc["local-model", "kind"], out.loc["local-model", "usd_saved"]) == ("machine", 0.0)
    text = prompt_caching_text(prompt_caching_savings(frame, PRICES, by=["model"]))
    assert text.startswith("66.7% of the requests have prompts under 1,024 tokens")
    assert f"saved {usd(1536 * 0.75 / 1e6)} of {usd(full)}" in text


def test_batch_savings_use_the_named_discount():
    frame = table([{"model": "api-model", "batch": True}, {"model": "api-model"},
                   {"model": "local-model", "batch": True}, {"model": "local2", "batch": True},
                   {"model": "local-model"}])
    prices = load_price_table(overrides={**PRICES.prices, "local2": MachinePrice(1.0, "test")}, use_genai_prices=False)
    out = batch_savings(frame, prices, by=["model"], turnaround_s=7200).set_index("model")
    api = out.loc["api-model"]
    assert (api["batch_rows"], api["batch_discount"]) == (1, 0.5)
    assert api["usd_online"] == pytest.approx(2 * 0.0014) and api["usd_batch"] == pytest.approx(0.0014)
    # 2 h of machine time, split over the self-hosted batch rows: half at 3.6 USD/h, half at 1 USD/h
    assert out.loc["local-model", "machine_usd"] == pytest.approx(2 * 3.6 / 2)
    assert out.loc["local2", "machine_usd"] == pytest.approx(2 * 1.0 / 2)
    assert batch_text(batch_savings(frame, prices, by=[]), 7200).startswith(
        "3 requests of this run went through a batch, which took 2.0 h")
    assert batch_text(batch_savings(frame.assign(batch=False), prices, by=[])).startswith("**No batch rows")


def test_batch_vs_online_joins_on_request_id():
    online = table([{"model": "api-model", "output_text": "Paris", "correct": True},
                    {"model": "api-model", "output_text": "Rome", "correct": False, "e2e_s": 4.0}])
    batch = online.assign(batch=True, e2e_s=np.nan, output_text=["Paris", "Roma"])
    out = batch_vs_online(batch, online).iloc[0]
    assert (out["matched"], out["same_output_share"], out["accuracy_online"], out["e2e_online_s"]) == (2, 0.5, 0.5, 3.0)


def test_prefix_reuse_measures_ttft_when_the_previous_request_shared_the_prefix():
    sent = [("zero_shot", 0.4), ("few_shot_3", 3.4), ("few_shot_3", 0.21), ("zero_shot", 0.41),
            ("few_shot_3", 3.6), ("few_shot_3", 0.22), ("few_shot_3", 0.23), ("zero_shot", 0.39),
            ("zero_shot", 0.05)]
    rows = [{"model": "local-model", "prompt_variant": variant, "ttft_s": ttft,
             "prompt_tokens": 711 if variant == "few_shot_3" else 30} for variant, ttft in sent]
    rows.insert(3, {"model": "local-model", "prompt_variant": "few_shot_3", "cache_hit": True, "ttft_s": 0.001})
    rows.append({"model": "local-model", "prompt_variant": "zero_shot", "concurrency": 4, "ttft_s": 9.0})
    frame = table(rows)
    marked = mark_prefix_reuse(frame)
    # the cache hit (sequence 3) never reached the server: the zero_shot row after it follows a few_shot_3 one
    assert marked["prefix_shared"].tolist()[:5] == [pd.NA, False, True, pd.NA, False]
    assert marked["prefix_shared"].isna().tolist()[-1]
    out = prefix_reuse(frame, by=["prompt_variant"]).set_index("prompt_variant")
    few = out.loc["few_shot_3"]
    shared, changed = np.array([0.21, 0.22, 0.23]), np.array([3.4, 3.6])
    assert (few["n_shared"], few["n_changed"], few["prompt_tokens_mean"]) == (3, 2, 711)
    assert (few["ttft_shared_s"], few["ttft_changed_s"]) == pytest.approx((0.22, 3.5))
    assert few["ttft_saved_s"] == pytest.approx(3.28) and few["speedup"] == pytest.approx(3.5 / 0.22)
    v1, v2 = changed.var(ddof=1) / 2, shared.var(ddof=1) / 3
    df = (v1 + v2) ** 2 / (v1 ** 2 / 1 + v2 ** 2 / 2)  # Welch-Satterthwaite
    half = stats.t.ppf(0.975, df) * math.sqrt(v1 + v2)
    assert (few["ttft_saved_low"], few["ttft_saved_high"]) == pytest.approx((3.28 - half, 3.28 + half))
    assert prefix_reuse_text(out.reset_index()).startswith(
        "When the previous request shared the prompt prefix, TTFT fell from 3.50 s to 220 ms for **few_shot_3** "
        "(about 711 prompt tokens; 15.9x)")
    assert prefix_reuse_text(prefix_reuse(frame.assign(concurrency=4))).startswith("**No prefix-reuse experiment")


def test_simulate_against_closed_forms():
    traffic = TrafficMix(monthly_requests=1e6, prompt_tokens=2000, output_tokens=200, repeat_share=0.1,
                         shared_prefix_tokens=1500, prefix_hit_rate=0.8, deferrable_share=0.3)
    out = simulate(traffic, LeverPrices(1.0, 0.25, 4.0, 0.5)).set_index("scenario")
    cached = 0.8 * 1408
    with_prefix = ((2000 - cached) * 1.0 + cached * 0.25 + 800) / 1e6
    assert out["monthly_usd"].to_dict() == pytest.approx({
        "baseline": 2800.0, "response cache": 0.9 * 2800, "prompt caching": 1e6 * with_prefix,
        "batch": 0.85 * 2800, "all three": 1e6 * 0.9 * 0.85 * with_prefix})
    assert out.loc["all three", "saved_share"] == pytest.approx(1 - 0.9 * 0.85 * with_prefix / 0.0028)
    e2e = 0.3 + (2000 - cached) * 0.0002 + 199 * 0.01
    assert out.loc["baseline", "online_e2e_s"] == pytest.approx(0.3 + 0.4 + 1.99)
    assert out.loc["all three", "online_e2e_s"] == pytest.approx((0.1 * 0.001 + 0.63 * e2e) / 0.73)
    assert out.loc["batch", "deferred_share"] == 0.3 and out.loc["all three", "deferred_share"] == pytest.approx(0.27)
    assert out.loc["prompt caching", "deferred_wait_s"] == 0.0
    assert simulate_text(out.reset_index()).startswith(
        f"Baseline {usd(2800)} a month. Savings — response cache: {usd(280)} (10.0%)")


def test_simulate_with_a_short_prefix_caches_nothing_and_bad_inputs_are_named():
    out = simulate(TrafficMix(1000, 900, 10, shared_prefix_tokens=900), LeverPrices(1, 0.1, 1)).set_index("scenario")
    assert out.loc["prompt caching", "monthly_usd"] == out.loc["baseline", "monthly_usd"]
    with pytest.raises(ParameterError, match="TrafficMix repeat_share: must be in \\[0, 1\\], got 1.5"):
        TrafficMix(1, 1, 1, repeat_share=1.5)
    with pytest.raises(ParameterError, match="shared_prefix_tokens \\(10\\) cannot exceed prompt_tokens \\(5\\)"):
        TrafficMix(1, 5, 1, shared_prefix_tokens=10)
    assert lever_prices(PRICES, "api-model") == LeverPrices(1.0, 0.25, 4.0, 0.5)
    with pytest.raises(PriceError, match="priced by machine time"):
        lever_prices(PRICES, "local-model")
    assert LatencyModel().e2e_s(0, 0, 0) == 0.3
    assert math.isclose(LatencyModel(ttft_base_s=0, prefill_s_per_token=1, cached_prefill_s_per_token=0.5,
                                     decode_s_per_token=0).e2e_s(10, 4, 1), 8.0)


def sample_run(path, *, rich: bool) -> pd.DataFrame:
    """A run dir: serial embedded requests with a prefix experiment and cache hits, API requests with
    cached tokens (rich), or the same without hits, cached tokens or batch rows (plain)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        variant = ["few_shot_3", "zero_shot"][int(rng.integers(0, 2))]
        hit = rich and i % 6 == 5
        rows.append({"model": "gemma-3-270m-q4_k_m", "prompt_variant": variant, "cache_hit": hit,
                     "config_id": f"gemma/{variant}", "prompt_tokens": 711 if variant == "few_shot_3" else 40,
                     "ttft_s": 0.001 if hit else float(rng.uniform(0.1, 0.3)), "e2e_s": 0.001 if hit else 1.0,
                     "correct": bool(rng.integers(0, 2)), "score": 1.0, "output_text": "x"})
    for i in range(10):
        rows.append({"model": "gpt-4o-mini", "config_id": "mini", "prompt_tokens": 1500,
                     "cached_tokens": 1152 if rich else 0, "batch": rich and i < 5, "concurrency": 4,
                     "correct": True, "score": 1.0, "output_text": "Paris"})
    frame = table(rows)
    # a changed prefix pays for prefilling it; the marker says which requests followed the same prefix
    marked = mark_prefix_reuse(frame)
    changed = marked["prefix_shared"].eq(False).fillna(False).to_numpy(dtype=bool)
    frame.loc[changed & (frame["prompt_variant"] == "few_shot_3").to_numpy(), "ttft_s"] += 3.3
    manifest = {"run_id": path.name, "batch": {"id": "batch_x", "turnaround_s": 3600.0}} if rich else {
        "run_id": path.name}
    save_run(path, frame, manifest)
    return frame


def executed_markdown(notebook) -> str:
    return "\n".join(output["data"]["text/markdown"] for cell in notebook.cells if cell.cell_type == "code"
                     for output in cell.get("outputs", []) if "text/markdown" in output.get("data", {}))


@pytest.mark.parametrize("rich", [True, False])
def test_notebook_runs_on_any_run_dir(tmp_path, rich):
    sample_run(tmp_path / "run", rich=rich)
    parameters = {"run_dir": str(tmp_path / "run")}
    if rich:
        sample_run(tmp_path / "online", rich=False)
        parameters["online_run_dir"] = str(tmp_path / "online")
    executed = papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "out.ipynb"), parameters=parameters,
                                          kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    text = executed_markdown(executed)
    assert "TTFT fell from" in text and "Baseline" in text
    if rich:
        assert "The response cache answered **11.8%** of 34 requests" in text
        assert "5 requests of this run went through a batch, which took 1.0 h" in text
        assert "Cached input tokens saved" in text
    else:
        assert "**No response-cache hits in this run**" in text and "**No batch rows in this run**" in text
        assert "No `online_run_dir` given" in text


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert notebook.cells[1].metadata.get("tags") == ["parameters"]
    assert all(not cell.get("outputs") and cell.get("execution_count") is None
               for cell in notebook.cells if cell.cell_type == "code")
