"""What a notebook or report says first: what a run holds, its priced per-config summary, the best config.

These are the few steps every notebook and the report index share, kept here so that they agree
and are tested.  They accept any requests table: a run without grades (latency-only imports)
or without timings (accuracy-only imports) gives NaN where a number is unknown, never an error.

The **best configuration** rule (`choose_best`): the cheapest configuration (USD per 1,000
requests) whose accuracy is at least the target and whose end-to-end latency at the chosen
quantile is within the budget; ties go to the higher accuracy (`frontier.best_under`).  A
condition the run cannot check (no graded requests, no timings) or that is not given is dropped
and the rule text says so; when costs are unknown for every config, the most accurate qualifying
one is chosen.  When nothing qualifies, there is no best configuration and the most accurate one
within the latency budget (else overall) is named as the closest.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.analysis.accuracy import accuracy_table as base_accuracy_table
from toolkit.analysis.cost_model import break_even_accuracy, expected_value
from toolkit.analysis.frontier import best_under, config_summary, quantile_column
from toolkit.errors import ParameterError, PriceError
from toolkit.importers.frugalgpt_summary import load_reference_points
from toolkit.params import REPO_ROOT
from toolkit.pricing import MachinePrice, PriceTable, describe, load_price_table, resolve_price

NO_PRICE = "no price known: add the model to data/prices.yaml or pass machine_usd_per_hour"


def graded_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows that carry a grade: status ok and `correct` not null."""
    return frame["status"].eq("ok").fillna(False).astype(bool) & frame["correct"].notna()


