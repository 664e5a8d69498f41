import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.stats import norm

from toolkit.analysis.accuracy import (PAIR_KEY, accuracy_table, answer_groups, bootstrap_counts_interval,
                                       bootstrap_mean_interval, graded_outcomes, mean_intervals, paired_comparison,
                                       pairwise_significance)
from toolkit.errors import ParameterError
from toolkit.schema import coerce_requests
from toolkit.testing.synthetic import synthetic_requests


def rows(config: str, outcomes: list, dataset: str = "d", start: int = 0) -> list[dict]:
    """outcomes: True/False graded, "error" failed request, None ok but ungraded."""
    out = []
    for i, outcome in enumerate(outcomes, start=start):
        row = {"config_id": config, "dataset": dataset, "item_id": f"i{i}", "repeat": 0, "status": "ok"}
        if outcome == "error":
            row.update(status="error", correct=None, score=None)
        elif outcome is None:
            row.update(correct=None, score=None)
        else:
            row.update(correct=outcome, score=float(outcome))
        out.append(row)
    return out


def frame(*groups: list[dict]) -> pd.DataFrame:
    return coerce_requests(pd.DataFrame([r for g in groups for r in g]))


def wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    z = norm.ppf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_measures_accuracy_on_answers_and_errors_apart():
    data = frame(rows("a", [True] * 7 + [False] * 2 + ["error", None]),
                 rows("b", [True, False], dataset="e"))
    table = accuracy_table(data)
    assert table[["config_id", "dataset"]].values.tolist() == [["a", "d"], ["b", "e"]]
    a = table.iloc[0]
    assert (a["n"], a["correct"], a["errors"], a["ungraded"]) == (9, 7, 1, 1)
    assert a["accuracy"] == pytest.approx(7 / 9)
    assert a["score_mean"] == pytest.approx(7 / 9)
    assert a["error_rate"] == pytest.approx(1 / 11)
    low, high = wilson(1, 11, 0.95)
    assert (a["error_rate_low"], a["error_rate_high"]) == (pytest.approx(low), pytest.approx(high))
    assert table.iloc[1]["error_rate"] == 0


def test_a_config_whose_every_request_failed_has_no_accuracy():
    table = accuracy_table(frame(rows("a", ["error"] * 5)), by=("config_id",))
    row = table.iloc[0]
    assert (row["n"], row["errors"]) == (0, 5)
    assert math.isnan(row["accuracy"]) and math.isnan(row["accuracy_low"]) and math.isnan(row["score_mean"])
    assert row["error_rate"] == 1.0
    assert row["error_rate_low"] == pytest.approx(wilson(5, 5, 0.95)[0])


def test_failed_requests_leave_paired_comparisons():
    data = frame(rows("a", [True, True, "error", False]), rows("b", [False, True, True, "error"]))
    result = paired_comparison(data, "a", "b")
    assert result.n_pairs == 2
    assert (result.a_only, result.b_only, result.both_correct) == (1, 0, 1)


@pytest.mark.parametrize(("k", "n", "confidence"), [(7, 10, 0.95), (0, 12, 0.9), (40, 40, 0.99), (1, 3, 0.95)])
def test_wilson_interval_matches_closed_form(k: int, n: int, confidence: float):
    data = frame(rows("a", [True] * k + [False] * (n - k)))
    table = accuracy_table(data, by=("config_id",), confidence=confidence)
    low, high = wilson(k, n, confidence)
    assert table.loc[0, "accuracy_low"] == pytest.approx(low, abs=1e-12)
    assert table.loc[0, "accuracy_high"] == pytest.approx(high, abs=1e-12)


def test_bootstrap_score_interval_is_reproducible_and_near_normal_theory():
    rng = np.random.default_rng(7)
    scores = rng.uniform(0, 1, size=1500)
    data = coerce_requests(pd.DataFrame({
        "config_id": "a", "dataset": "d", "item_id": [f"i{i}" for i in range(1500)], "repeat": 0,
        "status": "ok", "correct": scores > 0.5, "score": scores}))
    first = accuracy_table(data)
    assert first.equals(accuracy_table(data))
    half = norm.ppf(0.975) * scores.std(ddof=1) / math.sqrt(len(scores))
    assert first.loc[0, "score_low"] == pytest.approx(scores.mean() - half, abs=0.15 * half)
    assert first.loc[0, "score_high"] == pytest.approx(scores.mean() + half, abs=0.15 * half)


def test_by_config_pools_datasets():
    data = frame(rows("a", [True, True]), rows("a", [False, "error"], dataset="e"))
    table = accuracy_table(data, by=("config_id",))
    assert table[["n", "correct", "errors"]].values.tolist() == [[3, 2, 1]]


