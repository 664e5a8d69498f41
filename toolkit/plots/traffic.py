"""Figures of a traffic table: arrivals over time and token-length distributions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from toolkit.plots.common import axes_for, axis_label, no_data, numeric, require_columns


def arrivals_plot(data: pd.DataFrame, *, x: str = "bin_start", y: str = "rate_per_s", mean: float | None = None,
                  ax: Axes | None = None) -> Axes:
    """Arrival rate per time bin (`traffic.arrivals`), with the mean rate as a dashed line."""
    ax = axes_for(ax)
    require_columns(data, [x, y], "arrivals_plot")
    if data.empty:
        return no_data(ax)
    ax.step(data[x], data[y], where="post", color="C0", linewidth=1)
    if mean is not None and np.isfinite(mean):
        ax.axhline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.3g}/s")
        ax.legend(loc="upper right")
    ax.set(xlabel="time (UTC)", ylabel="arrivals per second")
    ax.tick_params(axis="x", labelrotation=30)
    return ax


def token_histogram(data: pd.DataFrame, *, columns: tuple[str, ...] = ("prompt_tokens", "completion_tokens"),
                    ax: Axes | None = None) -> Axes:
    """The distribution of each token column on a log axis (token counts span orders of magnitude)."""
    ax = axes_for(ax)
    present = [c for c in columns if c in data.columns]
    long = pd.concat([numeric(data[[c]], [c]).rename(columns={c: "tokens"}).assign(kind=axis_label(c))
                      for c in present], ignore_index=True) if present else pd.DataFrame()
    long = long[long["tokens"] > 0] if len(long) else long
    if long.empty:
        return no_data(ax)
    sns.histplot(long, x="tokens", hue="kind", log_scale=True, element="step", stat="density", common_norm=False,
                 ax=ax)
    ax.set(xlabel="tokens per request (log scale)")
    return ax
