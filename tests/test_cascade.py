import itertools
import math

import numpy as np
import pandas as pd
import pytest

from toolkit.analysis.cascade import (NO_SIGNAL, POOLED, Saving, answer_keys, best_accuracy_at_budget,
                                      cascade_frontier, choose_signal, choose_stages, cost_saving_at_best_single,
                                      evaluate_cascade, fit_cascade, item_matrix, oracle_point, oracle_router,
                                      overall_points, reported_models, request_costs, split_items,
                                      study_cascades)
from toolkit.errors import ParameterError
from toolkit.pricing import MachinePrice, load_price_table

CONFIGS = ["small", "medium", "large"]


def long_frame(seed, n_items=40, repeats=2):
    """Per-request rows of three configs; larger ones are dearer and more often right."""
    rng = np.random.default_rng(seed)
    rows = []
    for item, repeat in itertools.product(range(n_items), range(repeats)):
        for level, config in enumerate(CONFIGS):
            rows.append({
                "dataset": "d", "item_id": f"i{item}", "repeat": repeat, "config_id": config,
                "status": "ok", "correct": bool(rng.random() < 0.4 + 0.2 * level),
                "score": float(rng.random()) if rng.random() > 0.1 else np.nan,
                "logprob_mean": float(-rng.exponential()) if rng.random() > 0.1 else np.nan,
                "output_text": str(rng.choice(["A", "a ", "B", None])),
                "usd": float(10 ** level * rng.uniform(0.5, 1.5)),
            })
    return pd.DataFrame(rows)


def brute_force(frame, stages, thresholds, signal):
    """The cascade, one item at a time, straight from the definition."""
    by = {(r.item_id, r.repeat, r.config_id): r for r in frame.itertuples()}
    items = sorted({(r.item_id, r.repeat) for r in frame.itertuples()})
    correct = cost = 0.0
    escalated = [0] * (len(stages) - 1)
    for item in items:
        called = set()
        for k, stage in enumerate(stages):
            called.add(stage)
            if k == len(stages) - 1:
                break
            if signal == "agreement":
                called.add(stages[k + 1])
                a, b = (by[(*item, s)].output_text for s in (stage, stages[k + 1]))
                norm = [" ".join(x.lower().split()) if isinstance(x, str) else None for x in (a, b)]
                confidence = 1.0 if norm[0] is not None and norm[0] == norm[1] else 0.0
            else:
                value = getattr(by[(*item, stage)], signal)
                confidence = -math.inf if math.isnan(value) else value
            if confidence >= thresholds[k]:
                break
            escalated[k] += 1
        correct += by[(*item, stage)].correct
        cost += sum(by[(*item, s)].usd for s in called)
    n = len(items)
    return correct / n, cost / n, [e / n for e in escalated]


def as_text_none(frame):
    # "None" from rng.choice stands for a missing answer
    return frame.assign(output_text=frame["output_text"].where(frame["output_text"] != "None", None))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("signal", ["logprob_mean", "score", "agreement"])
def test_evaluate_cascade_matches_brute_force(seed, signal):
    frame = as_text_none(long_frame(seed))
    matrix = item_matrix(frame, CONFIGS)
    rng = np.random.default_rng(100 + seed)
    for stages in (["small", "large"], ["small", "medium", "large"], ["medium", "small"]):
        if signal == "agreement":
            thresholds = list(rng.choice([0.5, 1.0, np.inf], size=len(stages) - 1))
        elif signal == "score":
            thresholds = list(rng.uniform(0, 1, size=len(stages) - 1))
        else:
            thresholds = list(-rng.exponential(size=len(stages) - 1))
        result = evaluate_cascade(matrix, stages, thresholds, signal)
        accuracy, cost, escalated = brute_force(frame.assign(correct=frame["correct"].astype(float)),
                                                stages, thresholds, signal)
        assert result.accuracy == pytest.approx(accuracy)
        assert result.mean_cost == pytest.approx(cost)
        assert result.escalated == pytest.approx(tuple(escalated))
        assert result.n == 80 and result.n_correct == round(accuracy * 80)


