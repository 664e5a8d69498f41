import math

import numpy as np
import pandas as pd
import pytest

from toolkit.analysis.cascade import evaluate_cascade, item_matrix, oracle_router, split_items
from toolkit.analysis.cascade_study import (NO_SIGNAL, POOLED, VARIANT_PEERS, answer_keys, choose_signal,
                                            choose_stages, oracle_point, overall_points, reported_models,
                                            request_costs, study_cascades, summary_table)
from toolkit.errors import ParameterError
from toolkit.pricing import MachinePrice, load_price_table

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
                            "max_tokens": int(cap[2:]), "temperature": 0.0, "concurrency": 1,
                            "endpoint_name": "local", "stop_sequences": True, "logprobs": False,
                            "response_cache": cached, "arrival_rate_per_s": np.nan,
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
    assert isinstance(keys.dtype, pd.CategoricalDtype)  # a study copies a million of them many times
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
    settings = frame.drop_duplicates("config_id").set_index("config_id")
    # mt16's few_shot_5 is the more accurate one, so its variant set (equal max_tokens) is chosen
    assert choose_stages(matrix, settings, "agreement") == [("m/zero_shot/mt16", "m/few_shot_1/mt16", "m/few_shot_5/mt16")]
    assert choose_stages(matrix, settings, "logprob_mean") == [
        ("m/zero_shot/mt16", "m/few_shot_5/mt16"), ("m/zero_shot/mt16", "m/few_shot_1/mt16", "m/few_shot_5/mt16")]
    # the config id says nothing: renamed configs group by their setting columns all the same
    renamed = {c: f"config-{i}" for i, c in enumerate(sorted(settings.index))}
    chosen = choose_stages(matrix.rename(columns=renamed), settings.rename(index=renamed), "agreement")
    assert chosen == [tuple(renamed[c] for c in ("m/zero_shot/mt16", "m/few_shot_1/mt16", "m/few_shot_5/mt16"))]
    with pytest.raises(ParameterError, match="settings lack column.s. max_tokens"):
        choose_stages(matrix, settings.drop(columns="max_tokens"), "agreement")


def abcd_matrix():
    """Four configs: a cheap and weak, c dear and strong, b and d between (b the cheaper, as accurate)."""
    index = pd.RangeIndex(4)
    table = {("correct", c): pd.Series([a] * 4, index=index, dtype=float)
             for c, a in {"a": 0.25, "b": 0.5, "c": 0.75, "d": 0.5}.items()}
    table |= {("cost", c): pd.Series([k] * 4, index=index, dtype=float) for c, k in {"a": 1, "b": 2, "c": 9, "d": 3}.items()}
    return pd.DataFrame(table)


def settings_of(variants, **columns):
    """A settings table (config_id -> prompt_variant and the other settings, null unless given)."""
    table = pd.DataFrame({"prompt_variant": pd.Series(variants, dtype="string")})
    for column in VARIANT_PEERS:
        table[column] = pd.Series(columns.get(column, {}), index=table.index, dtype=object)
    return table


def test_choose_stages_without_variants_is_cheapest_pareto_middle_most_accurate():
    matrix, none = abcd_matrix(), settings_of({})
    assert choose_stages(matrix, none, "logprob_mean") == [("a", "c"), ("a", "b", "c")]
    assert choose_stages(matrix, none, "agreement") == [("a", "b", "c")]
    two = matrix.drop(columns=[("correct", "b"), ("cost", "b"), ("correct", "d"), ("cost", "d")])
    assert choose_stages(two, none, "agreement") == [("a", "c")]
    one_best = matrix.copy()
    one_best[("correct", "a")] = 1.0
    assert choose_stages(one_best, none, "agreement") == []


def test_choose_stages_groups_variants_by_every_other_setting_null_included():
    matrix = abcd_matrix()
    # an import's configs: only model and prompt variant known, the other settings null (a value all share)
    variants = {"a": "zero_shot", "d": "few_shot_1", "c": "few_shot_5", "b": None}
    imported = settings_of(variants, model={c: "m" for c in variants})
    assert choose_stages(matrix, imported, "logprob_mean") == [("a", "c"), ("a", "d", "c")]
    # d sent at another concurrency: not a prompt variant of a and c, so no variant set
    other = settings_of(variants, model={c: "m" for c in variants}, concurrency={"d": 4})
    assert choose_stages(matrix, other, "logprob_mean") == [("a", "c"), ("a", "b", "c")]
    # two zero_shot configs alike in every setting: which belongs to the set is unknown, so none is formed
    twice = settings_of(variants | {"b": "zero_shot"}, model={c: "m" for c in variants})
    assert choose_stages(matrix, twice, "logprob_mean") == [("a", "c"), ("a", "b", "c")]


