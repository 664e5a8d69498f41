import math

import numpy as np
import pandas as pd
import pytest

from synthetic_runs import synthetic_requests
from toolkit.analysis import accuracy, cost_model, overview
from toolkit.errors import ParameterError
from toolkit.pricing import describe, price_requests
from toolkit.schema import coerce_requests


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_requests()


def test_run_overview_counts(frame: pd.DataFrame):
    row = overview.run_overview(frame, {"run_id": "from-manifest"}).iloc[0]
    ok = int((frame["status"] == "ok").sum())
    assert (row["run_id"], row["requests"], row["ok"], row["errors"]) == ("from-manifest", 120, ok, 120 - ok)
    assert row["graded"] == ok and row["timed"] == ok
    assert row["configs"] == 3
    assert row["models"] == "gemma-3-270m-q4_k_m, gpt-4o-mini"
    assert row["datasets"] == "arithmetic, capitals"
    assert overview.run_overview(frame).iloc[0]["run_id"] == "synthetic"


def test_select_dataset(frame: pd.DataFrame):
    assert set(overview.select_dataset(frame, "capitals")["dataset"]) == {"capitals"}
    assert overview.select_dataset(frame, None) is frame
    with pytest.raises(ParameterError) as info:
        overview.select_dataset(frame, "capital")
    assert str(info.value) == ("parameter dataset: 'capital' has no rows in this run; known: "
                               "arithmetic, capitals")


def test_accuracy_table_matches_the_accuracy_module_when_graded(frame: pd.DataFrame):
    mine = overview.accuracy_table(frame, by=["config_id"])
    theirs = accuracy.accuracy_table(frame, by=["config_id"])
    pd.testing.assert_frame_equal(mine.drop(columns="graded"), theirs)
    assert mine["graded"].tolist() == [38, 40, 40]  # the api config has two error rows


def test_accuracy_is_unknown_not_zero_without_grades():
    frame = synthetic_requests(graded=False)
    # failures are not wrong answers: the api config's 2 errors do not make its accuracy 0%
    assert accuracy.accuracy_table(frame, by=["config_id"])["accuracy"].isna().all()
    table = overview.accuracy_table(frame, by=["config_id"])
    assert table["accuracy"].isna().all() and table["accuracy_low"].isna().all()
    assert (table["graded"] == 0).all()


def test_a_config_that_only_failed_has_no_accuracy_and_a_full_error_rate(frame: pd.DataFrame):
    failed = frame[frame["config_id"] == "small/zero_shot"].assign(status="error", correct=None, score=None)
    table = overview.accuracy_table(coerce_requests(failed), by=["config_id"])
    assert table["accuracy"].isna().all() and table["error_rate"].tolist() == [1.0]


def test_a_config_that_only_failed_is_never_the_headline(frame: pd.DataFrame):
    failed = frame.assign(status=np.where(frame["config_id"] == "api/zero_shot", "error", frame["status"]))
    head = overview.headline(coerce_requests(failed), overview.price_table_for(frame), value_usd=1.0,
                             error_cost_usd=2.0, latency_budget_s=None)
    assert head.choice.config_id != "api/zero_shot"
    summary = head.summary.set_index("config_id")
    assert math.isnan(summary.loc["api/zero_shot", "accuracy"]) and summary.loc["api/zero_shot", "error_rate"] == 1


def test_unknown_models_are_priced_nan_with_a_stated_source(frame: pd.DataFrame):
    mystery = frame.assign(model=frame["model"].astype(object).where(frame["config_id"] != "api/zero_shot",
                                                                     "mystery-model-x"))
    prices = overview.price_table_for(mystery)
    listed = describe(prices, ["mystery-model-x"]).iloc[0]
    assert math.isnan(listed["usd_per_hour"]) and listed["source"] == overview.NO_PRICE
    usd = price_requests(mystery, prices)
    assert usd[mystery["model"] == "mystery-model-x"].isna().all()
    assert usd[mystery["model"] != "mystery-model-x"].notna().all()


