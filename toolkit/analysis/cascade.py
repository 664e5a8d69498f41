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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit.analysis.accuracy import wilson_interval
from toolkit.analysis.frontier import pareto_front
from toolkit.errors import ParameterError
from toolkit.graders import first_line, normalize
from toolkit.pricing import CostBasis, PriceTable, price_requests

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


# ---- a cascade study of a whole run, for the notebooks ----------------------------------------

POOLED = "all datasets"
POINT_COLUMNS = ("dataset", "kind", "stages", "label", "signal", "thresholds", "accuracy", "accuracy_low",
                 "accuracy_high", "usd_per_query", "usd_per_1k", "escalated", "n", "n_correct")
VARIANT_CASCADE = ("zero_shot", "few_shot_1", "few_shot_5")  # cheap, its checker, the expensive one
NO_SIGNAL = ("no confidence signal: the run has no logprobs and no answers to compare, so no cascade "
             "can decide when to escalate (pass signal='score' only if your grader needs no reference)")


@dataclass(frozen=True)
class CascadeStudy:
    """Cascades of a run, per dataset (and pooled over datasets as `POOLED`).

    `frontier`: `cascade_frontier` rows plus an "oracle" row, with dataset and a short label;
    `summary`: one row per dataset (see `study_cascades`); `notes`: dataset, note — what was
    left out and why.  `overall` names the dataset whose rows describe the whole run: `POOLED`, or
    when the datasets cannot be pooled, the one with the most held-out rows.
    """

    frontier: pd.DataFrame
    summary: pd.DataFrame
    notes: pd.DataFrame
    signal: str | None
    overall: str | None


def request_costs(frame: pd.DataFrame, prices: PriceTable | CostBasis, manifest: dict | None = None) -> pd.Series:
    """USD per request from `pricing`; where that is unknown, the importer's reported mean per
    config (`reported_usd_per_query` in an imported manifest, e.g. FrugalGPT's) fills in.

    Given a `CostBasis`, its table prices the requests, and reported costs fill in only on the
    "prices" basis: an output-token basis compares every model on one stated price, which a
    reported bill would break.
    """
    if isinstance(prices, CostBasis):
        manifest = manifest if prices.basis == "prices" else None
        prices = prices.table
    usd = price_requests(frame, prices)
    reported = (manifest or {}).get("reported_usd_per_query") or {}
    fill = frame["config_id"].map(lambda c: reported.get(c, np.nan)).astype(float)
    return usd.fillna(fill).rename("usd")


def reported_models(frame: pd.DataFrame, manifest: dict | None) -> list[str]:
    """Models whose configs have a cost the import reported (`reported_usd_per_query`), for
    `pricing.price_coverage(reported=...)`."""
    reported = (manifest or {}).get("reported_usd_per_query") or {}
    rows = frame[frame["config_id"].isin(list(reported))]
    return sorted(rows["model"].dropna().astype(str).unique().tolist())


def answer_keys(frame: pd.DataFrame) -> pd.Series:
    """The answer an agreement check compares: the first non-blank line, normalized as graders do."""
    texts = frame["output_text"]
    # normalized once per distinct answer: answers repeat, and normalizing costs ~5 us each
    keys = {t: normalize(first_line(t)) for t in texts.dropna().unique() if isinstance(t, str)}
    return texts.map(lambda t: keys[t] if isinstance(t, str) else None)


def choose_signal(frame: pd.DataFrame, signal: str = "auto") -> tuple[str | None, str | None]:
    """(signal, None), or (None, why not): "auto" is logprob_mean when the run has any, else
    agreement when it has answers, else nothing."""
    if signal != "auto":
        if signal not in SIGNALS:
            raise ParameterError(f"signal must be auto or one of {', '.join(SIGNALS)}, got {signal!r}")
        return signal, None
    if "logprob_mean" in frame and frame["logprob_mean"].notna().any():
        return "logprob_mean", None
    if frame["output_text"].notna().any():
        return "agreement", None
    return None, NO_SIGNAL