def test_extreme_thresholds_are_the_single_configs():
    matrix = item_matrix(long_frame(1), CONFIGS)
    always = evaluate_cascade(matrix, ["small", "large"], [-np.inf], "logprob_mean")
    never = evaluate_cascade(matrix, ["small", "large"], [np.inf], "logprob_mean")
    small, large = (evaluate_cascade(matrix, [c], []) for c in ("small", "large"))
    assert (always.accuracy, always.mean_cost) == (small.accuracy, small.mean_cost)
    assert never.accuracy == large.accuracy
    assert never.mean_cost == pytest.approx(small.mean_cost + large.mean_cost)


@pytest.mark.parametrize("seed", range(5))
def test_oracle_matches_brute_force(seed):
    frame = long_frame(seed)
    matrix = item_matrix(frame, CONFIGS)
    got = oracle_router(matrix, CONFIGS)
    correct = cost = 0.0
    picks = []
    for _, rows in frame.groupby(["item_id", "repeat"]):
        rows = rows.set_index("config_id").loc[CONFIGS]
        right = rows[rows["correct"]]
        pick = (right if len(right) else rows)["usd"].idxmin()
        picks.append(pick)
        correct += rows.loc[pick, "correct"]
        cost += rows.loc[pick, "usd"]
    assert got.accuracy == pytest.approx(correct / len(picks))
    assert got.mean_cost == pytest.approx(cost / len(picks))
    assert got.share == pytest.approx({c: picks.count(c) / len(picks) for c in CONFIGS})
    best_single = max(evaluate_cascade(matrix, [c], []).accuracy for c in CONFIGS)
    assert got.accuracy >= best_single


def test_split_is_seeded_and_keeps_repeats_together():
    matrix = item_matrix(long_frame(2), CONFIGS)
    train, test = split_items(matrix, 0.5, seed=7)
    again_train, _ = split_items(matrix, 0.5, seed=7)
    other_train, _ = split_items(matrix, 0.5, seed=8)
    assert train.index.equals(again_train.index) and not train.index.equals(other_train.index)
    train_items = set(train.index.droplevel("repeat"))
    assert len(train_items) == 20 and not train_items & set(test.index.droplevel("repeat"))
    assert len(train) + len(test) == len(matrix)
    with pytest.raises(ParameterError, match="train_fraction must be in"):
        split_items(matrix, 1.0)


def test_fit_cascade_is_the_best_grid_point():
    matrix = item_matrix(long_frame(3), CONFIGS)
    stages, grid = ["small", "medium", "large"], [-np.inf, -1.0, -0.5, -0.2, np.inf]
    outcomes = {t: evaluate_cascade(matrix, stages, t) for t in itertools.product(grid, grid)}
    budget = np.median([r.mean_cost for r in outcomes.values()])
    chosen = fit_cascade(matrix, stages, "logprob_mean", grid, budget=budget)
    feasible = [r for r in outcomes.values() if r.mean_cost <= budget]
    assert outcomes[chosen].mean_cost <= budget
    assert outcomes[chosen].accuracy == max(r.accuracy for r in feasible)
    target = outcomes[chosen].accuracy
    cheapest = fit_cascade(matrix, stages, "logprob_mean", grid, target_accuracy=target)
    assert outcomes[cheapest].mean_cost == min(r.mean_cost for r in outcomes.values() if r.accuracy >= target)
    assert fit_cascade(matrix, stages, "logprob_mean", grid, budget=0.0) is None
    with pytest.raises(ParameterError, match="not both"):
        fit_cascade(matrix, stages, "logprob_mean", grid, budget=1.0, target_accuracy=0.5)


