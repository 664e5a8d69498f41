import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from toolkit import plots, present  # noqa: E402
from toolkit.analysis.frontier import on_front  # noqa: E402
from toolkit.analysis.latency import decomposition, fit_e2e, latency_split, percentiles, predict  # noqa: E402
from toolkit.analysis.load import load_sweep  # noqa: E402
from toolkit.errors import ParameterError  # noqa: E402
from toolkit.schema import coerce_requests  # noqa: E402


@pytest.fixture
def ax():
    figure, axes = plt.subplots()
    yield axes
    plt.close(figure)


@pytest.fixture
def requests() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model, (a, b) in {"small": (0.2, 0.01), "large": (0.5, 0.03)}.items():
        for n in rng.integers(5, 200, 30):
            ttft = a + rng.normal(0, 0.01)
            rows.append({"config_id": f"{model}-cfg", "model": model, "status": "ok",
                         "completion_tokens": int(n), "ttft_s": ttft,
                         "e2e_s": ttft + b * n + rng.normal(0, 0.01), "server_s": ttft + b * n})
    return coerce_requests(pd.DataFrame(rows))


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_axis_label_gives_units():
    assert plots.axis_label("p95_e2e_s") == "p95 end-to-end latency (s)"
    assert plots.axis_label("p99.9_ttft_s") == "p99.9 time to first token (s)"
    assert plots.axis_label("human_ev_usd") == "human ev (USD)"
    assert plots.axis_label("usd_per_1k") == "cost (USD per 1,000 requests)"
    assert plots.axis_label("dataset") == "dataset"


def test_latency_cdf_plot_draws_one_curve_per_config(ax, requests):
    out = plots.latency_cdf_plot(requests, ax=ax)
    assert out is ax
    assert len(ax.lines) == 2
    assert ax.get_xlabel() == "end-to-end latency (s)"
    assert sorted(legend_texts(ax)) == ["large-cfg", "small-cfg"]
    assert max(line.get_ydata().max() for line in ax.lines) == pytest.approx(1.0)


def test_percentile_plot_draws_a_horizontal_bar_per_config_and_percentile(ax, requests):
    table = percentiles(requests, q=(0.5, 0.95, 0.99))
    plots.percentile_plot(table, ax=ax)
    widths = sorted(bar.get_width() for container in ax.containers for bar in container)
    expected = sorted(table[["p50_e2e_s", "p95_e2e_s", "p99_e2e_s"]].to_numpy().ravel())
    assert widths == pytest.approx(expected)
    assert ax.get_xlabel() == "end-to-end latency (s)"
    assert [t.get_text() for t in ax.get_yticklabels()] == table["config_id"].tolist()
    assert legend_texts(ax) == ["p50", "p95", "p99"]


def test_regression_plot_draws_points_line_and_band_per_model(ax, requests):
    fits = fit_e2e(requests)
    plots.regression_plot(requests, fits, ax=ax)
    assert len(ax.lines) == 2 and len(ax.collections) == 4  # 2 scatters + 2 bands
    line = ax.lines[0]
    first = fits[fits["model"] == "small"].iloc[0]
    want = predict(first, line.get_xdata())["prediction"].to_numpy()
    assert line.get_ydata() == pytest.approx(want)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("output tokens", "end-to-end latency (s)")


def test_regression_plot_draws_a_seeded_choice_of_a_large_group_and_fits_every_row(requests):
    fits = fit_e2e(requests)
    drawn = []
    for _ in range(2):
        figure, ax = plt.subplots()
        plots.regression_plot(requests, fits, max_points=10, ax=ax)
        drawn.append([c.get_offsets().data.copy() for c in ax.collections[::2]])
        small = requests[requests["model"] == "small"]["completion_tokens"]
        assert (ax.lines[0].get_xdata().min(), ax.lines[0].get_xdata().max()) == (
            requests["completion_tokens"].min(), requests["completion_tokens"].max())
        plt.close(figure)
    assert [len(points) for points in drawn[0]] == [10, 10]  # 30 requests per model
    assert all((a == b).all() for a, b in zip(*drawn))  # the same points on every draw
    chosen = {tuple(p) for p in drawn[0][0]}
    assert chosen <= set(zip(small.astype(float), requests.loc[small.index, "e2e_s"]))


