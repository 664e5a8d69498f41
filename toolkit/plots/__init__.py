"""Figure functions in seaborn's shape: `data` first, column names as keywords, an `ax` in and out.

Each function draws on the `ax` given (or the current one), labels the axes with units and
returns the `ax`. Empty data draws a "no data" note instead of raising, so one empty
configuration does not break a whole report; a missing column is a `ParameterError`.
"""
from __future__ import annotations

from toolkit.plots.accuracy import accuracy_plot
from toolkit.plots.common import axis_label
from toolkit.plots.cost import bar_plot, cost_model_plot, sensitivity_plot
from toolkit.plots.frontier import frontier_plot
# the legend names of latency_split_plot are importable too, for a reader (or a test) to match its legend
from toolkit.plots.latency import (SPLIT_PARTS, UNSPLIT_AFTER_FIRST, UNSPLIT_TTFT, decomposition_plot,
                                   latency_cdf_plot, latency_split_plot, load_sweep_plot, percentile_plot,
                                   regression_plot)
from toolkit.plots.traffic import arrivals_plot, token_histogram

__all__ = [
    "accuracy_plot", "arrivals_plot", "axis_label", "bar_plot", "cost_model_plot", "decomposition_plot", "frontier_plot",
    "latency_cdf_plot", "latency_split_plot", "load_sweep_plot", "percentile_plot",
    "regression_plot", "sensitivity_plot", "token_histogram",
]
