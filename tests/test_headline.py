import math

import numpy as np
import pandas as pd
import pytest

from synthetic_runs import synthetic_requests
from toolkit import present
from toolkit import pricing
from toolkit.importers import frugalgpt_summary
from toolkit.analysis import accuracy, cost_model, frontier, latency_fit, rows
from toolkit.errors import ParameterError
from toolkit.pricing import describe, price_requests
from toolkit.schema import coerce_requests


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_requests()


def test_run_overview_counts(frame: pd.DataFrame):
    row = rows.run_overview(frame, {"run_id": "from-manifest"}).iloc[0]
    ok = int((frame["status"] == "ok").sum())
    assert (row["run_id"], row["requests"], row["ok"], row["errors"]) == ("from-manifest", 120, ok, 120 - ok)
    assert row["graded"] == ok and row["timed"] == ok
    assert row["configs"] == 3
    assert row["models"] == "gemma-3-270m-q4_k_m, gpt-4o-mini"
    assert row["datasets"] == "arithmetic, capitals"
    assert rows.run_overview(frame).iloc[0]["run_id"] == "synthetic"


def test_select_dataset(frame: pd.DataFrame):
    assert set(rows.select_dataset(frame, "capitals").df()["dataset"]) == {"capitals"}
    assert rows.select_dataset(frame, None) is frame
    with pytest.raises(ParameterError) as info:
        rows.select_dataset(frame, "capital")
    assert str(info.value) == ("parameter dataset: 'capital' has no rows in this run; known: "
                               "arithmetic, capitals")


def test_accuracy_table_counts_graded_answers_apart_from_errors(frame: pd.DataFrame):
    table = accuracy.accuracy_table(frame, by=["config_id"])
    assert table["n"].tolist() == [38, 40, 40] and table["errors"].tolist() == [2, 0, 0]  # api: two error rows


def test_accuracy_is_unknown_not_zero_without_grades():
    frame = synthetic_requests(graded=False)
    # failures are not wrong answers: the api config's 2 errors do not make its accuracy 0%
    table = accuracy.accuracy_table(frame, by=["config_id"])
    assert table["accuracy"].isna().all() and table["accuracy_low"].isna().all()
    assert table["score_mean"].isna().all() and (table["n"] == 0).all()


def test_a_config_that_only_failed_has_no_accuracy_and_a_full_error_rate(frame: pd.DataFrame):
    failed = frame[frame["config_id"] == "small/zero_shot"].assign(status="error", correct=None, score=None)
    table = accuracy.accuracy_table(coerce_requests(failed), by=["config_id"])
    assert table["accuracy"].isna().all() and table["error_rate"].tolist() == [1.0]


def test_a_config_that_only_failed_is_never_the_headline(frame: pd.DataFrame):
    failed = frame.assign(status=np.where(frame["config_id"] == "api/zero_shot", "error", frame["status"]))
    head = frontier.headline(coerce_requests(failed), pricing.price_table_for(frame), value_usd=1.0,
                             error_cost_usd=2.0, latency_budget_s=None)
    assert head.choice.config_id != "api/zero_shot"
    summary = head.summary.set_index("config_id")
    assert math.isnan(summary.loc["api/zero_shot", "accuracy"]) and summary.loc["api/zero_shot", "error_rate"] == 1


def test_unknown_models_are_priced_nan_with_a_stated_source(frame: pd.DataFrame):
    mystery = frame.assign(model=frame["model"].astype(object).where(frame["config_id"] != "api/zero_shot",
                                                                     "mystery-model-x"))
    prices = pricing.price_table_for(mystery)
    listed = describe(prices, ["mystery-model-x"]).iloc[0]
    assert math.isnan(listed["usd_per_hour"]) and listed["source"] == pricing.NO_PRICE
    usd = price_requests(mystery, prices)
    assert usd[mystery["model"] == "mystery-model-x"].isna().all()
    assert usd[mystery["model"] != "mystery-model-x"].notna().all()