def test_machine_rate_prices_unknown_models_as_self_hosted(frame: pd.DataFrame):
    mystery = frame.assign(model="mystery-model-x")
    usd = price_requests(mystery, overview.price_table_for(mystery, 36.0))
    ok = mystery["status"] == "ok"
    expected = mystery.loc[ok, "e2e_s"].astype(float) * 36.0 / 3600
    np.testing.assert_allclose(usd[ok].to_numpy(), expected.to_numpy())


def test_cost_summary_uses_the_latency_quantile(frame: pd.DataFrame):
    summary = overview.cost_summary(frame, overview.price_table_for(frame), latency_quantile=0.9)
    assert {"p50_e2e_s", "p90_e2e_s", "graded", "usd_per_1k"} <= set(summary.columns)
    api = frame[(frame["config_id"] == "api/zero_shot") & (frame["status"] == "ok")]
    assert summary.set_index("config_id").loc["api/zero_shot", "p90_e2e_s"] == pytest.approx(
        api["e2e_s"].astype(float).quantile(0.9))


def summary_table(**columns) -> pd.DataFrame:
    base = {"config_id": ["a", "b", "c"], "accuracy": [0.9, 0.7, 0.5], "accuracy_low": [0.8, 0.6, 0.4],
            "accuracy_high": [0.95, 0.8, 0.6], "p95_e2e_s": [3.0, 1.0, 0.5], "usd_per_1k": [3.0, 2.0, 1.0]}
    return pd.DataFrame(base | columns)


def test_choose_best_takes_the_cheapest_that_meets_both_targets():
    choice = overview.choose_best(summary_table(), target_accuracy=0.6, latency_budget_s=2.0)
    assert (choice.config_id, choice.met) == ("b", True)
    assert choice.rule == ("the cheapest (USD per 1,000 requests) configuration with accuracy ≥ 60.0% and "
                           "p95 end-to-end latency ≤ 2 s")
    assert choice.row["accuracy_target"] == 0.6
    assert choice.row["usd_per_1k"] == 2.0 and "_cost" not in choice.row.index


def test_choose_best_names_the_closest_when_nothing_qualifies():
    choice = overview.choose_best(summary_table(), target_accuracy=0.95, latency_budget_s=2.0)
    assert (choice.config_id, choice.met) == ("b", False)  # most accurate within the latency budget
    choice = overview.choose_best(summary_table(), target_accuracy=0.95, latency_budget_s=0.1)
    assert (choice.config_id, choice.met) == ("a", False)  # nothing is fast enough: most accurate overall


def test_choose_best_drops_conditions_the_run_cannot_check():
    ungraded = summary_table(accuracy=[np.nan] * 3, accuracy_low=[np.nan] * 3, accuracy_high=[np.nan] * 3)
    choice = overview.choose_best(ungraded, target_accuracy=0.6, latency_budget_s=2.0)
    assert (choice.config_id, choice.met) == ("c", True)
    assert choice.rule.endswith("with p95 end-to-end latency ≤ 2 s (no graded requests, so accuracy is not checked)")
    untimed = summary_table(p95_e2e_s=[np.nan] * 3)
    choice = overview.choose_best(untimed, target_accuracy=0.6, latency_budget_s=2.0)
    assert (choice.config_id, choice.met) == ("b", True)
    assert "(no timings, so latency is not checked)" in choice.rule


def test_choose_best_ranks_by_accuracy_when_no_cost_is_known():
    choice = overview.choose_best(summary_table(usd_per_1k=[np.nan] * 3), target_accuracy=0.6,
                                  latency_budget_s=5.0)
    assert (choice.config_id, choice.met) == ("a", True)
    assert choice.rule.startswith("the most accurate (costs unknown) configuration")


