import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from toolkit import present
from toolkit.analysis import latency_fit
from toolkit.analysis.latency import (decomposition, fit_e2e, fit_ttft, goodput, latency_cdf, latency_split,
                                      percentiles, predict, request_metrics, what_if, what_if_prompt)
from toolkit.analysis.load import arrival_rates, load_sweep
from toolkit.schema import coerce_requests

T0 = pd.Timestamp("2025-01-01T00:00:00Z")


def requests(rows: list[dict]) -> pd.DataFrame:
    defaults = {"status": "ok", "config_id": "a", "model": "m", "tbt_s": []}
    return coerce_requests(pd.DataFrame([defaults | row for row in rows]))


def simulated(seed: int, *, x: str, y: str, intercept: float, slope: float, n: int = 400,
              noise_s: float = 0.01, outliers: float = 0.05) -> pd.DataFrame:
    """Latency on a line with normal noise, plus `outliers` share of stalls of 1-5 s."""
    rng = np.random.default_rng(seed)
    xs = rng.integers(10, 1000, n)
    ys = intercept + slope * xs + rng.normal(0, noise_s, n)
    stalled = rng.random(n) < outliers
    ys[stalled] += rng.uniform(1, 5, stalled.sum())
    other = "ttft_s" if y == "e2e_s" else "e2e_s"
    return coerce_requests(pd.DataFrame({"model": "m", "status": "ok", x: xs, y: ys,
                                         other: ys + 1.0}))


def test_request_metrics_match_hand_computed_values():
    frame = requests([
        {"ttft_s": 0.5, "e2e_s": 2.5, "completion_tokens": 5, "tbt_s": [0.4, 0.5, 0.6, 0.5],
         "server_s": 2.3},
        {"ttft_s": 0.3, "e2e_s": 0.3, "completion_tokens": 1},
        {"status": "error", "ttft_s": 0.3, "e2e_s": 9.0, "completion_tokens": 5, "server_s": 1.0},
    ])
    got = request_metrics(frame)
    assert got.loc[0, ["tpot_s", "output_tokens_per_s", "itl_mean_s", "overhead_s", "decode_s"]
                   ].tolist() == pytest.approx([0.5, 2.0, 0.5, 0.2, 2.0])
    assert math.isnan(got.loc[1, "tpot_s"]) and math.isnan(got.loc[1, "output_tokens_per_s"])
    assert math.isnan(got.loc[1, "itl_mean_s"]) and math.isnan(got.loc[1, "overhead_s"])
    assert got.loc[1, "decode_s"] == 0.0
    assert got.loc[2, ["tpot_s", "itl_mean_s", "overhead_s", "decode_s"]].isna().all()
    assert len(got) == 3 and "output_text" in got.columns


def test_percentiles_match_numpy_per_group_and_pool_itl():
    rng = np.random.default_rng(1)
    rows = [{"config_id": c, "ttft_s": t, "e2e_s": t + d, "completion_tokens": 11,
             "tbt_s": list(rng.exponential(0.02, 10))}
            for c in ("a", "b") for t, d in zip(rng.exponential(0.3, 50), rng.exponential(1.0, 50))]
    rows.append({"config_id": "a", "status": "error", "ttft_s": 99.0, "e2e_s": 99.0})
    frame = requests(rows)
    got = percentiles(frame, metrics=("ttft_s", "e2e_s", "tpot_s", "itl_s"), q=(0.5, 0.99, 0.999))
    assert list(got.columns[:5]) == ["config_id", "n", "p50_ttft_s", "p99_ttft_s", "p99.9_ttft_s"]
    for config in ("a", "b"):
        ok = frame[(frame["config_id"] == config) & (frame["status"] == "ok")]
        row = got.set_index("config_id").loc[config]
        assert row["n"] == 50
        assert row["p99_e2e_s"] == pytest.approx(np.percentile(ok["e2e_s"], 99))
        tpot = (ok["e2e_s"] - ok["ttft_s"]) / 10
        assert row["p50_tpot_s"] == pytest.approx(np.percentile(tpot, 50))
        gaps = np.concatenate(ok["tbt_s"].tolist())
        assert row["p99.9_itl_s"] == pytest.approx(np.percentile(gaps, 99.9))


