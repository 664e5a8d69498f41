"""Cascades from per-item results: ask a cheap configuration first, escalate when it is unsure.

Everything works on an item matrix (one row per dataset/item_id/repeat, columns (field, config_id))
built from requests tables that already hold every configuration's answer to every item, so a
cascade is simulated, not run.  Stage k's answer is accepted when its confidence signal reaches
its threshold; the last stage always answers; the cost is the sum over the stages actually called.
Signals: `logprob_mean` or `score` of the stage's own answer (a missing value never accepts; `score`
is only fair when it comes from a reference-free grader), or `agreement`: stage k's answer is
accepted when stage k+1 gives the same answer, which means stage k+1 is always called with it.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit.analysis.accuracy import wilson_interval
from toolkit.errors import ParameterError

KEY = ["dataset", "item_id", "repeat"]
SIGNALS = ("logprob_mean", "score", "agreement")
logger = logging.getLogger("toolkit")


@dataclass(frozen=True)
class CascadeResult:
    stages: tuple[str, ...]
    thresholds: tuple[float, ...]
    signal: str
    accuracy: float
    mean_cost: float
    n: int
    n_correct: int
    escalated: tuple[float, ...]  # share of all items passed on after each non-last stage


@dataclass(frozen=True)
class RouterResult:
    accuracy: float
    mean_cost: float
    n: int
    n_correct: int
    share: dict[str, float]  # share of items routed to each configuration


@dataclass(frozen=True)
class Saving:
    single: str
    single_accuracy: float
    single_usd_per_query: float
    cascade: str
    cascade_accuracy: float
    cascade_usd_per_query: float
    saving: float  # 1 - cascade cost / single cost


def item_matrix(frame: pd.DataFrame, configs: Sequence[str], cost_col: str = "usd", *,
                answer_col: str = "output_text") -> pd.DataFrame:
    """Wide per-item table with columns (field, config_id), field in correct, cost, score,
    logprob_mean, answer.  Error rows count as wrong (as in accuracy); items some configuration
    did not answer or did not grade are dropped (logged); a missing cost is an error.
    """
    needed = KEY + ["config_id", "correct", cost_col]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ParameterError(f"item_matrix: frame lacks column(s) {', '.join(missing)}")
    present = set(frame["config_id"].unique())  # iterating every row's Arrow string takes seconds
    unknown = [c for c in configs if c not in present]
    if unknown:
        raise ParameterError(f"item_matrix: no rows for config(s) {', '.join(unknown)}")
    rows = frame[frame["config_id"].isin(configs)].copy()
    rows["repeat"] = rows["repeat"].fillna(0)
    if rows.duplicated(KEY + ["config_id"]).any():
        raise ParameterError("item_matrix: more than one row per (dataset, item_id, repeat, config_id)")
    no_cost = rows.loc[rows[cost_col].isna(), "config_id"].unique().tolist()
    if no_cost:
        raise ParameterError(f"item_matrix: {cost_col!r} is missing for config(s) {', '.join(no_cost)}")
    failed = (rows["status"] != "ok").fillna(True) if "status" in rows.columns else False
    correct = rows["correct"].astype("boolean").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    wide = pd.DataFrame({
        "correct": np.where(failed, 0.0, correct),
        "cost": rows[cost_col].astype(float).to_numpy(),
        "score": _floats(rows, "score"),
        "logprob_mean": _floats(rows, "logprob_mean"),
        "answer": rows[answer_col].astype(object).to_numpy() if answer_col in rows.columns else None,
    }, index=pd.MultiIndex.from_frame(rows[KEY + ["config_id"]]))
    matrix = wide.unstack("config_id")
    complete = matrix["correct"].notna().all(axis=1) & matrix["cost"].notna().all(axis=1)
    if not complete.all():
        logger.info("item_matrix: dropped %d of %d items lacking a graded answer from every config",
                    int((~complete).sum()), len(matrix))
    matrix = matrix[complete]
    return matrix.reindex(columns=pd.MultiIndex.from_product([wide.columns, list(configs)]))


def evaluate_cascade(matrix: pd.DataFrame, stages: Sequence[str], thresholds: Sequence[float],
                     signal: str = "logprob_mean") -> CascadeResult:
    """Accuracy, mean cost and escalation shares of one cascade with fixed thresholds."""
    correct, cost, confidence = _arrays(matrix, stages, signal)
    thresholds = tuple(float(t) for t in thresholds)
    if len(thresholds) != len(stages) - 1:
        raise ParameterError(f"evaluate_cascade: {len(stages)} stages need {len(stages) - 1} thresholds, "
                             f"got {len(thresholds)}")
    got, paid, escalated = _simulate(correct, cost, confidence, np.array(thresholds), signal)
    n_correct = int(round(got.sum()))
    return CascadeResult(tuple(stages), thresholds, signal, float(got.mean()), float(paid.mean()),
                         len(got), n_correct, tuple(float(e) for e in escalated))


def fit_cascade(train_matrix: pd.DataFrame, stages: Sequence[str], signal: str = "logprob_mean",
                grid: Sequence[float] | None = None, *, budget: float | None = None,
                target_accuracy: float | None = None) -> tuple[float, ...] | None:
    """Thresholds that maximise accuracy within `budget` (mean cost per item), or minimise cost
    reaching `target_accuracy`, or (neither given) maximise accuracy; None if nothing qualifies.

    Every combination of `grid` values is tried (default: per stage, quantiles of its signal plus
    -inf and +inf, so "always accept" and "always escalate" are candidates).
    """
    combos, accuracy, cost = _grid_outcomes(train_matrix, stages, signal, grid)
    best = _choose(accuracy, cost, budget, target_accuracy)
    return None if best is None else combos[best]


def split_items(matrix: pd.DataFrame, train_fraction: float = 0.5,
                seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded split of the matrix by item (repeats of one item stay on one side)."""
    if not 0 < train_fraction < 1:
        raise ParameterError(f"split_items: train_fraction must be in (0, 1), got {train_fraction}")
    items = matrix.index.droplevel("repeat")
    unique = items.unique().sort_values()
    order = np.random.default_rng(seed).permutation(len(unique))
    n_train = int(round(train_fraction * len(unique)))
    if n_train == 0 or n_train == len(unique):
        raise ParameterError(f"split_items: {len(unique)} items cannot be split at {train_fraction}")
    in_train = items.isin(unique[order[:n_train]])
    return matrix[in_train], matrix[~in_train]


