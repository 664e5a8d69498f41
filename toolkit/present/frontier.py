"""The Pareto frontier and the chosen configuration in words."""
from __future__ import annotations

import pandas as pd

from toolkit.analysis.frontier import Choice, Rule
from toolkit.present.labels import latency_name
from toolkit.present.tables import accuracy_interval
from toolkit.present.units import is_missing, pct, secs, usd


def frontier_text(front: pd.DataFrame, *, latency_col: str, id_col: str = "config_id") -> str:
    """How many configs are on the Pareto front and which dominates the others."""
    if front.empty:
        return "No configurations."
    on = front[front["pareto"].astype(bool)]
    off = front[~front["pareto"].astype(bool)]
    text = (f"{len(on)} of {len(front)} configurations are on the Pareto front (accuracy up, "
            f"{latency_name(latency_col)} down, cost down): " + ", ".join(f"**{c}**" for c in on[id_col]) + ".")
    if len(off):
        examples = "; ".join(f"{r[id_col]} by **{r['dominated_by']}**" for _, r in off.head(3).iterrows())
        text += (" Each of the others is matched or beaten on all three at once by one of them, and strictly "
                 f"beaten on at least one, e.g. {examples}.")
        if front[["accuracy", latency_col, "usd_per_1k"]].isna().any().any():
            text += " A missing value (no grades, no timings, no price, or every request answered by the cache) counts as worst."
    return text


def rule_text(rule: Rule) -> str:
    """The best-configuration rule `choose_best` applied, in words."""
    conditions = []
    if rule.accuracy == "break_even":
        failure = rule.error_cost_usd if rule.failure_cost_usd is None else rule.failure_cost_usd
        conditions.append(f"accuracy ≥ its break-even accuracy (E + (f·F + c) / (1 − f)) / (V + E), with "
                          f"V = {rule.value_usd:.2f} USD, E = {rule.error_cost_usd:.2f} USD, F = {failure:.2f} USD per "
                          f"failed request, f its error rate and c its cost per request "
                          f"({rule.error_cost_usd / (rule.value_usd + rule.error_cost_usd):.1%} at c = 0 and f = 0)")
    elif rule.accuracy == "target":
        conditions.append(f"accuracy ≥ {rule.target_accuracy:.1%}")
    if rule.latency_col is not None:
        conditions.append(f"{latency_name(rule.latency_col)} ≤ {rule.latency_budget_s:g} s")
    ranking = "the cheapest (USD per 1,000 requests)" if rule.by_cost else "the most accurate (costs unknown)"
    text = f"{ranking} configuration with " + (" and ".join(conditions) if conditions else "no condition")
    why = {"accuracy": "no graded requests, so accuracy is not checked",
           "latency": "no timings, so latency is not checked"}
    if rule.unchecked:
        text += " (" + "; ".join(why[what] for what in rule.unchecked) + ")"
    return text


def choice_text(choice: Choice) -> str:
    """The best configuration under the rule, or why there is none and which is closest."""
    if choice.config_id is None:
        return f"No configurations to choose from (rule: {rule_text(choice.rule)})."
    r = choice.row
    assert r is not None
    numbers = f"accuracy {accuracy_interval(r, None)}"
    if not is_missing(r.get("accuracy_target")):
        numbers += f" against the {pct(r['accuracy_target'])} it needs"
    cost = "cost unknown" if is_missing(r["usd_per_1k"]) else f"{usd(r['usd_per_1k'])} per 1,000 requests"
    numbers += f", {latency_name(choice.latency_col)} {secs(r.get(choice.latency_col))}, {cost}"
    rate = r.get("error_rate")
    if not is_missing(rate) and rate > 0:
        numbers += (f", {pct(rate)} of its requests failed (interval {pct(r['error_rate_low'])} to "
                    f"{pct(r['error_rate_high'])}; accuracy counts the answered ones)")
    hit_rate = r.get("hit_rate")
    if not is_missing(hit_rate) and 0 < hit_rate < 1:
        numbers += (f"; the response cache answered {pct(hit_rate)} of its requests, so its latency and cost "
                    "come from the others")
    if choice.met:
        return f"Best configuration: **{choice.config_id}** ({numbers}). Rule: {rule_text(choice.rule)}."
    return (f"**No configuration meets the targets** (rule: {rule_text(choice.rule)}). Closest: **{choice.config_id}** "
            f"({numbers}).")