def test_item_matrix_counts_errors_wrong_and_drops_ungraded_items():
    frame = long_frame(4, n_items=3, repeats=1).astype({"correct": object})
    frame.loc[0, ["status", "correct"]] = ["error", None]  # failed request: wrong, still costs
    frame.loc[4, "correct"] = None  # i1 answered by medium but not graded: the item is dropped
    matrix = item_matrix(frame, CONFIGS)
    assert len(matrix) == 2 and matrix.loc[("d", "i0", 0), ("correct", "small")] == 0.0
    assert ("d", "i1", 0) not in matrix.index
    assert list(matrix["cost"].columns) == CONFIGS
    with pytest.raises(ParameterError, match="'usd' is missing for config.s. small"):
        item_matrix(frame.assign(usd=frame["usd"].where(frame["config_id"] != "small")), CONFIGS)
    with pytest.raises(ParameterError, match="more than one row"):
        item_matrix(pd.concat([frame, frame.head(1)]), CONFIGS)
    with pytest.raises(ParameterError, match="no rows for config.s. huge"):
        item_matrix(frame, ["huge"])


def test_frontier_is_held_out_and_deterministic():
    matrix = item_matrix(long_frame(5, n_items=60), CONFIGS)
    options = [["small", "large"], ["small", "medium", "large"]]
    frontier = cascade_frontier(matrix, options, "logprob_mean", seed=3)
    assert frontier.equals(cascade_frontier(matrix, options, "logprob_mean", seed=3))
    singles = frontier[frontier["kind"] == "single"]
    assert singles["stages"].tolist() == ["small", "large", "medium"]
    assert (frontier["n"] == 60).all()  # the 30 held-out items x 2 repeats
    assert (frontier["accuracy_low"] <= frontier["accuracy"]).all()
    assert (frontier["accuracy"] <= frontier["accuracy_high"]).all()
    _, test = split_items(matrix, 0.5, seed=3)
    row = frontier[frontier["kind"] == "cascade"].iloc[-1]
    direct = evaluate_cascade(test, row["stages"].split(" > "), row["thresholds"], "logprob_mean")
    assert (row["accuracy"], row["usd_per_query"]) == (direct.accuracy, direct.mean_cost)


def test_saving_and_budget_lookups():
    frontier = pd.DataFrame({
        "kind": ["single", "single", "cascade", "cascade", "cascade"],
        "stages": ["cheap", "best", "cheap > best", "cheap > best", "x > best"],
        "accuracy": [0.70, 0.85, 0.84, 0.86, 0.86],
        "usd_per_query": [0.001, 0.010, 0.002, 0.004, 0.003],
    })
    saving = cost_saving_at_best_single(frontier)
    assert saving == Saving("best", 0.85, 0.010, "x > best", 0.86, 0.003, pytest.approx(0.7))
    assert best_accuracy_at_budget(frontier, 0.0025)["stages"] == "cheap > best"
    assert best_accuracy_at_budget(frontier, 0.0025, kind="single")["stages"] == "cheap"
    assert best_accuracy_at_budget(frontier, 0.0001) is None
    assert cost_saving_at_best_single(frontier[frontier["accuracy"] < 0.86]) is None


# ---- the study of a whole run (notebook glue) -------------------------------------------------

VARIANT_SKILL = {"zero_shot": 0.5, "few_shot_1": 0.6, "few_shot_5": 0.8}