def cascade_frontier(matrix: pd.DataFrame, stages_options: Sequence[Sequence[str]],
                     signal: str = "logprob_mean", train_fraction: float = 0.5, seed: int = 0, *,
                     grid: Sequence[float] | None = None, budgets: Sequence[float] | None = None,
                     confidence: float = 0.95, singles: Sequence[str] = ()) -> pd.DataFrame:
    """Cascades fitted on a train split and measured on the held-out test split, with the single
    configurations beside them (kind "single"/"cascade"), Wilson intervals on accuracy.

    The singles are every stage plus `singles`.  Budgets default to 12 geometric steps from the
    cheapest stage's to all stages' mean cost, plus no budget.  Costs are whatever unit the matrix
    holds (usd_per_query if the caller gave USD).
    """
    train, test = split_items(matrix, train_fraction, seed)
    rows = []
    for config in dict.fromkeys([*(c for option in stages_options for c in option), *singles]):
        rows.append(_row("single", evaluate_cascade(test, [config], []), None, None))
    for stages in stages_options:
        combos, accuracy, cost = _grid_outcomes(train, stages, signal, grid)
        seen = set()
        for budget in _budgets(train, stages, budgets):
            best = _choose(accuracy, cost, budget, None)
            if best is None or combos[best] in seen:
                continue
            seen.add(combos[best])
            result = evaluate_cascade(test, stages, combos[best], signal)
            rows.append(_row("cascade", result, budget, (accuracy[best], cost[best])))
    table = pd.DataFrame(rows)
    low, high = wilson_interval(table["n_correct"].to_numpy(), table["n"].to_numpy(), confidence)
    table.insert(table.columns.get_loc("accuracy") + 1, "accuracy_low", low)
    table.insert(table.columns.get_loc("accuracy") + 2, "accuracy_high", high)
    return table


def oracle_router(matrix: pd.DataFrame, configs: Sequence[str]) -> RouterResult:
    """Per item, the cheapest configuration that is correct (else the cheapest): an upper bound
    on what any router over these configurations can reach at its cost."""
    correct, cost, _ = _arrays(matrix, configs, None)
    right = correct >= 0.5
    masked = np.where(right.any(axis=1, keepdims=True) & ~right, np.inf, cost)
    choice = np.argmin(masked, axis=1)  # first of equally cheap ones
    rows = np.arange(len(choice))
    got = correct[rows, choice]
    share = {c: float(np.mean(choice == i)) for i, c in enumerate(configs)}
    return RouterResult(float(got.mean()), float(cost[rows, choice].mean()), len(got),
                        int(round(got.sum())), share)


