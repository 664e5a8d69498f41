"""The accuracy / latency / cost frontier over configurations, and the best one under a budget.

`config_summary` turns the requests table into one row per configuration; `pareto_front` marks
which rows no other row beats on every objective at once; `best_under` picks the cheapest row
that meets an accuracy target and a latency budget; `cost_summary`, `choose_best` and `headline`
are what every notebook and the report index share.  They accept any requests table: a run
without grades (latency-only imports) or without timings (accuracy-only imports) gives NaN where
a number is unknown, never an error.

The **best configuration** rule (`choose_best`): the cheapest configuration (USD per 1,000
requests) whose accuracy is at least the target and whose end-to-end latency at the chosen
quantile is within the budget; ties go to the higher accuracy (`frontier.best_under`).  Without
a fixed target, the value of a success V and the cost of an error E set it: each configuration
must reach its own break-even accuracy (E + c) / (V + E), c being its cost per request, i.e. earn
a positive expected value.  A condition the run cannot check (no graded requests, no timings) or
that is not given is dropped and the rule text says so; when costs are unknown for every config,
the most accurate qualifying one is chosen.  When nothing qualifies, there is no best
configuration and the one closest to the accuracy target within the latency budget (else
overall) is named, judged by the low end of its accuracy interval (a config measured on a few
items does not win on a lucky point estimate).

Latency and cost count only the requests the model answered (`cost_summary`): a response-cache
hit takes a lookup's time and costs nothing, and how often a run hits its cache says how often
its grid repeated a request, not what a configuration costs.  `hit_rate` says how many were set
aside; `05_caching_batch` prices the cache for a given repeat rate.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit import warehouse
from toolkit.analysis.accuracy import accuracy_table
from toolkit.analysis.cost_model import break_even_accuracy, expected_value
from toolkit.analysis.rows import cache_hits, run_overview
from toolkit.errors import ParameterError
from toolkit.machine_time import pricing_rules, with_machine_time
from toolkit.pricing import PriceTable, describe, machine_priced, priced
from toolkit.warehouse import Rows


CONFIG_ATTRIBUTES = ("model", "prompt_variant", "max_tokens", "temperature", "concurrency")


def quantile_column(quantile: float, metric: str) -> str:
    """Column name for a latency quantile: (0.95, "e2e_s") -> "p95_e2e_s"."""
    return f"p{quantile * 100:g}_{metric}"


def config_summary(rows: Rows, prices: PriceTable, quantiles: Sequence[float] = (0.5, 0.95),
                   by: Sequence[str] = ("config_id",), *, confidence: float = 0.95,
                   n_resamples: int = 2000, seed: int = 0, answered_only: bool = False) -> pd.DataFrame:
    """One row per group of `by`: accuracy with intervals, latency quantiles and cost (counted in DuckDB).

    Columns: *by, the config attributes not in `by` (model, prompt_variant, max_tokens,
    temperature, concurrency: the smallest value, a config has one), the `accuracy_table` columns (n,
    correct, errors, ungraded, accuracy, accuracy_low, accuracy_high, score_mean, score_low, score_high),
    p<q>_e2e_s and p<q>_ttft_s per quantile (ok rows only), mean_prompt_tokens,
    mean_completion_tokens (ok rows), usd_total and usd_per_1k (mean USD per request x 1000,
    over every request including errors, priced with `prices`).  With `answered_only`, latency, tokens and
    cost count only the requests the model answered, not the response cache's hits (NaN for a group
    answered entirely from the cache); accuracy still counts every request.
    """
    by = list(by)
    source = warehouse.relation(rows)
    missing = [c for c in [*by, "status", "e2e_s", "ttft_s"] if c not in source.columns]
    if missing:
        raise ParameterError(f"the requests are missing column(s) {', '.join(missing)}")
    summary = accuracy_table(source, by=by, confidence=confidence, n_resamples=n_resamples, seed=seed)
    attributes = [c for c in CONFIG_ATTRIBUTES if c in source.columns and c not in by]
    costed = priced(source, prices)
    measured = f"NOT {warehouse.flag(source, 'cache_hit')}" if answered_only else "true"
    ok = f"coalesce({warehouse.text(source, 'status')} = 'ok', false) AND {measured}"
    measures = warehouse.over(costed, f"""
        SELECT {warehouse.group_columns(costed, by)}
               {''.join(f'min({warehouse.text(costed, c)}) AS {warehouse.quoted(c)}, ' for c in attributes)}
               avg({warehouse.number(costed, 'prompt_tokens')}) FILTER (WHERE {ok}) AS mean_prompt_tokens,
               avg({warehouse.number(costed, 'completion_tokens')}) FILTER (WHERE {ok}) AS mean_completion_tokens,
               CASE WHEN bool_or({measured}) THEN coalesce(sum(usd) FILTER (WHERE {measured}), 0.0) END AS usd_total,
               avg(usd) FILTER (WHERE {measured}) * 1000 AS usd_per_1k
        FROM {{rows}} GROUP BY ALL""").df()
    metrics = ("e2e_s", "ttft_s")  # exact quantiles in bounded memory (see `warehouse.quantiles`)
    measures = warehouse.with_quantiles(measures, source, by, {metric: warehouse.number(source, metric)
                                                               for metric in metrics},
                                        quantiles, {metric: [quantile_column(q, metric) for q in quantiles]
                                                    for metric in metrics}, where=ok)
    latency = [quantile_column(q, metric) for q in quantiles for metric in ("e2e_s", "ttft_s")]
    measures = measures[[*by, *attributes, *latency, "mean_prompt_tokens", "mean_completion_tokens", "usd_total",
                         "usd_per_1k"]]
    summary = measures[[*by, *attributes]].merge(summary, on=by, how="right")
    return summary.merge(measures.drop(columns=attributes), on=by, how="left")


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
    missing = [c for c in [id_col, *maximize, *minimize] if c not in summary.columns]
    if missing:
        raise ParameterError(f"summary is missing column(s) {', '.join(missing)}")
    dominates, margin = _dominance(summary, maximize, minimize)
    margin = np.where(dominates, margin, -np.inf)
    ids = summary[id_col].to_numpy(dtype=object)
    out = summary.copy()
    out["pareto"] = ~dominates.any(axis=0)
    out["dominated_by"] = pd.Series([None if front else ids[int(np.argmax(margin[:, i]))]
                                     for i, front in enumerate(out["pareto"])], index=out.index, dtype=object)
    return out


def on_front(data: pd.DataFrame, maximize: Sequence[str], minimize: Sequence[str]) -> pd.Series:
    """Which rows of `data` no other row dominates (as `pareto_front` judges), e.g. the front of one
    figure's two axes."""
    dominates, _ = _dominance(data, maximize, minimize)
    return pd.Series(~dominates.any(axis=0), index=data.index)