def test_machine_rate_prices_unknown_models_as_self_hosted(frame: pd.DataFrame):
    mystery = frame.assign(model="mystery-model-x")
    usd = price_requests(mystery, pricing.price_table_for(mystery, 36.0))
    ok = mystery["status"] == "ok"
    expected = mystery.loc[ok, "e2e_s"].astype(float) * 36.0 / 3600
    np.testing.assert_allclose(usd[ok].to_numpy(), expected.to_numpy())


def test_cost_summary_uses_the_latency_quantile(frame: pd.DataFrame):
    summary = frontier.cost_summary(frame, pricing.price_table_for(frame), latency_quantile=0.9)
    assert {"p50_e2e_s", "p90_e2e_s", "n", "usd_per_1k"} <= set(summary.columns)
    api = frame[(frame["config_id"] == "api/zero_shot") & (frame["status"] == "ok")]
    assert summary.set_index("config_id").loc["api/zero_shot", "p90_e2e_s"] == pytest.approx(
        api["e2e_s"].astype(float).quantile(0.9))


def summary_table(**columns) -> pd.DataFrame:
    base = {"config_id": ["a", "b", "c"], "accuracy": [0.9, 0.7, 0.5], "accuracy_low": [0.8, 0.6, 0.4],
            "accuracy_high": [0.95, 0.8, 0.6], "p95_e2e_s": [3.0, 1.0, 0.5], "usd_per_1k": [3.0, 2.0, 1.0]}
    return pd.DataFrame(base | columns)


def test_choose_best_takes_the_cheapest_that_meets_both_targets():
    choice = frontier.choose_best(summary_table(), target_accuracy=0.6, latency_budget_s=2.0)
    assert (choice.config_id, choice.met) == ("b", True)
    assert present.rule_text(choice.rule) == ("the cheapest (USD per 1,000 requests) configuration with accuracy ≥ 60.0% and "
                           "p95 end-to-end latency ≤ 2 s")
    assert choice.row["accuracy_target"] == 0.6
    assert choice.row["usd_per_1k"] == 2.0 and "_cost" not in choice.row.index


def test_choose_best_names_the_closest_when_nothing_qualifies():
    choice = frontier.choose_best(summary_table(), target_accuracy=0.95, latency_budget_s=2.0)
    assert (choice.config_id, choice.met) == ("b", False)  # most accurate within the latency budget
    choice = frontier.choose_best(summary_table(), target_accuracy=0.95, latency_budget_s=0.1)
    assert (choice.config_id, choice.met) == ("a", False)  # nothing is fast enough: most accurate overall


def test_choose_best_drops_conditions_the_run_cannot_check():
    ungraded = summary_table(accuracy=[np.nan] * 3, accuracy_low=[np.nan] * 3, accuracy_high=[np.nan] * 3)
    choice = frontier.choose_best(ungraded, target_accuracy=0.6, latency_budget_s=2.0)
    assert (choice.config_id, choice.met) == ("c", True)
    assert present.rule_text(choice.rule).endswith("with p95 end-to-end latency ≤ 2 s (no graded requests, so accuracy is not checked)")
    untimed = summary_table(p95_e2e_s=[np.nan] * 3)
    choice = frontier.choose_best(untimed, target_accuracy=0.6, latency_budget_s=2.0)
    assert (choice.config_id, choice.met) == ("b", True)
    assert "(no timings, so latency is not checked)" in present.rule_text(choice.rule)


def test_choose_best_ranks_by_accuracy_when_no_cost_is_known():
    choice = frontier.choose_best(summary_table(usd_per_1k=[np.nan] * 3), target_accuracy=0.6,
                                  latency_budget_s=5.0)
    assert (choice.config_id, choice.met) == ("a", True)
    assert present.rule_text(choice.rule).startswith("the most accurate (costs unknown) configuration")


def test_choose_best_without_an_accuracy_target_keeps_ungraded_configs():
    mixed = summary_table(accuracy=[np.nan, 0.7, 0.5])
    assert frontier.choose_best(mixed, target_accuracy=None, latency_budget_s=None).config_id == "c"