def timed_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows that carry timings: status ok with both `ttft_s` and `e2e_s`."""
    ok = frame["status"].eq("ok").fillna(False).astype(bool)
    return ok & frame["ttft_s"].notna() & frame["e2e_s"].notna()


def run_overview(frame: pd.DataFrame, manifest: dict | None = None) -> pd.DataFrame:
    """One row describing a run: id, requests, ok, errors, graded, timed, configs, models, datasets, span."""
    ids = frame["run_id"].dropna().unique()
    run_id = (manifest or {}).get("run_id") or (ids[0] if len(ids) else None)
    ok = frame["status"].eq("ok").fillna(False).astype(bool)
    started = frame["started_at"].dropna()
    return pd.DataFrame([{
        "run_id": run_id, "requests": len(frame), "ok": int(ok.sum()), "errors": int((~ok).sum()),
        "graded": int(graded_mask(frame).sum()), "timed": int(timed_mask(frame).sum()),
        "configs": frame["config_id"].nunique(), "models": ", ".join(_sorted(frame["model"])),
        "datasets": ", ".join(_sorted(frame["dataset"])),
        "first_request": started.min() if len(started) else pd.NaT,
        "last_request": started.max() if len(started) else pd.NaT,
    }])


def select_dataset(frame: pd.DataFrame, dataset: str | None) -> pd.DataFrame:
    """Rows of one dataset (all rows for None); an unknown name is a `ParameterError` listing the known ones."""
    if dataset is None:
        return frame
    selected = frame[frame["dataset"].eq(dataset).fillna(False).astype(bool)]
    if selected.empty:
        raise ParameterError(f"parameter dataset: {dataset!r} has no rows in this run; known: "
                             f"{', '.join(_sorted(frame['dataset'])) or 'none'}")
    return selected


def price_table_for(frame: pd.DataFrame, machine_usd_per_hour: float | None = None, *,
                    path: Path | None = None) -> PriceTable:
    """The price table for a run: data/prices.yaml + genai-prices, with unknown models priced NaN.

    Any run must be reportable, so a model no price source knows gets an explicit NaN machine
    price whose source says so (`pricing.describe` shows it) instead of a `PriceError`.
    """
    table = load_price_table(path, machine_usd_per_hour=machine_usd_per_hour)
    unknown = {}
    for model in _sorted(frame["model"]):
        try:
            resolve_price(table, model)
        except PriceError:
            unknown[model] = MachinePrice(math.nan, NO_PRICE)
    if not unknown:
        return table
    return load_price_table(path, machine_usd_per_hour=machine_usd_per_hour, overrides=unknown,
                            as_of=table.as_of)


def accuracy_table(frame: pd.DataFrame, by: Sequence[str] = ("config_id",), *,
                   confidence: float = 0.95) -> pd.DataFrame:
    """`accuracy.accuracy_table` with a `graded` column and accuracy blanked where it is unknown.

    A group whose ok rows carry no grade gets NaN accuracy: its errors alone would otherwise
    read as 0% accuracy, which is wrong for a latency-only import.
    """
    return _blank_ungraded(base_accuracy_table(frame, by=list(by), confidence=confidence), frame, list(by))


def cost_summary(frame: pd.DataFrame, prices: PriceTable, *, latency_quantile: float = 0.95,
                 confidence: float = 0.95) -> pd.DataFrame:
    """`frontier.config_summary` at quantiles (0.5, `latency_quantile`), blanked like `accuracy_table`."""
    quantiles = sorted({0.5, float(latency_quantile)})
    summary = config_summary(frame, prices, quantiles=quantiles, confidence=confidence)
    return _blank_ungraded(summary, frame, ["config_id"])


def _blank_ungraded(table: pd.DataFrame, frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    counts = frame.loc[graded_mask(frame)].groupby(by, dropna=False).size()
    keys = pd.MultiIndex.from_frame(table[by].astype(object)) if len(by) > 1 else pd.Index(
        table[by[0]].astype(object))
    out = table.copy()
    out.insert(out.columns.get_loc("n"), "graded", counts.reindex(keys).fillna(0).astype(int).to_numpy())
    unknown = (out["graded"] == 0) & (out["ungraded"] > 0)
    for column in ("accuracy", "accuracy_low", "accuracy_high", "score_mean", "score_low", "score_high"):
        out.loc[unknown, column] = np.nan
    return out


@dataclass(frozen=True)
class Choice:
    """The configuration `choose_best` picked (or the closest one when `met` is False)."""

    config_id: str | None
    met: bool
    rule: str
    row: pd.Series | None
    latency_col: str


def choose_best(summary: pd.DataFrame, *, target_accuracy: float | None, latency_budget_s: float | None,
                latency_quantile: float = 0.95) -> Choice:
    """Apply the best-configuration rule of this module's docstring to a `cost_summary` table."""
    latency_col = quantile_column(latency_quantile, "e2e_s")
    has_accuracy = summary["accuracy"].notna().any()
    has_latency = latency_col in summary and summary[latency_col].notna().any()
    has_cost = summary["usd_per_1k"].notna().any()
    use_accuracy = target_accuracy is not None and has_accuracy
    use_latency = latency_budget_s is not None and has_latency
    accuracy = summary["accuracy"].astype(float)
    view = summary.assign(
        # without an accuracy condition, unknown accuracy must not exclude a config
        _accuracy=accuracy if use_accuracy else accuracy.fillna(-math.inf),
        _latency=summary[latency_col] if use_latency else 0.0,
        _cost=summary["usd_per_1k"] if has_cost else 0.0)
    conditions = []
    if use_accuracy:
        conditions.append(f"accuracy >= {target_accuracy:g}")
    if use_latency:
        conditions.append(f"{latency_col} <= {latency_budget_s:g} s")
    ranking = "the cheapest (USD per 1,000 requests)" if has_cost else "the most accurate (costs unknown)"
    rule = f"{ranking} configuration with " + (" and ".join(conditions) if conditions else "no condition")
    dropped = [why for why, gone in (
        ("no graded requests, so accuracy is not checked", target_accuracy is not None and not has_accuracy),
        ("no timings, so latency is not checked", latency_budget_s is not None and not has_latency))
        if gone]
    if dropped:
        rule += " (" + "; ".join(dropped) + ")"
    if not has_cost:
        view = view.assign(_cost=-view["_accuracy"])
    row = best_under(view, target_accuracy if use_accuracy else -math.inf,
                     latency_budget_s if use_latency else math.inf, latency_col="_latency",
                     cost_col="_cost", accuracy_col="_accuracy")
    if row is not None:
        return Choice(str(row["config_id"]), True, rule, _public(row), latency_col)
    within = view[(view["_latency"] <= latency_budget_s).to_numpy()] if use_latency else view
    pool = within if not within.empty else view
    closest = pool.sort_values(["_accuracy", "_cost"], ascending=[False, True], kind="mergesort",
                               na_position="last").iloc[0] if not pool.empty else None
    return Choice(None if closest is None else str(closest["config_id"]), False, rule,
                  None if closest is None else _public(closest), latency_col)


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


