"""Point labels that stay readable: points drawn at (nearly) the same place share one merged label."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from toolkit.present.labels import merge_labels


def annotate(ax: Axes, rows: pd.DataFrame, x: str, y: str, label: str, dy: int = 4) -> None:
    """Label each point; points drawn at (nearly) the same place get one merged label instead of a smear.
    A label in the right part of the axes extends to the left of its point so that it stays inside."""
    named = rows[rows[label].notna() & (rows[label].astype(str) != "")]
    left, right = ax.get_xlim()
    for members in _clusters(named[x].to_numpy(dtype=float), named[y].to_numpy(dtype=float),
                             log_x=ax.get_xscale() == "log"):
        group = named.iloc[members]
        px, py = group[x].iloc[0], group[y].iloc[0]
        where = ((np.log10(px) - np.log10(left)) / (np.log10(right) - np.log10(left)) if ax.get_xscale() == "log"
                 and px > 0 and left > 0 else (px - left) / (right - left) if right > left else 0.0)
        flip = where > 0.6
        ax.annotate(merge_labels(group[label].astype(str).tolist()), (px, py), textcoords="offset points",
                    xytext=(-4 if flip else 4, dy), ha="right" if flip else "left", fontsize=8)


def _clusters(xs: np.ndarray, ys: np.ndarray, *, log_x: bool = False, tolerance: float = 0.01) -> list[list[int]]:
    """Positions of points within `tolerance` of each other's place (as a share of each axis's span)."""
    if log_x:
        xs = np.log10(np.where(xs > 0, xs, np.nan))
    scaled = []
    for values in (xs, ys):
        finite = values[np.isfinite(values)]
        span = float(finite.max() - finite.min()) if len(finite) else 0.0
        scaled.append(values / span if span > 0 else values * 0.0)
    groups: list[list[int]] = []
    for i in range(len(xs)):
        home = next((g for g in groups if abs(scaled[0][g[0]] - scaled[0][i]) <= tolerance
                     and abs(scaled[1][g[0]] - scaled[1][i]) <= tolerance), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return groups