def test_best_by_ratio_finds_the_crossover():
    # EV = a - (1 - a) E - c with V = 1: "safe" (a=0.9, c=0.5) beats "cheap" (a=0.6, c=0) iff E > 2/3
    summary = pd.DataFrame({"config_id": ["safe", "cheap"], "accuracy": [0.9, 0.6], "usd_per_1k": [500.0, 0.0]})
    ratios = [0.1, 0.5, 0.6, 0.7, 1.0, 10.0]
    table = cost_model.sensitivity(summary, cost_model.CostModel(1.0, 1.0), ratios)
    leaders = frontier.best_by_ratio(table)
    assert leaders["config_id"].tolist() == ["cheap", "safe"]
    assert leaders[["ratio_from", "ratio_to"]].to_numpy().tolist() == [[0.1, 0.6], [0.7, 10.0]]
    assert leaders["ev_from_usd"].iloc[0] == pytest.approx(0.6 - 0.4 * 0.1)
    assert frontier.best_by_ratio(table.assign(ev_usd=np.nan)).empty


def test_observed_scaling_is_the_ratio_of_medians():
    tokens = np.arange(1, 101)
    frame = synthetic_requests(items=50).iloc[:100].assign(
        model="m", completion_tokens=tokens, e2e_s=1.0 + 0.1 * tokens, ttft_s=1.0, status="ok")
    row = latency_fit.observed_scaling(frame, by="model").iloc[0]
    short, long = tokens[tokens <= np.quantile(tokens, 0.25)], tokens[tokens >= np.quantile(tokens, 0.75)]
    assert (row["short_tokens"], row["long_tokens"]) == (np.median(short), np.median(long))
    assert row["time_ratio"] == pytest.approx((1 + 0.1 * np.median(long)) / (1 + 0.1 * np.median(short)))
    assert row["token_ratio"] == pytest.approx(np.median(long) / np.median(short))
    assert latency_fit.observed_scaling(synthetic_requests(timed=False)).empty


def test_observed_range(frame: pd.DataFrame):
    ok = frame[frame["status"] == "ok"]
    assert latency_fit.observed_range(frame, "completion_tokens") == (
        float(ok["completion_tokens"].min()), float(ok["completion_tokens"].max()))
    assert all(math.isnan(v) for v in latency_fit.observed_range(synthetic_requests(timed=False), "e2e_s"))


def test_headline_break_even_is_closed_form(frame: pd.DataFrame):
    head = frontier.headline(frame, pricing.price_table_for(frame), value_usd=1.0, error_cost_usd=2.0,
                             target_accuracy=0.5, latency_budget_s=2.0)
    assert head.choice.config_id == "api/zero_shot" and head.choice.met
    cost = head.choice.row["usd_per_1k"] / 1000
    failed = head.choice.row["error_rate"]  # a failure costs E too (no failure_cost_usd given)
    assert 0 < failed < 0.2
    assert head.break_even_accuracy == pytest.approx((2.0 + (failed * 2.0 + cost) / (1 - failed)) / 3.0)
    a = head.choice.row["accuracy"]
    assert head.ev_usd == pytest.approx((1 - failed) * (a * 1.0 - (1 - a) * 2.0) - failed * 2.0 - cost)
    cheap_failures = frontier.headline(frame, pricing.price_table_for(frame), value_usd=1.0, error_cost_usd=2.0,
                                       target_accuracy=0.5, latency_budget_s=2.0, failure_cost_usd=0.0)
    assert cheap_failures.ev_usd > head.ev_usd
    assert head.prices["model"].tolist() == ["gemma-3-270m-q4_k_m", "gpt-4o-mini"]
    no_values = frontier.headline(frame, pricing.price_table_for(frame))
    assert math.isnan(no_values.break_even_accuracy) and math.isnan(no_values.ev_usd)


