"""Accuracy per configuration with intervals, and paired tests between configurations.

Failures are not wrong answers: accuracy is measured on the requests the model answered, and the
error rate (failed requests over all requests, with its own interval) is a column of its own, so a
run where every request failed has unknown accuracy and a 100% error rate, never "0% accuracy".
The cost model charges failures at their own cost.  An `ok` row without a grade (`correct` null)
is left out and counted in `ungraded`.  A missing `score` on a graded row falls back to `correct`
as 0/1.
"""
from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from toolkit import warehouse
from toolkit.analysis.rows import each_group, select_dataset
from toolkit.errors import ParameterError
from toolkit.warehouse import Rows


PAIR_KEY = ("dataset", "item_id", "repeat")


def graded_outcomes(rows: Rows, keep: Sequence[str]) -> duckdb.DuckDBPyRelation:
    """`keep` columns of `rows` with the outcome columns `is_error`, `graded`, `is_correct` (booleans)
    and `graded_score` (a float for graded rows, else null), computed in DuckDB.

    `graded` is true for answered (ok) rows that carry a grade: the rows accuracy is measured on.
    Error rows (any status but ok, or none) are never graded; `is_error` marks them for the error rate.
    """
    source = warehouse.relation(rows)
    _require(source, [*keep, "status", "correct", "score"])
    ok = f"coalesce({warehouse.text(source, 'status')} = 'ok', false)"
    correct, score = "CAST(correct AS BOOLEAN)", "CAST(score AS DOUBLE)"
    graded = f"({ok} AND {correct} IS NOT NULL)"
    kept = ", ".join(warehouse.text(source, c) + f" AS {warehouse.quoted(c)}" for c in dict.fromkeys(keep))
    return warehouse.over(source, f"""
        SELECT {kept + ', ' if kept else ''}NOT {ok} AS is_error, {graded} AS graded,
               {graded} AND coalesce({correct}, false) AS is_correct,
               CASE WHEN {graded} THEN CASE WHEN {score} IS NULL OR isnan({score})
                                            THEN CAST(coalesce({correct}, false) AS DOUBLE) ELSE {score} END END
                   AS graded_score
        FROM {{rows}}""")


