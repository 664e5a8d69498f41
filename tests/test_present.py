import math

import numpy as np
import pandas as pd
import pytest

from synthetic_runs import synthetic_requests
from toolkit import present
from toolkit import pricing
from toolkit.analysis import accuracy, caching, cost_model, frontier, latency
from toolkit.errors import ParameterError
from toolkit.schema import coerce_requests


@pytest.mark.parametrize(("value", "text"), [
    (-0.20002, "-0.2 USD"), (47497.3, "47,497 USD"), (1.5, "1.50 USD"), (0.02689, "0.0269 USD"),
    (float("nan"), "unknown"), (None, "unknown"),
])
def test_usd_never_uses_a_dollar_sign(value, text):
    # two "$" in one Markdown paragraph would be typeset as math by Jupyter
    assert present.usd(value) == text


def test_seconds_and_percent():
    assert (present.secs(0.4444), present.secs(13.951), present.secs(math.nan)) == ("444 ms", "13.95 s", "n/a")
    assert (present.pct(0.825), present.pct(None)) == ("82.5%", "n/a")


def acc_rows(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["config_id", "n", "accuracy", "accuracy_low", "accuracy_high"])


def test_accuracy_text_names_best_worst_and_overlap():
    table = acc_rows(("a", 40, 0.8, 0.65, 0.9), ("b", 40, 0.7, 0.55, 0.82), ("c", 40, 0.3, 0.18, 0.45))
    text = present.accuracy_text(table, confidence=0.95)
    assert text == ("Most accurate: **a** at 80.0% (95% interval 65.0% to 90.0%, n = 40); least accurate: "
                    "**c** at 30.0% (95% interval 18.0% to 45.0%, n = 40). 1 of the other 2 configurations "
                    "have 95% intervals that overlap the best one's, so this data cannot tell them apart "
                    "from it by accuracy alone.")
    separated = present.accuracy_text(table.iloc[[0, 2]], confidence=0.9)
    assert separated.endswith("Every other configuration's 90% interval lies below the best one's.")
    assert present.accuracy_text(acc_rows(("a", 0, np.nan, np.nan, np.nan)), confidence=0.95) == present.NO_GRADES


def test_pairwise_text_on_a_real_table():
    frame = synthetic_requests()
    text = present.pairwise_text(accuracy.pairwise_significance(frame, alpha=0.05), alpha=0.05)
    assert text.startswith("2 of 3 pairs of configurations differ significantly")
    assert "**api/zero_shot** beats small/zero_shot by 55.3 percentage points" in text  # on items both answered
    ungraded = accuracy.pairwise_significance(synthetic_requests(graded=False))
    assert present.pairwise_text(ungraded, alpha=0.05).startswith("No pair of configurations shares")
    assert present.pairwise_text(ungraded.iloc[:0], alpha=0.05) == "Only one configuration: nothing to compare."


def test_dataset_text():
    table = pd.DataFrame({"config_id": ["a", "a", "b", "b"], "dataset": ["x", "y", "x", "y"],
                          "accuracy": [0.9, 0.2, 0.5, 0.4]})
    text = present.dataset_text(table)
    assert text.startswith("Hardest dataset: **y** (mean accuracy over configurations 30.0%); easiest: **x** (70.0%).")
    assert "x: **a** (90.0%); y: **b** (40.0%)" in text and "The winner depends on the task" in text


def test_value_text_against_break_even_and_a_human():
    summary = pd.DataFrame({"config_id": ["a"], "accuracy": [0.8], "accuracy_low": [0.75], "accuracy_high": [0.85],
                            "usd_per_1k": [10.0]})
    model = cost_model.CostModel(1.0, 2.0, human_accuracy=0.98, human_cost_usd=0.25, monthly_volume=1000)
    text = present.value_text(cost_model.value_table(summary, model), model)
    # EV = 0.8 - 0.2*2 - 0.01 = 0.39; low 0.75 - 0.5 - 0.01 = 0.24; human 0.98 - 0.04 - 0.25 = 0.69
    assert "Highest expected value: **a** at 0.39 USD per request (interval 0.24 USD to 0.54 USD)" in text
    assert "clears break-even even at the low end" in text
    assert "that is 390.00 USD (240.00 USD to 540.00 USD)" in text
    assert "earns 0.69 USD: the best configuration does not beat the human" in text
    assert "$" not in text