def test_regression_plot_skips_the_line_of_a_guarded_fit(ax):
    frame = coerce_requests(pd.DataFrame([
        {"model": "m", "status": "ok", "completion_tokens": 5, "e2e_s": e, "ttft_s": 0.1}
        for e in (1.0, 1.1)]))
    plots.regression_plot(frame, fit_e2e(frame), ax=ax)
    assert len(ax.lines) == 0 and len(ax.collections) == 1


def test_decomposition_plot_stacks_the_shares(ax, requests):
    table = decomposition(requests)
    plots.decomposition_plot(table, ax=ax)
    assert len(ax.patches) == 6
    right_edges = [p.get_x() + p.get_width() for p in ax.patches[-2:]]
    assert right_edges == pytest.approx([1.0, 1.0])
    assert [t.get_text() for t in ax.get_yticklabels()] == table["config_id"].tolist()
    assert legend_texts(ax) == ["network", "waiting for the first token (TTFT)", "generating the rest (decode)"]


def test_decomposition_plot_says_network_is_not_separable_without_server_time(ax, requests):
    table = decomposition(requests.assign(server_s=None))
    assert table["network_share"].isna().all()
    plots.decomposition_plot(table, ax=ax)
    assert len(ax.patches) == 4  # TTFT and decode for two configs: no zero-width network bars
    lefts = [p.get_x() for p in ax.patches[:2]]
    assert lefts == [0.0, 0.0]  # TTFT starts at 0: nothing stacked before it
    assert legend_texts(ax) == ["waiting for the first token (TTFT)", "generating the rest (decode)",
                                "network: not separable here (inside TTFT)"]


def test_accuracy_plot_draws_a_point_and_interval_per_config(ax):
    table = pd.DataFrame({"config_id": ["a", "b", "c"], "accuracy": [0.5, 0.7, 0.9],
                          "accuracy_low": [0.4, 0.6, 0.85], "accuracy_high": [0.6, 0.8, 0.95]})
    plots.accuracy_plot(table, ax=ax)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    (container,) = ax.containers
    segments = container.lines[2][0].get_segments()
    ends = np.array([s[:, 0] for s in segments])
    assert ends.ravel() == pytest.approx([0.4, 0.6, 0.6, 0.8, 0.85, 0.95])
    assert ax.get_xlabel() == "accuracy (share correct)"


def test_accuracy_plot_dodges_hue_levels(ax):
    table = pd.DataFrame({"config_id": ["a", "a", "b", "b"], "dataset": ["x", "y", "x", "y"],
                          "accuracy": [0.5, 0.6, 0.7, 0.8], "accuracy_low": 0.4,
                          "accuracy_high": 0.9})
    plots.accuracy_plot(table, hue="dataset", ax=ax)
    assert len(ax.containers) == 2 and legend_texts(ax) == ["x", "y"]
    y_of_x = ax.containers[0].lines[0].get_ydata()
    assert y_of_x == pytest.approx([-0.15, 0.85])


def test_cost_model_plot_marks_break_even_and_human(ax):
    grid = pd.DataFrame({"accuracy": np.linspace(0, 1, 11)})
    grid["ev_usd"] = grid["accuracy"] * 1.0 - (1 - grid["accuracy"]) * 1.5 - 0.01
    plots.cost_model_plot(grid, break_even=0.604, human_accuracy=0.8, ax=ax)
    assert len(ax.lines) == 4  # EV line, EV = 0, break-even, human
    assert legend_texts(ax) == ["break-even 60.4%", "human 80.0%"]
    assert ax.get_ylabel() == "expected value (USD per request)"