def wilson_interval(correct: np.ndarray | int, n: np.ndarray | int,
                    confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for `correct` successes out of `n` (NaN where n is 0)."""
    correct, n = np.asarray(correct, dtype=float), np.asarray(n, dtype=float)
    safe_n = np.where(n > 0, n, 1.0)
    low, high = proportion_confint(correct, safe_n, alpha=1 - confidence, method="wilson")
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def bootstrap_mean_interval(values: np.ndarray, confidence: float = 0.95, *, n_resamples: int = 2000,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (NaN for fewer than two values), of the values in sorted
    order: the same values give the same interval however they were read.

    Percentile rather than BCa because scores are often all 0 or all 1 in a group, where BCa is
    undefined; with a fixed seed the interval is reproducible.  See `bootstrap_counts_interval`.
    """
    levels, counts = np.unique(np.asarray(values, dtype=float), return_counts=True)
    return bootstrap_counts_interval(levels, counts, confidence, n_resamples=n_resamples, seed=seed)


def mean_intervals(rows: Rows, by: Sequence[str], values: Mapping[str, str], confidence: float = 0.95, *,
                   n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per group of `by` (text keys) and per name of `values` (each a SQL expression over `rows`, its nulls and
    NaN left out): n and a percentile bootstrap interval (low, high) of the mean, as columns *by, value (the
    name), n, low, high; a group without values for a name has no row for it.  The values are unpivoted, so
    that all of them take the same passes.

    What DuckDB returns per group stays bounded: a group of at most `MAX_RESAMPLED_VALUES` / `n_resamples`
    values, or of at most about 2 x `MAX_LEVELS` distinct values (a HyperLogLog estimate decides), comes as
    its distinct values and their counts, and gets exactly `bootstrap_mean_interval` of its values.  A larger
    group of more values, whose bootstrap resamples strata anyway, comes as `STRATA` strata of equal width
    between its smallest and largest value (size, mean and variance of each, one pass without a sort): the
    resampled means keep their exact mean and variance, and at thousands of values their shape is the
    normal one whatever the strata.
    """
    source = warehouse.relation(rows)
    grouped = [*by, "value"]
    keys = [warehouse.quoted(key) for key in grouped]
    listed = "".join(f"{key}, " for key in keys)
    order = warehouse.group_order(grouped)
    with warehouse.materialized(warehouse.unpivoted(warehouse.measured_values(source, by, values), values)) as measured:
        groups = warehouse.over(measured, f"""
            SELECT {listed}count(*) AS n, approx_count_distinct(_value) AS levels, min(_value) AS low,
                   max(_value) AS high
            FROM {{rows}} GROUP BY ALL HAVING count(*) > 0 {order}""").df()
        if groups.empty:
            return pd.DataFrame(columns=[*grouped, "n", "low", "high"])
        stratified = (groups["n"] * n_resamples > MAX_RESAMPLED_VALUES) & (groups["levels"] > 2 * MAX_LEVELS)
        table = ", ".join("(" + ", ".join([*(warehouse.literal(None if pd.isna(row[key]) else row[key]) for key in grouped),
                                           "true" if strata else "false", f"CAST('{float(row['low'])!r}' AS DOUBLE)",
                                           f"CAST('{float(row['high'])!r}' AS DOUBLE)"]) + ")"
                          for (_, row), strata in zip(groups.iterrows(), stratified))
        names = ", ".join([*keys, "_strata", "_low", "_high"])
        match = " AND ".join(f"v.{key} IS NOT DISTINCT FROM g.{key}" for key in keys) or "TRUE"
        tagged = warehouse.over(measured, f"SELECT v.*, g._strata, g._low, g._high FROM {{rows}} v "
                                        f"JOIN (VALUES {table}) g({names}) ON {match}")
        counted = warehouse.over(tagged, f"""
            SELECT {listed}list(_value ORDER BY _value) AS levels, list(n ORDER BY _value) AS counts
            FROM (SELECT {listed}_value, count(*) AS n FROM {{rows}} WHERE NOT _strata GROUP BY ALL)
            GROUP BY ALL HAVING count(*) > 0 {order}""").df()
        strata = warehouse.over(tagged, f"""
            SELECT {listed}list(size ORDER BY stratum) AS sizes, list(total ORDER BY stratum) AS totals,
                   list(squares ORDER BY stratum) AS squares
            FROM (SELECT {listed}stratum, count(*) AS size, sum(_value) AS total, sum(_value * _value) AS squares
                  FROM (SELECT *, least(CAST(floor(coalesce((_value - _low) / nullif(_high - _low, 0), 0) * {STRATA})
                                             AS BIGINT), {STRATA - 1}) AS stratum
                        FROM {{rows}} WHERE _strata)
                  GROUP BY ALL)
            GROUP BY ALL HAVING count(*) > 0 {order}""").df()
    found, intervals = [], []
    for row in counted.itertuples(index=False):
        levels, counts = np.asarray(row.levels, dtype=float), np.asarray(row.counts, dtype=np.int64)
        found.append((*row[:len(grouped)], int(counts.sum())))
        intervals.append(functools.partial(bootstrap_counts_interval, levels, counts, confidence,
                                           n_resamples=n_resamples, seed=seed))
    for row in strata.itertuples(index=False):
        sizes, totals, squares = (np.asarray(v, dtype=float) for v in (row.sizes, row.totals, row.squares))
        means = totals / sizes
        variances = np.maximum(squares / sizes - means**2, 0.0)
        found.append((*row[:len(grouped)], int(sizes.sum())))
        intervals.append(functools.partial(_strata_interval, sizes, means, variances, confidence, n_resamples, seed))
    table = pd.DataFrame([(*group, *interval) for group, interval in zip(found, each_group(intervals))],
                         columns=[*grouped, "n", "low", "high"])
    return table.sort_values(grouped, ignore_index=True)


def bootstrap_counts_interval(levels: np.ndarray, counts: np.ndarray, confidence: float = 0.95, *,
                              n_resamples: int = 2000, seed: int = 0,
                              values: np.ndarray | None = None) -> tuple[float, float]:
    """`bootstrap_mean_interval` of the values that take each of the sorted distinct `levels` `counts`
    times (what a GROUP BY returns), or of `values` themselves when given.

    Values with at most `FEW_LEVELS` distinct values (0/1 scores, paired differences), and any values
    past `MAX_RESAMPLED_VALUES` values x resamples, are resampled from counts instead of rows (see
    `_resampled_means`), so a million-row group takes milliseconds and megabytes; other values go to
    scipy's bootstrap (without `values`, in sorted order).
    """
    levels, counts = np.asarray(levels, dtype=float), np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n < 2:
        return float("nan"), float("nan")
    if len(levels) == 1:
        return float(levels[0]), float(levels[0])
    rng = np.random.default_rng(seed)
    if len(levels) <= FEW_LEVELS or n * n_resamples > MAX_RESAMPLED_VALUES:
        alpha = (1 - confidence) / 2
        means = _resampled_means(levels, counts, n_resamples, rng)
        low, high = np.quantile(means, [alpha, 1 - alpha])
        return float(low), float(high)
    values = np.repeat(levels, counts) if values is None else values
    # groups are bootstrapped on a thread per core (`each_group`): in batches, so that all of them together hold
    # at most MAX_RESAMPLED_VALUES resampled values (batches draw the same resamples as one call)
    batch = max(1, MAX_RESAMPLED_VALUES // ((os.cpu_count() or 1) * len(values)))
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", rng=rng, batch=batch)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


FEW_LEVELS = 100  # distinct values up to which resampling counts is cheaper than resampling rows
MAX_RESAMPLED_VALUES = 10_000_000  # values x resamples that scipy's bootstraps may hold in memory at once (80 MB)
MAX_LEVELS = 1000  # distinct values up to which the count-based bootstrap is exact
STRATA = 200


def _resampled_means(levels: np.ndarray, counts: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_resamples` bootstrap resamples of values, without materializing them.

    A resample is fixed by how often it draws each distinct value (`levels`, seen `counts` times):
    those counts are Multinomial(n, counts / n), so up to `MAX_LEVELS` levels this is the bootstrap
    exactly.  With more, the sorted values are cut into `STRATA` strata of equal size; the counts
    per stratum are drawn exactly and the sum of a stratum's draws as a normal with its exact mean
    and variance, which keeps the bootstrap distribution's mean and variance exact and its shape
    across strata.
    """
    n = int(counts.sum())
    if len(levels) <= MAX_LEVELS:
        return rng.multinomial(n, counts / n, size=n_resamples) @ levels / n
    return _strata_means(*_strata(levels, counts), n_resamples, rng)


def _strata_means(sizes: np.ndarray, means: np.ndarray, variances: np.ndarray, n_resamples: int,
                  rng: np.random.Generator) -> np.ndarray:
    """`_resampled_means` from the strata's sizes, means and variances."""
    n = int(sizes.sum())
    draws = rng.multinomial(n, sizes / n, size=n_resamples)
    return (draws @ means + np.sqrt(draws @ variances) * rng.standard_normal(n_resamples)) / n


def _strata_interval(sizes: np.ndarray, means: np.ndarray, variances: np.ndarray, confidence: float,
                     n_resamples: int, seed: int) -> tuple[float, float]:
    """`bootstrap_counts_interval` of values given as strata (as `_strata` cuts them)."""
    alpha = (1 - confidence) / 2
    low, high = np.quantile(_strata_means(sizes, means, variances, n_resamples, np.random.default_rng(seed)),
                            [alpha, 1 - alpha])
    return float(low), float(high)


def _strata(levels: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Size, mean and variance of each of the `STRATA` equal parts (as `np.array_split` cuts them) of
    the sorted values that take `levels` `counts` times, without repeating them."""
    n = int(counts.sum())
    sizes = np.array([len(part) for part in np.array_split(np.empty(n, dtype=np.int8), STRATA)], dtype=float)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    # the sum (and sum of squares) of the values before each bound: whole levels, then part of one
    level = np.minimum(np.searchsorted(ends, bounds, side="right"), len(levels) - 1)
    partial = bounds - starts[level]
    before = [np.concatenate([[0.0], np.cumsum(levels**power * counts)])[level] + partial * levels[level]**power
              for power in (1, 2)]
    safe = np.maximum(sizes, 1.0)
    means = np.diff(before[0]) / safe
    variances = np.diff(before[1]) / safe - means**2
    return sizes, means, np.maximum(variances, 0.0)


def accuracy_table(rows: Rows, by: Sequence[str] = ("config_id", "dataset"),
                   confidence: float = 0.95, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Accuracy and mean score per group of `by`, with Wilson and bootstrap intervals, and the error rate.

    Columns: *by, n, correct, errors, ungraded, accuracy, accuracy_low, accuracy_high,
    error_rate, error_rate_low, error_rate_high, score_mean, score_low, score_high.  `n` counts
    the graded answers that accuracy is measured on; `errors` the failed requests; the error rate
    is errors over every request of the group (Wilson interval).  A group with no graded answer
    has NaN accuracy.  Counted in DuckDB: pandas holds a row per group and distinct score.
    """
    by = list(by)
    keys = "".join(f"{warehouse.quoted(key)}, " for key in by)
    # one pass over the rows: counts per group and graded score, then per group with its score levels
    table = warehouse.over(graded_outcomes(rows, by), f"""
        WITH parts AS (
            SELECT {keys}graded_score AS level, count(*) FILTER (WHERE graded) AS n,
                   count(*) FILTER (WHERE is_correct) AS correct, count(*) FILTER (WHERE is_error) AS errors,
                   count(*) AS requests, count(*) FILTER (WHERE NOT graded AND NOT is_error) AS ungraded
            FROM {{rows}} GROUP BY ALL)
        SELECT {keys}sum(n) AS n, sum(correct) AS correct, sum(errors) AS errors, sum(requests) AS requests,
               sum(ungraded) AS ungraded,
               coalesce(list(level ORDER BY level) FILTER (WHERE level IS NOT NULL), CAST([] AS DOUBLE[])) AS levels,
               coalesce(list(n ORDER BY level) FILTER (WHERE level IS NOT NULL), CAST([] AS BIGINT[])) AS counts
        FROM parts GROUP BY ALL {"ORDER BY " + keys.rstrip(", ") if by else ""}""").df()
    intervals = each_group(functools.partial(bootstrap_counts_interval, levels, counts, confidence,
                                              n_resamples=n_resamples, seed=seed)
                            for levels, counts in zip(table["levels"], table["counts"]))
    table["score_low"] = [low for low, _ in intervals]
    table["score_high"] = [high for _, high in intervals]
    for column in ("n", "correct", "errors", "requests", "ungraded"):
        table[column] = table[column].astype(np.int64)
    n = table["n"].to_numpy()
    table["accuracy"] = np.where(n > 0, table["correct"] / np.where(n > 0, n, 1), np.nan)
    table["accuracy_low"], table["accuracy_high"] = wilson_interval(table["correct"], n, confidence)
    requests = table["requests"].to_numpy()
    table["error_rate"] = np.where(requests > 0, table["errors"] / np.where(requests > 0, requests, 1), np.nan)
    table["error_rate_low"], table["error_rate_high"] = wilson_interval(table["errors"], requests, confidence)
    # from the sorted levels, not a parallel SUM in DuckDB, whose order (and last bits) vary between runs
    table["score_mean"] = [np.asarray(levels, dtype=float) @ np.asarray(counts, dtype=float) / n if n else np.nan
                           for levels, counts, n in zip(table["levels"], table["counts"], table["n"])]
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


def paired_comparison(rows: Rows, config_a: str, config_b: str, dataset: str | None = None,
                      *, confidence: float = 0.95, n_resamples: int = 2000,
                      seed: int = 0) -> PairedComparison:
    """Compare two configs on the items both answered, pairing by (dataset, item_id, repeat).

    A failed request is no answer, so its item leaves the comparison (the error rate says how often).

    `p_value` is the exact McNemar test on the discordant pairs (a_only vs b_only); the score
    interval is a percentile bootstrap of the mean paired difference A - B.
    """
    source = warehouse.relation(rows)
    _require(source, ["config_id", *PAIR_KEY, "status", "correct", "score"])
    known = warehouse.distinct_texts(source, "config_id")
    for config in (config_a, config_b):
        if config not in known:
            raise ParameterError(f"config_id {config!r} has no rows; known: {', '.join(known)}")
    pairs = _paired_outcomes(source, dataset, [config_a, config_b])
    return _compare(pairs, config_a, config_b, dataset, confidence, n_resamples, seed)


def pairwise_significance(rows: Rows, dataset: str | None = None, alpha: float = 0.05,
                          adjust: str = "holm", *, confidence: float = 0.95, n_resamples: int = 2000,
                          seed: int = 0) -> pd.DataFrame:
    """Paired comparison of every pair of configs, with p-values adjusted for multiple tests.

    `adjust` is a statsmodels `multipletests` method ("holm", "bonferroni", "fdr_bh", ...) or
    "none".  Columns: config_a, config_b, n_pairs, accuracy_a, accuracy_b, accuracy_diff, a_only,
    b_only, p_value, p_adjusted, significant, better (config with the higher accuracy when
    significant, else None), score_diff, score_diff_low, score_diff_high.  The pairs are joined and
    counted in DuckDB: pandas holds a row per pair of configs and pair of outcomes.
    """
    source = warehouse.relation(rows)
    _require(source, ["config_id", *PAIR_KEY, "status", "correct", "score"])
    configs = warehouse.distinct_texts(source, "config_id")
    pairs = _paired_outcomes(source, dataset, configs)
    by_pair = dict(iter(pairs.groupby(["config_a", "config_b"], sort=False)))
    empty = pairs.iloc[:0]
    results = [_compare(by_pair.get((a, b), empty), a, b, dataset, confidence, n_resamples, seed)
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


def _pair_keys(source: duckdb.DuckDBPyRelation) -> list[str]:
    """(dataset, item_id, repeat), and the run: several runs analysed together (the same grid on two
    days) pair answers within each run."""
    if "run_id" not in source.columns:
        return list(PAIR_KEY)
    runs = warehouse.over(source, "SELECT count(DISTINCT run_id) FROM {rows}").fetchall()[0][0]
    return ["run_id", *PAIR_KEY] if runs > 1 else list(PAIR_KEY)


def _paired_outcomes(source: duckdb.DuckDBPyRelation, dataset: str | None, configs: Sequence[str]) -> pd.DataFrame:
    """How often each pair of `configs` (a before b in that list) answered the same item with each pair of
    outcomes: config_a, config_b, correct_a, correct_b, diff (score a - score b), count.  Only graded rows
    with every pair key pair; a config with two rows of one key is an error.  The keys and configs are
    numbered before the self-join: joining and grouping on integers is 4-5x faster than on their texts."""
    keys = _pair_keys(source)
    named = ", ".join(map(warehouse.quoted, keys))
    chosen = ", ".join(f"({warehouse.literal(config)}, {number})" for number, config in enumerate(configs))
    graded = warehouse.over(graded_outcomes(select_dataset(source, dataset), ["config_id", *keys]), f"""
        SELECT * FROM {{rows}} WHERE graded AND {' AND '.join(f'{warehouse.quoted(k)} IS NOT NULL' for k in keys)}""")
    # a CTE, computed once where the self-join reads it twice
    numbered = f"""WITH numbered AS MATERIALIZED (
        SELECT p.pair, c.number, g.is_correct, g.graded_score
        FROM {{rows}} g
        JOIN (SELECT {named}, row_number() OVER () AS pair FROM (SELECT DISTINCT {named} FROM {{rows}})) p USING ({named})
        JOIN (VALUES {chosen or "(NULL, NULL)"}) AS c(config_id, number) USING (config_id))"""
    # the pairs and any key a config answered twice, in one statement: numbering the rows is most of the work
    counted = warehouse.over(graded, numbered + """,
        copies AS (SELECT number, count(*) - 1 AS extra FROM numbered GROUP BY number, pair HAVING count(*) > 1)
        SELECT false AS duplicated, a.number AS a, b.number AS b, a.is_correct AS correct_a,
               b.is_correct AS correct_b, a.graded_score - b.graded_score AS diff, count(*) AS count
        FROM numbered a JOIN numbered b ON a.pair = b.pair AND a.number < b.number GROUP BY ALL
        UNION ALL
        SELECT true, number, NULL, NULL, NULL, NULL, sum(extra) FROM copies GROUP BY number
        ORDER BY ALL""").df()
    duplicated = counted[counted["duplicated"].astype(bool)]
    if len(duplicated):
        number, extra = int(duplicated["a"].iloc[0]), int(duplicated["count"].iloc[0])
        example = warehouse.over(graded, f"""SELECT [{', '.join(f'CAST({warehouse.quoted(k)} AS VARCHAR)' for k in keys)}]
            FROM {{rows}} WHERE config_id = {warehouse.literal(configs[number])} GROUP BY ALL HAVING count(*) > 1
            ORDER BY ALL LIMIT 1""").fetchall()[0][0]
        raise ParameterError(f"config_id {configs[number]!r} has {extra} duplicate ({', '.join(keys)}) rows, "
                             f"e.g. {example}; pairing needs one per key")
    pairs = counted.drop(columns="duplicated").astype({"a": np.int64, "b": np.int64, "correct_a": bool,
                                                      "correct_b": bool, "count": np.int64})
    names = np.asarray(configs, dtype=object)
    return pairs.assign(config_a=names[pairs["a"].to_numpy()], config_b=names[pairs["b"].to_numpy()]).drop(
        columns=["a", "b"])


def _compare(pairs: pd.DataFrame, config_a: str, config_b: str, dataset: str | None,
             confidence: float, n_resamples: int, seed: int) -> PairedComparison:
    """The comparison of two configs from `_paired_outcomes`' rows of that pair."""
    count = pairs["count"].to_numpy(dtype=np.int64)
    ca, cb = pairs["correct_a"].to_numpy(bool), pairs["correct_b"].to_numpy(bool)
    both, a_only = int(count[ca & cb].sum()), int(count[ca & ~cb].sum())
    b_only, both_wrong = int(count[~ca & cb].sum()), int(count[~ca & ~cb].sum())
    n = int(count.sum())
    p_value = float(mcnemar([[both, a_only], [b_only, both_wrong]], exact=True).pvalue) if n else float("nan")
    levels, level_of = np.unique(pairs["diff"].to_numpy(dtype=float), return_inverse=True)
    counts = np.bincount(level_of, weights=count, minlength=len(levels)).astype(np.int64)
    low, high = bootstrap_counts_interval(levels, counts, confidence, n_resamples=n_resamples, seed=seed)
    return PairedComparison(
        config_a=config_a, config_b=config_b, dataset=dataset, n_pairs=n, both_correct=both,
        a_only=a_only, b_only=b_only, both_wrong=both_wrong,
        accuracy_a=(both + a_only) / n if n else float("nan"),
        accuracy_b=(both + b_only) / n if n else float("nan"), p_value=p_value,
        score_diff=float(levels @ counts / n) if n else float("nan"), score_diff_low=low,
        score_diff_high=high, confidence=confidence)


def _require(rows: duckdb.DuckDBPyRelation, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise ParameterError(f"the requests are missing column(s) {', '.join(missing)}")


def answer_groups(rows: Rows, *, id_col: str = "config_id") -> pd.DataFrame:
    """Configs that got every item (dataset, item, repeat) exactly as right or wrong as each other.

    Such configs are one treatment as far as accuracy goes (e.g. the same prompt at another
    concurrency, at temperature 0): comparing them with each other only adds tests.  Columns:
    id_col, group (numbered in order of each group's first member), members (how many configs in
    it), in id order.  Failed requests are no answers and leave the signature; a config with no
    graded request is its own group.  `present.name_answer_groups` names the groups.
    """
    source = warehouse.relation(rows)
    # a config's answers compare as the multiset of its (item, outcome) rows: their number and the sum and
    # exclusive-or of their 64-bit hashes, computed in DuckDB (a chance collision is ~2**-128)
    found = warehouse.over(graded_outcomes(source, [id_col, *PAIR_KEY]), f"""
        SELECT {warehouse.quoted(id_col)}, count(*), sum(h), bit_xor(h)
        FROM (SELECT *, hash({', '.join(map(warehouse.quoted, PAIR_KEY))}, is_correct, graded_score) AS h
              FROM {{rows}} WHERE graded)
        GROUP BY ALL""").fetchall()
    signature = {str(config): tuple(rest) for config, *rest in found}
    configs = warehouse.distinct_texts(source, id_col)
    groups: dict[object, list[str]] = {}
    for config in configs:
        groups.setdefault(signature.get(config, config), []).append(config)
    out = [{id_col: member, "group": number, "members": len(members)}
           for number, members in enumerate(groups.values()) for member in members]
    table = pd.DataFrame(out, columns=[id_col, "group", "members"])
    return table.sort_values(id_col, kind="mergesort").reset_index(drop=True)


def one_per_answer_group(rows: Rows, groups: pd.DataFrame, *, id_col: str = "config_id") -> duckdb.DuckDBPyRelation:
    """The rows of the first config of each named `answer_groups` group, its id replaced by the group's
    name (the `answers` column of `present.name_answer_groups`), as a relation."""
    first = groups.drop_duplicates("answers")
    names = dict(zip(first[id_col].astype(str), first["answers"].astype(str)))
    source = warehouse.relation(rows)
    value = warehouse.text(source, id_col)
    kept = warehouse.over(source, f"SELECT * FROM {{rows}} WHERE {value} IN "
                                  f"({', '.join(map(warehouse.literal, names)) or 'NULL'})")
    return warehouse.replaced(kept, id_col, names)
