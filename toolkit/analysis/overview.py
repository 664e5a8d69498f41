"""What a notebook or report says first: what a run holds, its priced per-config summary, the best config.

These are the few steps every notebook and the report index share, kept here so that they agree
and are tested.  They accept any requests table: a run without grades (latency-only imports)
or without timings (accuracy-only imports) gives NaN where a number is unknown, never an error.

The **best configuration** rule (`choose_best`): the cheapest configuration (USD per 1,000
requests) whose accuracy is at least the target and whose end-to-end latency at the chosen
quantile is within the budget; ties go to the higher accuracy (`frontier.best_under`).  Without
a fixed target, the value of a success V and the cost of an error E set it: each configuration
must reach its own break-even accuracy (E + c) / (V + E), c being its cost per request, i.e. earn
a positive expected value.  A condition the run cannot check (no graded requests, no timings) or
that is not given is dropped and the rule text says so; when costs are unknown for every config,
the most accurate qualifying one is chosen.  When nothing qualifies, there is no best
configuration and the one closest to the accuracy target within the latency budget (else
overall) is named, judged by the low end of its accuracy interval (a cell measured on a few
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
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.analysis.accuracy import PAIR_KEY, graded_outcomes
from toolkit.analysis.accuracy import accuracy_table as base_accuracy_table
from toolkit.analysis.cost_model import break_even_accuracy, expected_value
from toolkit.analysis.frontier import best_under, config_summary, quantile_column
from toolkit.errors import ParameterError, PriceError
from toolkit.importers.frugalgpt_summary import load_reference_points
from toolkit.params import not_found
from toolkit.resources import candidates
from toolkit.pricing import MachinePrice, Price, PriceTable, describe, load_price_table, pricing_rules, resolve_price

NO_PRICE = ("no price known: pass --price MODEL=IN,OUT (or the model_prices parameter), add the model to "
            "data/prices.yaml, or pass machine_usd_per_hour")


def graded_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows that carry a grade: status ok and `correct` not null."""
    return frame["status"].eq("ok").fillna(False).astype(bool) & frame["correct"].notna()


def timed_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows that carry timings: status ok with both `ttft_s` and `e2e_s`."""
    ok = frame["status"].eq("ok").fillna(False).astype(bool)
    return ok & frame["ttft_s"].notna() & frame["e2e_s"].notna()


def cache_hit_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows the response cache answered (`cache_hit` true); all False when the column is absent."""
    if "cache_hit" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["cache_hit"].astype("boolean").fillna(False).astype(bool)