def test_value_text_without_grades():
    summary = pd.DataFrame({"config_id": ["a"], "accuracy": [np.nan], "usd_per_1k": [1.0]})
    model = cost_model.CostModel(1.0, 1.0)
    assert present.NO_GRADES in present.value_text(cost_model.value_table(summary, model), model)


def test_sensitivity_text():
    leaders = pd.DataFrame({"config_id": ["cheap", "safe"], "ratio_from": [0.1, 0.7], "ratio_to": [0.6, 10.0]})
    assert present.sensitivity_text(leaders) == (
        "The best configuration changes with the cost of an error: **cheap** for E/V from 0.1 to 0.6; "
        "**safe** for E/V from 0.7 to 10. Pin down E before choosing.")
    assert "does not hinge on E" in present.sensitivity_text(leaders.iloc[:1])


def what_if_table(a: float, b: float) -> pd.DataFrame:
    """What latency.what_if gives for a perfect fit e2e = a + b n."""
    e1, e2 = a + 100 * b, a + 1000 * b
    return pd.DataFrame({"model": ["m", "m"], "output_tokens": [100, 1000], "e2e_s": [e1, e2],
                         "ratio": [1.0, e2 / e1], "ratio_low": [1.0, e2 / e1], "ratio_high": [1.0, e2 / e1],
                         "proportional_ratio": [1.0, 10.0]})


def test_what_if_claim_fails_when_the_fixed_part_is_large():
    text = present.what_if_text(what_if_table(2.0, 0.02), observed_max_tokens=64)
    assert text.startswith("Claim: 100 output tokens are ~10x faster than 1000. **This run cannot test it "
                           "directly**: its longest output has 64 tokens, so both lengths lie beyond the data.")
    assert "extrapolated e2e 4.00 s at 100 tokens and 22.00 s at 1000, so 1000 tokens take 5.5x as long" in text
    assert "fixed part of 2.00 s per request that is far from proportional" in text
    assert text.endswith("**Answer:** no: the fixed part per request keeps the ratio well below proportional.")


def test_what_if_claim_holds_when_decoding_dominates():
    text = present.what_if_text(what_if_table(0.1, 0.02), observed_max_tokens=2000)
    assert "predicted e2e" in text and "9.6x as long" in text and "cannot test it" not in text
    assert text.endswith("**Answer:** roughly yes.")
    beyond = present.what_if_text(what_if_table(0.1, 0.02), observed_max_tokens=500)
    assert "so 1000 tokens lie beyond the data" in beyond
    assert beyond.endswith("**Answer:** roughly yes, if the line holds that far.")


def test_what_if_answer_names_the_groups_when_they_disagree():
    table = pd.concat([what_if_table(0.1, 0.02), what_if_table(2.0, 0.02).assign(model="slow")])
    text = present.what_if_text(table, observed_max_tokens=2000)
    assert text.endswith("**Answer:** roughly yes for m; no for slow, whose fixed part per request is too large.")


def test_what_if_text_on_a_real_fit_and_without_timings():
    frame = synthetic_requests()
    text = present.what_if_text(latency.what_if(frame), observed_max_tokens=79)
    assert text.count("close to proportional") == 2  # synthetic fixed parts are ~0.1-0.3 s, decode 20 ms/token
    assert present.what_if_text(latency.what_if(synthetic_requests(timed=False)),
                                 observed_max_tokens=math.nan) == present.NO_TIMINGS


def test_scaling_text():
    observed = pd.DataFrame({"model": ["m"], "n": [10], "short_tokens": [2.0], "long_tokens": [32.0],
                             "short_e2e_s": [0.456], "long_e2e_s": [1.61], "token_ratio": [16.0],
                             "time_ratio": [3.53]})
    assert present.scaling_text(observed).endswith(
        "- **m**: its longest outputs (median 32 tokens) took 1.61 s, its shortest (median 2 tokens) 456 ms: "
        "16.0x the tokens in 3.5x the time.\n\nAt these lengths time grows much more slowly than the output: "
        "the fixed part of a request (mostly the wait for the first token) outweighs the tokens generated.")
    one = observed.assign(short_tokens=1.0, token_ratio=32.0, time_ratio=30.0)
    assert "(median 1 token) 456 ms" in present.scaling_text(one) and "fixed part" not in present.scaling_text(one)
    assert present.scaling_text(observed.iloc[:0]) == present.NO_TIMINGS