def choose_stages(train: pd.DataFrame, variants: Mapping[str, str],
                  signal: str = "logprob_mean") -> list[tuple[str, ...]]:
    """Cascades worth trying on a train item matrix, cheapest stage first.

    When zero_shot, few_shot_1 and few_shot_5 of otherwise equal configurations are all there
    (`variants`: config_id -> prompt_variant), the set whose few_shot_5 is most accurate (then the
    cheapest) gives zero_shot > few_shot_1 > few_shot_5: with agreement, answer with zero_shot when
    few_shot_1 agrees, else ask few_shot_5.  Otherwise: the cheapest config, a middle one (the most
    accurate cost-accuracy Pareto config between; with agreement, else the next cheapest) and the
    most accurate.  The 2-stage cheapest > most accurate is added except with agreement when a
    middle stage exists (there it is only the last stage at a higher price).  [] when the
    cheapest config is also the most accurate.
    """
    accuracy, cost = train["correct"].mean(), train["cost"].mean()
    sets: dict[str, dict[str, str]] = {}
    for config, variant in variants.items():
        if variant in VARIANT_CASCADE and config in accuracy.index and config.count(variant) == 1:
            sets.setdefault(config.replace(variant, "{}"), {})[variant] = config
    full = [s for s in sets.values() if len(s) == len(VARIANT_CASCADE)]
    if full:
        best = min(full, key=lambda s: (-accuracy[s["few_shot_5"]], sum(cost[c] for c in s.values())))
        cheap, middle, dear = (best[v] for v in VARIANT_CASCADE)
    else:
        table = pd.DataFrame({"accuracy": accuracy, "cost": cost})
        cheap = table.sort_values(["cost", "accuracy"], ascending=[True, False], kind="mergesort").index[0]
        dear = table.sort_values(["accuracy", "cost"], ascending=[False, True], kind="mergesort").index[0]
        if cheap == dear:
            return []
        between = table[(table["cost"] > cost[cheap]) & (table["cost"] < cost[dear])
                        & (table["accuracy"] > accuracy[cheap]) & (table["accuracy"] < accuracy[dear])]
        front = [c for c in between.index if not ((table["accuracy"] >= accuracy[c]) & (table["cost"] <= cost[c])
                                                  & ((table["accuracy"] > accuracy[c]) | (table["cost"] < cost[c]))).any()]
        rest = table.drop(index=[cheap, dear]).sort_values(["cost", "accuracy"], ascending=[True, False],
                                                           kind="mergesort")
        middle = (between.loc[front, "accuracy"].idxmax() if front else
                  rest.index[0] if signal == "agreement" and len(rest) else None)
    options = [] if signal == "agreement" and middle is not None else [(cheap, dear)]
    return options + ([(cheap, middle, dear)] if middle is not None else [])


