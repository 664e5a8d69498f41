"""The frontier figure: configurations in a cost/latency-accuracy plane with the view's own front."""
from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from toolkit.analysis.frontier import on_front
from toolkit.plots.annotate import annotate
from toolkit.plots.common import (axes_for, axis_label, error_bars, hue_levels, hue_subset, legend, legend_title,
                                  no_data, numeric, require_columns)

_HUE_GID = "frontier-hue"  # marks the legend proxies of `frontier_plot`'s hue levels


def frontier_plot(data: pd.DataFrame, *, x: str = "usd_per_1k", y: str = "accuracy",
                  hue: str | None = "model", pareto: str | None = "pareto",
                  xerr: tuple[str, str] | None = None,
                  yerr: tuple[str, str] | None = None,
                  label: str | None = "config_id", reference: pd.DataFrame | None = None,
                  logx: bool = False, ax: Axes | None = None) -> Axes:
    """Configurations in the (`x` down, `y` up) plane with this view's own front drawn as a staircase.

    A point is on this view's front when no other point has at least its `y` at no more `x` (and
    is better on one); the dashed staircase joins those points and only they are labelled (points
    at the same place share one label).  `pareto` names a column marking the front over *all*
    objectives (`frontier.pareto_front`, e.g. accuracy, latency and cost): its members are drawn
    filled, the others hollow and faded.  A filled point off the staircase is beaten on the two
    axes shown but better on one that is not.  pareto=None draws plain filled points, every one
    labelled, without a staircase (e.g. extra points over a frontier drawn before).  xerr/yerr
    name (low, high) interval columns, e.g. yerr=("accuracy_low", "accuracy_high").  `reference`
    (same `x`/`y` columns, optional `label`) adds outside results, e.g. published numbers, as
    black stars.
    """
    ax = axes_for(ax)
    require_columns(data, [x, y, hue, pareto, label, *(xerr or ()), *(yerr or ())], "frontier_plot")
    points = numeric(data, [x, y]) if data is not None else None
    if points is None or points.empty:
        return no_data(ax)
    members = (points[pareto].astype("boolean").fillna(False).astype(bool) if pareto is not None
               else pd.Series(True, index=points.index))
    levels = hue_levels(points, hue)
    # a second call on the same axes (extra points over a frontier) continues the palette
    drawn = sum(1 for line in ax.lines if line.get_gid() == _HUE_GID)
    colors = dict(zip(levels, sns.color_palette(n_colors=drawn + max(len(levels), 1))[drawn:]))
    for level in levels:
        part = hue_subset(points, hue, level)
        for member in (True, False):
            sub = part[members.loc[part.index] == member]
            if sub.empty:
                continue
            ax.errorbar(sub[x], sub[y], xerr=error_bars(sub, x, xerr), yerr=error_bars(sub, y, yerr), fmt="o",
                        capsize=2, color=colors[level], alpha=1.0 if member else 0.45, zorder=3 if member else 2,
                        markerfacecolor=colors[level] if member else "white", markeredgecolor=colors[level])
        if level is not None:
            ax.plot([], [], "o", color=colors[level], label=str(level), gid=_HUE_GID)
    if logx:  # before labelling: where a label goes depends on the scale
        ax.set_xscale("log")
    if pareto is not None:
        on_view = on_front(points, maximize=(y,), minimize=(x,))
        steps = points[on_view].sort_values([x, y])
        xs = [*steps[x], float(points[x].max())]
        ys = [*steps[y], float(steps[y].iloc[-1])]
        ax.step(xs, ys, where="post", color="black", linestyle="--", linewidth=1, zorder=1,
                label="front in this view")
        ax.plot([], [], "o", color="grey", label="on the front over all objectives")
        ax.plot([], [], "o", color="grey", markerfacecolor="white", alpha=0.6, label="beaten over all objectives")
        if label is not None:
            annotate(ax, points[on_view], x, y, label)
    elif label is not None:
        annotate(ax, points, x, y, label)
    if reference is not None and not reference.empty:
        require_columns(reference, [x, y], "frontier_plot reference")
        ref = numeric(reference, [x, y])
        ax.scatter(ref[x], ref[y], marker="*", s=120, color="black", label="reference", zorder=3)
        if label is not None and label in ref.columns:
            annotate(ax, ref, x, y, label, dy=-10)
    ax.set(xlabel=axis_label(x), ylabel=axis_label(y))
    legend(ax, title=None if hue is None else legend_title(hue), outside=True)
    return ax