def discordant_frame(both: int, a_only: int, b_only: int, neither: int) -> pd.DataFrame:
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    failed = [i for i in range(len(b), len(b) + 3)]  # items b failed on leave the pairs
    return frame(rows("a", a + [True] * len(failed)), rows("b", b + ["error"] * len(failed)),
                 rows("a", [True, True], start=1000))  # last 2 unpaired


def test_runs_analysed_together_pair_answers_within_each_run():
    day_one, day_two = discordant_frame(5, 8, 2, 5), discordant_frame(3, 1, 4, 2)
    both = pd.concat([day_one.assign(run_id="day-1"), day_two.assign(run_id="day-2")], ignore_index=True)
    result = paired_comparison(both, "a", "b")
    assert (result.n_pairs, result.both_correct, result.a_only, result.b_only, result.both_wrong) == (30, 8, 9, 6, 7)
    with pytest.raises(ParameterError, match=r"duplicate \(run_id, dataset, item_id, repeat\) rows"):
        paired_comparison(pd.concat([both, both.iloc[:1]]), "a", "b")


def test_paired_comparison_exact_mcnemar_closed_form():
    result = paired_comparison(discordant_frame(5, 8, 2, 5), "a", "b")
    assert (result.n_pairs, result.both_correct, result.a_only, result.b_only, result.both_wrong) == (20, 5, 8, 2, 5)
    assert result.p_value == pytest.approx(2 * (1 + 10 + 45) / 2 ** 10)  # 2 * P(Binom(10, .5) <= 2)
    assert result.accuracy_diff == pytest.approx(0.3)
    assert result.score_diff == pytest.approx(0.3)
    assert result.score_diff_low < 0.3 < result.score_diff_high


def test_paired_comparison_without_discordant_pairs_has_p_one():
    result = paired_comparison(discordant_frame(4, 0, 0, 3), "a", "b")
    assert result.p_value == 1.0 and result.score_diff == 0.0


def test_pairwise_significance_applies_holm():
    data = frame(rows("a", [True] * 30), rows("b", [True] * 15 + [False] * 15),
                 rows("c", [True] * 27 + [False] * 3))
    table = pairwise_significance(data, alpha=0.05)
    assert table[["config_a", "config_b"]].values.tolist() == [["a", "b"], ["a", "c"], ["b", "c"]]
    p = table["p_value"].to_numpy()
    order = np.argsort(p)
    holm = np.minimum(1, np.maximum.accumulate(p[order] * np.arange(3, 0, -1)))
    expected = np.empty(3)
    expected[order] = holm
    assert table["p_adjusted"].to_numpy() == pytest.approx(expected)
    assert table["significant"].tolist() == [True, False, True]
    assert table["better"].tolist() == ["a", None, "c"]
    none = pairwise_significance(data, adjust="none")
    assert none["p_adjusted"].tolist() == none["p_value"].tolist()


def test_pairing_errors_are_explicit():
    data = frame(rows("a", [True, False]), rows("b", [True, True]))
    with pytest.raises(ParameterError, match=r"config_id 'z' has no rows; known: a, b"):
        paired_comparison(data, "a", "z")
    with pytest.raises(ParameterError, match=r"dataset: 'nope' has no rows in this run; known: d"):
        paired_comparison(data, "a", "b", dataset="nope")
    doubled = frame(rows("a", [True, False]), rows("a", [True]), rows("b", [True, True]))
    with pytest.raises(ParameterError, match=r"config_id 'a' has 1 duplicate \(dataset, item_id, repeat\)"):
        paired_comparison(doubled, "a", "b")


def test_rows_without_items_are_left_out_of_pairing():
    rows = [{"config_id": c, "dataset": "d", "item_id": None, "repeat": 0, "status": "error",
             "correct": None, "score": None} for c in ("a", "b") for _ in range(3)]
    table = pairwise_significance(coerce_requests(pd.DataFrame(rows)))
    assert table["n_pairs"].tolist() == [0]


def test_answer_groups_match_signatures_built_from_the_rows_as_text():
    # the reference: each config's graded (item, outcome) rows as text, as answer_groups once built them
    requests = synthetic_requests(20_000)
    requests.loc[requests.index[::7], "score"] = 0.5  # partial scores: outcomes beyond right and wrong
    configs = sorted(requests["config_id"].unique())
    outcomes = ["status", "correct", "score"]
    for twin in configs[1:3]:  # two configs answer every item as the first does (its rows, in key order)
        requests.loc[requests["config_id"] == twin, outcomes] = (
            requests.loc[requests["config_id"] == configs[0], outcomes].to_numpy())
    rows = graded_outcomes(requests, ["config_id", *PAIR_KEY]).df()
    rows = rows[rows["graded"]].sort_values([*PAIR_KEY], kind="mergesort")
    text = rows[[*PAIR_KEY, "is_correct", "graded_score"]].astype(str).agg("|".join, axis=1)
    signatures = text.groupby(rows["config_id"].astype(str), sort=True).agg("\n".join)
    first_member = {}
    want = [first_member.setdefault(signature, config) for config, signature in signatures.items()]
    groups = answer_groups(requests)
    number_of = dict(zip(groups["config_id"], groups["group"]))
    assert [number_of[config] for config in signatures.index] == [number_of[c] for c in want]
    assert groups["group"].nunique() == len(set(want)) < len(want)  # some configs do answer alike