def test_reference_points_resolve_load_and_label(tmp_path, monkeypatch):
    import shutil

    from public_data import PUBLIC
    summary = PUBLIC / "frugalgpt" / "summary_HEADLINES_e8_full_2024.csv"
    assert frugalgpt_summary.reference_points(None) is None
    shutil.copy(summary, tmp_path / summary.name)
    monkeypatch.chdir(tmp_path)
    points = frugalgpt_summary.reference_points(summary.name)  # relative to the cwd
    assert len(points) == 30 and (points["dataset"] == "HEADLINES").all()
    assert (points.loc[points["method"] == "FrugalGPT", "label"] == "").all()
    best = points.loc[points["method"] == "gpt-4-turbo"].iloc[0]
    assert (best["label"], best["accuracy"], best["usd_per_query"]) == ("gpt-4-turbo", 0.8558, pytest.approx(0.00333, rel=0.01))
    with pytest.raises(ParameterError, match=r"parameter reference_points: file 'nope.csv' not found \("):
        frugalgpt_summary.reference_points("nope.csv")


def hit_frame() -> pd.DataFrame:
    frame = synthetic_requests(items=10)
    ok = frame["status"] == "ok"
    # every other ok request of small/zero_shot is a cache hit: a lookup's time, no cost
    hits = ok & (frame["config_id"] == "small/zero_shot") & (frame.index % 2 == 0)
    return coerce_requests(frame.assign(cache_hit=hits, e2e_s=frame["e2e_s"].where(~hits, 0.0001),
                                        ttft_s=frame["ttft_s"].where(~hits, 0.0001)))


def test_cache_hits_and_a_summary_that_sets_them_aside():
    frame = hit_frame()
    hits = rows.cache_hits(frame).set_index("config_id")
    assert hits.loc["small/zero_shot", ["requests", "hits"]].tolist() == [20, 10]
    assert hits.loc["small/zero_shot", "hit_rate"] == 0.5 and hits.loc["api/zero_shot", "hits"] == 0
    prices = pricing.price_table_for(frame)
    summary = frontier.cost_summary(frame, prices).set_index("config_id")
    mixed = frontier.cost_summary(frame, prices, include_cache_hits=True).set_index("config_id")
    answered = frame[(frame["config_id"] == "small/zero_shot") & ~frame["cache_hit"].astype(bool)]
    assert summary.loc["small/zero_shot", "p50_e2e_s"] == pytest.approx(answered["e2e_s"].astype(float).median())
    assert summary.loc["small/zero_shot", "usd_per_1k"] == pytest.approx(
        1000 * price_requests(answered, prices).mean())
    assert summary.loc["small/zero_shot", "usd_per_1k"] == pytest.approx(2 * mixed.loc["small/zero_shot", "usd_per_1k"],
                                                                        rel=0.2)
    assert summary.loc["small/zero_shot", "hit_rate"] == 0.5 and summary.loc["api/zero_shot", "hit_rate"] == 0.0
    # accuracy counts every request: a cached answer is the answer the user gets
    assert summary.loc["small/zero_shot", "n"] == 20
    pd.testing.assert_series_equal(summary["accuracy"], mixed["accuracy"])
    only_hits = frame.assign(cache_hit=frame["config_id"] == "small/zero_shot")
    all_cached = frontier.cost_summary(only_hits, prices).set_index("config_id")
    assert math.isnan(all_cached.loc["small/zero_shot", "p95_e2e_s"])
    assert math.isnan(all_cached.loc["small/zero_shot", "usd_per_1k"])
    assert rows.model_answered(frame)["cache_hit"].astype(bool).sum() == 0


