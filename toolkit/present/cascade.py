"""Cascades in words: what cheap-then-strong saves against the best single configuration."""
from __future__ import annotations

import pandas as pd

from toolkit.analysis.cascade_study import POOLED, CascadePoint, CascadeStudy
from toolkit.present.units import pct, usd


def cascade_text(study: CascadeStudy) -> str:
    """What cascades achieve on the run as a whole against the best single config, the oracle and a budget."""
    if not study.summaries:
        reasons = list(dict.fromkeys(study.notes["note"])) or ["the run has no datasets"]
        return "**No cascades**: " + "; ".join(reasons) + "."
    s = study.summaries[study.overall]
    where = "pooled over all datasets" if study.overall == POOLED else f"on {study.overall}"
    text = (f"On the held-out items ({s.n} requests {where}) the most accurate single configuration is "
            f"**{s.best_single.label}** at {_span(s.best_single)}, {usd(s.best_single.usd_per_1k)} per 1,000 "
            "requests.")
    if s.best_cascade is None:
        text += " No cascade was evaluated (see the notes)."
    else:
        text += (f" The most accurate cascade, **{s.best_cascade.label}** ({s.signal} signal), reaches "
                 f"{_span(s.best_cascade)} at {usd(s.best_cascade.usd_per_1k)} per 1,000.")
        if s.saving is None or s.matching_cascade is None:
            text += " No cascade matches the best single configuration's accuracy."
        elif s.saving > 0:
            text += (" The cheapest cascade that matches the best single configuration, "
                     f"**{s.matching_cascade.label}**, costs {pct(s.saving)} less "
                     f"({usd(s.matching_cascade.usd_per_1k)} per 1,000).")
        else:
            text += (f" The cheapest cascade that matches it costs {pct(-s.saving)} more "
                     f"({usd(s.matching_cascade.usd_per_1k)} per 1,000): here cascading does not save money.")
            if s.signal == "agreement":
                text += (" With the agreement signal every item pays for the first two stages, which pays off "
                         "only when the last stage costs several times as much as they do together.")
    text += (f" An oracle router that knew which configuration is right for each item would reach "
             f"{pct(s.oracle.accuracy)} at {usd(s.oracle.usd_per_1k)} per 1,000: no router over these "
             "configurations can do better.")
    if s.best_at_budget is None:
        text += f" Nothing costs at most {usd(s.budget_usd_per_1k)} per 1,000 requests."
    else:
        text += (f" Within {usd(s.budget_usd_per_1k)} per 1,000 requests the most accurate choice is "
                 f"**{s.best_at_budget.label}** ({s.best_at_budget.kind}) at {pct(s.best_at_budget.accuracy)}.")
    if s.n < 30:
        text += (f" With only {s.n} held-out requests the intervals are wide: a demonstration of the "
                 "method, not grounds for a decision.")
    return text


def _span(point: CascadePoint) -> str:
    return f"{pct(point.accuracy)} ({pct(point.accuracy_low)} to {pct(point.accuracy_high)})"


def reference_text(study: CascadeStudy, published: pd.DataFrame | None) -> str:
    """Cascade points on the frontier, and the published FrugalGPT points when given."""
    rows = study.frontier[(study.frontier["dataset"] == study.overall) & (study.frontier["kind"] == "cascade")]
    if rows.empty:
        why = "; ".join(dict.fromkeys(study.notes["note"])) or "no cascade could be built"
        text = f"No cascade points: {why}."
    else:
        best = rows.sort_values(["accuracy", "usd_per_1k"], ascending=[False, True], kind="mergesort").iloc[0]
        text = (f"{len(rows)} cascade point{'s' if len(rows) > 1 else ''} ({study.signal} signal), measured on the "
                "held-out half of the items "
                f"(not the same items as the configurations): the most accurate is **{best['label']}** at "
                f"{pct(best['accuracy'])} for {usd(best['usd_per_1k'])} per 1,000 requests.")
    if published is None or published.empty:
        return text
    singles = published[published["kind"] == "published"]
    models = singles[singles["method"] != "FrugalGPT"].sort_values("accuracy", ascending=False, kind="mergesort")
    cascades = singles[singles["method"] == "FrugalGPT"]
    text += f" Published points ({published['source'].iloc[0]}, dataset {published['dataset'].iloc[0]}): "
    if models.empty:
        return text + f"{len(cascades)} FrugalGPT cascade budgets."
    top = models.iloc[0]
    text += f"the best single model, **{top['method']}**, reaches {pct(top['accuracy'])} at {usd(top['usd_per_1k'])} per 1,000"
    matching = cascades[cascades["accuracy"] >= top["accuracy"]].sort_values("usd_per_1k", kind="mergesort")
    if matching.empty:
        return text + "; no FrugalGPT cascade matches it."
    m = matching.iloc[0]
    return (text + f"; the cheapest FrugalGPT cascade that matches it reaches {pct(m['accuracy'])} at "
            f"{usd(m['usd_per_1k'])} per 1,000, {pct(1 - m['usd_per_1k'] / top['usd_per_1k'])} less.")