def test_percentiles_of_empty_frame_have_the_columns():
    got = percentiles(requests([]).iloc[0:0], q=(0.5,), metrics=("e2e_s",))
    assert list(got.columns) == ["config_id", "n", "p50_e2e_s"] and got.empty


def test_decomposition_shares_with_and_without_server_time():
    frame = requests([
        {"config_id": "a", "ttft_s": 1.0, "e2e_s": 4.0, "server_s": 3.8, "completion_tokens": 31},
        {"config_id": "b", "ttft_s": 1.0, "e2e_s": 4.0, "completion_tokens": 31},
    ])
    got = decomposition(frame).set_index("config_id")
    assert got.loc["a", ["network_share", "ttft_share", "decode_share"]].tolist() == pytest.approx(
        [0.05, 0.2, 0.75])
    assert got.loc["a", "median_network_s"] == pytest.approx(0.2)
    assert got.loc["a", "median_tpot_s"] == pytest.approx(0.1)
    assert math.isnan(got.loc["b", "network_share"])
    assert got.loc["b", ["ttft_share", "decode_share"]].tolist() == pytest.approx([0.25, 0.75])


def test_goodput_counts_requests_meeting_every_target_over_wall_time():
    frame = requests([
        {"started_at": T0, "ttft_s": 0.2, "e2e_s": 1.0, "completion_tokens": 11},  # tpot 0.08
        {"started_at": T0 + pd.Timedelta(seconds=1), "ttft_s": 0.6, "e2e_s": 2.0,
         "completion_tokens": 11},  # ttft too slow
        {"started_at": T0 + pd.Timedelta(seconds=2), "ttft_s": 0.2, "e2e_s": 5.0,
         "completion_tokens": 1},  # tpot undefined: meets the tpot target
        {"started_at": T0 + pd.Timedelta(seconds=3), "status": "error"},
    ])
    got = goodput(frame, ttft_s=0.5, tpot_s=0.1).iloc[0]
    assert (got["n"], got["n_ok"], got["n_good"]) == (4, 3, 2)
    assert got["wall_s"] == pytest.approx(7.0)
    assert got["good_share"] == pytest.approx(0.5)
    assert got["goodput_rps"] == pytest.approx(2 / 7)
    assert got["throughput_rps"] == pytest.approx(3 / 7)
    assert goodput(frame, ttft_s=0.5, tpot_s=0.1, e2e_s=3.0).iloc[0]["goodput_rps"] == pytest.approx(
        1 / 7)


def test_latency_cdf_is_share_at_or_below_each_value():
    frame = requests([{"ttft_s": 0.1, "e2e_s": e} for e in (3.0, 1.0, 2.0, 2.0)]
                     + [{"status": "error", "ttft_s": 0.1, "e2e_s": 0.5}])
    got = latency_cdf(frame)
    assert got["e2e_s"].tolist() == [1.0, 2.0, 2.0, 3.0]
    assert got["cdf"].tolist() == [0.25, 0.75, 0.75, 1.0]
    assert list(latency_cdf(frame, metric="tpot_s").columns) == ["config_id", "tpot_s", "cdf"]


def test_fit_e2e_recovers_intercept_and_per_token_slope_despite_outliers():
    frame = simulated(7, x="completion_tokens", y="e2e_s", intercept=0.25, slope=1 / 70)
    fit = fit_e2e(frame).iloc[0]
    assert fit["intercept"] == pytest.approx(0.25, rel=0.02)
    assert fit["slope"] == pytest.approx(1 / 70, rel=0.02)
    assert fit["intercept_low"] < 0.25 < fit["intercept_high"]
    assert fit["n"] == 400 and fit["reason"] is None
    assert fit["resid_scale"] == pytest.approx(0.01, rel=0.25)