def _dominance(summary: pd.DataFrame, maximize: Sequence[str], minimize: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """dominates[j, i] (row j dominates row i) and each pair's summed improvement, objectives scaled
    by their range."""
    objectives = [*maximize, *minimize]
    if not objectives:
        raise ParameterError("pareto_front needs at least one column to maximize or minimize")
    # Everything becomes "higher is better", NaN becomes a finite value below every number.
    signs = np.array([1.0] * len(maximize) + [-1.0] * len(minimize))
    raw = summary[objectives].to_numpy(dtype=float) * signs
    points, span = _fill_worst(raw)
    at_least = (points[:, None, :] >= points[None, :, :]).all(axis=2)
    better = (points[:, None, :] > points[None, :, :]).any(axis=2)
    return at_least & better, ((points[:, None, :] - points[None, :, :]) / span).sum(axis=2)


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


def cost_summary(rows: Rows, prices: PriceTable, *, latency_quantile: float = 0.95,
                 confidence: float = 0.95, include_cache_hits: bool = False) -> pd.DataFrame:
    """`config_summary` at quantiles (0.5, `latency_quantile`), with a `hit_rate` column after `n`.

    Accuracy counts every request (a cached answer is the answer the user gets); latency, tokens
    and cost count only the requests the model answered unless `include_cache_hits` (see the module
    docstring), so a config answered entirely from the cache has NaN latency and cost.  A self-hosted
    request's machine time is its share of its whole phase, hits included (as `load_run` gives it).
    """
    quantiles = sorted({0.5, float(latency_quantile)})
    source = warehouse.relation(rows)
    if machine_priced(source, prices):
        source = with_machine_time(source)
    summary = config_summary(source, prices, quantiles=quantiles, confidence=confidence,
                             answered_only=not include_cache_hits)
    rates = cache_hits(source).set_index("config_id")["hit_rate"]
    summary.insert(summary.columns.get_loc("n") + 1, "hit_rate",
                   summary["config_id"].astype(object).map(rates).astype(float).to_numpy())
    return summary


@dataclass(frozen=True)
class Rule:
    """The conditions `choose_best` applied (`present.rule_text` states them)."""

    by_cost: bool  # the cheapest qualifying configuration; False: the most accurate (costs unknown)
    accuracy: str | None = None  # "break_even", "target" or None (not checked)
    target_accuracy: float | None = None
    value_usd: float | None = None
    error_cost_usd: float | None = None
    failure_cost_usd: float | None = None  # None: the same as error_cost_usd
    latency_col: str | None = None  # the latency quantile held to the budget; None: not checked
    latency_budget_s: float | None = None
    unchecked: tuple[str, ...] = ()  # "accuracy" (no graded requests), "latency" (no timings) asked but not checkable


@dataclass(frozen=True)
class Choice:
    """The configuration `choose_best` picked (or the closest one when `met` is False)."""

    config_id: str | None
    met: bool
    rule: Rule
    row: pd.Series | None
    latency_col: str


def choose_best(summary: pd.DataFrame, *, target_accuracy: float | None, latency_budget_s: float | None,
                latency_quantile: float = 0.95, value_usd: float | None = None,
                error_cost_usd: float | None = None, failure_cost_usd: float | None = None) -> Choice:
    """Apply the best-configuration rule of this module's docstring to a `cost_summary` table.

    `target_accuracy=None` with V and E given holds each config to its break-even accuracy (which
    charges its failed requests `failure_cost_usd` each, default E); the chosen row gets an
    `accuracy_target` column with the threshold it was held to.  A config none of whose requests
    was answered is never chosen, not even as the closest.
    """
    summary = summary[_answered_any(summary)]
    latency_col = quantile_column(latency_quantile, "e2e_s")
    has_accuracy = summary["accuracy"].notna().any()
    has_latency = latency_col in summary and summary[latency_col].notna().any()
    has_cost = summary["usd_per_1k"].notna().any()
    by_break_even = target_accuracy is None and value_usd is not None and error_cost_usd is not None
    wants_accuracy = target_accuracy is not None or by_break_even
    use_accuracy = wants_accuracy and has_accuracy
    use_latency = latency_budget_s is not None and has_latency
    accuracy = summary["accuracy"].astype(float)
    if by_break_even:
        # with no cost known at all, c = 0: the threshold is then the lowest it can be
        cost = summary["usd_per_1k"].astype(float) / 1000 if has_cost else 0.0
        rate = summary["error_rate"].astype(float).fillna(0.0) if "error_rate" in summary else 0.0
        threshold = pd.Series(break_even_accuracy(value_usd, error_cost_usd, cost, error_rate=rate,
                                                  failure_cost_usd=failure_cost_usd),
                              index=summary.index, dtype=float)
    else:
        threshold = pd.Series(math.nan if target_accuracy is None else target_accuracy, index=summary.index,
                              dtype=float)
    view = summary.assign(
        accuracy_target=threshold if use_accuracy else math.nan,
        # ranked by the margin over the target; without an accuracy condition, unknown accuracy
        # must not exclude a config
        _accuracy=accuracy - threshold if use_accuracy else accuracy.fillna(-math.inf),
        _latency=summary[latency_col] if use_latency else 0.0,
        _cost=summary["usd_per_1k"] if has_cost else 0.0)
    rule = Rule(by_cost=bool(has_cost),
                accuracy=None if not use_accuracy else "break_even" if by_break_even else "target",
                target_accuracy=target_accuracy, value_usd=value_usd, error_cost_usd=error_cost_usd,
                failure_cost_usd=failure_cost_usd, latency_col=latency_col if use_latency else None,
                latency_budget_s=latency_budget_s,
                unchecked=tuple(what for what, gone in (
                    ("accuracy", wants_accuracy and not has_accuracy),
                    ("latency", latency_budget_s is not None and not has_latency)) if gone))
    if not has_cost:
        view = view.assign(_cost=-view["_accuracy"])
    row = best_under(view, 0.0 if use_accuracy else -math.inf,
                     latency_budget_s if use_latency else math.inf, latency_col="_latency",
                     cost_col="_cost", accuracy_col="_accuracy")
    if row is not None:
        return Choice(str(row["config_id"]), True, rule, _public(row), latency_col)
    within = view[(view["_latency"] <= latency_budget_s).to_numpy()] if use_latency else view
    pool = within if not within.empty else view
    # closest by the low end of the accuracy interval: a config measured on a few items must not be
    # named over a well-measured one because its point estimate happened to come out higher
    low = (pool["accuracy_low"].astype(float) if "accuracy_low" in pool else pool["accuracy"].astype(float))
    pool = pool.assign(_sure=(low - pool["accuracy_target"].fillna(0.0)) if use_accuracy else low)
    closest = pool.sort_values(["_sure", "_accuracy", "_cost"], ascending=[False, False, True], kind="mergesort",
                               na_position="last").iloc[0] if not pool.empty else None
    return Choice(None if closest is None else str(closest["config_id"]), False, rule,
                  None if closest is None else _public(closest), latency_col)


def _answered_any(summary: pd.DataFrame) -> pd.Series:
    """Configs with at least one answered request: `n` graded answers or ungraded ok rows (all of them
    when the table does not count answers)."""
    if "n" not in summary.columns:
        return pd.Series(True, index=summary.index)
    answered = summary["n"].fillna(0).astype(int) + summary.get("ungraded", 0)
    return pd.Series(np.asarray(answered) > 0, index=summary.index)


def _public(row: pd.Series) -> pd.Series:
    return row.drop([c for c in row.index if str(c).startswith("_")])


@dataclass(frozen=True)
class Headline:
    """The numbers a report opens with: the run, the best configuration and what it is worth."""

    overview: pd.DataFrame
    summary: pd.DataFrame
    choice: Choice
    value_usd: float | None
    error_cost_usd: float | None
    break_even_accuracy: float
    ev_usd: float
    prices: pd.DataFrame
    frame: Rows | None = None  # the requests, under the names the other fields use
    labels: Mapping[str, str] | None = None  # config id -> name, when short names are used
    failure_cost_usd: float | None = None
    rules: pd.DataFrame | None = None  # which pricing rule priced which requests (`machine_time.pricing_rules`)


def headline(rows: Rows, prices: PriceTable, *, manifest: dict | None = None,
             value_usd: float | None = None, error_cost_usd: float | None = None,
             target_accuracy: float | None = None, latency_budget_s: float | None = None,
             latency_quantile: float = 0.95, labels: Mapping[str, str] | None = None,
             failure_cost_usd: float | None = None) -> Headline:
    """Summarize a run for a report index: `choose_best` (each config held to its break-even accuracy
    when `target_accuracy` is None and V and E are given), and the chosen config's break-even accuracy
    (E + c) / (V + E) and expected value when V and E are given (NaN otherwise).  With `labels`
    (config id -> name, e.g. `present.config_labels`) every config goes by its name."""
    # counted under the ids, then named: a name per row would cost a CASE on every row of every pass
    summary = cost_summary(rows, prices, latency_quantile=latency_quantile)
    summary = (summary.assign(config_id=summary["config_id"].map(lambda c: (labels or {}).get(c, c)))
               .sort_values("config_id", ignore_index=True))
    choice = choose_best(summary, target_accuracy=target_accuracy, latency_budget_s=latency_budget_s,
                         latency_quantile=latency_quantile, value_usd=value_usd, error_cost_usd=error_cost_usd,
                         failure_cost_usd=failure_cost_usd)
    break_even = ev = math.nan
    if choice.row is not None and value_usd is not None and error_cost_usd is not None:
        cost = float(choice.row["usd_per_1k"]) / 1000
        rate = float(choice.row.get("error_rate", 0.0))
        rate = 0.0 if math.isnan(rate) else rate
        break_even = float(break_even_accuracy(value_usd, error_cost_usd, cost, error_rate=rate,
                                               failure_cost_usd=failure_cost_usd))
        ev = float(expected_value(float(choice.row["accuracy"]), value_usd, error_cost_usd, cost,
                                  error_rate=rate, failure_cost_usd=failure_cost_usd))
    return Headline(overview=run_overview(rows, manifest), summary=summary, choice=choice,
                    value_usd=value_usd, error_cost_usd=error_cost_usd, break_even_accuracy=break_even,
                    ev_usd=ev, prices=describe(prices, warehouse.distinct_texts(warehouse.relation(rows), "model")),
                    frame=warehouse.replaced(rows, "config_id", labels or {}), labels=labels,
                    failure_cost_usd=failure_cost_usd, rules=pricing_rules(rows, prices))


def top_configs(values: pd.DataFrame, *, by: str = "ev_usd", tie: str = "accuracy", limit: int = 5,
                id_col: str = "config_id") -> list[str]:
    """The `limit` configs with the highest `by`, keeping one per value of `tie` (the cheapest): for a
    figure whose lines would otherwise coincide (EV depends on accuracy when costs are negligible)."""
    known = values.dropna(subset=[by]).sort_values([by, "usd_per_1k"], ascending=[False, True], kind="mergesort")
    return known.drop_duplicates(subset=[tie])[id_col].head(limit).astype(str).tolist()


def best_by_ratio(sensitivity: pd.DataFrame, *, id_col: str = "config_id") -> pd.DataFrame:
    """From a `cost_model.sensitivity` table: which config has the highest EV over each E/V range.

    Columns: config_id (id_col), ratio_from, ratio_to (the first and last ratio of the grid where
    it leads), ev_from_usd, ev_to_usd.  One row means one config leads at every ratio.
    """
    rows = sensitivity.dropna(subset=["ev_usd"])
    if rows.empty:
        return pd.DataFrame(columns=[id_col, "ratio_from", "ratio_to", "ev_from_usd", "ev_to_usd"])
    leaders = rows.loc[rows.groupby("error_value_ratio")["ev_usd"].idxmax()].sort_values("error_value_ratio")
    segment = (leaders[id_col] != leaders[id_col].shift()).cumsum()
    return leaders.groupby(segment, sort=True).agg(
        **{id_col: (id_col, "first"), "ratio_from": ("error_value_ratio", "first"),
           "ratio_to": ("error_value_ratio", "last"), "ev_from_usd": ("ev_usd", "first"),
           "ev_to_usd": ("ev_usd", "last")}).reset_index(drop=True)