def headline(frame: pd.DataFrame, prices: PriceTable, *, manifest: dict | None = None,
             value_usd: float | None = None, error_cost_usd: float | None = None,
             target_accuracy: float | None = None, latency_budget_s: float | None = None,
             latency_quantile: float = 0.95) -> Headline:
    """Summarize a run for a report index: `choose_best`, and the chosen config's break-even accuracy
    (E + c) / (V + E) and expected value when V and E are given (NaN otherwise)."""
    summary = cost_summary(frame, prices, latency_quantile=latency_quantile)
    choice = choose_best(summary, target_accuracy=target_accuracy, latency_budget_s=latency_budget_s,
                         latency_quantile=latency_quantile)
    break_even = ev = math.nan
    if choice.row is not None and value_usd is not None and error_cost_usd is not None:
        cost = float(choice.row["usd_per_1k"]) / 1000
        break_even = float(break_even_accuracy(value_usd, error_cost_usd, cost))
        ev = float(expected_value(float(choice.row["accuracy"]), value_usd, error_cost_usd, cost))
    return Headline(overview=run_overview(frame, manifest), summary=summary, choice=choice,
                    value_usd=value_usd, error_cost_usd=error_cost_usd, break_even_accuracy=break_even,
                    ev_usd=ev, prices=describe(prices, _sorted(frame["model"])))


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


def observed_scaling(frame: pd.DataFrame, *, by: str = "model", share: float = 0.25) -> pd.DataFrame:
    """Measured, not fitted: median e2e of each group's shortest and longest `share` of outputs.

    Compares how many times more tokens the long outputs have with how many times longer they
    take, straight from the timed requests.  Columns: by, n, short_tokens, long_tokens,
    short_e2e_s, long_e2e_s (medians), token_ratio, time_ratio.
    """
    timed = frame.loc[timed_mask(frame)].assign(
        _tokens=lambda f: pd.to_numeric(f["completion_tokens"], errors="coerce").astype(float),
        _e2e=lambda f: f["e2e_s"].astype(float)).dropna(subset=["_tokens"])
    rows = []
    for group, part in timed.groupby(by, sort=True):
        low, high = part["_tokens"].quantile(share), part["_tokens"].quantile(1 - share)
        short, long = part[part["_tokens"] <= low], part[part["_tokens"] >= high]
        row = {by: group, "n": len(part), "short_tokens": short["_tokens"].median(),
               "long_tokens": long["_tokens"].median(), "short_e2e_s": short["_e2e"].median(),
               "long_e2e_s": long["_e2e"].median()}
        rows.append(row)
    out = pd.DataFrame(rows, columns=[by, "n", "short_tokens", "long_tokens", "short_e2e_s", "long_e2e_s"])
    with np.errstate(divide="ignore", invalid="ignore"):
        out["token_ratio"] = out["long_tokens"] / out["short_tokens"]
        out["time_ratio"] = out["long_e2e_s"] / out["short_e2e_s"]
    return out


def observed_range(frame: pd.DataFrame, column: str) -> tuple[float, float]:
    """(min, max) of a numeric column over timed rows, NaN when there are none: where fits are not extrapolation."""
    values = pd.to_numeric(frame.loc[timed_mask(frame), column], errors="coerce").dropna()
    return (float(values.min()), float(values.max())) if len(values) else (math.nan, math.nan)


def reference_points(path: str | None, *, name: str = "reference_points") -> pd.DataFrame | None:
    """Published FrugalGPT points (`importers.load_reference_points`) for a frontier figure, with a
    `label` column (the model; empty for cascade points); None for None.  A relative path is tried from the cwd, then the repo root."""
    if path is None:
        return None
    given = Path(path).expanduser()
    tried = [given] if given.is_absolute() else [Path.cwd() / given, REPO_ROOT / given]
    found = next((p for p in tried if p.is_file()), None)
    if found is None:
        raise ParameterError(f"parameter {name}: file {path!r} not found ({' nor '.join(map(str, tried))} exists)")
    points = load_reference_points(found)
    # the 20 cascade budgets would bury the figure in labels: only the single models are named
    return points.assign(label=points["method"].where(points["method"] != "FrugalGPT", ""))

def _public(row: pd.Series) -> pd.Series:
    return row.drop([c for c in row.index if str(c).startswith("_")])


def _sorted(values: Sequence[object] | pd.Series) -> list[str]:
    return sorted({str(v) for v in pd.Series(values).dropna()})
