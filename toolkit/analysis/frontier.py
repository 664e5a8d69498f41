"""The accuracy / latency / cost frontier over configurations, and the best one under a budget.

`config_summary` turns the requests table into one row per configuration; `pareto_front` marks
which rows no other row beats on every objective at once; `best_under` picks the cheapest row
that meets an accuracy target and a latency budget.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from toolkit.analysis.accuracy import accuracy_table
from toolkit.errors import ParameterError
from toolkit.pricing import PriceTable, price_requests

CONFIG_ATTRIBUTES = ("model", "prompt_variant", "max_tokens", "temperature", "concurrency")


def quantile_column(quantile: float, metric: str) -> str:
    """Column name for a latency quantile: (0.95, "e2e_s") -> "p95_e2e_s"."""
    return f"p{quantile * 100:g}_{metric}"


def config_summary(frame: pd.DataFrame, prices: PriceTable, quantiles: Sequence[float] = (0.5, 0.95),
                   by: Sequence[str] = ("config_id",), *, confidence: float = 0.95,
                   n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per group of `by`: accuracy with intervals, latency quantiles and cost.

    Columns: *by, the config attributes not in `by` (model, prompt_variant, max_tokens,
    temperature, concurrency: first value), the `accuracy_table` columns (n, correct, errors,
    ungraded, accuracy, accuracy_low, accuracy_high, score_mean, score_low, score_high),
    p<q>_e2e_s and p<q>_ttft_s per quantile (ok rows only), mean_prompt_tokens,
    mean_completion_tokens (ok rows), usd_total and usd_per_1k (mean USD per request x 1000,
    over every request including errors, priced with `prices`).
    """
    by = list(by)
    missing = [c for c in [*by, "status", "e2e_s", "ttft_s"] if c not in frame.columns]
    if missing:
        raise ParameterError(f"frame is missing column(s) {', '.join(missing)}")
    priced = frame.assign(_usd=price_requests(frame, prices))
    summary = accuracy_table(frame, by=by, confidence=confidence, n_resamples=n_resamples, seed=seed)
    attributes = [c for c in CONFIG_ATTRIBUTES if c in frame.columns and c not in by]
    if attributes:
        first = frame.groupby(by, sort=True, dropna=False)[attributes].first().reset_index()
        summary = first.merge(summary, on=by, how="right")

    ok = frame[(frame["status"] == "ok").fillna(False).astype(bool)]
    ok_groups = ok.groupby(by, sort=True, dropna=False)
    latency = pd.DataFrame(index=ok_groups.size().index)
    for q in quantiles:
        for metric in ("e2e_s", "ttft_s"):
            latency[quantile_column(q, metric)] = ok_groups[metric].quantile(q)
    for column in ("prompt_tokens", "completion_tokens"):
        latency[f"mean_{column}"] = ok_groups[column].mean().astype(float)
    summary = summary.merge(latency.reset_index(), on=by, how="left")

    cost = priced.groupby(by, sort=True, dropna=False)["_usd"].agg(["sum", "mean"]).reset_index()
    cost = cost.rename(columns={"sum": "usd_total", "mean": "usd_per_1k"})
    cost["usd_per_1k"] *= 1000
    return summary.merge(cost, on=by, how="left")


def pareto_front(summary: pd.DataFrame, maximize: Sequence[str] = ("accuracy",),
                 minimize: Sequence[str] = ("p50_e2e_s", "usd_per_1k"), *,
                 id_col: str = "config_id") -> pd.DataFrame:
    """Return `summary` with `pareto` (bool) and `dominated_by` (an `id_col` value or None).

    Row j dominates row i when it is at least as good on every objective and better on one;
    identical rows do not dominate each other, so ties stay on the front together.  A NaN counts
    as worse than every number (a config with no successful request has no latency to offer).
    `dominated_by` names the dominating row with the largest summed improvement, each objective
    scaled by its range; that row is always itself on the front.
    """
    objectives = [*maximize, *minimize]
    missing = [c for c in [id_col, *objectives] if c not in summary.columns]
    if missing:
        raise ParameterError(f"summary is missing column(s) {', '.join(missing)}")
    if not objectives:
        raise ParameterError("pareto_front needs at least one column to maximize or minimize")
    # Everything becomes "higher is better", NaN becomes a finite value below every number.
    signs = np.array([1.0] * len(maximize) + [-1.0] * len(minimize))
    raw = summary[objectives].to_numpy(dtype=float) * signs
    points, span = _fill_worst(raw)
    at_least = (points[:, None, :] >= points[None, :, :]).all(axis=2)
    better = (points[:, None, :] > points[None, :, :]).any(axis=2)
    dominates = at_least & better  # dominates[j, i]: row j dominates row i
    margin = ((points[:, None, :] - points[None, :, :]) / span).sum(axis=2)
    margin = np.where(dominates, margin, -np.inf)
    ids = summary[id_col].to_numpy(dtype=object)
    out = summary.copy()
    out["pareto"] = ~dominates.any(axis=0)
    out["dominated_by"] = pd.Series([None if front else ids[int(np.argmax(margin[:, i]))]
                                     for i, front in enumerate(out["pareto"])], index=out.index, dtype=object)
    return out


def best_under(summary: pd.DataFrame, min_accuracy: float, max_latency_s: float,
               latency_col: str = "p95_e2e_s", *, cost_col: str = "usd_per_1k",
               accuracy_col: str = "accuracy") -> pd.Series | None:
    """The cheapest row with accuracy >= `min_accuracy` and latency <= `max_latency_s`, or None.

    Ties on cost go to the higher accuracy.  Pass `accuracy_col="accuracy_low"` to demand that
    the lower end of the interval meets the target.
    """
    missing = [c for c in (accuracy_col, latency_col, cost_col) if c not in summary.columns]
    if missing:
        raise ParameterError(f"summary is missing column(s) {', '.join(missing)}")
    meets = (summary[accuracy_col].astype(float) >= min_accuracy) & (
        summary[latency_col].astype(float) <= max_latency_s) & summary[cost_col].notna()
    candidates = summary[meets.to_numpy()]
    if candidates.empty:
        return None
    ranked = candidates.sort_values([cost_col, accuracy_col], ascending=[True, False], kind="mergesort")
    return ranked.iloc[0]


def _fill_worst(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    filled = points.copy()
    span = np.ones(points.shape[1])
    for k in range(points.shape[1]):
        finite = points[np.isfinite(points[:, k]), k]
        if len(finite):
            width = float(finite.max() - finite.min())
            span[k] = width if width > 0 else 1.0
            worst = float(finite.min()) - span[k]
        else:
            worst = 0.0
        filled[~np.isfinite(points[:, k]), k] = worst
    return filled, span
