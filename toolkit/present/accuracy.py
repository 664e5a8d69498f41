"""Accuracy in words: who leads, by how much, and which differences are real."""
from __future__ import annotations

import pandas as pd

from toolkit.present.labels import LABEL_SEPARATOR
from toolkit.present.run import NO_GRADES
from toolkit.present.tables import accuracy_interval
from toolkit.present.units import pct


def answer_groups_text(groups: pd.DataFrame) -> str:
    """Which configurations answered every item identically, from `overview.answer_groups`; empty when none did."""
    distinct = groups["answers"].nunique()
    if distinct == len(groups):
        return ""
    multi = groups[groups["members"] > 1].drop_duplicates("answers")
    parts = sorted({p for v in multi["variants"] for variant in v.split(", ")
                    for p in variant.split(LABEL_SEPARATOR) if p != "base"})
    example = multi.iloc[0]
    return (f"**The {len(groups)} configurations gave only {distinct} different sets of answers.** Within each "
            f"set the configurations differ only in {' / '.join(parts)} and got exactly the same items right: "
            "those settings do not change the answers here, so the rest of this page compares the sets, "
            f"each named by what its members share (e.g. **{example['answers']}** stands for "
            f"{example['variants']}). Comparing identical configurations with each other would only add "
            "tests and weaken the correction for multiple comparisons.")


def accuracy_text(table: pd.DataFrame, *, confidence: float, id_col: str = "config_id") -> str:
    """Most and least accurate config with intervals, and how many are not clearly worse than the best."""
    known = table.dropna(subset=["accuracy"]).sort_values("accuracy", ascending=False, kind="mergesort")
    if known.empty:
        return NO_GRADES
    best, worst = known.iloc[0], known.iloc[-1]
    level = f"{confidence:.0%}"
    text = f"Most accurate: **{best[id_col]}** at {accuracy_interval(best, level)}"
    if len(known) > 1:
        overlap = known.iloc[1:][known.iloc[1:]["accuracy_high"] >= best["accuracy_low"]]
        text += f"; least accurate: **{worst[id_col]}** at {accuracy_interval(worst, level)}. "
        text += (f"{len(overlap)} of the other {len(known) - 1} configurations have {level} intervals that "
                 "overlap the best one's, so this data cannot tell them apart from it by accuracy alone"
                 if len(overlap) else f"Every other configuration's {level} interval lies below the best one's")
        if "n" in known and best["n"] < known["n"].max() / 2:
            most = known[known["n"] == known["n"].max()].iloc[0]
            text += (f". It was measured on only {int(best['n'])} answers; of the configurations measured on the "
                     f"most ({int(most['n'])}), **{most[id_col]}** leads at {accuracy_interval(most, level)}")
    return text + "."


def dataset_text(table: pd.DataFrame, *, id_col: str = "config_id") -> str:
    """Hardest and easiest dataset (mean accuracy over configs) and the best config on each."""
    known = table.dropna(subset=["accuracy"])
    if known.empty:
        return NO_GRADES
    means = known.groupby("dataset")["accuracy"].mean().sort_values(kind="mergesort")
    best = known.sort_values("accuracy", ascending=False, kind="mergesort").groupby("dataset").head(1)
    leaders = "; ".join(f"{r['dataset']}: **{r[id_col]}** ({pct(r['accuracy'])})"
                        for _, r in best.sort_values("dataset").iterrows())
    text = f"Best configuration per dataset: {leaders}."
    if len(means) > 1:
        text = (f"Hardest dataset: **{means.index[0]}** (mean accuracy over configurations "
                f"{pct(means.iloc[0])}); easiest: **{means.index[-1]}** ({pct(means.iloc[-1])}). " + text)
    if best[id_col].nunique() > 1:
        text += " The winner depends on the task: choose per dataset, or weigh the datasets by your traffic."
    return text


def pairwise_text(pairwise: pd.DataFrame, *, alpha: float, limit: int = 5) -> str:
    """How many config pairs differ significantly on the same items (McNemar, adjusted p-values)."""
    tested = pairwise.dropna(subset=["p_adjusted"])
    if tested.empty:
        return ("No pair of configurations shares graded items, so no paired test was possible."
                if len(pairwise) else "Only one configuration: nothing to compare.")
    significant = tested[tested["significant"].astype(bool)].sort_values("p_adjusted", kind="mergesort")
    text = (f"{len(significant)} of {len(tested)} pairs of configurations differ significantly on the "
            f"same items (exact McNemar test, Holm-adjusted p < {alpha:g}).")
    if significant.empty:
        return text + " Differences in the accuracy table may be noise."
    shown = [f"**{r['better']}** beats {r['config_b'] if r['better'] == r['config_a'] else r['config_a']} "
             f"by {100 * abs(r['accuracy_diff']):.1f} percentage points (p = {r['p_adjusted']:.2g})"
             for _, r in significant.head(limit).iterrows()]
    more = f" and {len(significant) - limit} more" if len(significant) > limit else ""
    return f"{text} " + "; ".join(shown) + more + "."