def test_latency_texts_on_real_tables():
    frame = synthetic_requests()
    assert present.latency_text(latency.percentiles(frame)).startswith("Fastest: **small/few_shot**")
    parts = latency.decomposition(frame)
    assert present.decomposition_text(parts).startswith(
        "Generating the output after the first token (decode) is most of the median request in 3 of 3")
    good = latency.goodput(frame, ttft_s=0.2, e2e_s=None)
    text = present.goodput_text(good, ttft_s=0.2, tpot_s=None, e2e_s=None)
    # TTFT = 0.1 + 0.002 x ~120 prompt tokens > 0.2 s for every few-shot request, < 0.2 s for the others
    assert text.startswith("Against the targets (TTFT <= 200 ms), **small/zero_shot** meets them on 100.0%")
    assert text.endswith("**small/few_shot** on 0.0%.")
    fits = present.fit_text(latency.fit_ttft(frame), latency.fit_e2e(frame))
    assert "**gemma-3-270m-q4_k_m**: TTFT = 100 ms + 2.00 ms per prompt token" in fits
    untimed = synthetic_requests(timed=False)
    assert present.latency_text(latency.percentiles(untimed)) == present.NO_TIMINGS
    assert present.decomposition_text(latency.decomposition(untimed)) == present.NO_TIMINGS
    assert present.goodput_text(latency.goodput(untimed), ttft_s=1, tpot_s=None, e2e_s=None) == present.NO_TIMINGS
    assert present.fit_text(latency.fit_ttft(untimed), latency.fit_e2e(untimed)) == present.NO_TIMINGS


def test_frontier_and_choice_texts():
    front = pd.DataFrame({"config_id": ["a", "b"], "accuracy": [0.9, 0.8], "p95_e2e_s": [1.0, 2.0],
                          "usd_per_1k": [1.0, 2.0], "pareto": [True, False], "dominated_by": [None, "a"]})
    assert present.frontier_text(front, latency_col="p95_e2e_s") == (
        "1 of 2 configurations are on the Pareto front (accuracy up, p95 end-to-end latency down, cost down): "
        "**a**. Each of the others is matched or beaten on all three at once by one of them, and strictly beaten "
        "on at least one, e.g. b by **a**.")
    summary = front.assign(accuracy_low=[0.8, 0.7], accuracy_high=[0.95, 0.9], n=[40, 40], hit_rate=[0.5, 0.0])
    met = frontier.choose_best(summary, target_accuracy=0.85, latency_budget_s=1.5)
    assert present.choice_text(met) == (
        "Best configuration: **a** (accuracy 90.0% (interval 80.0% to 95.0%, n = 40) against the 85.0% it needs, "
        "p95 end-to-end latency 1.00 s, 1.00 USD per 1,000 requests; the response cache answered 50.0% of its "
        "requests, so its latency and cost come from the others). Rule: the cheapest (USD per 1,000 requests) "
        "configuration with accuracy ≥ 85.0% and p95 end-to-end latency ≤ 1.5 s.")
    missed = frontier.choose_best(summary, target_accuracy=0.99, latency_budget_s=1.5)
    assert present.choice_text(missed).startswith("**No configuration meets the targets** (rule:")
    assert "Closest: **a**" in present.choice_text(missed)


def test_run_prices_and_break_even_texts():
    frame = synthetic_requests()
    prices = pricing.price_table_for(frame)
    head = frontier.headline(frame, prices, value_usd=1.0, error_cost_usd=2.0, target_accuracy=0.5,
                             latency_budget_s=2.0)
    assert present.run_text(head.overview).startswith("Run **synthetic**: 120 requests (118 ok, 2 errors) over "
                                                       "3 configurations")
    text = present.prices_text(head.prices)
    assert "**gemma-3-270m-q4_k_m**: 0.1 USD per machine hour" in text
    assert "**gpt-4o-mini**: 0.15 USD in / 0.6 USD out per million tokens" in text
    text = present.break_even_text(head)
    # 2 of its 40 requests failed, each charged E = 2 USD: (2 + (0.05 x 2 + c) / 0.95) / 3 = 70.2%
    assert text.startswith(
        "With a success worth 1.00 USD and an error costing 2.00 USD, **api/zero_shot** breaks even at 70.2% accuracy")
    assert "That counts its 5.0% failed requests at 2.00 USD each" in text
    bare = frontier.headline(frame, prices)
    assert present.break_even_text(bare) == "No value of a success and cost of an error given, so no break-even accuracy."