def test_choose_best_without_an_accuracy_target_keeps_ungraded_configs():
    mixed = summary_table(accuracy=[np.nan, 0.7, 0.5])
    assert overview.choose_best(mixed, target_accuracy=None, latency_budget_s=None).config_id == "c"


def test_best_by_ratio_finds_the_crossover():
    # EV = a - (1 - a) E - c with V = 1: "safe" (a=0.9, c=0.5) beats "cheap" (a=0.6, c=0) iff E > 2/3
    summary = pd.DataFrame({"config_id": ["safe", "cheap"], "accuracy": [0.9, 0.6], "usd_per_1k": [500.0, 0.0]})
    ratios = [0.1, 0.5, 0.6, 0.7, 1.0, 10.0]
    table = cost_model.sensitivity(summary, cost_model.CostModel(1.0, 1.0), ratios)
    leaders = overview.best_by_ratio(table)
    assert leaders["config_id"].tolist() == ["cheap", "safe"]
    assert leaders[["ratio_from", "ratio_to"]].to_numpy().tolist() == [[0.1, 0.6], [0.7, 10.0]]
    assert leaders["ev_from_usd"].iloc[0] == pytest.approx(0.6 - 0.4 * 0.1)
    assert overview.best_by_ratio(table.assign(ev_usd=np.nan)).empty


def test_observed_scaling_is_the_ratio_of_medians():
    tokens = np.arange(1, 101)
    frame = synthetic_requests(items=50).iloc[:100].assign(
        model="m", completion_tokens=tokens, e2e_s=1.0 + 0.1 * tokens, ttft_s=1.0, status="ok")
    row = overview.observed_scaling(frame, by="model").iloc[0]
    short, long = tokens[tokens <= np.quantile(tokens, 0.25)], tokens[tokens >= np.quantile(tokens, 0.75)]
    assert (row["short_tokens"], row["long_tokens"]) == (np.median(short), np.median(long))
    assert row["time_ratio"] == pytest.approx((1 + 0.1 * np.median(long)) / (1 + 0.1 * np.median(short)))
    assert row["token_ratio"] == pytest.approx(np.median(long) / np.median(short))
    assert overview.observed_scaling(synthetic_requests(timed=False)).empty


def test_observed_range(frame: pd.DataFrame):
    ok = frame[frame["status"] == "ok"]
    assert overview.observed_range(frame, "completion_tokens") == (
        float(ok["completion_tokens"].min()), float(ok["completion_tokens"].max()))
    assert all(math.isnan(v) for v in overview.observed_range(synthetic_requests(timed=False), "e2e_s"))


def test_headline_break_even_is_closed_form(frame: pd.DataFrame):
    head = overview.headline(frame, overview.price_table_for(frame), value_usd=1.0, error_cost_usd=2.0,
                             target_accuracy=0.5, latency_budget_s=2.0)
    assert head.choice.config_id == "api/zero_shot" and head.choice.met
    cost = head.choice.row["usd_per_1k"] / 1000
    failed = head.choice.row["error_rate"]  # a failure costs E too (no failure_cost_usd given)
    assert 0 < failed < 0.2
    assert head.break_even_accuracy == pytest.approx((2.0 + (failed * 2.0 + cost) / (1 - failed)) / 3.0)
    a = head.choice.row["accuracy"]
    assert head.ev_usd == pytest.approx((1 - failed) * (a * 1.0 - (1 - a) * 2.0) - failed * 2.0 - cost)
    cheap_failures = overview.headline(frame, overview.price_table_for(frame), value_usd=1.0, error_cost_usd=2.0,
                                       target_accuracy=0.5, latency_budget_s=2.0, failure_cost_usd=0.0)
    assert cheap_failures.ev_usd > head.ev_usd
    assert head.prices["model"].tolist() == ["gemma-3-270m-q4_k_m", "gpt-4o-mini"]
    no_values = overview.headline(frame, overview.price_table_for(frame))
    assert math.isnan(no_values.break_even_accuracy) and math.isnan(no_values.ev_usd)