def test_study_holds_out_items_and_agrees_with_the_building_blocks():
    frame = variant_frame(seed=1)
    labels = {"m/zero_shot/mt16": "zero", "m/few_shot_1/mt16": "one", "m/few_shot_5/mt16": "five"}
    study = study_cascades(frame, frame["usd"], seed=4, labels=labels)
    assert study.signal == "agreement" and study.overall == POOLED
    assert list(study.summaries) == ["d1", "d2", POOLED]
    assert study.notes["note"].str.contains("1 configuration.s. answering repeats from the response cache").all()
    pooled = study.frontier[study.frontier["dataset"] == POOLED]
    configs = sorted(c for c in frame["config_id"].unique() if not c.endswith("/cache"))
    assert not pooled["stages"].str.contains("/cache").any()
    cascade = pooled[pooled["kind"] == "cascade"]
    assert set(cascade["label"]) == {"zero > one > five"}
    single_rows = pooled[pooled["kind"] == "single"]
    # a config the labels leave out goes by its id
    assert dict(zip(single_rows["stages"], single_rows["label"])) == {c: labels.get(c, c) for c in configs}
    # the same split and matrix, rebuilt by hand
    matrix = item_matrix(frame.assign(answer=answer_keys(frame)), configs, answer_col="answer")
    _, test = split_items(matrix, 0.5, seed=4)
    oracle = oracle_router(test, configs)
    summary = study.summaries[POOLED]
    assert summary.n == len(test) and summary.configs == len(configs) and summary.signal == "agreement"
    assert (summary.oracle.accuracy, summary.oracle.usd_per_1k) == pytest.approx((oracle.accuracy,
                                                                                  1000 * oracle.mean_cost))
    singles = {c: evaluate_cascade(test, [c], []) for c in configs}
    best = max(singles, key=lambda c: (singles[c].accuracy, -singles[c].mean_cost))
    assert (summary.best_single.label, summary.best_single.accuracy) == (labels.get(best, best), singles[best].accuracy)
    assert summary.best_single.accuracy_low <= summary.best_single.accuracy <= summary.best_single.accuracy_high
    assert summary.oracle.accuracy >= summary.best_single.accuracy
    assert summary.budget_usd_per_1k == pytest.approx(1000 * singles[best].mean_cost / 2)
    best_cascade = cascade.sort_values(["accuracy", "usd_per_query"], ascending=[False, True]).iloc[0]
    assert (summary.best_cascade.accuracy, summary.best_cascade.usd_per_1k) == (best_cascade["accuracy"],
                                                                                best_cascade["usd_per_1k"])
    # the cheapest cascade as accurate as the best single config pays for all three stages: dearer
    assert summary.matching_cascade.accuracy >= summary.best_single.accuracy
    assert summary.saving == pytest.approx(1 - summary.matching_cascade.usd_per_1k / summary.best_single.usd_per_1k)
    assert summary.saving < 0
    table = summary_table(study)
    assert table["dataset"].tolist() == ["d1", "d2", POOLED] and "oracle" not in table
    assert table.columns[-6:].tolist() == ["best_at_budget", "best_at_budget_kind", "best_at_budget_accuracy",
                                           "best_at_budget_low", "best_at_budget_high", "best_at_budget_usd_per_1k"]
    assert table.set_index("dataset").loc[POOLED, "oracle_accuracy"] == summary.oracle.accuracy
    assert table.set_index("dataset").loc[POOLED, "best_cascade"] == "zero > one > five"
    for _, r in cascade.iterrows():
        direct = evaluate_cascade(test, r["stages"].split(" > "), r["thresholds"], "agreement")
        assert (r["accuracy"], r["usd_per_query"]) == (direct.accuracy, direct.mean_cost)
    points = overall_points(study)
    assert set(points["kind"]) == {"single", "cascade"} and oracle_point(study)["kind"].tolist() == ["oracle"]
    assert (points["tag"] != "").sum() == (points["pareto"] | (points["kind"] == "cascade")).sum()
    only_pooled = study_cascades(frame, frame["usd"], seed=4, per_dataset=False, labels=labels)
    assert list(only_pooled.summaries) == [POOLED]
    assert only_pooled.frontier.equals(pooled.reset_index(drop=True))


def test_study_says_what_it_cannot_do():
    frame = variant_frame(datasets=("d1",))
    ungraded = study_cascades(frame.assign(correct=None), frame["usd"])
    assert ungraded.summaries == {} and ungraded.overall is None and summary_table(ungraded).empty
    assert ungraded.notes["note"].tolist() == ["no graded requests, so there is nothing to cascade"]
    assert overall_points(ungraded).empty and oracle_point(ungraded).empty
    silent = study_cascades(frame.assign(output_text=None), frame["usd"])
    assert silent.signal is None and NO_SIGNAL in silent.notes["note"].tolist()
    assert set(silent.frontier["kind"]) == {"single", "oracle"}
    assert all(s.best_cascade is None and s.matching_cascade is None and s.saving is None and s.signal is None
               for s in silent.summaries.values())
    assert summary_table(silent)["best_cascade_accuracy"].isna().all()
    unpriced = frame["usd"].where(frame["config_id"] != "m/few_shot_1/mt8")
    study = study_cascades(frame, unpriced, budget_usd_per_query=1.2)
    assert "left out for lack of a price: m/few_shot_1/mt8" in " ".join(study.notes["note"])
    summary = study.summaries["d1"]
    assert summary.budget_usd_per_1k == pytest.approx(1200) and summary.best_at_budget.usd_per_1k <= 1200
    wrong = study_cascades(frame, frame["usd"], stages=["m/zero_shot/mt8/cache", "m/few_shot_5/mt8"])
    assert wrong.summaries == {} and "not usable here" in wrong.notes["note"].iloc[-1]


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
    configs = {name: s.configs for name, s in study.summaries.items()}
    assert configs[POOLED] == configs["d1"] == configs["d2"] - 1
    assert ("pooled over datasets: only the 5 configuration(s) that answered every dataset; 1 answered only "
            "some: m/few_shot_1/mt16") in study.notes["note"].tolist()
    # no config in both datasets: each is studied alone, and the one with more held-out rows describes the run
    apart = frame.assign(config_id=frame["dataset"] + "/" + frame["config_id"])
    apart = apart[(apart["dataset"] == "d1") | (apart["item_id"] < "d2-20")]
    split = study_cascades(apart, apart["usd"], seed=1)
    assert POOLED not in split.summaries and split.overall == "d1"
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
    assert [s.n for s in study.summaries.values()] == [s.n for s in full.summaries.values()]  # the same held-out items
    assert study.notes["note"].str.contains(f"asked on fewer are left out: {first}/c1").any()