def cascade_study(**summary):
    from toolkit.analysis.cascade_study import POOLED, CascadePoint, CascadeStudy, CascadeSummary
    cascade = CascadePoint("small > mid > big", "cascade", 0.925, 0.8, 0.97, 4.0)
    fields = dict(dataset=POOLED, n=40, configs=3, signal="agreement",
                  best_single=CascadePoint("big", "single", 0.9, 0.77, 0.96, 10.0), best_cascade=cascade,
                  matching_cascade=CascadePoint("small > mid > big", "cascade", 0.9, 0.77, 0.96, 3.0), saving=0.7,
                  oracle=CascadePoint("oracle", "oracle", 0.95, 0.83, 0.99, 1.5), budget_usd_per_1k=5.0,
                  best_at_budget=cascade) | summary
    frontier = pd.DataFrame({"dataset": POOLED, "kind": ["single", "cascade", "oracle"],
                             "label": ["big", "small > mid > big", "oracle"], "accuracy": [0.9, 0.925, 0.95],
                             "usd_per_1k": [10.0, 4.0, 1.5]})
    return CascadeStudy(frontier, {POOLED: CascadeSummary(**fields)}, pd.DataFrame(columns=["dataset", "note"]),
                        "agreement", POOLED)


def test_cascade_text_states_saving_oracle_and_budget():
    assert present.cascade_text(cascade_study()) == (
        "On the held-out items (40 requests pooled over all datasets) the most accurate single configuration is "
        "**big** at 90.0% (77.0% to 96.0%), 10.00 USD per 1,000 requests. The most accurate cascade, "
        "**small > mid > big** (agreement signal), reaches 92.5% (80.0% to 97.0%) at 4.00 USD per 1,000. The "
        "cheapest cascade that matches the best single configuration, **small > mid > big**, costs 70.0% less "
        "(3.00 USD per 1,000). An oracle router that knew which configuration is right for each item would reach "
        "95.0% at 1.50 USD per 1,000: no router over these configurations can do better. Within 5.00 USD per "
        "1,000 requests the most accurate choice is **small > mid > big** (cascade) at 92.5%.")
    from toolkit.analysis.cascade_study import CascadePoint
    dearer = present.cascade_text(cascade_study(
        saving=-0.5, matching_cascade=CascadePoint("small > mid > big", "cascade", 0.9, 0.77, 0.96, 15.0), n=16,
        best_at_budget=None))
    assert "costs 50.0% more (15.00 USD per 1,000): here cascading does not save money. With the agreement" in dearer
    assert "Nothing costs at most 5.00 USD per 1,000 requests." in dearer
    assert dearer.endswith("With only 16 held-out requests the intervals are wide: a demonstration of the "
                           "method, not grounds for a decision.")
    unmatched = present.cascade_text(cascade_study(matching_cascade=None, saving=None))
    assert "at 4.00 USD per 1,000. No cascade matches the best single configuration's accuracy. An oracle" in unmatched
    silent = present.cascade_text(cascade_study(best_cascade=None, matching_cascade=None, saving=None, signal=None))
    assert "10.00 USD per 1,000 requests. No cascade was evaluated (see the notes). An oracle router" in silent
    empty = cascade_study()
    empty = type(empty)(empty.frontier.iloc[:0], {}, pd.DataFrame({"dataset": ["d"], "note": ["no graded requests"]}),
                        None, None)
    assert present.cascade_text(empty) == "**No cascades**: no graded requests."


def test_reference_text_with_published_frugalgpt_points():
    published = pd.DataFrame({"dataset": "HEADLINES", "method": ["FrugalGPT", "FrugalGPT", "gpt-4-turbo", "gpt-4o-mini"],
                              "accuracy": [0.85, 0.87, 0.8558, 0.80], "usd_per_1k": [0.01, 0.192, 3.33, 0.2],
                              "kind": "published", "source": "FrugalGPT summary_HEADLINES_e8_full_2024.csv"})
    text = present.reference_text(cascade_study(), published)
    assert text == ("1 cascade point (agreement signal), measured on the held-out half of the items (not the same "
                    "items as the configurations): the most accurate is **small > mid > big** at 92.5% for 4.00 USD "
                    "per 1,000 requests. Published points (FrugalGPT summary_HEADLINES_e8_full_2024.csv, dataset "
                    "HEADLINES): the best single model, **gpt-4-turbo**, reaches 85.6% at 3.33 USD per 1,000; the "
                    "cheapest FrugalGPT cascade that matches it reaches 87.0% at 0.192 USD per 1,000, 94.2% less.")
    assert present.reference_text(cascade_study(), None).startswith("1 cascade point (agreement")