def test_reference_points_resolve_load_and_label(tmp_path, monkeypatch):
    import shutil

    from public_data import PUBLIC
    summary = PUBLIC / "frugalgpt" / "summary_HEADLINES_e8_full_2024.csv"
    assert overview.reference_points(None) is None
    shutil.copy(summary, tmp_path / summary.name)
    monkeypatch.chdir(tmp_path)
    points = overview.reference_points(summary.name)  # relative to the cwd
    assert len(points) == 30 and (points["dataset"] == "HEADLINES").all()
    assert (points.loc[points["method"] == "FrugalGPT", "label"] == "").all()
    best = points.loc[points["method"] == "gpt-4-turbo"].iloc[0]
    assert (best["label"], best["accuracy"], best["usd_per_query"]) == ("gpt-4-turbo", 0.8558, pytest.approx(0.00333, rel=0.01))
    with pytest.raises(ParameterError, match=r"parameter reference_points: file 'nope.csv' not found \("):
        overview.reference_points("nope.csv")


GRID_IDS = ["gemma/few_shot_5/mt16-nostop/T0/c4/cache", "gemma/few_shot_5/mt16-nostop/T0/c1",
            "gemma/zero_shot/mt8/T0/c1", "gemma/zero_shot/mt8/T0/c1/cache"]


def test_short_labels_keep_only_what_varies():
    labels = overview.short_labels(GRID_IDS)
    assert labels == {"gemma/few_shot_5/mt16-nostop/T0/c4/cache": "few_shot_5 · mt16-nostop · c4 · cache",
                      "gemma/few_shot_5/mt16-nostop/T0/c1": "few_shot_5 · mt16-nostop · c1",
                      "gemma/zero_shot/mt8/T0/c1": "zero_shot · mt8 · c1",
                      "gemma/zero_shot/mt8/T0/c1/cache": "zero_shot · mt8 · c1 · cache"}
    assert overview.short_labels(["m/a", "m/b/a"]) == {"m/a": "m/a", "m/b/a": "b"}  # "" would be no name
    assert overview.short_labels(["x/a/b", "x/b/a"]) == {"x/a/b": "x/a/b", "x/b/a": "x/b/a"}  # would collide
    assert overview.short_labels(["small/zero_shot", "api/zero_shot", "api/few"]) == {
        "small/zero_shot": "small/zero_shot", "api/zero_shot": "api/zero_shot", "api/few": "api/few"}
    assert overview.short_labels(["only/one"]) == {"only/one": "only/one"}


def test_relabel_renames_ids_in_every_id_column():
    labels = overview.short_labels(GRID_IDS)
    table = pd.DataFrame({"config_a": GRID_IDS[:2], "config_b": GRID_IDS[2:], "better": [GRID_IDS[2], None]})
    out = overview.relabel(table, labels)
    assert out["config_a"].tolist() == ["few_shot_5 · mt16-nostop · c4 · cache", "few_shot_5 · mt16-nostop · c1"]
    assert out["better"].iloc[0] == "zero_shot · mt8 · c1" and pd.isna(out["better"].iloc[1])
    assert table["config_a"].tolist() == GRID_IDS[:2]  # a copy


def hit_frame() -> pd.DataFrame:
    frame = synthetic_requests(items=10)
    ok = frame["status"] == "ok"
    # every other ok request of small/zero_shot is a cache hit: a lookup's time, no cost
    hits = ok & (frame["config_id"] == "small/zero_shot") & (frame.index % 2 == 0)
    return coerce_requests(frame.assign(cache_hit=hits, e2e_s=frame["e2e_s"].where(~hits, 0.0001),
                                        ttft_s=frame["ttft_s"].where(~hits, 0.0001)))