def study_cascades(frame: pd.DataFrame, usd: pd.Series, *, stages: Sequence[str] | None = None,
                   signal: str = "auto", train_fraction: float = 0.5, seed: int = 0,
                   budget_usd_per_query: float | None = None, per_dataset: bool = True,
                   confidence: float = 0.95, coverage: pd.DataFrame | None = None) -> CascadeStudy:
    """Cascades per dataset (and pooled) with thresholds fit on a train split, measured on the rest.

    Per dataset: the configs with grades and a known cost (configs answering from the response
    cache are left out when others exist: a cache is not a stage) form an item matrix; `stages`
    (or `choose_stages` on the train split) give the cascades; the oracle router over all
    those configs is the upper bound of any router.  Summary columns: dataset, n (test rows), configs, signal,
    best_single (+ _accuracy, _low, _high, _usd_per_1k), best_cascade (+ the same), matching_cascade,
    matching_usd_per_1k, saving (1 - its cost / best single's, NaN when no cascade matches),
    oracle_accuracy, oracle_usd_per_1k, budget_usd_per_1k (default: half the best single's),
    best_at_budget (+ _kind, _accuracy, _usd_per_1k).  A dataset that cannot be studied gets a note,
    as does each configuration left out: `coverage` (`pricing.price_coverage` of the run's models)
    tells a model without a price from a priced one whose requests lack token counts.
    """
    chosen, reason = choose_signal(frame, signal)
    priced_models = None if coverage is None else {str(m) for m in coverage.loc[coverage["priced"], "model"]}
    data = frame.assign(usd=usd.to_numpy(), answer=answer_keys(frame).to_numpy())
    datasets = sorted(frame["dataset"].dropna().unique().tolist())
    names = ([*datasets, POOLED] if len(datasets) > 1 else datasets) if per_dataset else (
        [POOLED] if len(datasets) > 1 else datasets)
    notes = [] if reason is None else [{"dataset": POOLED if len(datasets) > 1 else None, "note": reason}]
    frontiers, summaries = [], []
    for name in names:
        rows = data if name == POOLED else data[data["dataset"] == name]
        try:
            frontier, summary = _study_one(rows, stages, chosen, train_fraction, seed, budget_usd_per_query,
                                           confidence, notes, name, priced_models)
        except ParameterError as exc:
            notes.append({"dataset": name, "note": str(exc)})
            continue
        frontiers.append(frontier.assign(dataset=name))
        summaries.append({"dataset": name} | summary)
    frontier = pd.concat(frontiers, ignore_index=True) if frontiers else pd.DataFrame(columns=["dataset", "kind"])
    # without a pooled study, the dataset with the most held-out rows stands for the run
    overall = POOLED if POOLED in {s["dataset"] for s in summaries} else (
        max(summaries, key=lambda s: s["n"])["dataset"] if summaries else None)
    return CascadeStudy(frontier, pd.DataFrame(summaries), pd.DataFrame(notes, columns=["dataset", "note"]),
                        chosen, overall)


def overall_points(study: CascadeStudy) -> pd.DataFrame:
    """The singles and cascades describing the whole run, with `pareto` over (accuracy up, USD per
    1,000 down) and `tag` (the label of cascades and Pareto singles, else empty, for figures).
    The oracle is left out: it is an upper bound, not a choice (`oracle_point` gives it)."""
    rows = study.frontier[study.frontier["dataset"] == study.overall] if study.overall else study.frontier.iloc[:0]
    rows = rows.reindex(columns=[*rows.columns, *(c for c in POINT_COLUMNS if c not in rows.columns)])
    rows = rows[rows["kind"] != "oracle"].reset_index(drop=True)
    points = pareto_front(rows, maximize=("accuracy",), minimize=("usd_per_1k",), id_col="label")
    return points.assign(tag=points["label"].where(points["pareto"] | (points["kind"] != "single"), ""))


def oracle_point(study: CascadeStudy) -> pd.DataFrame:
    """The oracle router's row for the whole run (empty when there is none)."""
    rows = study.frontier[(study.frontier["dataset"] == study.overall) & (study.frontier["kind"] == "oracle")]
    return rows.reindex(columns=[*rows.columns, *(c for c in POINT_COLUMNS if c not in rows.columns)])