def test_cost_model_plot_points_with_labels_and_error_bars(ax):
    table = pd.DataFrame({"config_id": ["a", "b"], "accuracy": [0.7, 0.9], "ev_usd": [0.2, 0.5],
                          "ev_low_usd": [0.1, 0.4], "ev_high_usd": [0.3, 0.6]})
    plots.cost_model_plot(table, kind="points", lower="ev_low_usd", upper="ev_high_usd",
                          label="config_id", ax=ax)
    assert texts(ax) == ["a", "b"] and len(ax.containers) == 1


def test_points_at_the_same_place_share_one_label(ax):
    # the two c1/c4 configs differ by 1e-6 USD: one place on the figure, one label
    table = pd.DataFrame({"config_id": ["few · mt8 · c1", "few · mt8 · c4", "zero · mt8 · c1"],
                          "accuracy": [0.7, 0.7, 0.5], "ev_usd": [0.2, 0.200001, -0.3]})
    plots.cost_model_plot(table, kind="points", label="config_id", ax=ax)
    assert sorted(texts(ax)) == ["few · mt8 (2 configurations)", "zero · mt8 · c1"]


def test_merge_labels_keeps_the_shared_parts_and_the_leading_alternatives():
    assert present.merge_labels(["few_shot_5 · mt16 · c1", "few_shot_5 · mt16 · c4 · cache"]) == (
        "few_shot_5 · mt16 (2 configurations)")
    assert present.merge_labels(["zero_shot · mt8 · c1", "few_shot_1 · mt8 · c4", "zero_shot · mt8 · c4"]) == (
        "zero_shot/few_shot_1 · mt8 (3 configurations)")
    assert present.merge_labels(["a", "a", ""]) == "a"
    assert present.merge_labels([]) == ""


def test_sensitivity_plot_draws_a_band_per_config_on_log_x(ax):
    table = pd.DataFrame({"config_id": ["a"] * 3 + ["b"] * 3, "error_value_ratio": [0.1, 1, 10] * 2,
                          "ev_usd": [0.5, 0.2, -2, 0.4, 0.3, -0.5]})
    table["ev_low_usd"], table["ev_high_usd"] = table["ev_usd"] - 0.1, table["ev_usd"] + 0.1
    plots.sensitivity_plot(table, ax=ax)
    assert len(ax.lines) == 3 and len(ax.collections) == 2
    assert ax.get_xscale() == "log" and legend_texts(ax) == ["a", "b"]
    assert ax.get_legend().get_title().get_text() == "configuration"


def test_sensitivity_plot_symlog_keeps_the_region_around_zero_linear(ax):
    table = pd.DataFrame({"config_id": ["a"] * 3, "error_value_ratio": [0.1, 1, 100], "ev_usd": [0.5, 0.0, -80.0],
                          "ev_low_usd": [0.4, -0.1, -90.0], "ev_high_usd": [0.6, 0.1, -70.0]})
    plots.sensitivity_plot(table, symlog=1.0, ax=ax)
    assert ax.get_yscale() == "symlog" and ax.yaxis.get_transform().linthresh == 1.0
    assert ax.get_ylabel() == "expected value (USD per request) (log scale beyond ±1)"


def test_a_figure_s_front_is_the_two_dimensional_pareto_set():
    table = pd.DataFrame({"x": [1.0, 2.0, 0.5, 3.0, 2.0, 0.5], "y": [0.7, 0.6, 0.5, 0.9, 0.7, 0.5]})
    # (2.0, 0.6) and (2.0, 0.7) are beaten by (1.0, 0.7); the two (0.5, 0.5) tie and both stay
    assert on_front(table, maximize=["y"], minimize=["x"]).tolist() == [True, False, True, True, False, True]