def test_cache_hits_and_a_summary_that_sets_them_aside():
    frame = hit_frame()
    hits = overview.cache_hits(frame).set_index("config_id")
    assert hits.loc["small/zero_shot", ["requests", "hits"]].tolist() == [20, 10]
    assert hits.loc["small/zero_shot", "hit_rate"] == 0.5 and hits.loc["api/zero_shot", "hits"] == 0
    prices = overview.price_table_for(frame)
    summary = overview.cost_summary(frame, prices).set_index("config_id")
    mixed = overview.cost_summary(frame, prices, include_cache_hits=True).set_index("config_id")
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
    all_cached = overview.cost_summary(only_hits, prices).set_index("config_id")
    assert math.isnan(all_cached.loc["small/zero_shot", "p95_e2e_s"])
    assert math.isnan(all_cached.loc["small/zero_shot", "usd_per_1k"])
    assert overview.model_answered(frame)["cache_hit"].astype(bool).sum() == 0


def test_choose_best_holds_each_config_to_its_break_even_accuracy():
    # V = 1, E = 2: break-even (2 + c) / 3 with c = usd_per_1k / 1000
    table = summary_table(accuracy=[0.9, 0.7, 0.66], usd_per_1k=[3.0, 2.0, 1.0], p95_e2e_s=[1.0, 1.0, 1.0])
    choice = overview.choose_best(table, target_accuracy=None, latency_budget_s=2.0, value_usd=1.0,
                                  error_cost_usd=2.0)
    assert (choice.config_id, choice.met) == ("b", True)  # "c" at 66% misses (2 + 0.001) / 3 = 66.7%
    assert choice.row["accuracy_target"] == pytest.approx((2 + 0.002) / 3)
    assert choice.rule == ("the cheapest (USD per 1,000 requests) configuration with accuracy ≥ its break-even "
                           "accuracy (E + (f·F + c) / (1 − f)) / (V + E), with V = 1.00 USD, E = 2.00 USD, "
                           "F = 2.00 USD per failed request, f its error rate and c its cost per request "
                           "(66.7% at c = 0 and f = 0) and p95 end-to-end latency ≤ 2 s")
    expensive = summary_table(accuracy=[0.9, 0.7, 0.66], usd_per_1k=[3.0, 2.0e6, 1.0], p95_e2e_s=[1.0, 1.0, 1.0])
    # at 2 USD a request "b" needs (2 + 2) / 3 > 1: it can never pay off
    assert overview.choose_best(expensive, target_accuracy=None, latency_budget_s=2.0, value_usd=1.0,
                                error_cost_usd=2.0).config_id == "a"
    nothing = overview.choose_best(summary_table(accuracy=[0.6, 0.5, 0.4]), target_accuracy=None,
                                   latency_budget_s=None, value_usd=1.0, error_cost_usd=2.0)
    assert (nothing.config_id, nothing.met) == ("a", False)  # closest to its target
    fixed = overview.choose_best(table, target_accuracy=0.5, latency_budget_s=2.0, value_usd=1.0,
                                 error_cost_usd=2.0)
    assert fixed.config_id == "c" and "accuracy ≥ 50.0%" in fixed.rule  # a fixed target wins over V and E
    no_values = overview.choose_best(table, target_accuracy=None, latency_budget_s=2.0)
    assert no_values.config_id == "c" and "accuracy" not in no_values.rule


def test_headline_uses_the_break_even_target_and_short_names():
    frame = synthetic_requests()
    head = overview.headline(frame, overview.price_table_for(frame), value_usd=1.0, error_cost_usd=2.0,
                             latency_budget_s=2.0, short_names=True)
    assert head.choice.config_id == "api/zero_shot"  # the only one above (2 + c) / 3
    assert head.choice.row["accuracy_target"] == pytest.approx(head.break_even_accuracy)
    assert head.labels == {c: c for c in frame["config_id"].unique()}  # nothing shared: ids kept
    assert head.frame is not None and len(head.frame) == len(frame)