def _study_one(rows: pd.DataFrame, stages: Sequence[str] | None, signal: str | None, train_fraction: float,
               seed: int, budget: float | None, confidence: float, notes: list[dict],
               name: str, priced_models: set[str] | None) -> tuple[pd.DataFrame, dict]:
    configs = _eligible(rows, notes, name, priced_models)
    if name == POOLED:
        configs = _in_every_dataset(rows, configs, notes)
    configs = _with_most_items(rows, configs, notes, name)
    if stages is not None:
        unknown = [c for c in stages if c not in configs]
        if unknown:
            raise ParameterError(f"stages: {', '.join(unknown)} not usable here (no grades, no cost or no rows)")
        configs = list(dict.fromkeys([*stages, *configs]))
    matrix = item_matrix(rows.drop_duplicates(KEY + ["config_id"], keep="last"), configs, answer_col="answer")
    train, test = split_items(matrix, train_fraction, seed)
    variants = rows.groupby("config_id")["prompt_variant"].first().dropna().astype(str).to_dict()
    options = [] if signal is None else [tuple(stages)] if stages is not None else choose_stages(train, variants, signal)
    if signal is not None and not options:
        notes.append({"dataset": name, "note": "no cascade: the cheapest configuration is also the most accurate"})
    frontier = cascade_frontier(matrix, options, signal or "agreement", train_fraction, seed,
                                confidence=confidence, singles=configs)
    oracle = oracle_router(test, configs)
    low, high = wilson_interval(oracle.n_correct, oracle.n, confidence)
    frontier = pd.concat([frontier, pd.DataFrame([{
        "kind": "oracle", "stages": "oracle over " + ", ".join(configs), "n_stages": len(configs),
        "accuracy": oracle.accuracy, "accuracy_low": float(low), "accuracy_high": float(high),
        "usd_per_query": oracle.mean_cost, "usd_per_1k": 1000 * oracle.mean_cost, "n": oracle.n,
        "n_correct": oracle.n_correct}])], ignore_index=True)
    short = _short_names(configs)
    frontier["label"] = ["oracle" if kind == "oracle" else _cascade_label([short[c] for c in ids.split(" > ")])
                         for kind, ids in zip(frontier["kind"], frontier["stages"])]
    return frontier, _summary(frontier, test, budget)


def _with_most_items(rows: pd.DataFrame, configs: list[str], notes: list[dict], name: str) -> list[str]:
    """The configs that answered the most items: an item matrix keeps only the items every config
    answered, so one asked on a few items (a load-sweep cell, say) would shrink the study to those."""
    counts = rows[rows["config_id"].isin(configs)].drop_duplicates(KEY + ["config_id"]).groupby("config_id").size()
    if counts.empty:
        return configs
    kept = [c for c in configs if counts.get(c, 0) == counts.max()]
    if len(kept) < len(configs):
        notes.append({"dataset": name, "note": f"only the {len(kept)} configuration(s) asked on all {counts.max()} "
                      f"items take part; {len(configs) - len(kept)} asked on fewer are left out: "
                      f"{_some([c for c in configs if c not in kept])}"})
    return kept


def _in_every_dataset(rows: pd.DataFrame, configs: list[str], notes: list[dict]) -> list[str]:
    """Pooling needs configs that answered every dataset: one that skipped a dataset has no answer
    to its items, and an item matrix keeps only items every config answered."""
    per_dataset = rows[rows["config_id"].isin(configs)].groupby("dataset")["config_id"].agg(set)
    common = [c for c in configs if all(c in answered for answered in per_dataset)]
    if not common:
        raise ParameterError("no configuration answered every dataset, so the datasets cannot be pooled "
                             "(each is studied on its own)")
    if len(common) < len(configs):
        notes.append({"dataset": POOLED, "note": f"pooled over datasets: only the {len(common)} configuration(s) "
                      f"that answered every dataset; {len(configs) - len(common)} answered only some: "
                      f"{_some([c for c in configs if c not in common])}"})
    return common