def test_frontier_plot_draws_this_views_staircase_and_fills_the_overall_front(ax):
    # "b" is on the 3-objective front (it wins on a hidden axis) but beaten in this view by "a"
    table = pd.DataFrame({"config_id": ["a", "b", "c", "d", "e"], "model": ["m1", "m1", "m2", "m2", "m2"],
                          "usd_per_1k": [1.0, 2.0, 0.5, 3.0, 2.5], "accuracy": [0.7, 0.6, 0.5, 0.9, 0.4],
                          "accuracy_low": [0.6, 0.5, 0.4, 0.8, 0.3], "accuracy_high": [0.8, 0.7, 0.6, 1.0, 0.5],
                          "pareto": [True, True, True, True, False]})
    reference = pd.DataFrame({"config_id": ["paper"], "usd_per_1k": [2.5], "accuracy": [0.95]})
    plots.frontier_plot(table, yerr=("accuracy_low", "accuracy_high"), reference=reference, ax=ax)
    (steps,) = [line for line in ax.lines if line.get_label() == "front in this view"]
    assert list(steps.get_xdata()) == [0.5, 1.0, 3.0, 3.0] and list(steps.get_ydata()) == [0.5, 0.7, 0.9, 0.9]
    assert steps.get_drawstyle() == "steps-post"
    assert texts(ax) == ["a", "c", "d", "paper"]  # only this view's front is named, plus the reference
    assert sorted(legend_texts(ax)) == ["beaten over all objectives", "front in this view", "m1", "m2",
                                        "on the front over all objectives", "reference"]
    faces = {tuple(c.lines[0].get_xdata()): c.lines[0].get_markerfacecolor() for c in ax.containers}
    assert faces[(5 / 2,)] == "white"  # "e" is beaten over all objectives: hollow
    assert faces[(1.0, 2.0)] != "white"  # "a" and "b" are on the overall front: filled
    assert ax.get_xlabel() == "cost (USD per 1,000 requests)"


def test_frontier_plot_without_pareto_draws_plain_labelled_points_and_continues_the_palette(ax):
    table = pd.DataFrame({"config_id": ["a", "b"], "model": ["m1", "m1"], "usd_per_1k": [1.0, 2.0],
                          "accuracy": [0.7, 0.6], "pareto": [True, False]})
    extra = pd.DataFrame({"label": ["cascade x"], "kind": ["cascade"], "usd_per_1k": [1.5], "accuracy": [0.8]})
    plots.frontier_plot(table, label=None, ax=ax)
    plots.frontier_plot(extra, hue="kind", pareto=None, label="label", ax=ax)
    assert texts(ax) == ["cascade x"]
    assert len([line for line in ax.lines if line.get_label() == "front in this view"]) == 1
    colors = {line.get_label(): line.get_color() for line in ax.lines if line.get_label() in ("m1", "cascade")}
    assert colors["m1"] != colors["cascade"]


@pytest.mark.parametrize("draw", [
    lambda d, ax: plots.latency_cdf_plot(d, ax=ax),
    lambda d, ax: plots.percentile_plot(d, ax=ax),
    lambda d, ax: plots.regression_plot(d, fit_e2e(d), ax=ax),
    lambda d, ax: plots.decomposition_plot(decomposition(d), ax=ax),
    lambda d, ax: plots.accuracy_plot(d.assign(accuracy=1.0, accuracy_low=1.0, accuracy_high=1.0),
                                      ax=ax),
    lambda d, ax: plots.cost_model_plot(d.assign(accuracy=1.0, ev_usd=1.0), ax=ax),
    lambda d, ax: plots.sensitivity_plot(d.assign(error_value_ratio=1.0, ev_usd=1.0,
                                                  ev_low_usd=1.0, ev_high_usd=1.0), ax=ax),
    lambda d, ax: plots.frontier_plot(d.assign(usd_per_1k=1.0, accuracy=1.0, pareto=True), ax=ax),
    lambda d, ax: plots.bar_plot(d.assign(monthly_usd=1.0), x="monthly_usd", y="config_id", ax=ax),
    lambda d, ax: plots.latency_split_plot(latency_split(d), ax=ax),
    lambda d, ax: plots.load_sweep_plot(present.name_load_groups(load_sweep(d)), ax=ax),
])
def test_empty_data_draws_a_no_data_note(ax, requests, draw):
    assert draw(requests.iloc[0:0], ax) is ax
    assert texts(ax) == ["no data"]
    assert not ax.lines and not ax.collections and not ax.patches


