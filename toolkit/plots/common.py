"""What every figure function shares: axis labels with units, the `ax` to draw on, column checks,
the "no data" note, hue levels and their colors, error bars and the legend."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.artist import Artist
from matplotlib.axes import Axes

from toolkit.errors import ParameterError

LABELS = {
    "ttft_s": "time to first token (s)",
    "e2e_s": "end-to-end latency (s)",
    "tpot_s": "time per output token (s)",
    "itl_s": "inter-token latency (s)",
    "itl_mean_s": "mean inter-token latency (s)",
    "decode_s": "decode time (s)",
    "overhead_s": "network and client overhead (s)",
    "output_tokens_per_s": "output speed (tokens/s)",
    "prompt_tokens": "prompt tokens",
    "completion_tokens": "output tokens",
    "accuracy": "accuracy (share correct)",
    "usd_per_1k": "cost (USD per 1,000 requests)",
    "usd_per_request": "cost (USD per request)",
    "ev_usd": "expected value (USD per request)",
    "monthly_ev_usd": "expected value (USD per month)",
    "error_value_ratio": "error cost / value of a success (E/V)",
    "goodput_rps": "goodput (requests/s)",
    "throughput_rps": "throughput (requests/s)",
    "throughput_tokens_per_s": "output throughput (tokens/s)",
    "ttft_from_scheduled_s": "time to first token from the due time (s)",
    "e2e_from_scheduled_s": "end-to-end latency from the due time (s)",
    "cdf": "share of requests at or below",
    "monthly_usd": "cost (USD per month)",
}
_UNITS = (("_usd", "USD"), ("_rps", "requests/s"), ("_share", "share"), ("_s", "s"))


def axis_label(column: str) -> str:
    """A readable axis label with units for a column name (`p95_e2e_s` -> `p95 end-to-end latency (s)`)."""
    if column in LABELS:
        return LABELS[column]
    head, _, rest = column.partition("_")
    if head[:1] == "p" and head[1:].replace(".", "").isdigit() and rest:
        return f"{head} {axis_label(rest)}"
    for suffix, unit in _UNITS:
        if column.endswith(suffix):
            return f"{column[: -len(suffix)].replace('_', ' ')} ({unit})"
    return column.replace("_", " ")


def axes_for(ax: Axes | None) -> Axes:
    return plt.gca() if ax is None else ax


def require_columns(data: pd.DataFrame | None, columns: Sequence[str | None], where: str) -> None:
    if data is None:
        return
    missing = [c for c in columns if c is not None and c not in data.columns]
    if missing:
        raise ParameterError(f"{where}: data has no column(s) {', '.join(missing)}; "
                             f"it has {', '.join(map(str, data.columns))}")


def no_data(ax: Axes) -> Axes:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    return ax


def numeric(data: pd.DataFrame, columns: Sequence[str | None]) -> pd.DataFrame:
    """Copy with the given columns as plain floats (nullable dtypes trip matplotlib) and NaN rows dropped."""
    names = [c for c in columns if c is not None]
    out = data.copy()
    for name in names:
        out[name] = pd.to_numeric(out[name], errors="coerce").astype(float)
    return out.dropna(subset=names)


def palette(levels: Sequence[object]) -> dict[object, tuple]:
    return dict(zip(levels, sns.color_palette(n_colors=max(len(levels), 1))))


def hue_levels(data: pd.DataFrame, hue: str | None) -> list[object]:
    return [None] if hue is None else list(pd.unique(data[hue].astype(object)))


def hue_subset(data: pd.DataFrame, hue: str | None, level: object) -> pd.DataFrame:
    return data if hue is None else data[data[hue].astype(object) == level]


def legend_title(column: str) -> str:
    return "configuration" if column == "config_id" else column.replace("_", " ")


def legend(ax: Axes, *, title: str | None = None, outside: bool = False,
           extra: Sequence[Artist] = ()) -> None:
    """Every labelled artist on `ax` (earlier calls' too) plus `extra`; outside on the right when asked."""
    handles, labels = ax.get_legend_handles_labels()
    handles, labels = [*handles, *extra], [*labels, *(p.get_label() for p in extra)]
    if not handles:
        return
    where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if outside else {}
    ax.legend(handles, labels, title=title, fontsize="small", **where)


def error_bars(part: pd.DataFrame, center: str, bounds: tuple[str, str] | None) -> np.ndarray | None:
    """Asymmetric error-bar lengths from interval columns, clipped at 0 for matplotlib."""
    if bounds is None:
        return None
    low, high = (pd.to_numeric(part[b], errors="coerce").astype(float).to_numpy() for b in bounds)
    value = part[center].to_numpy(dtype=float)
    return np.clip(np.vstack([value - low, high - value]), 0.0, None)
