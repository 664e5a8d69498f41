import numpy as np
import pandas as pd
import pytest

from toolkit.analysis.cost_model import (CostModel, accuracy_to_beat_human, break_even_accuracy, expected_value,
                                         human_expected_value, sensitivity, value_table)
from toolkit.errors import ParameterError

SUMMARY = pd.DataFrame({
    "config_id": ["cheap", "good", "unsure"],
    "accuracy": [0.60, 0.92, 0.80],
    "accuracy_low": [0.55, 0.90, 0.62],
    "accuracy_high": [0.65, 0.94, 0.88],
    "usd_per_1k": [0.5, 20.0, 2.0],
})


@pytest.mark.parametrize("seed", range(5))
def test_break_even_is_closed_form_and_has_zero_ev(seed: int):
    rng = np.random.default_rng(seed)
    v, e, c = rng.uniform(0.01, 10), rng.uniform(0, 10), rng.uniform(0, 0.5)
    a = break_even_accuracy(v, e, c)
    assert a == pytest.approx((e + c) / (v + e))
    assert expected_value(a, v, e, c) == pytest.approx(0.0, abs=1e-12)
    assert expected_value(a + 0.01, v, e, c) > 0 > expected_value(a - 0.01, v, e, c)


def test_expected_value_formula():
    assert expected_value(0.9, 2.0, 5.0, 0.01) == pytest.approx(0.9 * 2 - 0.1 * 5 - 0.01)


def test_accuracy_to_beat_human_equalizes_ev():
    v, e, c, h, hc = 3.0, 10.0, 0.002, 0.95, 1.50
    a = accuracy_to_beat_human(v, e, c, h, hc)
    assert a == pytest.approx(h + (c - hc) / (v + e))
    assert expected_value(a, v, e, c) == pytest.approx(human_expected_value(v, e, h, hc))


def test_value_table_carries_the_interval_through():
    model = CostModel(value_usd=1.0, error_cost_usd=2.0, human_accuracy=0.95, human_cost_usd=0.5,
                      monthly_volume=10_000)
    table = value_table(SUMMARY, model)
    assert (table["ev_low_usd"] <= table["ev_usd"]).all() and (table["ev_usd"] <= table["ev_high_usd"]).all()
    c = SUMMARY["usd_per_1k"] / 1000
    assert table["ev_low_usd"].tolist() == pytest.approx((SUMMARY["accuracy_low"] * 3 - 2 - c).tolist())
    assert table["break_even_accuracy"].tolist() == pytest.approx(((2 + c) / 3).tolist())
    assert table["monthly_ev_usd"].tolist() == pytest.approx((table["ev_usd"] * 10_000).tolist())
    # break-even is ~0.667: cheap is below it, good above, unsure straddles it
    assert table["break_even_verdict"].tolist() == ["below", "above", "uncertain"]
    assert table["beats_break_even"].tolist() == [False, True, True]
    assert table["human_ev_usd"].iloc[0] == pytest.approx(0.95 - 0.05 * 2 - 0.5)
    # the human needs 0.95 and costs 0.5 USD: a model wins from h + (c - 0.5)/3
    assert table["accuracy_to_beat_human"].tolist() == pytest.approx((0.95 + (c - 0.5) / 3).tolist())
    assert table["beats_human"].tolist() == [False, True, True]
    assert table["human_verdict"].tolist() == ["below", "above", "uncertain"]


def test_value_table_widens_with_the_accuracy_interval():
    model = CostModel(1.0, 4.0)
    narrow = value_table(SUMMARY, model)
    wide = value_table(SUMMARY.assign(accuracy_low=SUMMARY["accuracy_low"] - 0.05,
                                      accuracy_high=SUMMARY["accuracy_high"] + 0.05), model)
    assert ((wide["ev_high_usd"] - wide["ev_low_usd"]) > (narrow["ev_high_usd"] - narrow["ev_low_usd"])).all()


def test_value_table_without_human_or_volume_or_interval():
    table = value_table(SUMMARY[["config_id", "accuracy", "usd_per_1k"]], CostModel(1.0, 1.0))
    assert table["monthly_ev_usd"].isna().all() and table["ev_low_usd"].isna().all()
    assert table["human_ev_usd"].isna().all() and table["beats_human"].isna().all()
    assert table["break_even_verdict"].isna().all()


def test_sensitivity_grid_follows_the_closed_form():
    ratios = [0.0, 1.0, 9.0]
    grid = sensitivity(SUMMARY, CostModel(2.0, 1.0), ratios)
    assert len(grid) == len(SUMMARY) * len(ratios)
    good = grid[grid["config_id"] == "good"]
    c = 0.02
    assert good["error_cost_usd"].tolist() == [0.0, 2.0, 18.0]
    assert good["break_even_accuracy"].tolist() == pytest.approx([(r * 2 + c) / (2 + 2 * r) for r in ratios])
    assert good["ev_usd"].is_monotonic_decreasing
    assert len(sensitivity(SUMMARY, CostModel(2.0, 1.0))) == 31 * len(SUMMARY)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"value_usd": 0.0, "error_cost_usd": 0.0}, "must be >= 0 with a positive sum"),
    ({"value_usd": -1.0, "error_cost_usd": 2.0}, "must be >= 0 with a positive sum"),
    ({"value_usd": 1.0, "error_cost_usd": 1.0, "human_accuracy": 0.9}, "give both human_accuracy and"),
    ({"value_usd": 1.0, "error_cost_usd": 1.0, "human_accuracy": 1.5, "human_cost_usd": 1.0}, r"in \[0, 1\]"),
])
def test_cost_model_rejects_impossible_values(kwargs: dict, message: str):
    with pytest.raises(ParameterError, match=message):
        CostModel(**kwargs)


def test_missing_columns_are_named():
    with pytest.raises(ParameterError, match="summary is missing column\\(s\\) usd_per_1k"):
        value_table(SUMMARY.drop(columns="usd_per_1k"), CostModel(1.0, 1.0))