def cost_saving_at_best_single(frontier: pd.DataFrame) -> Saving | None:
    """How much cheaper the cheapest cascade is that matches the most accurate single config's test
    accuracy (FrugalGPT's "match the best LLM at lower cost"); None when no cascade matches."""
    singles = frontier[frontier["kind"] == "single"].sort_values(["accuracy", "usd_per_query"],
                                                                 ascending=[False, True])
    if singles.empty:
        raise ParameterError("cost_saving_at_best_single: the frontier has no single-config rows")
    best = singles.iloc[0]
    cascades = frontier[(frontier["kind"] == "cascade") & (frontier["accuracy"] >= best["accuracy"])]
    if cascades.empty:
        return None
    match = cascades.sort_values(["usd_per_query", "accuracy"], ascending=[True, False]).iloc[0]
    return Saving(best["stages"], float(best["accuracy"]), float(best["usd_per_query"]), match["stages"],
                  float(match["accuracy"]), float(match["usd_per_query"]),
                  float(1 - match["usd_per_query"] / best["usd_per_query"]))


def best_accuracy_at_budget(frontier: pd.DataFrame, budget: float, *,
                            kind: str | None = None) -> pd.Series | None:
    """The most accurate frontier row (the cheaper on a tie) costing at most `budget` per query."""
    rows = frontier[frontier["usd_per_query"] <= budget]
    if kind is not None:
        rows = rows[rows["kind"] == kind]
    if rows.empty:
        return None
    return rows.sort_values(["accuracy", "usd_per_query"], ascending=[False, True]).iloc[0]


def _floats(rows: pd.DataFrame, name: str) -> np.ndarray:
    if name not in rows.columns:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[name], errors="coerce").astype(float).to_numpy()


