import numpy as np
import pandas as pd
import pytest

from toolkit.analysis.frontier import best_under, config_summary, pareto_front
from toolkit.errors import ParameterError
from toolkit.pricing import Price, load_price_table
from toolkit.schema import coerce_requests


def brute_dominates(b: pd.Series, a: pd.Series) -> bool:
    """b dominates a: accuracy >= and both costs <=, one strictly; NaN is worst."""
    def key(row: pd.Series) -> tuple:
        def worst(x, sign):
            return -np.inf if np.isnan(x) else sign * x
        return (worst(row["accuracy"], 1), worst(row["p50_e2e_s"], -1), worst(row["usd_per_1k"], -1))
    kb, ka = key(b), key(a)
    return all(x >= y for x, y in zip(kb, ka)) and any(x > y for x, y in zip(kb, ka))


def random_summary(seed: int, n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    summary = pd.DataFrame({
        "config_id": [f"c{i}" for i in range(n)],
        # coarse grids make ties on single objectives common
        "accuracy": rng.integers(0, 6, n) / 5,
        "p50_e2e_s": rng.integers(1, 6, n).astype(float),
        "usd_per_1k": rng.integers(1, 6, n).astype(float),
    })
    summary.loc[n - 1, ["accuracy", "p50_e2e_s", "usd_per_1k"]] = summary.loc[0, ["accuracy", "p50_e2e_s",
                                                                                   "usd_per_1k"]].to_numpy()
    summary.loc[n - 2, "p50_e2e_s"] = np.nan
    return summary


@pytest.mark.parametrize("seed", range(6))
def test_pareto_set_equals_brute_force(seed: int):
    summary = random_summary(seed)
    front = pareto_front(summary)
    rows = [summary.iloc[i] for i in range(len(summary))]
    expected = [not any(brute_dominates(b, a) for b in rows) for a in rows]
    assert front["pareto"].tolist() == expected
    # exact duplicates share a fate: neither dominates the other
    assert front["pareto"].iloc[0] == front["pareto"].iloc[-1]
    by_id = summary.set_index("config_id")
    for _, row in front.iterrows():
        if row["pareto"]:
            assert row["dominated_by"] is None
        else:
            dominator = by_id.loc[row["dominated_by"]]
            assert brute_dominates(dominator, by_id.loc[row["config_id"]])
            assert bool(front.set_index("config_id").loc[row["dominated_by"], "pareto"])


def test_dominated_by_prefers_the_largest_margin():
    summary = pd.DataFrame({"config_id": ["slightly", "much", "victim", "twin"], "accuracy": [0.51, 0.9, 0.5, 0.9],
                            "p50_e2e_s": [1.0, 1.0, 1.0, 1.0], "usd_per_1k": [1.0, 1.0, 1.0, 1.0]})
    front = pareto_front(summary)
    assert front["pareto"].tolist() == [False, True, False, True]  # identical twins both stay
    assert front["dominated_by"].tolist() == [None if p else "much" for p in front["pareto"]]


def test_pareto_front_names_missing_columns():
    with pytest.raises(ParameterError, match="missing column\\(s\\) p50_e2e_s"):
        pareto_front(pd.DataFrame({"config_id": ["a"], "accuracy": [1.0], "usd_per_1k": [1.0]}))


def test_best_under_is_cheapest_that_meets_both_with_accuracy_tie_break():
    summary = pd.DataFrame({
        "config_id": ["too_slow", "too_weak", "ok_cheap_low", "ok_cheap_high", "ok_dear"],
        "accuracy": [0.99, 0.5, 0.85, 0.9, 0.95],
        "accuracy_low": [0.95, 0.4, 0.70, 0.85, 0.9],
        "p95_e2e_s": [9.0, 0.5, 1.0, 1.9, 1.0],
        "usd_per_1k": [0.1, 0.1, 1.0, 1.0, 3.0],
    })
    assert best_under(summary, 0.8, 2.0)["config_id"] == "ok_cheap_high"
    assert best_under(summary, 0.8, 1.5)["config_id"] == "ok_cheap_low"
    assert best_under(summary, 0.88, 2.0, accuracy_col="accuracy_low")["config_id"] == "ok_dear"
    assert best_under(summary, 0.999, 100.0) is None


def test_config_summary_joins_accuracy_latency_and_cost():
    rng = np.random.default_rng(3)
    rows = []
    for config, model in (("local", "gemma3-270m-q4_k_m"), ("api", "acme-1")):
        for i in range(50):
            rows.append({"config_id": config, "model": model, "prompt_variant": "plain", "max_tokens": 64,
                         "temperature": 0.0, "concurrency": 2, "dataset": "d", "item_id": f"i{i}", "repeat": 0,
                         "status": "error" if i == 0 else "ok", "correct": None if i == 0 else bool(i % 4),
                         "score": None if i == 0 else float(i % 4 > 0), "e2e_s": rng.uniform(0.5, 3.0),
                         "ttft_s": rng.uniform(0.1, 0.5), "prompt_tokens": None if i == 0 else 100,
                         "cached_tokens": None, "completion_tokens": None if i == 0 else 10,
                         "batch": False, "cache_hit": False})
    frame = coerce_requests(pd.DataFrame(rows))
    prices = load_price_table(overrides={"acme-1": Price("acme-1", 1.0, None, 2.0, "test")},
                              use_genai_prices=False)
    summary = config_summary(frame, prices, quantiles=(0.5, 0.95)).set_index("config_id")
    assert summary.index.tolist() == ["api", "local"]
    local = frame[frame["config_id"] == "local"]
    ok_local = local[local["status"] == "ok"]
    assert summary.loc["local", "p95_e2e_s"] == pytest.approx(np.quantile(ok_local["e2e_s"], 0.95))
    assert summary.loc["local", "p50_ttft_s"] == pytest.approx(np.quantile(ok_local["ttft_s"], 0.5))
    # no phase recorded: each request pays its own e2e, whatever its nominal concurrency (pricing's fallback)
    assert summary.loc["local", "usd_per_1k"] == pytest.approx(local["e2e_s"].mean() * 0.10 / 3600 * 1000)
    # the error row has no tokens and costs nothing, but still counts in the mean per request
    assert summary.loc["api", "usd_per_1k"] == pytest.approx(49 * (100 * 1.0 + 10 * 2.0) / 1e6 / 50 * 1000)
    assert (summary.loc["api", "n"], summary.loc["api", "errors"], summary.loc["api", "correct"]) == (49, 1, 37)
    assert summary.loc["api", "error_rate"] == pytest.approx(1 / 50)
    assert summary.loc["api", "model"] == "acme-1" and summary.loc["api", "concurrency"] == 2
    assert summary.loc["api", "accuracy_low"] < summary.loc["api", "accuracy"] < summary.loc["api", "accuracy_high"]
    assert summary.loc["api", "mean_completion_tokens"] == 10.0
    front = pareto_front(summary.reset_index(), minimize=("p95_e2e_s", "usd_per_1k"))
    assert front["pareto"].any()


@pytest.mark.parametrize("with_machine_time", [True, False])
def test_cost_summary_of_the_answered_rows_is_config_summary_of_every_column(tmp_path, with_machine_time):
    from toolkit import pricing, store
    from toolkit.analysis.frontier import cost_summary
    from toolkit.analysis.rows import model_answered
    from toolkit.testing.synthetic import synthetic_requests

    requests = synthetic_requests(20_000)
    requests.loc[requests.index[::11], "batch"] = True  # batch-discounted rows too
    requests.loc[requests.index[::13], "phase"] = 1  # and self-hosted rows priced by phase
    store.save_run(tmp_path / "run", requests, {"run_id": "r"})
    frame = store.load_run(tmp_path / "run")
    if not with_machine_time:
        frame = frame.drop(columns=["machine_s", "machine_rule"])
    all_hits = frame["config_id"] == frame["config_id"].iloc[0]
    frame.loc[all_hits, "cache_hit"] = True  # a config answered entirely from the cache
    assert frame["cache_hit"].any() and frame["batch"].any()
    prices = pricing.price_table_for(frame)
    summary = cost_summary(frame, prices)
    # the reference: config_summary of the answered rows with every column
    own = config_summary(model_answered(frame), prices, quantiles=[0.5, 0.95])
    measured = [c for c in summary.columns if c.endswith(("_e2e_s", "_ttft_s"))
                or c in ("mean_prompt_tokens", "mean_completion_tokens", "usd_total", "usd_per_1k")]
    expected = summary[["config_id"]].merge(own[["config_id", *measured]], on="config_id", how="left")
    pd.testing.assert_frame_equal(summary[["config_id", *measured]], expected)
    cached_config = summary[summary["config_id"] == frame["config_id"].iloc[0]]
    assert cached_config[measured].isna().all(axis=None)
    assert cached_config["n"].item() + cached_config["errors"].item() == all_hits.sum()  # accuracy counts them
    assert cached_config["hit_rate"].item() == 1.0