def _eligible(rows: pd.DataFrame, notes: list[dict], name: str, priced_models: set[str] | None) -> list[str]:
    graded = rows["correct"].notna() & rows["status"].eq("ok").fillna(False)
    configs = sorted(rows.loc[graded, "config_id"].dropna().unique().tolist())
    if not configs:
        raise ParameterError("no graded requests, so there is nothing to cascade")
    no_cost = sorted(rows.loc[rows["usd"].isna(), "config_id"].unique().tolist())
    priced = [c for c in configs if c not in no_cost]
    uncosted = []  # configs whose model has a price, yet some request of theirs has no cost
    if priced_models is not None:  # without it, every missing cost is put down to a missing price
        model_of = rows.groupby("config_id")["model"].first()
        uncosted = [c for c in configs if c in no_cost and str(model_of[c]) in priced_models]
    unpriced = [c for c in configs if c in no_cost and c not in uncosted]
    if unpriced:
        notes.append({"dataset": name, "note": f"{len(unpriced)} configuration(s) left out "
                      f"for lack of a price: {_some(unpriced)}"})
    if uncosted:
        notes.append({"dataset": name, "note": f"{len(uncosted)} configuration(s) left out because some of "
                      "their requests lack the token counts (or, self-hosted, the timings) their price "
                      f"applies to: {_some(uncosted)}"})
    cached = set(rows.loc[rows["cache_hit"].fillna(False).astype(bool), "config_id"])
    uncached = [c for c in priced if c not in cached]
    if uncached and len(uncached) < len(priced):
        notes.append({"dataset": name, "note": f"{len(priced) - len(uncached)} configuration(s) answering "
                      "repeats from the response cache left out: a cache is not a cascade stage"})
        priced = uncached
    if not priced:
        raise ParameterError("no configuration with grades has a known cost")
    return priced


def _summary(frontier: pd.DataFrame, test: pd.DataFrame, budget: float | None) -> dict:
    singles = frontier[frontier["kind"] == "single"].sort_values(["accuracy", "usd_per_query"],
                                                                 ascending=[False, True], kind="mergesort")
    cascades = frontier[frontier["kind"] == "cascade"].sort_values(["accuracy", "usd_per_query"],
                                                                   ascending=[False, True], kind="mergesort")
    best = singles.iloc[0]
    saving = cost_saving_at_best_single(frontier[frontier["kind"] != "oracle"])
    oracle = frontier[frontier["kind"] == "oracle"].iloc[0]
    budget = float(best["usd_per_query"]) / 2 if budget is None else budget
    at_budget = best_accuracy_at_budget(frontier[frontier["kind"] != "oracle"], budget)
    out = {"n": int(best["n"]), "configs": len(singles), "signal": cascades["signal"].iloc[0] if len(cascades) else None}
    for prefix, row in (("best_single", best), ("best_cascade", cascades.iloc[0] if len(cascades) else None)):
        out |= {prefix: None if row is None else row["label"]}
        out |= {f"{prefix}_{k}": np.nan if row is None else float(row[c]) for k, c in (
            ("accuracy", "accuracy"), ("low", "accuracy_low"), ("high", "accuracy_high"), ("usd_per_1k", "usd_per_1k"))}
    match = None if saving is None else frontier[(frontier["stages"] == saving.cascade)
                                                 & (frontier["usd_per_query"] == saving.cascade_usd_per_query)].iloc[0]
    out |= {"matching_cascade": None if match is None else match["label"],
            "matching_accuracy": np.nan if saving is None else saving.cascade_accuracy,
            "matching_usd_per_1k": np.nan if saving is None else 1000 * saving.cascade_usd_per_query,
            "saving": np.nan if saving is None else saving.saving,
            "oracle_accuracy": float(oracle["accuracy"]), "oracle_usd_per_1k": float(oracle["usd_per_1k"]),
            "budget_usd_per_1k": 1000 * budget,
            "best_at_budget": None if at_budget is None else at_budget["label"],
            "best_at_budget_kind": None if at_budget is None else at_budget["kind"],
            "best_at_budget_accuracy": np.nan if at_budget is None else float(at_budget["accuracy"]),
            "best_at_budget_usd_per_1k": np.nan if at_budget is None else float(at_budget["usd_per_1k"])}
    return out


def _some(names: Sequence[str], shown: int = 8) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _cascade_label(names: Sequence[str]) -> str:
    """"zero_shot > few_shot_5 (mt8/c1)": the parts the stages share said once, after them."""
    parts = [n.split("/") for n in names]
    if len(names) < 2 or len({len(p) for p in parts}) != 1:
        return " > ".join(names)
    shared = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) == 1]
    varying = ["/".join(x for i, x in enumerate(p) if i not in shared) for p in parts]
    if not all(varying):
        return " > ".join(names)
    return " > ".join(varying) + (f" ({'/'.join(parts[0][i] for i in shared)})" if shared else "")


