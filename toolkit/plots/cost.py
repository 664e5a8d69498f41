"""Cost and value figures: expected value against accuracy, how it moves as a parameter sweeps,
and one bar per scenario."""
from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from toolkit.errors import ParameterError
from toolkit.plots.annotate import annotate
from toolkit.plots.common import (axes_for, axis_label, error_bars, hue_levels, hue_subset, legend, legend_title,
                                  no_data, numeric, palette, require_columns)


def cost_model_plot(data: pd.DataFrame, *, x: str = "accuracy", y: str = "ev_usd",
                    lower: str | None = None, upper: str | None = None, hue: str | None = None,
                    label: str | None = None, kind: str = "line", break_even: float | None = None,
                    human_accuracy: float | None = None, human_ev: float | None = None,
                    ax: Axes | None = None) -> Axes:
    """Expected value against accuracy, with the break-even accuracy and a human baseline marked.

    kind="line" joins the rows in `x` order (an accuracy grid, EV band from lower/upper);
    kind="points" draws one point per row with EV error bars, named by the `label` column
    (the table `cost_model.value_table` returns). EV = 0 is drawn as the break-even line.
    """
    if kind not in ("line", "points"):
        raise ParameterError(f"cost_model_plot: kind must be 'line' or 'points', got {kind!r}")
    ax = axes_for(ax)
    require_columns(data, [x, y, lower, upper, hue, label], "cost_model_plot")
    points = numeric(data, [x, y]) if data is not None else None
    if points is None or points.empty:
        return no_data(ax)
    bounds = (lower, upper) if lower is not None and upper is not None else None
    levels = hue_levels(points, hue)
    colors = palette(levels)
    for level in levels:
        part = hue_subset(points, hue, level).sort_values(x)
        name = None if level is None else str(level)
        if kind == "line":
            ax.plot(part[x], part[y], color=colors[level], label=name)
            if bounds is not None:
                ax.fill_between(part[x], part[lower], part[upper], color=colors[level], alpha=0.2,
                                linewidth=0)
        else:
            ax.errorbar(part[x], part[y], yerr=error_bars(part, y, bounds), fmt="o", capsize=3,
                        color=colors[level], label=name)
        if label is not None:
            annotate(ax, part, x, y, label)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    if break_even is not None:
        ax.axvline(break_even, color="black", linestyle="--", label=f"break-even {break_even:.1%}")
    if human_accuracy is not None:
        ax.axvline(human_accuracy, color="tab:red", linestyle=":", label=f"human {human_accuracy:.1%}")
    if human_ev is not None:
        ax.axhline(human_ev, color="tab:red", linestyle="-.", label="human's expected value")
        ax.update_datalim([(float(points[x].min()), human_ev)])  # keep the line inside the axes
        ax.autoscale_view()
    ax.set(xlabel=axis_label(x), ylabel=axis_label(y))
    legend(ax, title=hue)
    return ax


def sensitivity_plot(data: pd.DataFrame, *, x: str = "error_value_ratio", y: str = "ev_usd",
                     hue: str | None = "config_id", lower: str | None = "ev_low_usd",
                     upper: str | None = "ev_high_usd", logx: bool = True, symlog: float | None = None,
                     ax: Axes | None = None) -> Axes:
    """How an outcome moves as one parameter sweeps (the table `cost_model.sensitivity` returns).

    One line per `hue` with its interval band, EV = 0 marked; where lines cross, the best
    configuration changes.  `symlog` (a value in `y` units) makes the y axis linear within
    +-symlog and logarithmic beyond, so that losses a hundred times larger do not flatten the
    region around zero where the lines cross.
    """
    ax = axes_for(ax)
    require_columns(data, [x, y, hue, lower, upper], "sensitivity_plot")
    points = numeric(data, [x, y]) if data is not None else None
    if points is None or points.empty:
        return no_data(ax)
    levels = hue_levels(points, hue)
    colors = palette(levels)
    for level in levels:
        part = hue_subset(points, hue, level).sort_values(x)
        ax.plot(part[x], part[y], color=colors[level], label=None if level is None else str(level))
        if lower is not None and upper is not None:
            ax.fill_between(part[x], part[lower].astype(float), part[upper].astype(float),
                            color=colors[level], alpha=0.15, linewidth=0)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    if logx:
        ax.set_xscale("log")
    if symlog is not None:
        ax.set_yscale("symlog", linthresh=symlog)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set(xlabel=axis_label(x), ylabel=axis_label(y) + (" (log scale beyond ±" f"{symlog:g})" if symlog else ""))
    if hue is not None:
        legend(ax, title=legend_title(hue), outside=len(levels) > 4)
    return ax


def bar_plot(data: pd.DataFrame | None, *, x: str, y: str, ax: Axes | None = None) -> Axes:
    """One horizontal bar per row: `y` names the bars, `x` is their length (e.g. cost per scenario)."""
    ax = axes_for(ax)
    require_columns(data, [x, y], "bar_plot")
    points = numeric(data, [x]) if data is not None else None
    if points is None or points.empty:
        return no_data(ax)
    ax.barh(points[y].astype(str), points[x])
    ax.invert_yaxis()
    ax.set(xlabel=axis_label(x), ylabel="")
    return ax