def model_answered(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the model itself answered: response-cache hits left out (their time is a lookup's)."""
    return frame.loc[~cache_hit_mask(frame)]


def cache_hits(frame: pd.DataFrame, *, id_col: str = "config_id") -> pd.DataFrame:
    """Per config: requests, hits (answered by the response cache) and hit_rate, in id order."""
    hits = cache_hit_mask(frame)
    table = hits.groupby(frame[id_col], sort=True).agg(["size", "sum"]).reset_index()
    table.columns = [id_col, "requests", "hits"]
    table["hits"] = table["hits"].astype(int)
    table["hit_rate"] = table["hits"] / table["requests"]
    return table


LABEL_SEPARATOR = " · "


def short_labels(ids: Sequence[str] | pd.Series, *, sep: str = "/") -> dict[str, str]:
    """A short name for each config id: only the `sep`-separated parts that vary between the ids.

    Among ids that share the model and temperature, `gemma-3-270m-q4_k_m/few_shot_5/mt16-nostop/T0/c4/cache`
    becomes `few_shot_5 · mt16-nostop · c4 · cache`.  A part every id has is dropped; an id left
    empty, or equal to another's label, keeps its full id so that labels stay unique.  Without a
    part to drop, every id is its own label.
    """
    unique = list(dict.fromkeys(str(i) for i in pd.Series(ids).dropna().unique()))
    parts = {i: i.split(sep) for i in unique}
    shared = set.intersection(*(set(p) for p in parts.values())) if len(unique) > 1 else set()
    if not shared:
        return {i: i for i in unique}
    labels = {i: LABEL_SEPARATOR.join(p for p in parts[i] if p not in shared) for i in unique}
    counts = pd.Series(list(labels.values())).value_counts()
    return {i: label if label and counts[label] == 1 else i for i, label in labels.items()}


def shared_parts(labels: Sequence[str]) -> tuple[str, list[str]]:
    """What a set of `short_labels` have in common and what is left of each: (`few_shot_5 · mt16`,
    [`c1`, `c4 · cache`]) for `few_shot_5 · mt16 · c1` and `few_shot_5 · mt16 · c4 · cache`."""
    split = [str(label).split(LABEL_SEPARATOR) for label in labels]
    if not split:
        return "", []
    common = [part for part in split[0] if all(part in other for other in split[1:])]
    rest = [LABEL_SEPARATOR.join(p for p in parts if p not in common) for parts in split]
    return LABEL_SEPARATOR.join(common), rest


def answer_groups(frame: pd.DataFrame, *, id_col: str = "config_id") -> pd.DataFrame:
    """Configs that got every item (dataset, item, repeat) exactly as right or wrong as each other.

    Such configs are one treatment as far as accuracy goes (e.g. the same prompt at another
    concurrency, at temperature 0): comparing them with each other only adds tests.  Columns:
    id_col, answers (the group's name: the label parts its members share, else its first member's),
    members (how many configs), variants (what differs between them, comma-separated), in id order.
    Failed requests are no answers and leave the signature; a config with no graded request is its own group.
    """
    rows = graded_outcomes(frame[[id_col, *PAIR_KEY, "status", "correct", "score"]])
    rows = rows[rows["graded"]].sort_values([*PAIR_KEY], kind="mergesort")
    # each row's (item, outcome) as text, numbered, so a config's answers compare as one byte string
    shown = rows[[*PAIR_KEY, "is_correct", "graded_score"]].astype(str)
    codes = shown.groupby(list(shown.columns), sort=False, dropna=False).ngroup().to_numpy()
    signature = {config: codes[where].tobytes() for config, where in rows.groupby(id_col, sort=True).indices.items()}
    configs = sorted(str(c) for c in frame[id_col].dropna().unique())
    groups: dict[object, list[str]] = {}
    for config in configs:
        groups.setdefault(signature.get(config, config), []).append(config)
    named = []
    for members in groups.values():
        common, rest = shared_parts(members)
        named.append((common if len(members) > 1 and common else members[0], members, rest))
    taken = pd.Series([name for name, _, _ in named]).value_counts()
    out = []
    for name, members, rest in named:
        # two groups sharing the same parts would be indistinguishable by name: use a member's
        name = name if taken[name] == 1 else members[0]
        variants = ", ".join(r or "base" for r in rest) if len(members) > 1 else ""
        out += [{id_col: m, "answers": name, "members": len(members), "variants": variants} for m in members]
    names = pd.DataFrame(out, columns=[id_col, "answers", "members", "variants"])
    return names.sort_values(id_col, kind="mergesort").reset_index(drop=True)


def one_per_answer_group(frame: pd.DataFrame, groups: pd.DataFrame, *, id_col: str = "config_id") -> pd.DataFrame:
    """The rows of the first config of each `answer_groups` group, its id replaced by the group's name."""
    first = groups.drop_duplicates("answers")
    kept = frame[frame[id_col].astype(object).isin(set(first[id_col]))]
    return relabel(kept, dict(zip(first[id_col], first["answers"])), columns=(id_col,))


def group_members(groups: pd.DataFrame, *, id_col: str = "config_id") -> pd.DataFrame:
    """One row per `answer_groups` group, keyed like `one_per_answer_group`'s ids: id_col (the group's
    name), members, variants."""
    first = groups.drop_duplicates("answers")
    return pd.DataFrame({id_col: first["answers"].to_numpy(), "members": first["members"].to_numpy(),
                         "variants": first["variants"].to_numpy()})


def relabel(table: pd.DataFrame, labels: Mapping[str, str],
            columns: Sequence[str] = ("config_id", "config_a", "config_b", "better", "dominated_by")) -> pd.DataFrame:
    """A copy of `table` with config ids replaced by their `short_labels` in each of `columns` it has."""
    out = table.copy()
    for column in columns:
        if column in out.columns:
            out[column] = out[column].map(lambda v: labels.get(v, v) if isinstance(v, str) else v)
    return out


def hue_column(table: pd.DataFrame, candidates: Sequence[str] = ("model", "prompt_variant", "max_tokens",
                                                                   "concurrency")) -> str | None:
    """The first of `candidates` that takes more than one value in `table`: what to color a figure by."""
    return next((c for c in candidates if c in table.columns and table[c].nunique(dropna=True) > 1), None)


def latency_groups(frame: pd.DataFrame, columns: Sequence[str] = ("model", "concurrency"), *,
                   name: str = "group") -> pd.DataFrame:
    """`frame` with a `name` column that joins the values of those `columns` that vary (`concurrency 4`,
    or `gpt-4o · concurrency 4` with two models): groups whose latency behaves differently, for fits
    and figures.  With nothing varying, the model names the group."""
    varying = [c for c in columns if c in frame.columns and frame[c].nunique(dropna=True) > 1] or ["model"]
    parts = [frame[c].astype(object).map(lambda v, c=c: f"{c} {v}" if c == "concurrency" else str(v))
             for c in varying]
    group = parts[0]
    for part in parts[1:]:
        group = group + LABEL_SEPARATOR + part
    return frame.assign(**{name: group.astype(str)})


def top_configs(values: pd.DataFrame, *, by: str = "ev_usd", tie: str = "accuracy", limit: int = 5,
                id_col: str = "config_id") -> list[str]:
    """The `limit` configs with the highest `by`, keeping one per value of `tie` (the cheapest): for a
    figure whose lines would otherwise coincide (EV depends on accuracy when costs are negligible)."""
    known = values.dropna(subset=[by]).sort_values([by, "usd_per_1k"], ascending=[False, True], kind="mergesort")
    return known.drop_duplicates(subset=[tie])[id_col].head(limit).astype(str).tolist()


def latency_name(column: str) -> str:
    """Readable name of a latency quantile column: `p95_e2e_s` -> `p95 end-to-end latency`."""
    head, _, metric = column.partition("_")
    names = {"e2e_s": "end-to-end latency", "ttft_s": "time to first token"}
    return f"{head} {names[metric]}" if metric in names else column.replace("_", " ")


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
                    path: Path | None = None,
                    overrides: Mapping[str, Price | MachinePrice] | None = None) -> PriceTable:
    """The price table for a run: data/prices.yaml + genai-prices, with unknown models priced NaN.

    Any run must be reportable, so a model no price source knows gets an explicit NaN machine
    price whose source says so (`pricing.describe` shows it) instead of a `PriceError`.
    `overrides` (e.g. a user's `model_prices`) win over every other source.
    """
    table = load_price_table(path, machine_usd_per_hour=machine_usd_per_hour, overrides=overrides)
    unknown = {}
    for model in _sorted(frame["model"]):
        try:
            resolve_price(table, model)
        except PriceError:
            unknown[model] = MachinePrice(math.nan, NO_PRICE)
    if not unknown:
        return table
    return load_price_table(path, machine_usd_per_hour=machine_usd_per_hour,
                            overrides={**(overrides or {}), **unknown}, as_of=table.as_of)


def accuracy_table(frame: pd.DataFrame, by: Sequence[str] = ("config_id",), *,
                   confidence: float = 0.95) -> pd.DataFrame:
    """`accuracy.accuracy_table` with a `graded` column and accuracy blanked where it is unknown.

    A group whose ok rows carry no grade gets NaN accuracy: its errors alone would otherwise
    read as 0% accuracy, which is wrong for a latency-only import.
    """
    return _blank_ungraded(base_accuracy_table(frame, by=list(by), confidence=confidence), frame, list(by))


def cost_summary(frame: pd.DataFrame, prices: PriceTable, *, latency_quantile: float = 0.95,
                 confidence: float = 0.95, include_cache_hits: bool = False) -> pd.DataFrame:
    """`frontier.config_summary` at quantiles (0.5, `latency_quantile`), blanked like `accuracy_table`,
    with a `hit_rate` column after `n`.

    Accuracy counts every request (a cached answer is the answer the user gets); latency, tokens
    and cost count only the requests the model answered unless `include_cache_hits` (see the module
    docstring), so a config answered entirely from the cache has NaN latency and cost.
    """
    quantiles = sorted({0.5, float(latency_quantile)})
    summary = _blank_ungraded(config_summary(frame, prices, quantiles=quantiles, confidence=confidence),
                              frame, ["config_id"])
    rates = cache_hits(frame).set_index("config_id")["hit_rate"]
    summary.insert(summary.columns.get_loc("n") + 1, "hit_rate",
                   summary["config_id"].astype(object).map(rates).astype(float).to_numpy())
    if include_cache_hits or not cache_hit_mask(frame).any():
        return summary
    measured = [c for c in summary.columns if c.endswith(("_e2e_s", "_ttft_s"))
                or c in ("mean_prompt_tokens", "mean_completion_tokens", "usd_total", "usd_per_1k")]
    answered = model_answered(frame)
    if answered.empty:
        return summary.assign(**{c: math.nan for c in measured})
    own = config_summary(answered, prices, quantiles=quantiles, confidence=confidence)
    return summary.drop(columns=measured).merge(own[["config_id", *measured]], on="config_id",
                                                how="left")[summary.columns]


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
    conditions = []
    if use_accuracy and by_break_even:
        failure = error_cost_usd if failure_cost_usd is None else failure_cost_usd
        conditions.append(f"accuracy ≥ its break-even accuracy (E + (f·F + c) / (1 − f)) / (V + E), with "
                          f"V = {value_usd:.2f} USD, E = {error_cost_usd:.2f} USD, F = {failure:.2f} USD per "
                          f"failed request, f its error rate and c its cost per request "
                          f"({error_cost_usd / (value_usd + error_cost_usd):.1%} at c = 0 and f = 0)")
    elif use_accuracy:
        conditions.append(f"accuracy ≥ {target_accuracy:.1%}")
    if use_latency:
        conditions.append(f"{latency_name(latency_col)} ≤ {latency_budget_s:g} s")
    ranking = "the cheapest (USD per 1,000 requests)" if has_cost else "the most accurate (costs unknown)"
    rule = f"{ranking} configuration with " + (" and ".join(conditions) if conditions else "no condition")
    dropped = [why for why, gone in (
        ("no graded requests, so accuracy is not checked", wants_accuracy and not has_accuracy),
        ("no timings, so latency is not checked", latency_budget_s is not None and not has_latency))
        if gone]
    if dropped:
        rule += " (" + "; ".join(dropped) + ")"
    if not has_cost:
        view = view.assign(_cost=-view["_accuracy"])
    row = best_under(view, 0.0 if use_accuracy else -math.inf,
                     latency_budget_s if use_latency else math.inf, latency_col="_latency",
                     cost_col="_cost", accuracy_col="_accuracy")
    if row is not None:
        return Choice(str(row["config_id"]), True, rule, _public(row), latency_col)
    within = view[(view["_latency"] <= latency_budget_s).to_numpy()] if use_latency else view
    pool = within if not within.empty else view
    # closest by the low end of the accuracy interval: a cell measured on a few items must not be
    # named over a well-measured one because its point estimate happened to come out higher
    low = (pool["accuracy_low"].astype(float) if "accuracy_low" in pool else pool["accuracy"].astype(float))
    pool = pool.assign(_sure=(low - pool["accuracy_target"].fillna(0.0)) if use_accuracy else low)
    closest = pool.sort_values(["_sure", "_accuracy", "_cost"], ascending=[False, False, True], kind="mergesort",
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
    frame: pd.DataFrame | None = None  # the requests, under the names the other fields use
    labels: Mapping[str, str] | None = None  # config id -> name, when short names are used
    failure_cost_usd: float | None = None
    rules: pd.DataFrame | None = None  # which pricing rule priced which requests (`pricing.pricing_rules`)


def headline(frame: pd.DataFrame, prices: PriceTable, *, manifest: dict | None = None,
             value_usd: float | None = None, error_cost_usd: float | None = None,
             target_accuracy: float | None = None, latency_budget_s: float | None = None,
             latency_quantile: float = 0.95, short_names: bool = False,
             failure_cost_usd: float | None = None) -> Headline:
    """Summarize a run for a report index: `choose_best` (each config held to its break-even accuracy
    when `target_accuracy` is None and V and E are given), and the chosen config's break-even accuracy
    (E + c) / (V + E) and expected value when V and E are given (NaN otherwise).  With `short_names`
    every config is named by its `short_labels`."""
    labels = short_labels(frame["config_id"]) if short_names else None
    frame = relabel(frame, labels) if labels else frame
    summary = cost_summary(frame, prices, latency_quantile=latency_quantile)
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
    return Headline(overview=run_overview(frame, manifest), summary=summary, choice=choice,
                    value_usd=value_usd, error_cost_usd=error_cost_usd, break_even_accuracy=break_even,
                    ev_usd=ev, prices=describe(prices, _sorted(frame["model"])), frame=frame, labels=labels,
                    failure_cost_usd=failure_cost_usd, rules=pricing_rules(frame, prices))


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
    # only the columns used: a copy of every column of the timed rows costs ~0.4 GB at 1M rows
    timed = frame.loc[timed_mask(frame), list(dict.fromkeys([by, "completion_tokens", "e2e_s"]))].assign(
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
    `label` column (the model; empty for cascade points); None for None.  A relative path is read from the
    cwd (a path under `data/`, else from the package's data, like a run dir: `resources.candidates`)."""
    if path is None:
        return None
    tried = candidates(path)
    found = next((p for p in tried if p.is_file()), None)
    if found is None:
        raise ParameterError(f"parameter {name}: file {path!r} not found ({not_found(tried)})")
    points = load_reference_points(found)
    # the 20 cascade budgets would bury the figure in labels: only the single models are named
    return points.assign(label=points["method"].where(points["method"] != "FrugalGPT", ""))

def _answered_any(summary: pd.DataFrame) -> pd.Series:
    """Configs with at least one answered request: `n` graded answers or ungraded ok rows (all of them
    when the table does not count answers)."""
    if "n" not in summary.columns:
        return pd.Series(True, index=summary.index)
    answered = summary["n"].fillna(0).astype(int) + summary.get("ungraded", 0)
    return pd.Series(np.asarray(answered) > 0, index=summary.index)


def _public(row: pd.Series) -> pd.Series:
    return row.drop([c for c in row.index if str(c).startswith("_")])


def _sorted(values: Sequence[object] | pd.Series) -> list[str]:
    return sorted({str(v) for v in pd.Series(values).dropna().unique()})
