"""Prices and the cost model in words."""
from __future__ import annotations

import pandas as pd

from toolkit.analysis.cost_model import CostModel
from toolkit.analysis.frontier import Headline
from toolkit.present.run import NO_GRADES
from toolkit.present.units import count_of, is_missing, pct, usd
from toolkit.pricing import CostBasis


def prices_text(prices: pd.DataFrame) -> str:
    """Which price each model was charged at, from `pricing.describe`."""
    if prices.empty:
        return "No models to price."
    parts = []
    for _, p in prices.iterrows():
        if p["kind"] == "machine":
            rate = (f"unknown ({p['source']})" if is_missing(p["usd_per_hour"])
                    else f"{usd(p['usd_per_hour'])} per machine hour")
        else:
            rate = (f"{usd(p['input_usd_per_mtok'])} in / {usd(p['output_usd_per_mtok'])} out per million "
                    f"tokens")
        parts.append(f"**{p['model']}**: {rate}")
    head = prices.iloc[0]
    return (f"Prices from table {head['table']} (version {head['version']}, as of {head['as_of'][:10]}): "
            + "; ".join(parts) + ".")

HOW_TO_PRICE = ("To include a model, give its price: `frontier report RUN_DIR --price MODEL=IN,OUT` (USD per "
                "million input and output tokens; a third number is the cached-input price), the notebook "
                "parameter `model_prices = [\"MODEL=IN,OUT\"]`, or an entry in data/prices.yaml.")

LEFT_OUT = "so their cost is unknown and cost comparisons leave them out"


def unpriced_text(coverage: pd.DataFrame, *, consequence: str = LEFT_OUT, shown: int = 12) -> str:
    """Which models have no price and why, and how to add one, from `pricing.price_coverage`;
    "" when every model has a price.  At most `shown` models are named, rarer reasons first."""
    missing = coverage[~coverage["priced"].astype(bool)]
    if missing.empty:
        return ""
    verb = "has" if len(missing) == 1 else "have"
    groups = sorted(missing.groupby("reason", sort=False)["model"].apply(list).items(), key=lambda g: len(g[1]))
    parts, left, covered = [], shown, 0
    for reason, models in groups:
        if left <= 0:
            break
        more = f" and {len(models) - left} more" if len(models) > left else ""
        parts.append(", ".join(f"**{m}**" for m in models[:left]) + f"{more} ({reason})")
        left, covered = left - len(models), covered + len(models)
    tail = f"; and {len(missing) - covered} more" if covered < len(missing) else ""
    return (f"**{len(missing)} of {count_of(len(coverage), 'model')} {verb} no price**, {consequence}: "
            + "; ".join(parts) + tail + ". " + HOW_TO_PRICE)


def cost_basis_text(basis: CostBasis, coverage: pd.DataFrame) -> str:
    """What the costs in a notebook stand on (`pricing.choose_cost_basis`), how many models are priced
    through an approximate alias or the import's reported cost, and which have no price (`unpriced_text`)."""
    if basis.basis == "output_tokens":
        why = ("as asked (`cost_basis = \"output_tokens\"`)" if basis.requested == "output_tokens" else
               "because no model has a price")
        text = (f"**Cost basis: output tokens**, {why}: every request costs its output tokens x "
                f"{usd(basis.usd_per_mtok)} per million (`basis_usd_per_mtok`), the same for every model, so costs "
                "here compare how much each configuration writes, not what it would be billed.")
        if basis.requested == "auto":
            text += " " + unpriced_text(coverage, consequence="so this basis stands in for prices")
        return text
    priced = coverage[coverage["priced"].astype(bool)]
    text = f"Costs come from each model's own prices (table {basis.table.name})"
    aliased = priced[priced["matched"].astype(str).str.startswith("alias")]
    if len(aliased):
        text += (f"; {count_of(len(aliased), 'model')} priced through data/model_aliases.yaml as a model a provider "
                 f"lists, {int(aliased['approximate'].sum())} of them approximately (a fine-tune at its base "
                 "model's price, or a model at the price its size costs to serve: each price's source says which)")
    reported = int((priced["matched"] == "reported").sum())
    if reported:
        text += f"; {count_of(reported, 'model')} at the cost the import reported"
    missing = unpriced_text(coverage)
    if not missing:
        return text + "."
    return (f"{text}. {missing} Or compare every model on output tokens at one price: "
            "`cost_basis = \"output_tokens\"`.")