def test_latency_model_texts():
    from toolkit.analysis import latency_model
    rng = np.random.default_rng(0)
    n = 120
    prompts, outputs = rng.integers(50, 800, n), rng.integers(5, 200, n)
    ttft = 0.1 + 0.002 * prompts
    frame = pd.DataFrame({"request_id": range(n), "endpoint": "h", "model": "m", "concurrency": 1, "status": "ok",
                          "cache_hit": False, "prompt_tokens": prompts, "completion_tokens": outputs,
                          "ttft_s": ttft, "e2e_s": ttft + 0.05 + 0.01 * outputs})
    model = latency_model.fit_latency_model(frame)
    text = present.latency_model_text(model)
    assert text.startswith("Per group, end-to-end latency = TTFT + overhead + per-token time x output tokens (95% "
                           "intervals). Fastest generation: **h / m / c1** (10.00 ms per token)")
    assert "(+ 2.00 ms per prompt token) + overhead 50 ms (50 ms to 50 ms) + 10.00 ms per output token" in text
    assert present.latency_model_text(model.iloc[:0]) == present.NO_TIMINGS
    errors = latency_model.heldout_errors(latency_model.heldout_predictions(frame))
    assert present.heldout_text(errors) == (
        "How good is the model? on held-out requests (k-fold) the median error of the predicted p50 is 0.0% across "
        "1 groups (worst **h / m / c1** 0.0%), and 100.0% of requests stay under the predicted p95; on requests "
        "longer than any it was fitted on the median error of the predicted p50 is 0.0% across 1 groups (worst "
        "**h / m / c1** 0.0%), and 100.0% of requests stay under the predicted p95.")
    predictions = latency_model.predict_latency(frame, prompt_tokens=[100], output_tokens=[100, 1000])
    text = present.prediction_text(predictions)
    assert text.startswith("At 100 prompt and 1000 output tokens the model predicts **h / m / c1** fastest (p50 10.35 s")
    assert text.endswith("1 of 2 predictions lie outside the lengths measured (column `outside`): they extrapolate, "
                         "and where TTFT is held constant a longer prompt is assumed to cost nothing.")


def test_small_and_large_amounts_keep_their_units():
    assert present.secs(0.00013) == "0.13 ms" and present.secs(86400) == "24.0 h"
    assert present.usd(0.0000171) == "0.0000171 USD"  # never 1.71e-05


def test_show_puts_units_and_intervals_in_the_cells():
    table = pd.DataFrame({"config_id": ["a", "b"], "n": [32, 16], "hit_rate": [0.0, 0.5],
                          "accuracy": [0.75, np.nan], "accuracy_low": [0.579, np.nan], "accuracy_high": [0.867, np.nan],
                          "p95_e2e_s": [1.84, 0.00013], "usd_per_1k": [0.0275, np.nan],
                          "e2e_miss_s": [0.688, 0.3], "e2e_miss_low": [0.59, 0.2], "e2e_miss_high": [0.804, 0.4],
                          "ev_usd": [0.25, -0.5], "ev_low_usd": [-0.263, -0.9], "ev_high_usd": [0.602, -0.1],
                          "pareto": [True, False], "median_network_s": [np.nan, np.nan], "speedup": [9.27, 1.0]})
    shown = present.show(table, ["n", "hit_rate", "accuracy", "p95_e2e_s", "usd_per_1k", "e2e_miss_s", "ev_usd",
                                  "pareto", "median_network_s", "speedup"])
    assert shown.index.name == "configuration" and shown.index.tolist() == ["a", "b"]
    assert shown.columns.tolist() == ["requests", "cache hit rate", "accuracy", "p95 e2e", "cost per 1,000 requests",
                                      "mean e2e of a miss", "expected value per request", "on the 3-objective front",
                                      "speed-up"]  # the empty network column is left out
    assert shown.loc["a"].tolist() == ["32", "0.0%", "75.0% (57.9 to 86.7%)", "1.84 s", "0.0275 USD",
                                       "688 ms (590 to 804 ms)", "0.25 USD (-0.263 to 0.602 USD)", "yes", "9.3x"]
    assert shown.loc["b", "accuracy"] == "–" and shown.loc["b", "p95 e2e"] == "0.13 ms"
    with pytest.raises(ParameterError, match="show: table has no column\\(s\\) nope"):
        present.show(table, ["nope"])
    numbered = present.show(table, ["n"], index=None)
    assert numbered.index.tolist() == [1, 2]