def test_fit_ttft_recovers_prefill_rate():
    frame = simulated(8, x="prompt_tokens", y="ttft_s", intercept=0.08, slope=1 / 200,
                      noise_s=0.004)
    fit = fit_ttft(frame).iloc[0]
    assert fit["intercept"] == pytest.approx(0.08, rel=0.02)
    assert fit["slope"] == pytest.approx(1 / 200, rel=0.02)
    assert (fit["x_name"], fit["y_name"]) == ("prompt_tokens", "ttft_s")


def test_a_group_larger_than_the_fit_bound_is_fitted_on_a_seeded_sample_inside_the_full_fit_reach():
    frame = simulated(9, x="completion_tokens", y="e2e_s", intercept=0.25, slope=1 / 70, n=4000)
    full = fit_e2e(frame).iloc[0]
    sampled = latency_fit.fit_robust(frame, x="completion_tokens", y="e2e_s", max_rows=1000)
    again = latency_fit.fit_robust(frame, x="completion_tokens", y="e2e_s", max_rows=1000)
    other_seed = latency_fit.fit_robust(frame, x="completion_tokens", y="e2e_s", max_rows=1000, seed=1)
    pd.testing.assert_frame_equal(sampled, again)
    assert sampled["n"].iloc[0] == 1000 and full["n"] == 4000
    assert sampled["slope"].iloc[0] != other_seed["slope"].iloc[0]
    for name in ("intercept", "slope"):
        # the full fit lies inside the sample's interval, which is about twice as wide (4x fewer rows)
        assert sampled[f"{name}_low"].iloc[0] < full[name] < sampled[f"{name}_high"].iloc[0]
        width = sampled[f"{name}_high"].iloc[0] - sampled[f"{name}_low"].iloc[0]
        assert width == pytest.approx(2 * (full[f"{name}_high"] - full[f"{name}_low"]), rel=0.3)


def test_fit_guards_small_and_flat_groups_with_a_reason():
    frame = requests([{"model": "two", "completion_tokens": n, "ttft_s": 0.1, "e2e_s": n / 10}
                      for n in (1, 2)]
                     + [{"model": "flat", "completion_tokens": 5, "ttft_s": 0.1, "e2e_s": e}
                        for e in (1.0, 1.1, 1.2)])
    got = fit_e2e(frame).set_index("model")
    assert got.loc["two", "reason"] == "fewer than 3 points (2)"
    assert got.loc["flat", "reason"] == "no spread in completion_tokens (all 5)"
    assert got["slope"].isna().all()
    assert predict(got.reset_index(), [10])["prediction"].isna().all()


def test_prediction_interval_covers_new_requests_at_its_level():
    train = simulated(3, x="completion_tokens", y="e2e_s", intercept=0.3, slope=0.02, noise_s=0.05,
                      outliers=0.0)
    fit = fit_e2e(train).iloc[0]
    fresh = simulated(4, x="completion_tokens", y="e2e_s", intercept=0.3, slope=0.02, noise_s=0.05,
                      n=4000, outliers=0.0)
    pred = predict(fit, fresh["completion_tokens"].to_numpy())
    covered = ((fresh["e2e_s"].to_numpy() >= pred["pred_low"]) &
               (fresh["e2e_s"].to_numpy() <= pred["pred_high"])).mean()
    # MAD estimates the noise sd from 400 points: over 30 seeds coverage ran 0.91-0.97.
    assert 0.90 <= covered <= 0.98
    z = stats.norm.ppf(0.975)
    x = 500.0
    se_mean = math.sqrt(fit["intercept_se"] ** 2 + x ** 2 * fit["slope_se"] ** 2
                        + 2 * x * fit["cov_intercept_slope"])
    one = predict(fit, x).iloc[0]
    assert one["prediction"] == pytest.approx(fit["intercept"] + x * fit["slope"])
    assert one["mean_high"] - one["mean_low"] == pytest.approx(2 * z * se_mean)
    assert one["pred_high"] - one["pred_low"] == pytest.approx(
        2 * z * math.sqrt(se_mean ** 2 + fit["resid_scale"] ** 2))
    assert list(one.index) == ["model", "x_name", "y_name", "x", "prediction", "mean_low",
                               "mean_high", "pred_low", "pred_high"]