def test_bar_plot_draws_one_bar_per_row_in_order(ax):
    table = pd.DataFrame({"scenario": ["baseline", "batch"], "monthly_usd": [34.5, 29.3]})
    plots.bar_plot(table, x="monthly_usd", y="scenario", ax=ax)
    assert [p.get_width() for p in ax.patches] == [34.5, 29.3]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["baseline", "batch"]
    assert ax.get_xlabel() == "cost (USD per month)"
    assert plots.bar_plot(None, x="monthly_usd", y="scenario", ax=ax) is ax


def test_missing_column_names_it(ax, requests):
    with pytest.raises(ParameterError, match="frontier_plot: data has no column\\(s\\) usd_per_1k"):
        plots.frontier_plot(requests.assign(pareto=True, accuracy=1.0), ax=ax)


def test_latency_split_plot_stacks_seconds_up_to_the_mean_e2e_and_hatches_an_unsplit_ttft(ax):
    frame = coerce_requests(pd.DataFrame([
        {"config_id": "timed", "status": "ok", "ttft_s": 0.5, "e2e_s": 2.0, "server_prefill_s": 0.3,
         "server_decode_s": 1.4, "completion_tokens": 15},
        {"config_id": "timed", "status": "ok", "ttft_s": 1.0, "e2e_s": 3.0, "server_prefill_s": 0.6,
         "server_decode_s": 1.8, "completion_tokens": 19},
        {"config_id": "plain", "status": "ok", "ttft_s": 0.4, "e2e_s": 1.0, "tbt_s": [0.1, 0.2, 0.2],
         "completion_tokens": 4},
        {"config_id": "gapless", "status": "ok", "ttft_s": 0.5, "e2e_s": 3.0, "completion_tokens": 151},
    ]))
    table = latency_split(frame)
    assert plots.latency_split_plot(table, ax=ax) is ax
    ends: dict[str, float] = {}
    for bar in ax.patches:
        row = table["config_id"].iloc[round(bar.get_y() + bar.get_height() / 2)]
        ends[row] = max(ends.get(row, 0.0), bar.get_x() + bar.get_width())
    assert ends == pytest.approx({"timed": 2.5, "plain": 1.0, "gapless": 3.0})
    hatched = sorted(round(bar.get_width(), 6) for bar in ax.patches if bar.get_hatch() and bar.get_width() > 0)
    assert hatched == [0.4, 0.5, 2.5]  # plain's and gapless's TTFT, gapless's time after the first token
    network, prefill, decode, overhead = plots.SPLIT_PARTS.values()
    assert legend_texts(ax) == [plots.UNSPLIT_TTFT, network, prefill, plots.UNSPLIT_AFTER_FIRST, decode, overhead]
    assert ax.get_xlabel() == "mean seconds per request"
    with pytest.raises(ParameterError, match="stat must be 'mean' or 'median'"):
        plots.latency_split_plot(table, stat="p95", ax=ax)


def test_load_sweep_plot_draws_a_line_per_group_through_its_levels_and_rings_the_knee(ax):
    table = pd.DataFrame({"config_group": ["a", "a", "a", "b", "b"], "concurrency": [1, 2, 4, 1, 4],
                          "throughput_rps": [1.0, 1.8, 2.0, 0.5, 0.9], "p50_e2e_s": [0.5, 0.6, 1.5, 1.0, 1.2],
                          "knee": [False, False, True, False, False]})
    assert plots.load_sweep_plot(table.sample(frac=1, random_state=1), ax=ax) is ax
    assert [list(line.get_xdata()) for line in ax.lines] == [[1.0, 1.8, 2.0], [0.5, 0.9]]
    assert [list(line.get_ydata()) for line in ax.lines] == [[0.5, 0.6, 1.5], [1.0, 1.2]]
    rings = [c for c in ax.collections if len(c.get_offsets())]
    assert len(rings) == 1 and list(rings[0].get_offsets()[0]) == [2.0, 1.5]
    assert sorted(texts(ax)) == ["1", "1", "2", "4", "4"]
    assert legend_texts(ax) == ["a", "b", "knee (point labels: concurrency)"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("throughput (requests/s)", "p50 end-to-end latency (s)")
