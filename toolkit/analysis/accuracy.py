"""Accuracy per configuration with intervals, and paired tests between configurations.

Failures are not wrong answers: accuracy is measured on the requests the model answered, and the
error rate (failed requests over all requests, with its own interval) is a column of its own, so a
run where every request failed has unknown accuracy and a 100% error rate, never "0% accuracy".
The cost model charges failures at their own cost.  An `ok` row without a grade (`correct` null)
is left out and counted in `ungraded`.  A missing `score` on a graded row falls back to `correct`
as 0/1.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from toolkit.errors import ParameterError


PAIR_KEY = ("dataset", "item_id", "repeat")


def graded_outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """Return `frame` with float columns `is_correct`, `is_error`, `graded_score` and `graded`.

    `graded` is True for answered (ok) rows that carry a grade: the rows accuracy is measured on.
    Error rows are never graded; `is_error` marks them for the error rate.
    """
    out = frame.copy(deep=False)  # copy-on-write: only the added columns are new
    is_error = (out["status"] != "ok").fillna(True).astype(bool)
    correct = out["correct"].astype("boolean")
    graded = ~is_error & correct.notna().to_numpy()
    is_correct = correct.fillna(False).astype(bool) & graded
    score = out["score"].astype(float).where(out["score"].notna(), is_correct.astype(float))
    out["is_error"] = is_error.astype(float)
    out["is_correct"] = is_correct.astype(float)
    out["graded_score"] = score.where(graded, np.nan).astype(float)
    out["graded"] = graded
    return out


def wilson_interval(correct: np.ndarray | int, n: np.ndarray | int,
                    confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for `correct` successes out of `n` (NaN where n is 0)."""
    correct, n = np.asarray(correct, dtype=float), np.asarray(n, dtype=float)
    safe_n = np.where(n > 0, n, 1.0)
    low, high = proportion_confint(correct, safe_n, alpha=1 - confidence, method="wilson")
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def bootstrap_mean_interval(values: np.ndarray, confidence: float = 0.95, *, n_resamples: int = 2000,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (NaN for fewer than two values).

    Percentile rather than BCa because scores are often all 0 or all 1 in a group, where BCa is
    undefined; with a fixed seed the interval is reproducible.  Values with at most `FEW_LEVELS`
    distinct values (0/1 scores, paired differences), and any values past `MAX_RESAMPLED_VALUES`
    values x resamples, are resampled from counts instead of rows (see `_resampled_means`), so a
    million-row group takes milliseconds and megabytes.
    """
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    levels, counts = np.unique(values, return_counts=True)
    if len(levels) <= FEW_LEVELS or len(values) * n_resamples > MAX_RESAMPLED_VALUES:
        alpha = (1 - confidence) / 2
        means = _resampled_means(values, levels, counts, n_resamples, rng)
        low, high = np.quantile(means, [alpha, 1 - alpha])
        return float(low), float(high)
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", rng=rng)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


FEW_LEVELS = 100  # distinct values up to which resampling counts is cheaper than resampling rows
MAX_RESAMPLED_VALUES = 10_000_000  # values x resamples that scipy may hold in memory at once (80 MB)
MAX_LEVELS = 1000  # distinct values up to which the count-based bootstrap is exact
STRATA = 200


def _resampled_means(values: np.ndarray, levels: np.ndarray, counts: np.ndarray, n_resamples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Means of `n_resamples` bootstrap resamples of `values`, without materializing them.

    A resample is fixed by how often it draws each distinct value (`levels`, seen `counts` times):
    those counts are Multinomial(n, counts / n), so up to `MAX_LEVELS` levels this is the bootstrap
    exactly.  With more, the sorted values are cut into `STRATA` strata of equal size; the counts
    per stratum are drawn exactly and the sum of a stratum's draws as a normal with its exact mean
    and variance, which keeps the bootstrap distribution's mean and variance exact and its shape
    across strata.
    """
    n = len(values)
    if len(levels) <= MAX_LEVELS:
        return rng.multinomial(n, counts / n, size=n_resamples) @ levels / n
    strata = np.array_split(np.sort(values), STRATA)
    sizes = np.array([len(s) for s in strata], dtype=float)
    means = np.array([s.mean() for s in strata])
    variances = np.array([s.var() for s in strata])
    draws = rng.multinomial(n, sizes / n, size=n_resamples)
    return (draws @ means + np.sqrt(draws @ variances) * rng.standard_normal(n_resamples)) / n


def accuracy_table(frame: pd.DataFrame, by: Sequence[str] = ("config_id", "dataset"),
                   confidence: float = 0.95, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Accuracy and mean score per group of `by`, with Wilson and bootstrap intervals, and the error rate.

    Columns: *by, n, correct, errors, ungraded, accuracy, accuracy_low, accuracy_high,
    error_rate, error_rate_low, error_rate_high, score_mean, score_low, score_high.  `n` counts
    the graded answers that accuracy is measured on; `errors` the failed requests; the error rate
    is errors over every request of the group (Wilson interval).  A group with no graded answer
    has NaN accuracy.
    """
    by = list(by)
    _require(frame, [*by, "status", "correct", "score"])
    # only the columns it reads: grouping a copy of every column of a large table costs seconds
    rows = graded_outcomes(frame[list(dict.fromkeys([*by, "status", "correct", "score"]))])
    records = []
    for key, group in rows.groupby(by, sort=True, dropna=False):
        graded = group[group["graded"]]
        scores = graded["graded_score"].to_numpy()
        score_low, score_high = bootstrap_mean_interval(scores, confidence, n_resamples=n_resamples,
                                                        seed=seed)
        records.append({
            **dict(zip(by, key)),
            "n": len(graded), "correct": int(graded["is_correct"].sum()),
            "errors": int(group["is_error"].sum()), "requests": len(group),
            "ungraded": int((~group["graded"] & (group["is_error"] == 0)).sum()),
            "score_mean": float(scores.mean()) if len(scores) else float("nan"),
            "score_low": score_low, "score_high": score_high,
        })
    table = pd.DataFrame.from_records(records, columns=[*by, "n", "correct", "errors", "requests", "ungraded",
                                                        "score_mean", "score_low", "score_high"])
    n = table["n"].to_numpy()
    table["accuracy"] = np.where(n > 0, table["correct"] / np.where(n > 0, n, 1), np.nan)
    table["accuracy_low"], table["accuracy_high"] = wilson_interval(table["correct"], n, confidence)
    requests = table["requests"].to_numpy()
    table["error_rate"] = np.where(requests > 0, table["errors"] / np.where(requests > 0, requests, 1), np.nan)
    table["error_rate_low"], table["error_rate_high"] = wilson_interval(table["errors"], requests, confidence)
    return table[[*by, "n", "correct", "errors", "ungraded", "accuracy", "accuracy_low",
                  "accuracy_high", "error_rate", "error_rate_low", "error_rate_high", "score_mean",
                  "score_low", "score_high"]]


@dataclass(frozen=True)
class PairedComparison:
    """Config A against config B on the same (dataset, item_id, repeat) requests."""

    config_a: str
    config_b: str
    dataset: str | None
    n_pairs: int
    both_correct: int
    a_only: int
    b_only: int
    both_wrong: int
    accuracy_a: float
    accuracy_b: float
    p_value: float
    score_diff: float
    score_diff_low: float
    score_diff_high: float
    confidence: float

    @property
    def accuracy_diff(self) -> float:
        return self.accuracy_a - self.accuracy_b


def paired_comparison(frame: pd.DataFrame, config_a: str, config_b: str, dataset: str | None = None,
                      *, confidence: float = 0.95, n_resamples: int = 2000,
                      seed: int = 0) -> PairedComparison:
    """Compare two configs on the items both answered, pairing by (dataset, item_id, repeat).

    A failed request is no answer, so its item leaves the comparison (the error rate says how often).

    `p_value` is the exact McNemar test on the discordant pairs (a_only vs b_only); the score
    interval is a percentile bootstrap of the mean paired difference A - B.
    """
    _require(frame, ["config_id", *PAIR_KEY, "status", "correct", "score"])
    rows = _graded_pairs(frame, dataset)
    known = set(frame["config_id"].dropna().unique())
    for config in (config_a, config_b):
        if config not in known:
            raise ParameterError(f"config_id {config!r} has no rows; known: {', '.join(sorted(known))}")
    side = {c: _keyed(rows, c) for c in (config_a, config_b)}
    return _compare(side[config_a], side[config_b], config_a, config_b, dataset, confidence,
                    n_resamples, seed)


def pairwise_significance(frame: pd.DataFrame, dataset: str | None = None, alpha: float = 0.05,
                          adjust: str = "holm", *, confidence: float = 0.95, n_resamples: int = 2000,
                          seed: int = 0) -> pd.DataFrame:
    """Paired comparison of every pair of configs, with p-values adjusted for multiple tests.

    `adjust` is a statsmodels `multipletests` method ("holm", "bonferroni", "fdr_bh", ...) or
    "none".  Columns: config_a, config_b, n_pairs, accuracy_a, accuracy_b, accuracy_diff, a_only,
    b_only, p_value, p_adjusted, significant, better (config with the higher accuracy when
    significant, else None), score_diff, score_diff_low, score_diff_high.
    """
    _require(frame, ["config_id", *PAIR_KEY, "status", "correct", "score"])
    rows = _graded_pairs(frame, dataset)
    configs = sorted(frame["config_id"].dropna().unique())
    side = {c: _keyed(rows, c) for c in configs}
    results = [_compare(side[a], side[b], a, b, dataset, confidence, n_resamples, seed)
               for a, b in itertools.combinations(configs, 2)]
    table = pd.DataFrame({
        "config_a": [r.config_a for r in results], "config_b": [r.config_b for r in results],
        "n_pairs": [r.n_pairs for r in results],
        "accuracy_a": [r.accuracy_a for r in results], "accuracy_b": [r.accuracy_b for r in results],
        "accuracy_diff": [r.accuracy_diff for r in results],
        "a_only": [r.a_only for r in results], "b_only": [r.b_only for r in results],
        "p_value": [r.p_value for r in results],
        "score_diff": [r.score_diff for r in results],
        "score_diff_low": [r.score_diff_low for r in results],
        "score_diff_high": [r.score_diff_high for r in results],
    })
    table["p_adjusted"] = _adjust(table["p_value"].to_numpy(dtype=float), alpha, adjust)
    table["significant"] = (table["p_adjusted"] < alpha).to_numpy()
    table["better"] = pd.Series([
        (a if diff > 0 else b) if sig else None
        for a, b, diff, sig in zip(table["config_a"], table["config_b"], table["accuracy_diff"],
                                   table["significant"])], index=table.index, dtype=object)
    return table[["config_a", "config_b", "n_pairs", "accuracy_a", "accuracy_b", "accuracy_diff",
                  "a_only", "b_only", "p_value", "p_adjusted", "significant", "better",
                  "score_diff", "score_diff_low", "score_diff_high"]]


def _adjust(p_values: np.ndarray, alpha: float, method: str) -> np.ndarray:
    adjusted = np.full(len(p_values), np.nan)
    present = ~np.isnan(p_values)
    if method == "none" or not present.any():
        adjusted[present] = p_values[present]
        return adjusted
    try:
        adjusted[present] = multipletests(p_values[present], alpha=alpha, method=method)[1]
    except ValueError as exc:
        raise ParameterError(f"adjust={method!r} is not a statsmodels multipletests method: {exc}") from exc
    return adjusted


def _select_dataset(frame: pd.DataFrame, dataset: str | None) -> pd.DataFrame:
    if dataset is None:
        return frame
    selected = frame[frame["dataset"] == dataset]
    if selected.empty:
        known = ", ".join(sorted(frame["dataset"].dropna().unique()))
        raise ParameterError(f"dataset {dataset!r} has no rows; known: {known}")
    return selected


def _graded_pairs(frame: pd.DataFrame, dataset: str | None) -> pd.DataFrame:
    """The graded rows with `_pair`, one integer per (dataset, item_id, repeat) (NaN where a key is
    missing): a pair of configs merges on it, where merging on three string keys per pair took seconds.
    Several runs analysed together (the same grid on two days) pair answers within each run."""
    keys = _pair_keys(frame)
    rows = graded_outcomes(_select_dataset(frame[["config_id", *keys, "status", "correct", "score"]], dataset))
    rows = rows[rows["graded"]]
    return rows.assign(_pair=rows.groupby(keys, sort=False).ngroup())


def _pair_keys(frame: pd.DataFrame) -> list[str]:
    several_runs = "run_id" in frame.columns and frame["run_id"].nunique() > 1
    return ["run_id", *PAIR_KEY] if several_runs else list(PAIR_KEY)


def _keyed(rows: pd.DataFrame, config: str) -> pd.DataFrame:
    keys = _pair_keys(rows)
    mine = rows.loc[rows["config_id"] == config, [*keys, "_pair", "is_correct", "graded_score"]]
    mine = mine.dropna(subset=keys)  # a row without an item (e.g. imported latency data) pairs with nothing
    duplicated = mine.duplicated(keys)
    if duplicated.any():
        first = mine.loc[duplicated, keys].iloc[0].tolist()
        raise ParameterError(f"config_id {config!r} has {int(duplicated.sum())} duplicate "
                             f"({', '.join(keys)}) rows, e.g. {first}; pairing needs one per key")
    return mine.drop(columns=keys)


def _compare(a: pd.DataFrame, b: pd.DataFrame, config_a: str, config_b: str, dataset: str | None,
             confidence: float, n_resamples: int, seed: int) -> PairedComparison:
    # the items both answered, in a's order (an inner merge on the unique pair numbers, without building
    # a frame per pair of configs: hundreds of pairs took over a second)
    _, in_a, in_b = np.intersect1d(a["_pair"].to_numpy(), b["_pair"].to_numpy(), assume_unique=True,
                                   return_indices=True)
    order = np.argsort(in_a, kind="stable")
    in_a, in_b = in_a[order], in_b[order]
    ca, cb = a["is_correct"].to_numpy(bool)[in_a], b["is_correct"].to_numpy(bool)[in_b]
    both, a_only, b_only = int((ca & cb).sum()), int((ca & ~cb).sum()), int((~ca & cb).sum())
    both_wrong = int((~ca & ~cb).sum())
    n = len(in_a)
    if n:
        p_value = float(mcnemar([[both, a_only], [b_only, both_wrong]], exact=True).pvalue)
    else:
        p_value = float("nan")
    diff = a["graded_score"].to_numpy(dtype=float)[in_a] - b["graded_score"].to_numpy(dtype=float)[in_b]
    low, high = bootstrap_mean_interval(diff, confidence, n_resamples=n_resamples, seed=seed)
    return PairedComparison(
        config_a=config_a, config_b=config_b, dataset=dataset, n_pairs=n, both_correct=both,
        a_only=a_only, b_only=b_only, both_wrong=both_wrong,
        accuracy_a=float(ca.mean()) if n else float("nan"),
        accuracy_b=float(cb.mean()) if n else float("nan"), p_value=p_value,
        score_diff=float(diff.mean()) if n else float("nan"), score_diff_low=low,
        score_diff_high=high, confidence=confidence)


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ParameterError(f"frame is missing column(s) {', '.join(missing)}")


def answer_groups(frame: pd.DataFrame, *, id_col: str = "config_id") -> pd.DataFrame:
    """Configs that got every item (dataset, item, repeat) exactly as right or wrong as each other.

    Such configs are one treatment as far as accuracy goes (e.g. the same prompt at another
    concurrency, at temperature 0): comparing them with each other only adds tests.  Columns:
    id_col, group (numbered in order of each group's first member), members (how many configs in
    it), in id order.  Failed requests are no answers and leave the signature; a config with no
    graded request is its own group.  `present.name_answer_groups` names the groups.
    """
    rows = graded_outcomes(frame[[id_col, *PAIR_KEY, "status", "correct", "score"]])
    rows = rows[rows["graded"]].sort_values([*PAIR_KEY], kind="mergesort")
    # each row's (item, outcome) numbered, so a config's answers compare as one byte string (grouped on
    # the values themselves: as text, a million rows took seconds)
    codes = rows.groupby([*PAIR_KEY, "is_correct", "graded_score"], sort=False, dropna=False).ngroup().to_numpy()
    signature = {config: codes[where].tobytes() for config, where in rows.groupby(id_col, sort=True).indices.items()}
    configs = sorted(str(c) for c in frame[id_col].dropna().unique())
    groups: dict[object, list[str]] = {}
    for config in configs:
        groups.setdefault(signature.get(config, config), []).append(config)
    out = [{id_col: member, "group": number, "members": len(members)}
           for number, members in enumerate(groups.values()) for member in members]
    table = pd.DataFrame(out, columns=[id_col, "group", "members"])
    return table.sort_values(id_col, kind="mergesort").reset_index(drop=True)


def one_per_answer_group(frame: pd.DataFrame, groups: pd.DataFrame, *, id_col: str = "config_id") -> pd.DataFrame:
    """The rows of the first config of each named `answer_groups` group, its id replaced by the group's
    name (the `answers` column of `present.name_answer_groups`)."""
    first = groups.drop_duplicates("answers")
    names = dict(zip(first[id_col], first["answers"]))
    kept = frame[frame[id_col].astype(object).isin(set(names))]
    return kept.assign(**{id_col: kept[id_col].astype(object).map(names)})