def test_what_if_ratio_matches_closed_form_and_is_below_proportional():
    exact = requests([{"completion_tokens": n, "ttft_s": 0.5, "e2e_s": 0.5 + 0.01 * n}
                      for n in (10, 50, 200, 800)])
    got = what_if(exact)
    assert got["output_tokens"].tolist() == [100, 1000]
    assert got["e2e_s"].tolist() == pytest.approx([1.5, 10.5])
    assert got["ratio"].tolist() == pytest.approx([1.0, 7.0])
    assert got["proportional_ratio"].tolist() == [1.0, 10.0]
    noisy = simulated(5, x="completion_tokens", y="e2e_s", intercept=0.4, slope=0.015)
    fit, row = fit_e2e(noisy).iloc[0], what_if(noisy).iloc[1]
    a, b = fit["intercept"], fit["slope"]
    assert row["ratio"] == pytest.approx((a + 1000 * b) / (a + 100 * b))
    assert row["ratio_low"] < row["ratio"] < row["ratio_high"] < 10


def test_what_if_prompt_halves_the_prefill_part_only():
    frame = requests([{"prompt_tokens": p, "ttft_s": 0.1 + 0.005 * p, "e2e_s": 4.0}
                      for p in (100, 300, 550, 800, 1000)])
    got = what_if_prompt(frame, 0.5).iloc[0]
    assert got["prompt_tokens"] == 550 and got["scaled_prompt_tokens"] == 275
    assert got["ttft_saved_s"] == pytest.approx(0.005 * 275)
    assert got["ratio"] == pytest.approx((0.1 + 0.005 * 275) / (0.1 + 0.005 * 550))
    assert got["e2e_saved_share"] == pytest.approx(0.005 * 275 / 4.0)


def test_latency_split_adds_up_to_e2e_with_server_timings_and_says_what_it_cannot_split():
    frame = requests([
        # a: network+queue 0.2 and 0.4, prefill 0.3 and 0.6, decode 1.4 and 1.8, overhead 0.1 and 0.2
        {"config_id": "a", "ttft_s": 0.5, "e2e_s": 2.0, "server_prefill_s": 0.3, "server_decode_s": 1.4,
         "completion_tokens": 15, "prompt_tokens": 100, "server_cached_tokens": 0},
        {"config_id": "a", "ttft_s": 1.0, "e2e_s": 3.0, "server_prefill_s": 0.6, "server_decode_s": 1.8,
         "completion_tokens": 19, "prompt_tokens": 300, "server_cached_tokens": 100},
        # b: no server timings: decode from the gaps, TTFT not separable
        {"config_id": "b", "ttft_s": 0.4, "e2e_s": 1.0, "tbt_s": [0.1, 0.2, 0.2], "completion_tokens": 4},
        {"config_id": "b", "ttft_s": 0.3, "e2e_s": 0.5, "completion_tokens": 1},  # one token: decode 0
        {"config_id": "b", "ttft_s": 0.2, "e2e_s": 9.0, "completion_tokens": 5},  # gaps lost: decode unknown
        {"config_id": "b", "status": "error", "ttft_s": 0.1, "e2e_s": 0.2},
    ])
    got = latency_split(frame).set_index("config_id")
    a, b = got.loc["a"], got.loc["b"]
    assert (a["n"], a["n_server_timed"], b["n"], b["n_server_timed"]) == (2, 2, 3, 0)
    assert a[["mean_network_queue_s", "mean_prefill_s", "mean_decode_s", "mean_overhead_s"]].tolist() == \
        pytest.approx([0.3, 0.45, 1.6, 0.15])
    shares = a[["network_queue_share", "prefill_share", "decode_share", "overhead_share"]].to_numpy(dtype=float)
    assert shares == pytest.approx([0.3 / 2.5, 0.45 / 2.5, 1.6 / 2.5, 0.15 / 2.5]) and shares.sum() == pytest.approx(1)
    assert a["ttft_share"] == pytest.approx(0.75 / 2.5) and a["dominant"] == "decode"
    assert a["cached_prompt_share"] == pytest.approx(100 / 400) and a["mean_prompt_tokens"] == 200
    assert math.isnan(b["mean_network_queue_s"]) and math.isnan(b["prefill_share"])
    assert b["mean_decode_s"] == pytest.approx(0.25)  # (0.5 + 0) / 2: the unknown one is left out
    assert b["decode_share"] == pytest.approx(0.5 / 1.5) and b["overhead_share"] == pytest.approx(0.3 / 1.5)
    assert b["ttft_share"] == pytest.approx(0.9 / 10.5) and b["dominant"] == "decode"
    assert math.isnan(b["cached_prompt_share"])