def test_choose_best_holds_each_config_to_its_break_even_accuracy():
    # V = 1, E = 2: break-even (2 + c) / 3 with c = usd_per_1k / 1000
    table = summary_table(accuracy=[0.9, 0.7, 0.66], usd_per_1k=[3.0, 2.0, 1.0], p95_e2e_s=[1.0, 1.0, 1.0])
    choice = frontier.choose_best(table, target_accuracy=None, latency_budget_s=2.0, value_usd=1.0,
                                  error_cost_usd=2.0)
    assert (choice.config_id, choice.met) == ("b", True)  # "c" at 66% misses (2 + 0.001) / 3 = 66.7%
    assert choice.row["accuracy_target"] == pytest.approx((2 + 0.002) / 3)
    assert present.rule_text(choice.rule) == ("the cheapest (USD per 1,000 requests) configuration with accuracy ≥ its break-even "
                           "accuracy (E + (f·F + c) / (1 − f)) / (V + E), with V = 1.00 USD, E = 2.00 USD, "
                           "F = 2.00 USD per failed request, f its error rate and c its cost per request "
                           "(66.7% at c = 0 and f = 0) and p95 end-to-end latency ≤ 2 s")
    expensive = summary_table(accuracy=[0.9, 0.7, 0.66], usd_per_1k=[3.0, 2.0e6, 1.0], p95_e2e_s=[1.0, 1.0, 1.0])
    # at 2 USD a request "b" needs (2 + 2) / 3 > 1: it can never pay off
    assert frontier.choose_best(expensive, target_accuracy=None, latency_budget_s=2.0, value_usd=1.0,
                                error_cost_usd=2.0).config_id == "a"
    nothing = frontier.choose_best(summary_table(accuracy=[0.6, 0.5, 0.4]), target_accuracy=None,
                                   latency_budget_s=None, value_usd=1.0, error_cost_usd=2.0)
    assert (nothing.config_id, nothing.met) == ("a", False)  # closest to its target
    fixed = frontier.choose_best(table, target_accuracy=0.5, latency_budget_s=2.0, value_usd=1.0,
                                 error_cost_usd=2.0)
    assert fixed.config_id == "c" and "accuracy ≥ 50.0%" in present.rule_text(fixed.rule)  # a fixed target wins over V and E
    no_values = frontier.choose_best(table, target_accuracy=None, latency_budget_s=2.0)
    assert no_values.config_id == "c" and "accuracy" not in present.rule_text(no_values.rule)


def test_headline_uses_the_break_even_target_and_labels():
    frame = synthetic_requests()
    head = frontier.headline(frame, pricing.price_table_for(frame), value_usd=1.0, error_cost_usd=2.0,
                             latency_budget_s=2.0, labels=present.config_labels(frame))
    assert head.choice.config_id == "gpt-4o-mini · zero_shot"  # api/zero_shot: the only one above (2 + c) / 3
    assert head.choice.row["accuracy_target"] == pytest.approx(head.break_even_accuracy)
    assert dict(head.labels) == {"small/zero_shot": "gemma-3-270m-q4_k_m · zero_shot",
                                 "small/few_shot": "gemma-3-270m-q4_k_m · few_shot_3",
                                 "api/zero_shot": "gpt-4o-mini · zero_shot"}
    assert set(head.summary["config_id"]) == set(head.labels.values())
    assert head.frame is not None and len(head.frame) == len(frame)


def test_top_configs_keeps_one_per_accuracy():
    values = pd.DataFrame({"config_id": ["a1", "a2", "b", "c"], "accuracy": [0.9, 0.9, 0.7, 0.5],
                           "usd_per_1k": [2.0, 1.0, 1.0, 1.0], "ev_usd": [0.7, 0.7001, 0.4, np.nan]})
    assert frontier.top_configs(values) == ["a2", "b"]
    assert frontier.top_configs(values, limit=1) == ["a2"]


def test_the_closest_configuration_is_judged_by_the_low_end_of_its_interval():
    table = summary_table(accuracy=[0.58, 0.60, 0.40], usd_per_1k=[1.0, 1.0, 1.0], p95_e2e_s=[1.0, 1.0, 1.0])
    table["accuracy_low"] = [0.52, 0.39, 0.30]  # "b" is a few-item config whose point estimate came out higher
    choice = frontier.choose_best(table, target_accuracy=0.9, latency_budget_s=2.0)
    assert (choice.config_id, choice.met) == ("a", False)
