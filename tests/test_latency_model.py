import numpy as np
import pandas as pd
import pytest

from toolkit.analysis.latency_model import (fit_group, fit_latency_model, heldout_errors, heldout_predictions,
                                            predict_latency, usable)

TTFT_BASE, PREFILL, OVERHEAD, PER_TOKEN = 0.2, 0.001, 0.3, 0.02


def requests(n=200, *, seed=0, endpoint="fast.example", prompt=None, output=None, noise=0.0):
    """e2e = TTFT_BASE + PREFILL x prompt + OVERHEAD + PER_TOKEN x output (+ multiplicative noise)."""
    rng = np.random.default_rng(seed)
    prompts = rng.integers(50, 1000, n) if prompt is None else np.full(n, prompt)
    outputs = rng.integers(10, 300, n) if output is None else np.full(n, output)
    ttft = (TTFT_BASE + PREFILL * prompts) * (1 + noise * rng.standard_normal(n))
    decode = (OVERHEAD + PER_TOKEN * outputs) * (1 + noise * rng.standard_normal(n))
    return pd.DataFrame({
        "request_id": [f"{endpoint}-{i}" for i in range(n)], "endpoint": endpoint, "model": "m",
        "concurrency": 1, "status": "ok", "cache_hit": False, "prompt_tokens": prompts,
        "completion_tokens": outputs, "ttft_s": ttft, "e2e_s": ttft + decode})


def test_fit_recovers_the_closed_form_and_its_decomposition():
    table = fit_latency_model(pd.concat([requests(noise=0.01), requests(endpoint="b", noise=0.01)]))
    assert table["label"].tolist() == ["b / m / c1", "fast.example / m / c1"]
    row = table.iloc[1]
    assert (row["ttft_kind"], row["decode_kind"]) == ("fit", "fit")
    assert row["ttft_per_prompt_token_low"] < PREFILL < row["ttft_per_prompt_token_high"]
    assert row["overhead_low"] < OVERHEAD < row["overhead_high"]
    assert row["per_token_low"] < PER_TOKEN < row["per_token_high"]
    prompt, output = row["prompt_tokens"], row["output_tokens"]
    assert row["ttft_s"] == pytest.approx(TTFT_BASE + PREFILL * prompt, rel=0.02)
    assert row["decode_s"] == pytest.approx(PER_TOKEN * output, rel=0.02)
    assert row["e2e_model_s"] == pytest.approx(row["ttft_s"] + row["overhead_s"] + row["decode_s"])
    assert row[["ttft_share", "overhead_share", "decode_share"]].sum() == pytest.approx(1.0)


def test_no_spread_falls_back_to_constant_ttft_and_ratio_decode():
    frame = requests(prompt=550, output=151, noise=0.05)
    model, params = fit_group(usable(frame))
    assert (model.ttft_kind, model.decode_kind, model.ttft_slope, model.overhead_s) == ("constant", "ratio", 0.0, 0.0)
    ratio = (frame["e2e_s"] - frame["ttft_s"]) / 151
    assert params["per_token_s"] == pytest.approx(ratio.median())
    assert params["per_token_low"] <= ratio.median() <= params["per_token_high"]
    assert params["ttft_s"] == pytest.approx(frame["ttft_s"].median())
    # a constant TTFT does not move with the prompt, and nothing needs prompt lengths
    at = predict_latency(frame.assign(prompt_tokens=np.nan), prompt_tokens=[10, 5000], output_tokens=[151])
    assert at["p50_e2e_s"].iloc[0] == at["p50_e2e_s"].iloc[1] == pytest.approx(frame["e2e_s"].median(), rel=1e-3)
    assert at["outside"].tolist() == [True, True]


