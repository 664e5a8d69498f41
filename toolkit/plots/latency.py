"""Latency figures: distributions, percentiles, fitted lines, where a request's time goes, and
latency against throughput as load rises."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from toolkit.analysis.latency_fit import predict
from toolkit.errors import ParameterError
from toolkit.plots.common import (LABELS, axes_for, axis_label, hue_levels, hue_subset, legend, legend_title,
                                  no_data, numeric, palette, require_columns)

# Points `regression_plot` draws per group at most: a million dots take seconds to draw and show
# no more than a few thousand do; the fitted line and band still come from every row
SCATTER_POINTS = 5_000

# Names of the parts `decomposition_plot` stacks.
PARTS = {"network_share": "network", "ttft_share": "waiting for the first token (TTFT)",
         "overhead_share": "overhead", "decode_share": "generating the rest (decode)"}


def latency_cdf_plot(data: pd.DataFrame, *, x: str = "e2e_s", hue: str | None = "config_id",
                     ax: Axes | None = None) -> Axes:
    """Empirical CDF of a latency column per `hue` (seaborn's ecdfplot): read p50/p95 off the curve."""
    ax = axes_for(ax)
    require_columns(data, [x, hue], "latency_cdf_plot")
    points = numeric(data, [x]) if data is not None else None
    if points is None or points.empty:
        return no_data(ax)
    sns.ecdfplot(data=points, x=x, hue=hue, ax=ax)
    ax.set(xlabel=axis_label(x), ylabel=LABELS["cdf"], ylim=(0, 1.02))
    return ax


def percentile_plot(data: pd.DataFrame, *, by: str = "config_id", metric: str = "e2e_s",
                    ax: Axes | None = None) -> Axes:
    """Horizontal grouped bars of every `p<q>_<metric>` column, one group per `by` value down the y
    axis so that long names stay readable (the table `percentiles` returns)."""
    ax = axes_for(ax)
    require_columns(data, [by], "percentile_plot")
    columns = [] if data is None else [c for c in data.columns
                                       if c.startswith("p") and c.endswith(f"_{metric}")
                                       and c[1:-len(metric) - 1].replace(".", "").isdigit()]
    if data is None or data.empty or not columns:
        return no_data(ax)
    long = data.melt(id_vars=[by], value_vars=columns, var_name="percentile", value_name=metric)
    long["percentile"] = long["percentile"].str.removesuffix(f"_{metric}")
    long[metric] = pd.to_numeric(long[metric], errors="coerce").astype(float)
    long[by] = long[by].astype(str)
    sns.barplot(data=long, y=by, x=metric, hue="percentile", orient="h", ax=ax)
    ax.set(xlabel=axis_label(metric), ylabel="")
    legend(ax, title="percentile", outside=True)
    return ax


def regression_plot(data: pd.DataFrame, fits: pd.DataFrame, *, x: str = "completion_tokens",
                    y: str = "e2e_s", hue: str | None = "model", band: str = "prediction",
                    max_points: int = SCATTER_POINTS, seed: int = 0, ax: Axes | None = None) -> Axes:
    """Requests as points, each group's robust fitted line and its interval band.

    `fits` is a `fit_robust` / `fit_e2e` / `fit_ttft` table with `hue` as its group column.
    band="prediction" shades where a single request should fall, "mean" where the line is.
    A group of more than `max_points` requests shows a random choice of that many (seeded by `seed`:
    the same figure every time); the lines span every request's x.
    """
    if band not in ("prediction", "mean"):
        raise ParameterError(f"regression_plot: band must be 'prediction' or 'mean', got {band!r}")
    ax = axes_for(ax)
    require_columns(data, [x, y, hue], "regression_plot")
    require_columns(fits, [hue, "intercept", "slope"], "regression_plot fits")
    points = numeric(data, [x, y]) if data is not None else None
    if points is None or points.empty:
        return no_data(ax)
    levels = hue_levels(points, hue)
    colors = palette(levels)
    low, high = ("pred_low", "pred_high") if band == "prediction" else ("mean_low", "mean_high")
    grid = np.linspace(points[x].min(), points[x].max(), 50)
    for level in levels:
        part = hue_subset(points, hue, level)
        if len(part) > max_points:
            part = part.sample(max_points, random_state=seed)
        ax.scatter(part[x], part[y], s=12, alpha=0.5, color=colors[level],
                   label=None if level is None else str(level))
        fit = fits if hue is None else fits[fits[hue].astype(object) == level]
        fit = fit.dropna(subset=["slope"])
        if fit.empty:
            continue
        line = predict(fit.iloc[0], grid)
        ax.plot(grid, line["prediction"], color=colors[level])
        ax.fill_between(grid, line[low], line[high], color=colors[level], alpha=0.2, linewidth=0)
    ax.set(xlabel=axis_label(x), ylabel=axis_label(y))
    if hue is not None:
        ax.legend(title=hue)
    return ax


def decomposition_plot(data: pd.DataFrame, *, y: str = "config_id",
                       parts: Sequence[str] = ("network_share", "ttft_share", "decode_share"),
                       ax: Axes | None = None) -> Axes:
    """Horizontal stacked bars of each group's latency shares (the table `decomposition` returns).

    A part that is unknown for every group (network without a server-reported time) is not drawn
    and the legend says it cannot be separated; a share unknown for some groups stacks as 0.
    """
    ax = axes_for(ax)
    require_columns(data, [y, *parts], "decomposition_plot")
    if data is None or data.empty:
        return no_data(ax)
    labels = data[y].astype(str).tolist()
    left = np.zeros(len(data))
    missing = []
    for part, color in zip(parts, sns.color_palette(n_colors=len(parts))):
        widths = pd.to_numeric(data[part], errors="coerce").astype(float)
        name = PARTS.get(part, part.removesuffix("_share").replace("_", " "))
        if widths.isna().all():
            missing.append(name)
            continue
        ax.barh(labels, widths.fillna(0.0).to_numpy(), left=left, color=color, label=name)
        left += widths.fillna(0.0).to_numpy()
    ax.set(xlabel="share of the median request's end-to-end latency", ylabel="", xlim=(0, 1))
    ax.invert_yaxis()  # first row on top, as in the table
    notes = [Patch(facecolor="none", edgecolor="none", label=f"{name}: not separable here (inside TTFT)")
             for name in missing]
    legend(ax, outside=True, extra=notes)
    return ax


# The parts `latency_split_plot` stacks, in order, and the stand-in where TTFT cannot be split.
SPLIT_PARTS = {"network_queue": "network + queue", "prefill": "prefill (prompt processing)",
               "decode": "decode (after the first token)", "overhead": "overhead (after the last token)"}
UNSPLIT_TTFT = "TTFT: network + queue + prefill, not separable (no server timings)"
UNSPLIT_AFTER_FIRST = "after the first token: decode + overhead, not separable (no token gaps)"


def latency_split_plot(data: pd.DataFrame, *, y: str = "config_id", stat: str = "mean",
                       ax: Axes | None = None) -> Axes:
    """Horizontal stacked bars of where a request's time goes (the table `latency_split` returns):
    network + queue, prefill, decode and overhead, in seconds (`stat`: "mean" adds up to the mean
    end to end, "median" does not quite).  A row whose TTFT (or time after the first token) cannot be
    split draws it as one hatched block; a part below zero (clock noise in the overhead) draws as
    nothing."""
    if stat not in ("mean", "median"):
        raise ParameterError(f"latency_split_plot: stat must be 'mean' or 'median', got {stat!r}")
    ax = axes_for(ax)
    wholes = {"ttft": (("network_queue", "prefill"), UNSPLIT_TTFT, "//"),
              "after_first": (("decode", "overhead"), UNSPLIT_AFTER_FIRST, "\\\\")}
    columns = [f"{stat}_{part}_s" for part in (*SPLIT_PARTS, *wholes)]
    require_columns(data, [y, *columns], "latency_split_plot")
    if data is None or data.empty:
        return no_data(ax)
    labels = data[y].astype(str).tolist()
    seconds = {part: np.clip(pd.to_numeric(data[f"{stat}_{part}_s"], errors="coerce").astype(float).to_numpy(),
                             0.0, None) for part in (*SPLIT_PARTS, *wholes)}
    colors = dict(zip(SPLIT_PARTS, sns.color_palette(n_colors=len(SPLIT_PARTS))))
    left = np.zeros(len(data))
    for whole, (parts, name, hatch) in wholes.items():
        unsplit = np.isnan(seconds[parts[0]]) | np.isnan(seconds[parts[1]])
        if unsplit.any():
            widths = np.where(unsplit, np.nan_to_num(seconds[whole]), 0.0)
            ax.barh(labels, widths, left=left, color="lightgrey", hatch=hatch, edgecolor="grey", label=name)
            left += widths
        for part in parts:
            widths = np.where(unsplit, 0.0, np.nan_to_num(seconds[part]))
            if widths.any():
                ax.barh(labels, widths, left=left, color=colors[part], label=SPLIT_PARTS[part])
                left += widths
    ax.set(xlabel=f"{stat} seconds per request", ylabel="")
    ax.invert_yaxis()  # first row on top, as in the table
    legend(ax, outside=True)
    return ax


def load_sweep_plot(data: pd.DataFrame, *, x: str = "throughput_rps", y: str = "p50_e2e_s",
                    hue: str | None = "config_group", level: str = "concurrency", ax: Axes | None = None) -> Axes:
    """Throughput against latency, one line per `hue` through its load levels (the table `load_sweep`
    returns): each point is labelled with its level, and the knee (where latency grows faster than
    throughput) is ringed.  Up and to the left is worse: latency bought without throughput."""
    ax = axes_for(ax)
    require_columns(data, [x, y, hue, level], "load_sweep_plot")
    points = numeric(data, [x, y, level]) if data is not None else None
    if points is None or points.empty:
        return no_data(ax)
    levels = hue_levels(points, hue)
    colors = palette(levels)
    for group in levels:
        part = hue_subset(points, hue, group).sort_values(level, kind="mergesort")
        ax.plot(part[x], part[y], marker="o", color=colors[group], label=None if group is None else str(group))
        for _, row in part.iterrows():
            ax.annotate(f"{row[level]:g}", (row[x], row[y]), textcoords="offset points", xytext=(4, 4),
                        fontsize="x-small", color=colors[group])
        if "knee" in part.columns:
            knees = part[part["knee"].astype("boolean").fillna(False).to_numpy(dtype=bool)]
            ax.scatter(knees[x], knees[y], s=160, facecolors="none", edgecolors=colors[group], linewidths=1.5,
                       label=None)
    ax.set(xlabel=axis_label(x), ylabel=axis_label(y))
    ax.set_ylim(bottom=0)
    extra = [Line2D([], [], marker="o", markersize=10, markerfacecolor="none", markeredgecolor="grey",
                    linestyle="none", label=f"knee (point labels: {level})")]
    legend(ax, title=None if hue is None else legend_title(hue), outside=True, extra=extra)
    return ax