@pytest.mark.parametrize("partial", ["one", "many"])
def test_pairwise_significance_pairs_the_items_an_inner_merge_pairs(partial):
    requests = synthetic_requests(20_000)
    some = requests.index[::7]
    # one partial score, or hundreds of them: each pair of outcomes is counted apart
    requests.loc[some, "score"] = 0.25 if partial == "one" else np.random.default_rng(2).random(len(some)).round(3)
    requests = requests.iloc[np.random.default_rng(1).permutation(len(requests))[:15_000]]  # items some lack
    pairs = pairwise_significance(requests)
    rows = graded_outcomes(requests, ["config_id", *PAIR_KEY]).df()
    rows = rows[rows["graded"]]
    for pair in pairs.sample(20, random_state=0).itertuples():
        # the reference: the two configs' graded rows merged on the item key, in the first config's order
        merged = rows[rows["config_id"] == pair.config_a].merge(
            rows[rows["config_id"] == pair.config_b], on=list(PAIR_KEY), suffixes=("_a", "_b"))
        diff = (merged["graded_score_a"] - merged["graded_score_b"]).to_numpy(dtype=float)
        a_only = int(((merged["is_correct_a"] == 1) & (merged["is_correct_b"] == 0)).sum())
        assert (pair.n_pairs, pair.a_only) == (len(merged), a_only)
        assert pair.score_diff == pytest.approx(diff.mean(), rel=1e-12, abs=1e-15)


def test_mean_intervals_from_duckdb_equal_the_bootstrap_of_each_groups_values():
    # three regimes: few rows of many values (scipy's bootstrap) and many rows of few values (counts), which
    # DuckDB returns as value counts and which give exactly the bootstrap of the values; many rows of many values,
    # which DuckDB returns as strata of equal width: the same interval up to the resampling's own noise
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"g": ["small"] * 3000 + ["few"] * 20000 + ["many"] * 50000,
                          "x": np.r_[rng.normal(size=3000), rng.integers(0, 5, 20000), rng.exponential(size=50000)]})
    frame.loc[[5, 3001], "x"] = np.nan
    both = mean_intervals(frame, ["g"], {"x": "x", "twice": "CASE WHEN g = 'few' THEN 2 * x END"})
    assert both[["g", "value"]].values.tolist() == [["few", "twice"], ["few", "x"], ["many", "x"], ["small", "x"]]
    got = both[both["value"] == "x"].set_index("g")
    twice = both[both["value"] == "twice"].set_index("g")
    assert (twice.loc["few", "low"], twice.loc["few", "high"]) == pytest.approx(
        (2 * got.loc["few", "low"], 2 * got.loc["few", "high"]), rel=1e-12)  # the same resamples, doubled
    for group, part in frame.groupby("g"):
        values = part["x"].dropna().to_numpy()
        assert got.loc[group, "n"] == len(values)
        low, high = bootstrap_mean_interval(values)
        if group == "many":
            width = high - low
            assert abs(got.loc[group, "low"] - low) < 0.05 * width and abs(got.loc[group, "high"] - high) < 0.05 * width
            half = norm.ppf(0.975) * values.std() / math.sqrt(len(values))  # the normal theory it converges to
            assert got.loc[group, "low"] == pytest.approx(values.mean() - half, abs=0.05 * width)
        else:
            assert (got.loc[group, "low"], got.loc[group, "high"]) == pytest.approx((low, high), rel=1e-9)
    pooled = mean_intervals(frame, [], {"x": "CASE WHEN g = 'few' THEN x END"})  # one group of all rows
    assert (pooled.at[0, "low"], pooled.at[0, "high"]) == (got.loc["few", "low"], got.loc["few", "high"])
    assert mean_intervals(frame, [], {"x": "CASE WHEN x > 100 THEN x END"}).empty


def test_the_batched_bootstrap_draws_the_same_resamples_as_one_call():
    values = np.random.default_rng(2).normal(size=4000)  # many levels, few values: scipy's bootstrap, in batches
    levels, counts = np.unique(values, return_counts=True)
    whole = stats.bootstrap((np.repeat(levels, counts),), np.mean, n_resamples=2000, method="percentile",
                            rng=np.random.default_rng(0)).confidence_interval
    assert bootstrap_counts_interval(levels, counts) == (whole.low, whole.high)