def test_hue_latency_groups_and_names():
    table = pd.DataFrame({"model": ["m", "m"], "prompt_variant": ["a", "b"], "concurrency": [1, 4]})
    assert overview.hue_column(table) == "prompt_variant"
    assert overview.hue_column(table.assign(prompt_variant="a", concurrency=1)) is None
    assert overview.latency_groups(table)["group"].tolist() == ["concurrency 1", "concurrency 4"]
    two = table.assign(model=["x", "y"])
    assert overview.latency_groups(two)["group"].tolist() == ["x · concurrency 1", "y · concurrency 4"]
    assert overview.latency_groups(table.assign(concurrency=1))["group"].tolist() == ["m", "m"]
    assert overview.latency_name("p95_e2e_s") == "p95 end-to-end latency"
    assert overview.latency_name("p50_ttft_s") == "p50 time to first token"


def test_top_configs_keeps_one_per_accuracy():
    values = pd.DataFrame({"config_id": ["a1", "a2", "b", "c"], "accuracy": [0.9, 0.9, 0.7, 0.5],
                           "usd_per_1k": [2.0, 1.0, 1.0, 1.0], "ev_usd": [0.7, 0.7001, 0.4, np.nan]})
    assert overview.top_configs(values) == ["a2", "b"]
    assert overview.top_configs(values, limit=1) == ["a2"]


def answer_frame() -> pd.DataFrame:
    rows = []
    correct = {"m/p1/c1": [1, 0, 1], "m/p1/c4": [1, 0, 1], "m/p1/c4/cache": [1, 0, 1], "m/p2/c1": [1, 1, 1],
               "m/p2/c4": [0, 1, 1]}
    for config, outcomes in correct.items():
        for item, ok in enumerate(outcomes):
            rows.append({"config_id": config, "dataset": "d", "item_id": str(item), "repeat": 0, "status": "ok",
                         "correct": bool(ok), "score": float(ok)})
    return coerce_requests(pd.DataFrame(rows))


def test_answer_groups_join_configs_that_answered_identically():
    frame = overview.relabel(answer_frame(), overview.short_labels(answer_frame()["config_id"]))
    groups = overview.answer_groups(frame)
    assert groups["answers"].tolist() == ["p1", "p1", "p1", "p2 · c1", "p2 · c4"]
    assert groups["members"].tolist() == [3, 3, 3, 1, 1]
    assert groups["variants"].iloc[0] == "c1, c4, c4 · cache"
    members = overview.group_members(groups)
    assert members.to_dict("list") == {"config_id": ["p1", "p2 · c1", "p2 · c4"], "members": [3, 1, 1],
                                       "variants": ["c1, c4, c4 · cache", "", ""]}
    distinct = overview.one_per_answer_group(frame, groups)
    assert sorted(distinct["config_id"].unique()) == ["p1", "p2 · c1", "p2 · c4"] and len(distinct) == 9
    # a failed request is no answer: the config that failed on an item no longer matches the others
    failed = frame.assign(status=np.where((frame["config_id"] == "p1 · c1") & (frame["item_id"] == "1"),
                                          "error", "ok"))
    failed.loc[failed["status"] == "error", "correct"] = None
    assert overview.answer_groups(failed)["members"].tolist()[:3] == [1, 2, 2]


def test_shared_parts():
    assert overview.shared_parts(["a · b · c", "a · c"]) == ("a · c", ["b", ""])
    assert overview.shared_parts([]) == ("", [])


def test_the_closest_configuration_is_judged_by_the_low_end_of_its_interval():
    table = summary_table(accuracy=[0.58, 0.60, 0.40], usd_per_1k=[1.0, 1.0, 1.0], p95_e2e_s=[1.0, 1.0, 1.0])
    table["accuracy_low"] = [0.52, 0.39, 0.30]  # "b" is a few-item cell whose point estimate came out higher
    choice = overview.choose_best(table, target_accuracy=0.9, latency_budget_s=2.0)
    assert (choice.config_id, choice.met) == ("a", False)
