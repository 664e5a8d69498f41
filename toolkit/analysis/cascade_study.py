"""The cascade study of a whole run, for the notebooks: which configurations can take part, which
cascades to try, and what they achieve per dataset and pooled.

The simulation itself (item matrix, thresholds, frontier, oracle router) is `toolkit.analysis.cascade`;
this module feeds it a run's requests table and sums up its frontier.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from toolkit import store, warehouse
from toolkit.analysis.accuracy import wilson_interval
from toolkit.analysis.cascade import (KEY, SIGNALS, best_accuracy_at_budget, cascade_frontier,
                                      cost_saving_at_best_single, item_matrix, oracle_router, split_items)
from toolkit.analysis.frontier import pareto_front
from toolkit.errors import ParameterError
from toolkit.graders import first_line, normalize
from toolkit.pricing import CostBasis, PriceTable, priced
from toolkit.schema import SETTING_COLUMNS
from toolkit.warehouse import Rows

POOLED = "all datasets"
POINT_COLUMNS = ("dataset", "kind", "stages", "label", "signal", "thresholds", "accuracy", "accuracy_low",
                 "accuracy_high", "usd_per_query", "usd_per_1k", "escalated", "n", "n_correct")
VARIANT_CASCADE = ("zero_shot", "few_shot_1", "few_shot_5")  # cheap, its checker, the expensive one
# every setting column but prompt_variant: configs equal in all of them differ only in the prompt
VARIANT_PEERS = ("model", "max_tokens", "temperature", "concurrency", *SETTING_COLUMNS)
NO_SIGNAL = ("no confidence signal: the run has no logprobs and no answers to compare, so no cascade "
             "can decide when to escalate (pass signal='score' only if your grader needs no reference)")


@dataclass(frozen=True)
class CascadePoint:
    """A single configuration, a cascade or the oracle router, measured on the held-out items."""

    label: str  # the caller's label of each stage, joined by " > "; "oracle" for the oracle router
    kind: str  # "single", "cascade" or "oracle"
    accuracy: float
    accuracy_low: float  # Wilson interval at the study's confidence
    accuracy_high: float
    usd_per_1k: float  # mean cost per 1,000 held-out requests


@dataclass(frozen=True)
class CascadeSummary:
    """What the cascades of one dataset (or `POOLED`) achieve against the single configurations."""

    dataset: str
    n: int  # held-out requests every point is measured on
    configs: int  # configurations taking part (each also a single point)
    signal: str | None  # the cascades' confidence signal; None when no cascade was evaluated
    best_single: CascadePoint  # the most accurate single configuration, the cheaper on a tie
    best_cascade: CascadePoint | None  # the most accurate cascade, the cheaper on a tie
    matching_cascade: CascadePoint | None  # the cheapest cascade at least as accurate as best_single
    saving: float | None  # 1 - matching_cascade's cost / best_single's; negative when it costs more
    oracle: CascadePoint  # the oracle router: no router over these configurations does better
    budget_usd_per_1k: float  # the budget asked for, by default half the best single's cost
    best_at_budget: CascadePoint | None  # the most accurate single or cascade within the budget


@dataclass(frozen=True)
class CascadeStudy:
    """Cascades of a run, per dataset (and pooled over datasets as `POOLED`).

    `frontier`: `cascade_frontier` rows plus an "oracle" row, with dataset and label;
    `summaries`: dataset -> its `CascadeSummary`, for each dataset that could be studied; `notes`:
    dataset, note — what was left out and why.  `overall` names the dataset whose rows describe the
    whole run: `POOLED`, or when the datasets cannot be pooled, the one with the most held-out rows.
    """

    frontier: pd.DataFrame
    summaries: dict[str, CascadeSummary]
    notes: pd.DataFrame
    signal: str | None
    overall: str | None


def request_costs(rows: Rows, prices: PriceTable | CostBasis, manifest: dict | None = None) -> pd.Series:
    """USD per request from `pricing`; where that is unknown, the importer's reported mean per
    config (`reported_usd_per_query` in an imported manifest, e.g. FrugalGPT's) fills in.

    Given a `CostBasis`, its table prices the requests, and reported costs fill in only on the
    "prices" basis: an output-token basis compares every model on one stated price, which a
    reported bill would break.  A Series on `rows`' index (`costed`, in `rows`' order).
    """
    usd = costed(rows, prices, manifest, keep_order=True).select("usd").df()["usd"]
    return pd.Series(usd.to_numpy(dtype=float), index=rows.index, name="usd")


def costed(rows: Rows, prices: PriceTable | CostBasis, manifest: dict | None = None, *,
           keep_order: bool = False) -> duckdb.DuckDBPyRelation:
    """`rows` with `usd`, as `request_costs` gives it, computed in DuckDB."""
    if isinstance(prices, CostBasis):
        manifest = manifest if prices.basis == "prices" else None
        prices = prices.table
    source = priced(rows, prices, keep_order=keep_order)
    reported = (manifest or {}).get("reported_usd_per_query") or {}
    if not reported:
        return source
    cases = " ".join(f"WHEN {warehouse.literal(config)} THEN {float(usd)!r}" for config, usd in reported.items())
    return warehouse.over(source, f"SELECT * REPLACE (coalesce(usd, CASE {warehouse.text(source, 'config_id')} "
                                  f"{cases} END) AS usd) FROM {{rows}}")


# the items of each dataset a study holds: a cascade's accuracy on the 5,000 held out is known to within about
# 1.4 points (and its difference from a single config's, paired on the same items, closer), while the item
# matrix of every item of a run of tens of millions of requests would not fit in memory
ITEMS_PER_DATASET = 10_000


def cascade_rows(rows: Rows, prices: PriceTable | CostBasis, manifest: dict | None = None, *,
                 items_per_dataset: int = ITEMS_PER_DATASET, seed: int = 0) -> pd.DataFrame:
    """What `study_cascades` reads of the requests (`STUDIED_COLUMNS`, model, output_text) with each
    request's cost `usd` (`request_costs`), for at most `items_per_dataset` items of each dataset: all of
    them when a dataset has no more, else a seeded random choice of items made in DuckDB, the same for
    every configuration, so that their answers stay paired.  In no particular order (a study pairs rows by item)."""
    source = costed(rows, prices, manifest)
    kept = [c for c in dict.fromkeys([*STUDIED_COLUMNS, "model", "output_text", "usd"]) if c in source.columns]
    dataset = warehouse.text(source, "dataset")
    (most,), = warehouse.over(source, f"SELECT coalesce(max(items), 0) FROM (SELECT count(DISTINCT item_id) AS items "
                                      f"FROM {{rows}} GROUP BY {dataset})").fetchall()
    chosen = source
    if most > items_per_dataset:
        chosen = warehouse.over(source, f"""
            WITH keyed AS (SELECT *, {dataset} AS _dataset FROM {{rows}}),
            items AS (SELECT DISTINCT _dataset, item_id FROM keyed),
            kept AS (SELECT * FROM items
                     QUALIFY row_number() OVER (PARTITION BY _dataset ORDER BY hash(_dataset, item_id, {int(seed)}),
                                                                              item_id) <= {int(items_per_dataset)})
            SELECT r.* EXCLUDE (_dataset) FROM keyed r
            SEMI JOIN kept k ON k._dataset IS NOT DISTINCT FROM r._dataset AND k.item_id IS NOT DISTINCT FROM r.item_id""")
    return store.frame_of(chosen.select(*map(warehouse.quoted, kept)))


def reported_models(rows: Rows, manifest: dict | None) -> list[str]:
    """Models whose configs have a cost the import reported (`reported_usd_per_query`), for
    `pricing.price_coverage(reported=...)`."""
    reported = (manifest or {}).get("reported_usd_per_query") or {}
    if not reported:
        return []
    source = warehouse.relation(rows)
    configs = ", ".join(map(warehouse.literal, reported))
    return warehouse.distinct_texts(
        warehouse.over(source, f"SELECT model FROM {{rows}} WHERE {warehouse.text(source, 'config_id')} IN ({configs})"),
        "model")


def answer_keys(frame: pd.DataFrame) -> pd.Series:
    """The answer an agreement check compares: the first non-blank line, normalized as graders do; a
    categorical (a study filters and copies its million rows many times: text would be copied with them)."""
    # normalized once per distinct answer (answers repeat, and normalizing costs ~5 us each), then
    # spread by the answers' codes: a Python call per row of a million-row table takes a second
    codes, texts = pd.factorize(frame["output_text"])
    keys = [normalize(first_line(t)) if isinstance(t, str) else None for t in texts]
    key_codes, distinct = pd.factorize(pd.Series(keys, dtype=object))
    key_codes = np.append(key_codes, -1)  # code -1 (no answer) takes the last: no key
    return pd.Series(pd.Categorical.from_codes(key_codes[codes], categories=distinct), index=frame.index)


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



def choose_stages(train: pd.DataFrame, settings: pd.DataFrame, signal: str = "logprob_mean") -> list[tuple[str, ...]]:
    """Cascades worth trying on a train item matrix, cheapest stage first.

    `settings` has one row per config_id (its index) with prompt_variant and the `VARIANT_PEERS`
    columns.  When zero_shot, few_shot_1 and few_shot_5 of configurations equal in every other
    setting (a null setting counts as a value) are all there, the set whose few_shot_5 is most
    accurate (then the cheapest) gives zero_shot > few_shot_1 > few_shot_5: with agreement, answer
    with zero_shot when few_shot_1 agrees, else ask few_shot_5.  Otherwise: the cheapest config, a
    middle one (the most accurate cost-accuracy Pareto config between; with agreement, else the next
    cheapest) and the most accurate.  The 2-stage cheapest > most accurate is added except with
    agreement when a middle stage exists (there it is only the last stage at a higher price).  []
    when the cheapest config is also the most accurate.
    """
    missing = [c for c in ("prompt_variant", *VARIANT_PEERS) if c not in settings.columns]
    if missing:
        raise ParameterError(f"choose_stages: settings lack column(s) {', '.join(missing)}")
    accuracy, cost = train["correct"].mean(), train["cost"].mean()
    candidates = settings[settings.index.isin(accuracy.index) & settings["prompt_variant"].isin(VARIANT_CASCADE)]
    full = []  # in the order of each set's first config id, so that ties go to the same set every time
    for _, group in candidates.sort_index().groupby(list(VARIANT_PEERS), dropna=False, sort=False):
        variants = group["prompt_variant"].astype(str).tolist()
        if sorted(variants) == sorted(VARIANT_CASCADE):  # each variant exactly once
            full.append(dict(zip(variants, group.index)))
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


# what a study reads of the requests table: its per-dataset copies hold only these
STUDIED_COLUMNS = ("dataset", "item_id", "repeat", "config_id", "prompt_variant", *VARIANT_PEERS, "status", "correct",
                   "score", "logprob_mean", "cache_hit")


def study_cascades(frame: pd.DataFrame, usd: pd.Series, *, labels: Mapping[str, str] | None = None,
                   stages: Sequence[str] | None = None, signal: str = "auto", train_fraction: float = 0.5,
                   seed: int = 0, budget_usd_per_query: float | None = None, per_dataset: bool = True,
                   confidence: float = 0.95, coverage: pd.DataFrame | None = None) -> CascadeStudy:
    """Cascades per dataset (and pooled) with thresholds fit on a train split, measured on the rest.

    Per dataset: the configs with grades and a known cost (configs answering from the response
    cache are left out when others exist: a cache is not a stage) form an item matrix; `stages`
    (or `choose_stages` on the train split) give the cascades; the oracle router over all those
    configs is the upper bound of any router.  Points are labelled with `labels` (config_id ->
    label; a config missing from it is its own label).  A dataset that cannot be studied gets a
    note, as does each configuration left out: `coverage` (`pricing.price_coverage` of the run's
    models) tells a model without a price from a priced one whose requests lack token counts.
    """
    chosen, reason = choose_signal(frame, signal)
    priced_models = None if coverage is None else {str(m) for m in coverage.loc[coverage["priced"], "model"]}
    # items are only keys here: their codes in sorted order pair and split them as their text does, and
    # filtering, deduplicating and pivoting a million rows of text took most of a study's time
    item_codes = pd.factorize(frame["item_id"], sort=True, use_na_sentinel=False)[0]
    data = frame[[c for c in STUDIED_COLUMNS if c in frame.columns]].assign(
        item_id=item_codes, usd=usd.to_numpy(), answer=answer_keys(frame).array)
    datasets = sorted(frame["dataset"].dropna().unique().tolist())
    names = ([*datasets, POOLED] if len(datasets) > 1 else datasets) if per_dataset else (
        [POOLED] if len(datasets) > 1 else datasets)
    notes = [] if reason is None else [{"dataset": POOLED if len(datasets) > 1 else None, "note": reason}]
    frontiers, summaries = [], {}
    for name in names:
        rows = data if name == POOLED else data[data["dataset"] == name]
        try:
            frontier = _study_one(rows, stages, chosen, train_fraction, seed, confidence, notes, name, priced_models)
        except ParameterError as exc:
            notes.append({"dataset": name, "note": str(exc)})
            continue
        named = labels or {}
        frontier["label"] = ["oracle" if kind == "oracle" else " > ".join(named.get(c, c) for c in ids.split(" > "))
                             for kind, ids in zip(frontier["kind"], frontier["stages"])]
        frontiers.append(frontier.assign(dataset=name))
        summaries[name] = _summary(name, frontier, budget_usd_per_query)
    frontier = pd.concat(frontiers, ignore_index=True) if frontiers else pd.DataFrame(columns=["dataset", "kind"])
    # without a pooled study, the dataset with the most held-out rows stands for the run
    overall = POOLED if POOLED in summaries else (
        max(summaries.values(), key=lambda s: s.n).dataset if summaries else None)
    return CascadeStudy(frontier, summaries, pd.DataFrame(notes, columns=["dataset", "note"]), chosen, overall)


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


def summary_table(study: CascadeStudy) -> pd.DataFrame:
    """The summaries as a table, one row per dataset: each point as its label (the oracle's left
    out) and its _accuracy, _low, _high and _usd_per_1k (NaN without such a point); best_at_budget
    also with its _kind."""
    rows = []
    for s in study.summaries.values():
        row: dict[str, object] = {"dataset": s.dataset, "n": s.n, "configs": s.configs, "signal": s.signal}
        for name in ("best_single", "best_cascade", "matching_cascade"):
            row |= _point_columns(name, getattr(s, name))
        row["saving"] = np.nan if s.saving is None else s.saving
        row |= _point_columns("oracle", s.oracle, label=False)
        row["budget_usd_per_1k"] = s.budget_usd_per_1k
        rows.append(row | _point_columns("best_at_budget", s.best_at_budget, kind=True))
    return pd.DataFrame(rows)


def _point_columns(name: str, point: CascadePoint | None, *, label: bool = True,
                   kind: bool = False) -> dict[str, object]:
    out: dict[str, object] = {}
    if label:
        out[name] = None if point is None else point.label
    if kind:
        out[f"{name}_kind"] = None if point is None else point.kind
    for suffix, field in (("accuracy", "accuracy"), ("low", "accuracy_low"), ("high", "accuracy_high"),
                          ("usd_per_1k", "usd_per_1k")):
        out[f"{name}_{suffix}"] = np.nan if point is None else getattr(point, field)
    return out


def _study_one(rows: pd.DataFrame, stages: Sequence[str] | None, signal: str | None, train_fraction: float,
               seed: int, confidence: float, notes: list[dict], name: str,
               priced_models: set[str] | None) -> pd.DataFrame:
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
    if signal is None:
        options = []
    elif stages is not None:
        options = [tuple(stages)]
    else:
        options = choose_stages(train, rows.drop_duplicates("config_id").set_index("config_id"), signal)
    if signal is not None and not options:
        notes.append({"dataset": name, "note": "no cascade: the cheapest configuration is also the most accurate"})
    frontier = cascade_frontier(matrix, options, signal or "agreement", train_fraction, seed,
                                confidence=confidence, singles=configs)
    oracle = oracle_router(test, configs)
    low, high = wilson_interval(oracle.n_correct, oracle.n, confidence)
    return pd.concat([frontier, pd.DataFrame([{
        "kind": "oracle", "stages": "oracle over " + ", ".join(configs), "n_stages": len(configs),
        "accuracy": oracle.accuracy, "accuracy_low": float(low), "accuracy_high": float(high),
        "usd_per_query": oracle.mean_cost, "usd_per_1k": 1000 * oracle.mean_cost, "n": oracle.n,
        "n_correct": oracle.n_correct}])], ignore_index=True)


def _with_most_items(rows: pd.DataFrame, configs: list[str], notes: list[dict], name: str) -> list[str]:
    """The configs that answered the most items: an item matrix keeps only the items every config
    answered, so one asked on a few items (a load-sweep config, say) would shrink the study to those."""
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




def _summary(name: str, frontier: pd.DataFrame, budget: float | None) -> CascadeSummary:
    choices = frontier[frontier["kind"] != "oracle"]
    singles = frontier[frontier["kind"] == "single"].sort_values(["accuracy", "usd_per_query"],
                                                                 ascending=[False, True], kind="mergesort")
    cascades = frontier[frontier["kind"] == "cascade"].sort_values(["accuracy", "usd_per_query"],
                                                                   ascending=[False, True], kind="mergesort")
    best = singles.iloc[0]
    cascade = cascades.iloc[0] if len(cascades) else None
    saving = cost_saving_at_best_single(choices)
    match = None if saving is None else choices[(choices["stages"] == saving.cascade)
                                                & (choices["usd_per_query"] == saving.cascade_usd_per_query)
                                                & (choices["accuracy"] == saving.cascade_accuracy)].iloc[0]
    budget = float(best["usd_per_query"]) / 2 if budget is None else budget
    at_budget = best_accuracy_at_budget(choices, budget)
    return CascadeSummary(
        dataset=name, n=int(best["n"]), configs=len(singles), signal=None if cascade is None else cascade["signal"],
        best_single=_point(best), best_cascade=None if cascade is None else _point(cascade),
        matching_cascade=None if match is None else _point(match), saving=None if saving is None else saving.saving,
        oracle=_point(frontier[frontier["kind"] == "oracle"].iloc[0]), budget_usd_per_1k=1000 * budget,
        best_at_budget=None if at_budget is None else _point(at_budget))


def _point(row: pd.Series) -> CascadePoint:
    return CascadePoint(str(row["label"]), str(row["kind"]), float(row["accuracy"]), float(row["accuracy_low"]),
                        float(row["accuracy_high"]), float(row["usd_per_1k"]))


def _some(names: Sequence[str], shown: int = 8) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more

