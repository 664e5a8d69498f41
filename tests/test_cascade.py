import itertools
import math

import numpy as np
import pandas as pd
import pytest

from toolkit.analysis import cascade
from toolkit.analysis.cascade import (Saving, best_accuracy_at_budget, cascade_frontier, cost_saving_at_best_single,
                                      evaluate_cascade, fit_cascade, item_matrix, oracle_router, split_items)
from toolkit.errors import ParameterError

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


@pytest.mark.parametrize("signal", ["logprob_mean", "agreement"])
def test_a_grid_simulated_in_chunks_is_each_combination_simulated_alone(monkeypatch, signal):
    matrix = item_matrix(as_text_none(long_frame(6)), CONFIGS)
    monkeypatch.setattr(cascade, "GRID_CELLS", 3 * len(matrix))  # three combinations a chunk, the last one short
    combos, accuracy, cost = cascade._grid_outcomes(matrix, CONFIGS, signal, None)
    assert len(combos) % 3 and len(combos) > 3
    alone = [evaluate_cascade(matrix, CONFIGS, combo, signal) for combo in combos]
    assert accuracy.tolist() == [r.accuracy for r in alone] and cost.tolist() == [r.mean_cost for r in alone]


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


@pytest.mark.parametrize("signal", ["logprob_mean", "score", "agreement", None])
def test_cascade_arrays_are_the_matrix_fields_of_the_stages(signal):
    from toolkit import pricing
    from toolkit.analysis import cascade
    from toolkit.testing.synthetic import synthetic_requests

    requests = synthetic_requests(5_000)
    requests["usd"] = pricing.price_requests(requests, pricing.price_table_for(requests))
    configs = sorted(requests["config_id"].unique())
    matrix = cascade.item_matrix(requests, configs)
    stages = [configs[5], configs[0], configs[17]]
    correct, cost, confidence = cascade._arrays(matrix, stages, signal)
    # the reference: each field's level of the column index, then the stages' columns
    np.testing.assert_array_equal(correct, matrix["correct"][stages].to_numpy(dtype=float))
    np.testing.assert_array_equal(cost, matrix["cost"][stages].to_numpy(dtype=float))
    if signal in ("logprob_mean", "score"):
        values = matrix[signal][stages].to_numpy(dtype=float)
        np.testing.assert_array_equal(confidence, np.where(np.isnan(values), -np.inf, values))
    elif signal == "agreement":
        answers = matrix["answer"][stages].map(lambda a: " ".join(a.casefold().split()) if isinstance(a, str)
                                               else None).to_numpy(dtype=object)
        same = (answers[:, :-1] == answers[:, 1:]) & (answers[:, :-1] != None)  # noqa: E711
        np.testing.assert_array_equal(confidence[:, :-1], np.where(same, 1.0, 0.0))
    with pytest.raises(ParameterError, match="not in the item matrix: nope"):
        cascade._arrays(matrix, [configs[0], "nope"], signal)