def _arrays(matrix: pd.DataFrame, stages: Sequence[str],
            signal: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not stages:
        raise ParameterError("a cascade needs at least one stage")
    unknown = [s for s in stages if ("correct", s) not in matrix.columns]
    if unknown:
        raise ParameterError(f"config(s) not in the item matrix: {', '.join(unknown)}")
    if signal is not None and signal not in SIGNALS:
        raise ParameterError(f"signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
    stages = list(stages)
    correct = _field(matrix, "correct", stages)
    cost = _field(matrix, "cost", stages)
    confidence = np.full(correct.shape, -np.inf)
    if signal in ("logprob_mean", "score"):
        values = _field(matrix, signal, stages)
        lacking = [s for i, s in enumerate(stages[:-1]) if np.isnan(values[:, i]).all()]
        if lacking:
            raise ParameterError(f"no {signal} values for config(s) {', '.join(lacking)}")
        confidence = np.where(np.isnan(values), -np.inf, values)
    elif signal == "agreement":
        answers = _field(matrix, "answer", stages, _normalized)
        for k in range(len(stages) - 1):
            same = [a is not None and a == b for a, b in zip(answers[:, k], answers[:, k + 1])]
            confidence[:, k] = np.where(same, 1.0, 0.0)
    return correct, cost, confidence


def _field(matrix: pd.DataFrame, field: str, stages: Sequence[str],
           each: Callable[[object], object] | None = None) -> np.ndarray:
    """`matrix[field][stages]` as an array (floats, or objects with `each` applied to every value), one
    column at a time: a cascade search reads it hundreds of times, and selecting a level of the column
    index built a new frame each time (a third of the cascades notebook's time)."""
    if each is None:
        return np.column_stack([matrix[(field, stage)].to_numpy(dtype=float) for stage in stages])
    return np.column_stack([matrix[(field, stage)].map(each).to_numpy(dtype=object) for stage in stages])


def _normalized(answer: object) -> str | None:
    return None if not isinstance(answer, str) else " ".join(answer.casefold().split())


def _simulate(correct: np.ndarray, cost: np.ndarray, confidence: np.ndarray, thresholds: np.ndarray,
              signal: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per item, what the cascade got right and paid, and the share escalated after each non-last stage.

    `thresholds` may carry leading axes (one row per combination of a grid search): every result then
    has them too, so a grid is simulated in a few array passes rather than a Python call per combination."""
    n, stages = correct.shape
    lead = thresholds.shape[:-1]
    pending = np.ones((*lead, n), dtype=bool)
    charged = [np.zeros((*lead, n), dtype=bool) for _ in range(stages)]
    got, paid, escalated = np.zeros((*lead, n)), np.zeros((*lead, n)), []
    for k in range(stages):
        # agreement needs the next stage's answer before stage k's can be accepted
        for j in (k, k + 1) if signal == "agreement" and k < stages - 1 else (k,):
            paid += np.where(pending & ~charged[j], cost[:, j], 0.0)
            charged[j] |= pending
        accept = pending if k == stages - 1 else pending & (confidence[:, k] >= thresholds[..., k, None])
        got += np.where(accept, correct[:, k], 0.0)
        pending &= ~accept
        if k < stages - 1:
            escalated.append(pending.mean(axis=-1))
    return got, paid, escalated


# combinations x items a grid search simulates at once (each array of them takes 8 bytes an element)
GRID_CELLS = 2_000_000


def _grid_outcomes(matrix: pd.DataFrame, stages: Sequence[str], signal: str,
                   grid: Sequence[float] | None) -> tuple[list[tuple[float, ...]], np.ndarray, np.ndarray]:
    correct, cost, confidence = _arrays(matrix, stages, signal)
    per_stage = [_candidates(confidence[:, k], signal, grid) for k in range(len(stages) - 1)]
    combos = list(itertools.product(*per_stage))
    thresholds = np.array(combos, dtype=float).reshape(len(combos), len(stages) - 1)
    accuracy, mean_cost = np.empty(len(combos)), np.empty(len(combos))
    step = max(1, GRID_CELLS // max(len(correct), 1))
    for start in range(0, len(combos), step):
        got, paid, _ = _simulate(correct, cost, confidence, thresholds[start:start + step], signal)
        accuracy[start:start + step], mean_cost[start:start + step] = got.mean(axis=-1), paid.mean(axis=-1)
    return combos, accuracy, mean_cost


def _candidates(values: np.ndarray, signal: str, grid: Sequence[float] | None) -> list[float]:
    if grid is not None:
        return sorted(float(g) for g in grid)
    if signal == "agreement":
        return [1.0, np.inf]
    finite = values[np.isfinite(values)]
    quantiles = np.quantile(finite, np.linspace(0, 1, 21)) if finite.size else []
    return [-np.inf, *np.unique(quantiles).tolist(), np.inf]


def _choose(accuracy: np.ndarray, cost: np.ndarray, budget: float | None,
            target: float | None) -> int | None:
    if budget is not None and target is not None:
        raise ParameterError("give a cost budget or an accuracy target, not both")
    eps = 1e-12  # mean costs are sums of floats: compare with a tolerance
    if target is not None:
        ok = np.flatnonzero(accuracy >= target - eps)
        key = (-accuracy[ok], cost[ok])  # lexsort: last key sorts first
    else:
        ok = np.flatnonzero(cost <= budget + eps) if budget is not None else np.arange(len(cost))
        key = (cost[ok], -accuracy[ok])
    return int(ok[np.lexsort(key)[0]]) if ok.size else None


def _budgets(train: pd.DataFrame, stages: Sequence[str], budgets: Sequence[float] | None) -> list:
    if budgets is not None:
        return list(budgets)
    means = train["cost"][list(stages)].mean().to_numpy()
    low, high = max(means.min(), 1e-12), max(means.sum(), 1e-12)
    return [*np.geomspace(low, high, 12).tolist(), None]


def _row(kind: str, result: CascadeResult, budget: float | None,
         train: tuple[float, float] | None) -> dict:
    return {
        "kind": kind, "stages": " > ".join(result.stages), "n_stages": len(result.stages),
        "signal": result.signal if kind == "cascade" else None, "thresholds": result.thresholds,
        "budget": budget, "accuracy": result.accuracy, "usd_per_query": result.mean_cost,
        "usd_per_1k": 1000 * result.mean_cost, "escalated": result.escalated, "n": result.n,
        "n_correct": result.n_correct, "train_accuracy": train[0] if train else None,
        "train_usd_per_query": train[1] if train else None,
    }