def variant_frame(seed=0, n_items=30, datasets=("d1", "d2")):
    """A run of one model: prompt variants x two max_tokens caps, plus a cached copy of one config."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset in datasets:
        for item in range(n_items):
            ease = rng.random()
            for cap, bonus in (("mt8", 0.0), ("mt16", 0.1)):
                for variant, skill in VARIANT_SKILL.items():
                    right = ease < skill + bonus
                    for cached in (False, True) if (cap, variant) == ("mt8", "zero_shot") else (False,):
                        rows.append({
                            "dataset": dataset, "item_id": f"{dataset}-{item}", "repeat": 0,
                            "config_id": f"m/{variant}/{cap}" + ("/cache" if cached else ""), "model": "m",
                            "prompt_variant": variant, "status": "ok", "correct": right, "cache_hit": cached,
                            # the first line is the answer; agreement must ignore case and what follows
                            "output_text": ("Paris\nbecause" if right else str(rng.choice(["LYON", "Nice"]))),
                            "usd": {"zero_shot": 1.0, "few_shot_1": 1.5, "few_shot_5": 6.0}[variant] * (
                                1.5 if cap == "mt16" else 1.0) * (0.0 if cached else 1.0),
                        })
    return pd.DataFrame(rows)


def test_request_costs_fill_unknown_prices_from_the_importers_report():
    frame = pd.DataFrame({"model": ["gemma3-270m-q4_k_m", "mystery"], "config_id": ["g", "x/mystery"],
                          "status": "ok", "e2e_s": [36.0, 1.0], "concurrency": 1, "prompt_tokens": [10, None],
                          "completion_tokens": [5, None], "cached_tokens": None, "batch": False, "cache_hit": False})
    prices = load_price_table(overrides={"mystery": MachinePrice(math.nan, "unknown")})
    usd = request_costs(frame, prices, {"reported_usd_per_query": {"x/mystery": 0.25}})
    assert usd.tolist() == pytest.approx([36.0 * 0.10 / 3600, 0.25])
    assert math.isnan(request_costs(frame, prices, None).iloc[1])


def test_answer_keys_and_signal_choice():
    frame = pd.DataFrame({"output_text": ["\n  Paris!\nsecond line", None, "Bogotá"], "logprob_mean": np.nan})
    keys = answer_keys(frame)
    assert (keys[0], keys[2], pd.isna(keys[1])) == ("paris", "bogota", True)
    assert choose_signal(frame) == ("agreement", None)
    assert choose_signal(frame.assign(logprob_mean=[-0.1, np.nan, np.nan])) == ("logprob_mean", None)
    assert choose_signal(frame.assign(output_text=None)) == (None, NO_SIGNAL)
    assert choose_signal(frame, "score") == ("score", None)
    with pytest.raises(ParameterError, match="signal must be auto or one of"):
        choose_signal(frame, "vibes")


def test_choose_stages_prefers_the_prompt_variant_cascade():
    frame = variant_frame()
    uncached = frame[~frame["config_id"].str.endswith("/cache")]
    matrix = item_matrix(uncached, sorted(uncached["config_id"].unique()))
    variants = dict(zip(frame["config_id"], frame["prompt_variant"]))
    # mt16's few_shot_5 is the more accurate one, so its variant set is chosen
    assert choose_stages(matrix, variants, "agreement") == [("m/zero_shot/mt16", "m/few_shot_1/mt16", "m/few_shot_5/mt16")]
    assert choose_stages(matrix, variants, "logprob_mean") == [
        ("m/zero_shot/mt16", "m/few_shot_5/mt16"), ("m/zero_shot/mt16", "m/few_shot_1/mt16", "m/few_shot_5/mt16")]


def test_choose_stages_without_variants_is_cheapest_pareto_middle_most_accurate():
    index = pd.RangeIndex(4)
    table = {("correct", c): pd.Series([a] * 4, index=index, dtype=float)
             for c, a in {"a": 0.25, "b": 0.5, "c": 0.75, "d": 0.5}.items()}
    table |= {("cost", c): pd.Series([k] * 4, index=index, dtype=float) for c, k in {"a": 1, "b": 2, "c": 9, "d": 3}.items()}
    matrix = pd.DataFrame(table)
    assert choose_stages(matrix, {}, "logprob_mean") == [("a", "c"), ("a", "b", "c")]
    assert choose_stages(matrix, {}, "agreement") == [("a", "b", "c")]
    two = matrix.drop(columns=[("correct", "b"), ("cost", "b"), ("correct", "d"), ("cost", "d")])
    assert choose_stages(two, {}, "agreement") == [("a", "c")]
    one_best = matrix.copy()
    one_best[("correct", "a")] = 1.0
    assert choose_stages(one_best, {}, "agreement") == []


def test_study_holds_out_items_and_agrees_with_the_building_blocks():
    frame = variant_frame(seed=1)
    study = study_cascades(frame, frame["usd"], seed=4)
    assert study.signal == "agreement" and study.overall == POOLED
    assert study.summary["dataset"].tolist() == ["d1", "d2", POOLED]
    assert study.notes["note"].str.contains("1 configuration.s. answering repeats from the response cache").all()
    pooled = study.frontier[study.frontier["dataset"] == POOLED]
    assert not pooled["stages"].str.contains("/cache").any()
    cascade = pooled[pooled["kind"] == "cascade"]
    assert set(cascade["label"]) == {"zero_shot > few_shot_1 > few_shot_5 (mt16)"}
    # the same split and matrix, rebuilt by hand
    configs = sorted(c for c in frame["config_id"].unique() if not c.endswith("/cache"))
    matrix = item_matrix(frame.assign(answer=answer_keys(frame)), configs, answer_col="answer")
    _, test = split_items(matrix, 0.5, seed=4)
    oracle = oracle_router(test, configs)
    row = study.summary.set_index("dataset").loc[POOLED]
    assert (row["oracle_accuracy"], row["oracle_usd_per_1k"]) == pytest.approx((oracle.accuracy, 1000 * oracle.mean_cost))
    singles = {c: evaluate_cascade(test, [c], []) for c in configs}
    best = max(singles, key=lambda c: (singles[c].accuracy, -singles[c].mean_cost))
    assert row["best_single_accuracy"] == singles[best].accuracy
    assert row["oracle_accuracy"] >= row["best_single_accuracy"]
    assert row["budget_usd_per_1k"] == pytest.approx(1000 * singles[best].mean_cost / 2)
    for _, r in cascade.iterrows():
        direct = evaluate_cascade(test, r["stages"].split(" > "), r["thresholds"], "agreement")
        assert (r["accuracy"], r["usd_per_query"]) == (direct.accuracy, direct.mean_cost)
    points = overall_points(study)
    assert set(points["kind"]) == {"single", "cascade"} and oracle_point(study)["kind"].tolist() == ["oracle"]
    assert (points["tag"] != "").sum() == (points["pareto"] | (points["kind"] == "cascade")).sum()
    only_pooled = study_cascades(frame, frame["usd"], seed=4, per_dataset=False)
    assert only_pooled.summary["dataset"].tolist() == [POOLED]
    assert only_pooled.frontier.equals(pooled.reset_index(drop=True))


def test_study_says_what_it_cannot_do():
    frame = variant_frame(datasets=("d1",))
    ungraded = study_cascades(frame.assign(correct=None), frame["usd"])
    assert ungraded.summary.empty and ungraded.overall is None
    assert ungraded.notes["note"].tolist() == ["no graded requests, so there is nothing to cascade"]
    assert overall_points(ungraded).empty and oracle_point(ungraded).empty
    silent = study_cascades(frame.assign(output_text=None), frame["usd"])
    assert silent.signal is None and NO_SIGNAL in silent.notes["note"].tolist()
    assert set(silent.frontier["kind"]) == {"single", "oracle"}
    assert silent.summary["best_cascade"].isna().all()
    unpriced = frame["usd"].where(frame["config_id"] != "m/few_shot_1/mt8")
    study = study_cascades(frame, unpriced, budget_usd_per_query=1.2)
    assert "left out for lack of a price: m/few_shot_1/mt8" in " ".join(study.notes["note"])
    assert study.summary["budget_usd_per_1k"].iloc[0] == pytest.approx(1200)
    assert study.summary["best_at_budget_usd_per_1k"].iloc[0] <= 1200
    wrong = study_cascades(frame, frame["usd"], stages=["m/zero_shot/mt8/cache", "m/few_shot_5/mt8"])
    assert wrong.summary.empty and "not usable here" in wrong.notes["note"].iloc[-1]


def test_request_costs_on_a_cost_basis_and_the_models_the_import_priced():
    from toolkit.pricing import choose_cost_basis, price_coverage

    frame = pd.DataFrame({"model": ["gemma3-270m-q4_k_m", "mystery"], "config_id": ["g", "x/mystery"],
                          "status": "ok", "e2e_s": [36.0, 1.0], "concurrency": 1, "prompt_tokens": [10, 20],
                          "completion_tokens": [5, 3000], "cached_tokens": None, "batch": False, "cache_hit": False,
                          "started_at": pd.NaT})
    manifest = {"reported_usd_per_query": {"x/mystery": 0.25}}
    assert reported_models(frame, manifest) == ["mystery"] and reported_models(frame, None) == []
    prices = load_price_table(overrides={"mystery": MachinePrice(math.nan, "unknown")})
    coverage = price_coverage(prices, frame["model"], reported=reported_models(frame, manifest))
    on_prices = choose_cost_basis(prices, coverage)
    assert on_prices.basis == "prices"
    assert request_costs(frame, on_prices, manifest).tolist() == pytest.approx([36.0 * 0.10 / 3600, 0.25])
    # one stated price for every model: the reported bill would mix two bases, so it is not used
    on_tokens = choose_cost_basis(prices, coverage, "output_tokens", 10.0)
    assert request_costs(frame, on_tokens, manifest).tolist() == pytest.approx([5e-5, 0.03])


def test_study_tells_a_missing_price_from_missing_token_counts():
    frame = variant_frame(datasets=("d1",))
    frame["model"] = frame["config_id"].str.split("/").str[1]  # one model per prompt variant
    frame["prompt_tokens"], frame["completion_tokens"] = 10.0, 5.0
    no_price = frame["prompt_variant"] == "few_shot_1"
    no_counts = (frame["prompt_variant"] == "zero_shot") & (frame["item_id"] == "d1-3") & ~frame["cache_hit"]
    frame.loc[no_counts, "completion_tokens"] = np.nan
    usd = frame["usd"].where(~no_price & ~no_counts)
    coverage = pd.DataFrame({"model": ["zero_shot", "few_shot_1", "few_shot_5"], "priced": [True, False, True]})
    notes = " ".join(study_cascades(frame, usd, coverage=coverage).notes["note"])
    assert "2 configuration(s) left out for lack of a price: m/few_shot_1/mt16, m/few_shot_1/mt8" in notes
    assert ("2 configuration(s) left out because some of their requests lack the token counts (or, self-hosted, "
            "the timings) their price applies to: m/zero_shot/mt16, m/zero_shot/mt8") in notes
    # without coverage every missing cost is put down to a missing price
    assert "4 configuration(s) left out for lack of a price" in " ".join(study_cascades(frame, usd).notes["note"])


def test_pooling_keeps_the_configs_in_every_dataset_and_else_the_largest_dataset_stands_for_the_run():
    frame = variant_frame(datasets=("d1", "d2"))
    only_d2 = frame["config_id"].isin(["m/few_shot_1/mt16"]) & (frame["dataset"] == "d1")
    partial = frame[~only_d2]
    study = study_cascades(partial, partial["usd"], seed=1)
    assert study.overall == POOLED
    pooled = study.summary.set_index("dataset")
    assert pooled.loc[POOLED, "configs"] == pooled.loc["d1", "configs"] == pooled.loc["d2", "configs"] - 1
    assert ("pooled over datasets: only the 5 configuration(s) that answered every dataset; 1 answered only "
            "some: m/few_shot_1/mt16") in study.notes["note"].tolist()
    # no config in both datasets: each is studied alone, and the one with more held-out rows describes the run
    apart = frame.assign(config_id=frame["dataset"] + "/" + frame["config_id"])
    apart = apart[(apart["dataset"] == "d1") | (apart["item_id"] < "d2-20")]
    split = study_cascades(apart, apart["usd"], seed=1)
    assert POOLED not in split.summary["dataset"].tolist() and split.overall == "d1"
    assert "no configuration answered every dataset, so the datasets cannot be pooled" in " ".join(split.notes["note"])
    assert not overall_points(split).empty


def test_a_config_asked_on_a_few_items_does_not_shrink_the_study():
    frame = variant_frame(seed=1)
    full = study_cascades(frame, frame["usd"], seed=4)
    first = frame["config_id"].iloc[0]
    few_items = sorted(frame["item_id"].unique())[:3]
    sweep = frame[(frame["config_id"] == first) & frame["item_id"].isin(few_items)].assign(config_id=first + "/c1")
    with_sweep = pd.concat([frame, sweep], ignore_index=True)
    study = study_cascades(with_sweep, with_sweep["usd"], seed=4)
    assert study.summary["n"].tolist() == full.summary["n"].tolist()  # the same held-out items
    assert study.notes["note"].str.contains(f"asked on fewer are left out: {first}/c1").any()
