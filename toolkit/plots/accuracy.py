"""Accuracy per configuration with its interval."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from toolkit.plots.common import (axes_for, axis_label, error_bars, hue_levels, hue_subset, legend, no_data,
                                  numeric, palette, require_columns)


def accuracy_plot(data: pd.DataFrame, *, x: str = "accuracy", y: str = "config_id",
                  lower: str | None = "accuracy_low", upper: str | None = "accuracy_high",
                  hue: str | None = None, ax: Axes | None = None) -> Axes:
    """Accuracy per `y` as a point with its interval (the table `accuracy_table` returns).

    With `hue` (e.g. "dataset") the points of one `y` are dodged vertically, one color per level.
    """
    ax = axes_for(ax)
    require_columns(data, [x, y, lower, upper, hue], "accuracy_plot")
    points = numeric(data, [x]) if data is not None else None
    if points is None or points.empty:
        return no_data(ax)
    bounds = (lower, upper) if lower is not None and upper is not None else None
    rows = list(pd.unique(points[y].astype(str)))
    levels = hue_levels(points, hue)
    colors = palette(levels)
    for i, level in enumerate(levels):
        part = hue_subset(points, hue, level)
        offset = (i - (len(levels) - 1) / 2) * 0.6 / len(levels)
        positions = np.array([rows.index(v) for v in part[y].astype(str)]) + offset
        ax.errorbar(part[x], positions, xerr=error_bars(part, x, bounds), fmt="o", capsize=3,
                    color=colors[level], label=None if level is None else str(level))
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel=axis_label(x), ylabel="", ylim=(len(rows) - 0.5, -0.5))
    if hue is not None:
        legend(ax, title=hue, outside=True)
    return ax