def _short_names(configs: Sequence[str]) -> dict[str, str]:
    """Config ids without the "/"-separated parts they all share (the model, often)."""
    parts = [c.split("/") for c in configs]
    if len({len(p) for p in parts}) != 1:
        return {c: c for c in configs}
    varying = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1]
    short = {c: "/".join(p[i] for i in varying) or c for c, p in zip(configs, parts)}
    return short if len(set(short.values())) == len(short) else {c: c for c in configs}


def _floats(rows: pd.DataFrame, name: str) -> np.ndarray:
    if name not in rows.columns:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[name], errors="coerce").astype(float).to_numpy()


def _arrays(matrix: pd.DataFrame, stages: Sequence[str],
            signal: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not stages:
        raise ParameterError("a cascade needs at least one stage")
    configs = set(matrix["correct"].columns)
    unknown = [s for s in stages if s not in configs]
    if unknown:
        raise ParameterError(f"config(s) not in the item matrix: {', '.join(unknown)}")
    if signal is not None and signal not in SIGNALS:
        raise ParameterError(f"signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
    stages = list(stages)
    correct = matrix["correct"][stages].to_numpy(dtype=float)
    cost = matrix["cost"][stages].to_numpy(dtype=float)
    confidence = np.full(correct.shape, -np.inf)
    if signal in ("logprob_mean", "score"):
        values = matrix[signal][stages].to_numpy(dtype=float)
        lacking = [s for i, s in enumerate(stages[:-1]) if np.isnan(values[:, i]).all()]
        if lacking:
            raise ParameterError(f"no {signal} values for config(s) {', '.join(lacking)}")
        confidence = np.where(np.isnan(values), -np.inf, values)
    elif signal == "agreement":
        answers = matrix["answer"][stages].map(_normalized).to_numpy(dtype=object)
        for k in range(len(stages) - 1):
            same = [a is not None and a == b for a, b in zip(answers[:, k], answers[:, k + 1])]
            confidence[:, k] = np.where(same, 1.0, 0.0)
    return correct, cost, confidence


def _normalized(answer: object) -> str | None:
    return None if not isinstance(answer, str) else " ".join(answer.casefold().split())


def _simulate(correct: np.ndarray, cost: np.ndarray, confidence: np.ndarray, thresholds: np.ndarray,
              signal: str) -> tuple[np.ndarray, np.ndarray, list[float]]:
    n, stages = correct.shape
    pending = np.ones(n, dtype=bool)
    charged = np.zeros((n, stages), dtype=bool)
    got, paid, escalated = np.zeros(n), np.zeros(n), []
    for k in range(stages):
        # agreement needs the next stage's answer before stage k's can be accepted
        for j in (k, k + 1) if signal == "agreement" and k < stages - 1 else (k,):
            paid += np.where(pending & ~charged[:, j], cost[:, j], 0.0)
            charged[:, j] |= pending
        accept = pending if k == stages - 1 else pending & (confidence[:, k] >= thresholds[k])
        got += np.where(accept, correct[:, k], 0.0)
        pending = pending & ~accept
        if k < stages - 1:
            escalated.append(float(pending.mean()))
    return got, paid, escalated


def _grid_outcomes(matrix: pd.DataFrame, stages: Sequence[str], signal: str,
                   grid: Sequence[float] | None) -> tuple[list[tuple[float, ...]], np.ndarray, np.ndarray]:
    correct, cost, confidence = _arrays(matrix, stages, signal)
    per_stage = [_candidates(confidence[:, k], signal, grid) for k in range(len(stages) - 1)]
    combos = list(itertools.product(*per_stage))
    accuracy, mean_cost = np.empty(len(combos)), np.empty(len(combos))
    for i, combo in enumerate(combos):
        got, paid, _ = _simulate(correct, cost, confidence, np.array(combo), signal)
        accuracy[i], mean_cost[i] = got.mean(), paid.mean()
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