def test_accuracy_matrix_and_assumptions():
    table = pd.DataFrame({"config_id": ["b", "b", "a", "a"], "dataset": ["x", "y", "x", "y"],
                          "accuracy": [0.5, 1.0, 0.25, np.nan]})
    matrix = present.accuracy_matrix(table)
    assert matrix.index.tolist() == ["b", "a"] and matrix.columns.tolist() == ["x", "y"]
    assert matrix.loc["a"].tolist() == ["25.0%", "n/a"]
    settings = caching.LatencyModel()
    table = present.assumptions(settings)
    assert table.loc["decode time", "value"] == "10 ms per token"
    assert table.loc["batch wait (the promised worst case)", "value"] == "24.0 h"


def test_cache_note_counts_the_hits_set_aside():
    frame = synthetic_requests(items=5)
    assert present.cache_note(frame) == ""
    hits = frame.assign(cache_hit=frame["config_id"] == "small/zero_shot", e2e_s=0.0002)
    text = present.cache_note(coerce_requests(hits), measures="latency")
    assert text.startswith("**Cache hits are set aside.** The response cache answered 10 of 30 requests "
                           "(1 configuration), each in a median 0.2 ms at no model cost.")
    assert "only the requests the model answered count towards latency here" in text
    assert "1 configuration was answered entirely from the cache (**small/zero_shot**): it has no latency " \
           "of its own." in text


def test_answer_groups_text():
    groups = pd.DataFrame({"config_id": ["p1 · c1", "p1 · c4", "p2"], "answers": ["p1", "p1", "p2"],
                           "members": [2, 2, 1], "variants": ["c1, c4", "c1, c4", ""]})
    text = present.answer_groups_text(groups)
    assert text.startswith("**The 3 configurations gave only 2 different sets of answers.** Within each set the "
                           "configurations differ only in c1 / c4 and got exactly the same items right")
    assert "(e.g. **p1** stands for c1, c4)" in text
    assert present.answer_groups_text(groups.assign(answers=["a", "b", "c"], members=1)) == ""


def test_hit_rate_note():
    cache = pd.DataFrame({"config_id": ["a", "b"], "requests": [32, 32], "hits": [16, 32]})
    assert present.hit_rate_note(cache).startswith("1 configuration had every request answered from the cache")
    assert present.hit_rate_note(cache.assign(hits=[0, 16])) == ""


def test_decomposition_text_says_when_network_is_not_separable():
    frame = synthetic_requests()
    text = present.decomposition_text(latency.decomposition(frame))
    assert text.endswith("Network time cannot be separated here: the endpoint reports no processing time of its "
                         "own (`server_s`), so the round trip is inside TTFT.")
    timed = frame.assign(server_s=frame["e2e_s"].astype(float) * 0.9)
    assert "Network and client overhead is a median" in present.decomposition_text(latency.decomposition(timed))


def test_break_even_text_warns_when_the_interval_reaches_below():
    frame = synthetic_requests()
    # V = 1, E = 3, 5% failures at E: break-even 78.9%; api/zero_shot has 86.8% (interval from 72.7%, n = 38)
    head = frontier.headline(frame, pricing.price_table_for(frame), value_usd=1.0, error_cost_usd=3.0,
                             latency_budget_s=None)
    text = present.break_even_text(head)
    assert text.startswith("With a success worth 1.00 USD and an error costing 3.00 USD, **api/zero_shot** breaks "
                           "even at 78.9% accuracy; it has 86.8%")
    assert "Its accuracy interval reaches down to 72.7%, below break-even: with 38 graded requests it is not yet " \
           "certain to pay off." in text
    sure = frontier.headline(frame, pricing.price_table_for(frame), value_usd=1.0, error_cost_usd=1.0,
                             latency_budget_s=None)
    assert "not yet certain" not in present.break_even_text(sure)