def test_predicted_quantiles_are_those_of_each_request_moved_to_the_new_lengths():
    frame = requests(n=101, seed=3, noise=0.2)
    model, _ = fit_group(usable(frame))
    moved = (frame["ttft_s"] + model.ttft_slope * (400 - frame["prompt_tokens"]) + model.overhead_s
             + (frame["e2e_s"] - frame["ttft_s"] - model.overhead_s) / frame["completion_tokens"] * 120)
    assert model.quantiles(400, 120, (0.5, 0.95)) == pytest.approx(np.quantile(moved, [0.5, 0.95]))
    table = predict_latency(frame, prompt_tokens=[400], output_tokens=[120, 5000])
    assert table["p50_e2e_s"].iloc[0] == pytest.approx(np.median(moved))
    assert table["outside"].tolist() == [False, True]
    assert (table["p95_e2e_s"] > table["p50_e2e_s"]).all()


def test_cache_hits_errors_and_untimed_rows_are_not_learned_from():
    frame = requests(n=30)
    frame.loc[0, "cache_hit"] = True
    frame.loc[1, "status"] = "error"
    frame.loc[2, "ttft_s"] = np.nan
    frame.loc[3, "completion_tokens"] = 0
    assert usable(frame)["request_id"].tolist() == [f"fast.example-{i}" for i in range(4, 30)]


def test_heldout_errors_are_zero_on_noiseless_data_and_the_extrapolation_is_longer():
    frame = pd.concat([requests(n=60), requests(n=60, endpoint="b", seed=1)])
    predictions = heldout_predictions(frame, folds=5)
    assert predictions["ape"].max() < 1e-9
    kfold = predictions[predictions["split"] == "kfold"]
    assert sorted(kfold["request_id"]) == sorted(frame["request_id"])  # each request held out once
    extra = predictions[predictions["split"] == "extrapolation"]
    assert (extra["completion_tokens"] > extra["train_max_output_tokens"]).all()
    errors = heldout_errors(predictions, by=())
    assert errors["split"].tolist() == ["extrapolation", "kfold"]
    assert errors["n_heldout"].tolist() == [len(extra), 120]
    assert errors["mape_pct"].max() < 1e-7


def test_the_predicted_p95_covers_about_95_percent_of_noisy_heldout_requests():
    predictions = heldout_predictions(requests(n=400, seed=5, noise=0.15), folds=5)
    kfold = heldout_errors(predictions, by=()).set_index("split").loc["kfold"]
    assert 0.9 <= kfold["p95_coverage"] <= 0.99
    assert 5 < kfold["mape_pct"] < 20  # the noise is 15% sd on each part


def test_a_group_past_the_heldout_bound_is_judged_on_a_seeded_sample_with_the_same_errors():
    frame = requests(n=2000, seed=6, noise=0.15)
    whole = heldout_errors(heldout_predictions(frame, folds=5), by=()).set_index("split")
    predictions = heldout_predictions(frame, folds=5, max_rows=500)
    assert predictions.query("split == 'kfold'")["request_id"].nunique() == 500
    pd.testing.assert_frame_equal(predictions, heldout_predictions(frame, folds=5, max_rows=500))
    bounded = heldout_errors(predictions, by=()).set_index("split")
    assert bounded.loc["kfold", "p95_coverage"] == pytest.approx(whole.loc["kfold", "p95_coverage"], abs=0.03)
    assert bounded.loc["kfold", "mape_pct"] == pytest.approx(whole.loc["kfold", "mape_pct"], rel=0.15)


def test_extrapolation_falls_back_to_shorter_than_median_when_outputs_stop_at_max_tokens():
    frame = requests(n=40, output=151)
    frame.loc[:7, "completion_tokens"] = np.arange(20, 28)
    frame["e2e_s"] = frame["ttft_s"] + OVERHEAD + PER_TOKEN * frame["completion_tokens"]
    extra = heldout_predictions(frame).query("split == 'extrapolation'")
    assert len(extra) == 32 and (extra["completion_tokens"] == 151).all()
    assert extra["train_max_output_tokens"].iloc[0] == 27
    assert extra["ape"].max() < 1e-9
    assert heldout_predictions(requests(n=40, output=151)).query("split == 'extrapolation'").empty