def value_text(values: pd.DataFrame, model: CostModel, *, id_col: str = "config_id") -> str:
    """Best expected value per request, its verdict against break-even, monthly total and human comparison."""
    head = (f"With a success worth {usd(model.value_usd)} and an error costing {usd(model.error_cost_usd)}, "
            f"a request pays off above {pct(model.error_cost_usd / (model.value_usd + model.error_cost_usd))} "
            f"accuracy (plus its own cost).")
    known = values.dropna(subset=["ev_usd"]).sort_values("ev_usd", ascending=False, kind="mergesort")
    if known.empty:
        reason = NO_GRADES if values["accuracy"].isna().all() else "No configuration has a known cost."
        return f"{head} {reason} Expected value needs both accuracy and cost."
    b = known.iloc[0]
    verdict = {"above": "clears break-even even at the low end of its accuracy interval",
               "below": "stays below break-even even at the high end of its accuracy interval",
               "uncertain": "may or may not clear break-even: its accuracy interval straddles it"}
    text = (f"{head} Highest expected value: **{b[id_col]}** at {usd(b['ev_usd'])} per request "
            f"(interval {usd(b['ev_low_usd'])} to {usd(b['ev_high_usd'])}); its break-even accuracy is "
            f"{pct(b['break_even_accuracy'])} and it {verdict.get(b['break_even_verdict'], 'has no interval')}.")
    if model.monthly_volume is not None:
        text += (f" At {model.monthly_volume:,.0f} requests a month that is {usd(b['monthly_ev_usd'])} "
                 f"({usd(b['monthly_ev_low_usd'])} to {usd(b['monthly_ev_high_usd'])}).")
    if model.has_human:
        better = "beats" if bool(b["beats_human"]) else "does not beat"
        text += (f" A human at {pct(model.human_accuracy)} accuracy and {usd(model.human_cost_usd)} per task "
                 f"earns {usd(b['human_ev_usd'])}: the best configuration {better} the human; it would need "
                 f"{pct(b['accuracy_to_beat_human'])} accuracy to match.")
    stakes = min(v for v in (model.value_usd, model.error_cost_usd) if v > 0)
    top_cost = known["usd_per_request"].max()
    if top_cost < 0.01 * stakes:
        text += (f" Inference costs at most {usd(top_cost)} per request, under 1% of what a success or an "
                 "error is worth: accuracy alone decides the expected value here.")
    return text


def sensitivity_text(leaders: pd.DataFrame, *, id_col: str = "config_id") -> str:
    """Which config leads over which range of E/V, from `overview.best_by_ratio`."""
    if leaders.empty:
        return "No configuration has a known expected value, so there is no sensitivity to show."
    if len(leaders) == 1:
        r = leaders.iloc[0]
        return (f"**{r[id_col]}** has the highest expected value at every error-to-value ratio from "
                f"{r['ratio_from']:.3g} to {r['ratio_to']:.3g}: the choice does not hinge on E.")
    spans = [f"**{r[id_col]}** for E/V from {r['ratio_from']:.3g} to {r['ratio_to']:.3g}"
             for _, r in leaders.iterrows()]
    return ("The best configuration changes with the cost of an error: " + "; ".join(spans)
            + ". Pin down E before choosing.")


def break_even_text(head: Headline) -> str:
    """The chosen config's break-even accuracy and expected value under V and E."""
    if head.choice.row is None or head.value_usd is None or head.error_cost_usd is None:
        return "No value of a success and cost of an error given, so no break-even accuracy."
    r = head.choice.row
    if is_missing(head.break_even_accuracy):
        return f"The cost of **{head.choice.config_id}** is unknown, so its break-even accuracy is too."
    has = "" if is_missing(r["accuracy"]) else f"; it has {pct(r['accuracy'])}, an expected value of {usd(head.ev_usd)} per request"
    text = (f"With a success worth {usd(head.value_usd)} and an error costing {usd(head.error_cost_usd)}, "
            f"**{head.choice.config_id}** breaks even at {pct(head.break_even_accuracy)} accuracy{has}.")
    failed = r.get("error_rate")
    if not is_missing(failed) and failed > 0:
        each = head.error_cost_usd if head.failure_cost_usd is None else head.failure_cost_usd
        text += (f" That counts its {pct(failed)} failed requests at {usd(each)} each (a failure is no answer; "
                 "`failure_cost_usd` sets its cost).")
    low = r.get("accuracy_low")
    if not is_missing(low) and not is_missing(r["accuracy"]) and low < head.break_even_accuracy <= r["accuracy"]:
        text += (f" Its accuracy interval reaches down to {pct(low)}, below break-even: with {int(r['n'])} "
                 "graded requests it is not yet certain to pay off.")
    return text


def pricing_rules_text(rules: pd.DataFrame) -> str:
    """How self-hosted requests were priced, from `pricing.pricing_rules`; empty when none are."""
    machine = rules[rules["kind"] == "machine"]
    if machine.empty:
        return ""
    parts = []
    for rule, part in machine.groupby("rule", sort=False):
        models = ", ".join(f"**{m}** ({int(n):,} requests)" for m, n in zip(part["model"], part["requests"]))
        parts.append(f"{models}: {part['description'].iloc[0]}")
    return "Self-hosted cost: " + "; ".join(parts) + "."