def coverage_rows(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["model", "priced", "matched", "approximate", "source", "reason"])


def test_unpriced_text_names_the_models_groups_their_reasons_and_says_how_to_price_them():
    from toolkit.pricing import load_price_table, price_coverage

    generic = "not listed anywhere"
    coverage = coverage_rows(("a", True, "openai:a", False, "s", None),
                             *[(f"m{i}", False, None, False, None, generic) for i in range(14)],
                             ("best", False, None, False, None, "model_aliases.yaml: 16 samples"))
    text = present.unpriced_text(coverage, shown=5)
    assert text.startswith("**15 of 16 models have no price**, so their cost is unknown and cost comparisons "
                           "leave them out: **best** (model_aliases.yaml: 16 samples); **m0**, **m1**, **m2**, "
                           "**m3** and 10 more (not listed anywhere).")
    assert "`frontier report RUN_DIR --price MODEL=IN,OUT` (USD per million input and output tokens" in text
    assert '`model_prices = ["MODEL=IN,OUT"]`' in text and "data/prices.yaml" in text
    assert present.unpriced_text(coverage.iloc[:1]) == ""
    one = price_coverage(load_price_table(use_genai_prices=False), ["gemma3-270m-q4_k_m", "acme-7b"])
    assert present.unpriced_text(one).startswith("**1 of 2 models has no price**, so their cost is unknown and "
                                                  "cost comparisons leave them out: **acme-7b** (not in prices.yaml")


def test_cost_basis_text_says_what_costs_stand_on():
    from toolkit.pricing import choose_cost_basis, load_price_table

    table = load_price_table()
    coverage = coverage_rows(("a", True, "alias -> together:x", True, "s", None),
                             ("b", True, "alias -> openai:b", False, "s", None),
                             ("c", True, "reported", False, "s", None),
                             ("d", False, None, False, None, "nowhere"))
    text = present.cost_basis_text(choose_cost_basis(table, coverage), coverage)
    assert text.startswith("Costs come from each model's own prices (table frontier-default); 2 models priced "
                           "through data/model_aliases.yaml as a model a provider lists, 1 of them approximately")
    assert "; 1 model at the cost the import reported. **1 of 4 models has no price**" in text
    assert text.endswith('Or compare every model on output tokens at one price: `cost_basis = "output_tokens"`.')
    none = coverage_rows(("d", False, None, False, None, "nowhere"), ("e", False, None, False, None, "nowhere"))
    fallback = present.cost_basis_text(choose_cost_basis(table, none, "auto", 2.0), none)
    assert fallback.startswith("**Cost basis: output tokens**, because no model has a price: every request costs "
                               "its output tokens x 2.00 USD per million (`basis_usd_per_mtok`), the same for every "
                               "model, so costs here compare how much each configuration writes, not what it would "
                               "be billed. **2 of 2 models have no price**, so this basis stands in for prices: "
                               "**d**, **e** (nowhere).")
    asked = present.cost_basis_text(choose_cost_basis(table, coverage, "output_tokens", 0.5), coverage)
    assert asked.startswith('**Cost basis: output tokens**, as asked (`cost_basis = "output_tokens"`): every request '
                            "costs its output tokens x 0.5 USD per million") and "no price" not in asked
    assert present.cost_basis_text(choose_cost_basis(table, coverage.iloc[1:2]), coverage.iloc[1:2]) == (
        "Costs come from each model's own prices (table frontier-default); 1 model priced through "
        "data/model_aliases.yaml as a model a provider lists, 0 of them approximately (a fine-tune at its base "
        "model's price, or a model at the price its size costs to serve: each price's source says which).")


def test_accuracy_text_says_when_the_most_accurate_was_measured_on_few_answers():
    table = pd.DataFrame({"config_id": ["sweep", "main", "other"], "accuracy": [0.6, 0.55, 0.3], "n": [24, 256, 256],
                          "accuracy_low": [0.4, 0.49, 0.25], "accuracy_high": [0.77, 0.61, 0.36]})
    text = present.accuracy_text(table, confidence=0.95)
    assert text.startswith("Most accurate: **sweep** at 60.0%")
    assert "It was measured on only 24 answers; of the configurations measured on the most (256), **main** leads " \
           "at 55.0% (95% interval 49.0% to 61.0%, n = 256)." in text
    assert "measured on only" not in present.accuracy_text(table.iloc[1:], confidence=0.95)