def test_latency_split_names_an_unsplit_whole_dominant():
    frame = requests([{"ttft_s": 0.9, "e2e_s": 1.0, "tbt_s": [0.05], "completion_tokens": 2}])
    assert latency_split(frame).iloc[0]["dominant"] == "ttft"
    # no token gaps (llmperf): decode and overhead stay unknown, their sum is what follows the first token
    imported = latency_split(requests([{"ttft_s": 0.5, "e2e_s": 3.0, "completion_tokens": 151}])).iloc[0]
    assert math.isnan(imported["decode_share"]) and math.isnan(imported["mean_overhead_s"])
    assert imported["after_first_share"] == pytest.approx(2.5 / 3.0) and imported["dominant"] == "after_first"


def sweep_rows(levels: dict[int, tuple[int, float]], **extra) -> list[dict]:
    """Requests sent in waves: `concurrency` at once, each taking e2e seconds, the next wave when they end."""
    rows, phase = [], 0
    for concurrency, (count, e2e) in levels.items():
        for i in range(count):
            start = T0 + pd.Timedelta(hours=phase) + pd.Timedelta(milliseconds=round(1000 * (i // concurrency) * e2e))
            rows.append({"run_id": "r", "endpoint": "h", "model": "m", "concurrency": concurrency, "phase": phase,
                         "started_at": start, "ttft_s": e2e / 4, "e2e_s": e2e, "completion_tokens": 10} | extra)
        phase += 1
    return rows


def test_load_sweep_measures_throughput_over_phase_wall_time_and_finds_the_knee():
    # level 1: 4 x 1.0 s one after another: 4 s, 1 request/s; level 2: 8 x 1.2 s two at a time:
    # 4.8 s, 1.667/s (x1.667 for e2e x1.2); level 4: 8 x 3.0 s four at a time: 6 s, 1.333/s
    # (x0.8 for e2e x2.5): the knee is at 4
    frame = requests(sweep_rows({1: (4, 1.0), 2: (8, 1.2), 4: (8, 3.0)}))
    got = present.name_load_groups(load_sweep(frame)).set_index("concurrency")
    assert got["wall_s"].tolist() == pytest.approx([4.0, 4.8, 6.0])
    assert got["throughput_rps"].tolist() == pytest.approx([1.0, 8 / 4.8, 8 / 6])
    assert got["throughput_tokens_per_s"].tolist() == pytest.approx([10.0, 80 / 4.8, 80 / 6])
    assert got["p50_e2e_s"].tolist() == pytest.approx([1.0, 1.2, 3.0])
    assert got["p95_ttft_s"].tolist() == pytest.approx([0.25, 0.3, 0.75])
    assert got["throughput_ratio"].tolist()[1:] == pytest.approx([8 / 4.8, (8 / 6) / (8 / 4.8)])
    assert got["e2e_ratio"].tolist()[1:] == pytest.approx([1.2, 2.5])
    assert got["knee"].tolist() == [False, False, True]
    assert set(got["wall_rule"]) == {"phase"} and set(got["config_group"]) == {"m"}


def test_load_sweep_without_recorded_phases_takes_one_phase_per_level():
    with_phases = load_sweep(requests(sweep_rows({1: (4, 1.0), 4: (8, 3.0)})))
    without = load_sweep(requests(sweep_rows({1: (4, 1.0), 4: (8, 3.0)}, phase=None)))
    assert without["throughput_rps"].tolist() == pytest.approx(with_phases["throughput_rps"].tolist())
    assert set(without["wall_rule"]) == {"level"} and without["knee"].tolist() == [False, True]
    # no send times (llmperf): nothing to measure a wall time by
    blind = load_sweep(requests(sweep_rows({1: (4, 1.0)}, phase=None, started_at=None)))
    assert blind["wall_rule"].tolist() == ["none"] and math.isnan(blind.loc[0, "throughput_rps"])
    assert blind.loc[0, "p50_e2e_s"] == 1.0


def test_load_sweep_shares_a_mixed_phase_by_each_request_s_work():
    # two models in one phase of 4 s: m's requests did 3 times the work of n's, so m gets 3 s of it
    rows = [{"run_id": "r", "endpoint": "h", "concurrency": 1, "phase": 0, "status": "ok", "completion_tokens": 5,
             "started_at": T0 + pd.Timedelta(seconds=start), "ttft_s": 0.1, "e2e_s": e2e, "model": model}
            for model, start, e2e in (("m", 0, 1.5), ("n", 1.5, 0.5), ("m", 2, 1.5), ("n", 3.5, 0.5))]
    got = present.name_load_groups(load_sweep(requests(rows))).set_index("model")
    assert got.loc["m", "wall_s"] == pytest.approx(3.0) and got.loc["n", "wall_s"] == pytest.approx(1.0)
    assert got.loc["m", "throughput_rps"] == pytest.approx(2 / 3) and got["config_group"].tolist() == ["m", "n"]


def test_latency_from_the_scheduled_time_adds_the_send_lag():
    frame = requests([{"ttft_s": 0.2, "e2e_s": 1.0, "send_lag_s": 0.5}, {"ttft_s": 0.4, "e2e_s": 2.0, "send_lag_s": 0.0},
                      {"ttft_s": 0.3, "e2e_s": 1.5}])
    got = request_metrics(frame)
    assert got["ttft_from_scheduled_s"].tolist()[:2] == pytest.approx([0.7, 0.4])
    assert got["e2e_from_scheduled_s"].tolist()[:2] == pytest.approx([1.5, 2.0])
    assert math.isnan(got.loc[2, "e2e_from_scheduled_s"])  # closed loop: no due time
    table = percentiles(frame, metrics=("e2e_s", "e2e_from_scheduled_s"), q=(0.5,)).iloc[0]
    assert table["p50_e2e_s"] == 1.5 and table["p50_e2e_from_scheduled_s"] == pytest.approx(1.75)


def test_arrival_rates_reads_the_open_loop_phases_of_a_manifest():
    phases = [{"phase": 0, "concurrency": 1},
              {"phase": 1, "concurrency": 100, "arrival": {"target_rate_per_s": 50.0, "achieved_rate_per_s": 45.0,
                                                            "requests": 200, "max_in_flight": 100,
                                                            "max_send_lag_s": 0.25}}]
    got = arrival_rates(phases)
    assert got["phase"].tolist() == [1] and got.loc[0, "achieved_share"] == pytest.approx(0.9)
    assert arrival_rates([{"phase": 0}]).empty and "achieved_rate_per_s" in arrival_rates([]).columns
