"""Figure functions in seaborn's shape: `data` first, column names as keywords, an `ax` in and out.

Each function draws on the `ax` given (or the current one), labels the axes with units and
returns the `ax`. Empty data draws a "no data" note instead of raising, so one empty
configuration does not break a whole report; a missing column is a `ParameterError`.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from toolkit.analysis.frontier import on_front
from toolkit.analysis.latency_fit import predict
from toolkit.errors import ParameterError
from toolkit.present.labels import merge_labels

__all__ = [
    "accuracy_plot", "axis_label", "bar_plot", "cost_model_plot", "decomposition_plot", "frontier_plot",
    "latency_cdf_plot", "latency_split_plot", "load_sweep_plot", "percentile_plot",
    "regression_plot", "sensitivity_plot",
]

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
# Names of the parts `decomposition_plot` stacks.
PARTS = {"network_share": "network", "ttft_share": "waiting for the first token (TTFT)",
         "overhead_share": "overhead", "decode_share": "generating the rest (decode)"}
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


def _axes(ax: Axes | None) -> Axes:
    return plt.gca() if ax is None else ax


def _require(data: pd.DataFrame | None, columns: Sequence[str | None], where: str) -> None:
    if data is None:
        return
    missing = [c for c in columns if c is not None and c not in data.columns]
    if missing:
        raise ParameterError(f"{where}: data has no column(s) {', '.join(missing)}; "
                             f"it has {', '.join(map(str, data.columns))}")


def _no_data(ax: Axes) -> Axes:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    return ax


def _numeric(data: pd.DataFrame, columns: Sequence[str | None]) -> pd.DataFrame:
    """Copy with the given columns as plain floats (nullable dtypes trip matplotlib) and NaN rows dropped."""
    names = [c for c in columns if c is not None]
    out = data.copy()
    for name in names:
        out[name] = pd.to_numeric(out[name], errors="coerce").astype(float)
    return out.dropna(subset=names)


def _palette(levels: Sequence[object]) -> dict[object, tuple]:
    return dict(zip(levels, sns.color_palette(n_colors=max(len(levels), 1))))


def _levels(data: pd.DataFrame, hue: str | None) -> list[object]:
    return [None] if hue is None else list(pd.unique(data[hue].astype(object)))


def _subset(data: pd.DataFrame, hue: str | None, level: object) -> pd.DataFrame:
    return data if hue is None else data[data[hue].astype(object) == level]


_HUE_GID = "frontier-hue"  # marks the legend proxies of `frontier_plot`'s hue levels


def _title(column: str) -> str:
    return "configuration" if column == "config_id" else column.replace("_", " ")


def _legend(ax: Axes, *, title: str | None = None, outside: bool = False,
            extra: Sequence[Artist] = ()) -> None:
    """Every labelled artist on `ax` (earlier calls' too) plus `extra`; outside on the right when asked."""
    handles, labels = ax.get_legend_handles_labels()
    handles, labels = [*handles, *extra], [*labels, *(p.get_label() for p in extra)]
    if not handles:
        return
    where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if outside else {}
    ax.legend(handles, labels, title=title, fontsize="small", **where)


def latency_cdf_plot(data: pd.DataFrame, *, x: str = "e2e_s", hue: str | None = "config_id",
                     ax: Axes | None = None) -> Axes:
    """Empirical CDF of a latency column per `hue` (seaborn's ecdfplot): read p50/p95 off the curve."""
    ax = _axes(ax)
    _require(data, [x, hue], "latency_cdf_plot")
    points = _numeric(data, [x]) if data is not None else None
    if points is None or points.empty:
        return _no_data(ax)
    sns.ecdfplot(data=points, x=x, hue=hue, ax=ax)
    ax.set(xlabel=axis_label(x), ylabel=LABELS["cdf"], ylim=(0, 1.02))
    return ax


def percentile_plot(data: pd.DataFrame, *, by: str = "config_id", metric: str = "e2e_s",
                    ax: Axes | None = None) -> Axes:
    """Horizontal grouped bars of every `p<q>_<metric>` column, one group per `by` value down the y
    axis so that long names stay readable (the table `percentiles` returns)."""
    ax = _axes(ax)
    _require(data, [by], "percentile_plot")
    columns = [] if data is None else [c for c in data.columns
                                       if c.startswith("p") and c.endswith(f"_{metric}")
                                       and c[1:-len(metric) - 1].replace(".", "").isdigit()]
    if data is None or data.empty or not columns:
        return _no_data(ax)
    long = data.melt(id_vars=[by], value_vars=columns, var_name="percentile", value_name=metric)
    long["percentile"] = long["percentile"].str.removesuffix(f"_{metric}")
    long[metric] = pd.to_numeric(long[metric], errors="coerce").astype(float)
    long[by] = long[by].astype(str)
    sns.barplot(data=long, y=by, x=metric, hue="percentile", orient="h", ax=ax)
    ax.set(xlabel=axis_label(metric), ylabel="")
    _legend(ax, title="percentile", outside=True)
    return ax


def regression_plot(data: pd.DataFrame, fits: pd.DataFrame, *, x: str = "completion_tokens",
                    y: str = "e2e_s", hue: str | None = "model", band: str = "prediction",
                    ax: Axes | None = None) -> Axes:
    """Requests as points, each group's robust fitted line and its interval band.

    `fits` is a `fit_robust` / `fit_e2e` / `fit_ttft` table with `hue` as its group column.
    band="prediction" shades where a single request should fall, "mean" where the line is.
    """
    if band not in ("prediction", "mean"):
        raise ParameterError(f"regression_plot: band must be 'prediction' or 'mean', got {band!r}")
    ax = _axes(ax)
    _require(data, [x, y, hue], "regression_plot")
    _require(fits, [hue, "intercept", "slope"], "regression_plot fits")
    points = _numeric(data, [x, y]) if data is not None else None
    if points is None or points.empty:
        return _no_data(ax)
    levels = _levels(points, hue)
    colors = _palette(levels)
    low, high = ("pred_low", "pred_high") if band == "prediction" else ("mean_low", "mean_high")
    grid = np.linspace(points[x].min(), points[x].max(), 50)
    for level in levels:
        part = _subset(points, hue, level)
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
    ax = _axes(ax)
    _require(data, [y, *parts], "decomposition_plot")
    if data is None or data.empty:
        return _no_data(ax)
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
    _legend(ax, outside=True, extra=notes)
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
    ax = _axes(ax)
    wholes = {"ttft": (("network_queue", "prefill"), UNSPLIT_TTFT, "//"),
              "after_first": (("decode", "overhead"), UNSPLIT_AFTER_FIRST, "\\\\")}
    columns = [f"{stat}_{part}_s" for part in (*SPLIT_PARTS, *wholes)]
    _require(data, [y, *columns], "latency_split_plot")
    if data is None or data.empty:
        return _no_data(ax)
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
    _legend(ax, outside=True)
    return ax


def load_sweep_plot(data: pd.DataFrame, *, x: str = "throughput_rps", y: str = "p50_e2e_s",
                    hue: str | None = "config_group", level: str = "concurrency", ax: Axes | None = None) -> Axes:
    """Throughput against latency, one line per `hue` through its load levels (the table `load_sweep`
    returns): each point is labelled with its level, and the knee (where latency grows faster than
    throughput) is ringed.  Up and to the left is worse: latency bought without throughput."""
    ax = _axes(ax)
    _require(data, [x, y, hue, level], "load_sweep_plot")
    points = _numeric(data, [x, y, level]) if data is not None else None
    if points is None or points.empty:
        return _no_data(ax)
    levels = _levels(points, hue)
    colors = _palette(levels)
    for group in levels:
        part = _subset(points, hue, group).sort_values(level, kind="mergesort")
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
    _legend(ax, title=None if hue is None else _title(hue), outside=True, extra=extra)
    return ax


def bar_plot(data: pd.DataFrame | None, *, x: str, y: str, ax: Axes | None = None) -> Axes:
    """One horizontal bar per row: `y` names the bars, `x` is their length (e.g. cost per scenario)."""
    ax = _axes(ax)
    _require(data, [x, y], "bar_plot")
    points = _numeric(data, [x]) if data is not None else None
    if points is None or points.empty:
        return _no_data(ax)
    ax.barh(points[y].astype(str), points[x])
    ax.invert_yaxis()
    ax.set(xlabel=axis_label(x), ylabel="")
    return ax


def _errors(part: pd.DataFrame, center: str, bounds: tuple[str, str] | None) -> np.ndarray | None:
    """Asymmetric error-bar lengths from interval columns, clipped at 0 for matplotlib."""
    if bounds is None:
        return None
    low, high = (pd.to_numeric(part[b], errors="coerce").astype(float).to_numpy() for b in bounds)
    value = part[center].to_numpy(dtype=float)
    return np.clip(np.vstack([value - low, high - value]), 0.0, None)


def _annotate(ax: Axes, rows: pd.DataFrame, x: str, y: str, label: str, dy: int = 4) -> None:
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


def accuracy_plot(data: pd.DataFrame, *, x: str = "accuracy", y: str = "config_id",
                  lower: str | None = "accuracy_low", upper: str | None = "accuracy_high",
                  hue: str | None = None, ax: Axes | None = None) -> Axes:
    """Accuracy per `y` as a point with its interval (the table `accuracy_table` returns).

    With `hue` (e.g. "dataset") the points of one `y` are dodged vertically, one color per level.
    """
    ax = _axes(ax)
    _require(data, [x, y, lower, upper, hue], "accuracy_plot")
    points = _numeric(data, [x]) if data is not None else None
    if points is None or points.empty:
        return _no_data(ax)
    bounds = (lower, upper) if lower is not None and upper is not None else None
    rows = list(pd.unique(points[y].astype(str)))
    levels = _levels(points, hue)
    colors = _palette(levels)
    for i, level in enumerate(levels):
        part = _subset(points, hue, level)
        offset = (i - (len(levels) - 1) / 2) * 0.6 / len(levels)
        positions = np.array([rows.index(v) for v in part[y].astype(str)]) + offset
        ax.errorbar(part[x], positions, xerr=_errors(part, x, bounds), fmt="o", capsize=3,
                    color=colors[level], label=None if level is None else str(level))
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel=axis_label(x), ylabel="", ylim=(len(rows) - 0.5, -0.5))
    if hue is not None:
        _legend(ax, title=hue, outside=True)
    return ax


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
    ax = _axes(ax)
    _require(data, [x, y, lower, upper, hue, label], "cost_model_plot")
    points = _numeric(data, [x, y]) if data is not None else None
    if points is None or points.empty:
        return _no_data(ax)
    bounds = (lower, upper) if lower is not None and upper is not None else None
    levels = _levels(points, hue)
    colors = _palette(levels)
    for level in levels:
        part = _subset(points, hue, level).sort_values(x)
        name = None if level is None else str(level)
        if kind == "line":
            ax.plot(part[x], part[y], color=colors[level], label=name)
            if bounds is not None:
                ax.fill_between(part[x], part[lower], part[upper], color=colors[level], alpha=0.2,
                                linewidth=0)
        else:
            ax.errorbar(part[x], part[y], yerr=_errors(part, y, bounds), fmt="o", capsize=3,
                        color=colors[level], label=name)
        if label is not None:
            _annotate(ax, part, x, y, label)
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
    _legend(ax, title=hue)
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
    ax = _axes(ax)
    _require(data, [x, y, hue, lower, upper], "sensitivity_plot")
    points = _numeric(data, [x, y]) if data is not None else None
    if points is None or points.empty:
        return _no_data(ax)
    levels = _levels(points, hue)
    colors = _palette(levels)
    for level in levels:
        part = _subset(points, hue, level).sort_values(x)
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
        _legend(ax, title=_title(hue), outside=len(levels) > 4)
    return ax


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
    ax = _axes(ax)
    _require(data, [x, y, hue, pareto, label, *(xerr or ()), *(yerr or ())], "frontier_plot")
    points = _numeric(data, [x, y]) if data is not None else None
    if points is None or points.empty:
        return _no_data(ax)
    members = (points[pareto].astype("boolean").fillna(False).astype(bool) if pareto is not None
               else pd.Series(True, index=points.index))
    levels = _levels(points, hue)
    # a second call on the same axes (extra points over a frontier) continues the palette
    drawn = sum(1 for line in ax.lines if line.get_gid() == _HUE_GID)
    colors = dict(zip(levels, sns.color_palette(n_colors=drawn + max(len(levels), 1))[drawn:]))
    for level in levels:
        part = _subset(points, hue, level)
        for member in (True, False):
            sub = part[members.loc[part.index] == member]
            if sub.empty:
                continue
            ax.errorbar(sub[x], sub[y], xerr=_errors(sub, x, xerr), yerr=_errors(sub, y, yerr), fmt="o",
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
            _annotate(ax, points[on_view], x, y, label)
    elif label is not None:
        _annotate(ax, points, x, y, label)
    if reference is not None and not reference.empty:
        _require(reference, [x, y], "frontier_plot reference")
        ref = _numeric(reference, [x, y])
        ax.scatter(ref[x], ref[y], marker="*", s=120, color="black", label="reference", zorder=3)
        if label is not None and label in ref.columns:
            _annotate(ax, ref, x, y, label, dy=-10)
    ax.set(xlabel=axis_label(x), ylabel=axis_label(y))
    _legend(ax, title=None if hue is None else _title(hue), outside=True)
    return ax


