"""The sentences the notebooks and the report end their sections with, numbers filled in from tables.

Each function takes the table an analysis returned and gives one Markdown paragraph saying what a
reader should conclude, including the honest "nothing to say" cases (no graded requests, no
timings, a fit that could not be made).  Kept out of the notebooks so the wording is tested.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from toolkit.analysis.cascade import POOLED, CascadeStudy
from toolkit.analysis.cost_model import CostModel
from toolkit.analysis.overview import LABEL_SEPARATOR, Choice, Headline, cache_hit_mask, cache_hits, latency_name
from toolkit.errors import ParameterError
from toolkit.pricing import CostBasis

NO_GRADES = ("**No graded requests**: this run carries no correctness labels (e.g. a latency-only "
             "import), so there is no accuracy to report.")
NO_TIMINGS = ("**No timed requests**: this run carries no latency measurements (e.g. an accuracy-only "
              "import), so there is no latency to report.")
# A what-if ratio at least this share of the proportional one counts as "roughly proportional".
ROUGHLY = 0.8


def pct(value: float) -> str:
    return "n/a" if _missing(value) else f"{100 * value:.1f}%"


def usd(value: float) -> str:
    if _missing(value):
        return "unknown"
    size = abs(value)
    digits = (f"{size:,.0f}" if size >= 1000 else f"{size:,.2f}" if size >= 1 else
              np.format_float_positional(size, precision=3, unique=False, fractional=False, trim="-"))
    # "USD" rather than "$": Jupyter renders text between two dollar signs as math.
    return f"-{digits} USD" if value < 0 else f"{digits} USD"


def secs(value: float) -> str:
    if _missing(value):
        return "n/a"
    if abs(value) < 0.01:  # a cache lookup: "0 ms" would read as "not measured"
        return f"{value * 1000:.2g} ms"
    if abs(value) >= 3600:
        return f"{value / 3600:.1f} h"
    return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"


def run_text(overview: pd.DataFrame) -> str:
    """One paragraph on what a run holds, from `overview.run_overview`."""
    r = overview.iloc[0]
    when = ""
    first, last = r.get("first_request"), r.get("last_request")
    if not pd.isna(first) and not pd.isna(last):
        span = (f"{first:%Y-%m-%d %H:%M} to {last:%H:%M} UTC" if first.date() == last.date()
                else f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC")
        when = f", sent {span}"
    return (f"Run **{r['run_id']}**: {r['requests']} requests ({r['ok']} ok, {r['errors']} errors) over "
            f"{r['configs']} configurations{when}; models: {r['models'] or 'none'}; datasets: "
            f"{r['datasets'] or 'none'}. {r['graded']} requests are graded and {r['timed']} are timed.")


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


def labels_text(labels: Mapping[str, str]) -> str:
    """How configurations are named in tables and figures: what the short names leave out."""
    short = {i: label for i, label in labels.items() if label != i}
    if not short:
        return ""
    example, label = next(iter(short.items()))
    kept = set(label.split(LABEL_SEPARATOR))
    left_out = [part for part in example.split("/") if part not in kept]
    parts = dict.fromkeys(p for i in short for p in i.split("/"))
    legend = [f"{p} = {meaning}" for p in parts if (meaning := _grid_part(p))]
    return (f"Configurations are named by what differs between them; all share {' / '.join(left_out)} "
            f"(e.g. **{label}** is `{example}`)." + (f" In names: {'; '.join(legend)}." if legend else ""))


def _grid_part(part: str) -> str:
    """What a part of a grid config id (`config.expand_grid`) means, or "" for other parts."""
    if match := re.fullmatch(r"mt(\d+)(-nostop)?", part):
        return (f"at most {match[1]} output tokens" + (", no stop sequences" if match[2] else
                                                        ", ending at the task's stop sequences"))
    if match := re.fullmatch(r"T(\d+(?:\.\d+)?)", part):
        return f"temperature {match[1]}"
    if match := re.fullmatch(r"c(\d+)", part):
        return f"{match[1]} request{'s' if match[1] != '1' else ''} in flight"
    return "response cache on" if part == "cache" else ""


def cache_note(frame: pd.DataFrame, *, measures: str = "latency and cost") -> str:
    """Why response-cache hits are left out of `measures`, and how many; empty when there are none."""
    hits = cache_hits(frame)
    total = int(hits["hits"].sum())
    if total == 0:
        return ""
    lookup = frame.loc[cache_hit_mask(frame), "e2e_s"].astype(float).median()
    full = hits.loc[hits["hit_rate"] == 1, "config_id"].tolist()
    text = (f"**Cache hits are set aside.** The response cache answered {total} of {int(hits['requests'].sum())} "
            f"requests ({_count(int((hits['hits'] > 0).sum()), 'configuration')}), each in a median {secs(lookup)} at no "
            f"model cost. How often that happens here says how often this run repeated a request, not what a "
            f"configuration costs, so only the requests the model answered count towards {measures} here.")
    if full:
        shown = ", ".join(f"**{c}**" for c in full[:3]) + (f" and {len(full) - 3} more" if len(full) > 3 else "")
        one = len(full) == 1
        text += (f" {_count(len(full), 'configuration')} {'was' if one else 'were'} answered entirely from the cache "
                 f"({shown}): {'it has' if one else 'they have'} no {measures.replace(' and ', ' or ')} of "
                 f"{'its' if one else 'their'} own.")
    return text + " `05_caching_batch` shows what a cache saves at your repeat rate."


def accuracy_text(table: pd.DataFrame, *, confidence: float, id_col: str = "config_id") -> str:
    """Most and least accurate config with intervals, and how many are not clearly worse than the best."""
    known = table.dropna(subset=["accuracy"]).sort_values("accuracy", ascending=False, kind="mergesort")
    if known.empty:
        return NO_GRADES
    best, worst = known.iloc[0], known.iloc[-1]
    level = f"{confidence:.0%}"
    text = f"Most accurate: **{best[id_col]}** at {_interval(best, level)}"
    if len(known) > 1:
        overlap = known.iloc[1:][known.iloc[1:]["accuracy_high"] >= best["accuracy_low"]]
        text += f"; least accurate: **{worst[id_col]}** at {_interval(worst, level)}. "
        text += (f"{len(overlap)} of the other {len(known) - 1} configurations have {level} intervals that "
                 "overlap the best one's, so this data cannot tell them apart from it by accuracy alone"
                 if len(overlap) else f"Every other configuration's {level} interval lies below the best one's")
        if "n" in known and best["n"] < known["n"].max() / 2:
            most = known[known["n"] == known["n"].max()].iloc[0]
            text += (f". It was measured on only {int(best['n'])} answers; of the configurations measured on the "
                     f"most ({int(most['n'])}), **{most[id_col]}** leads at {_interval(most, level)}")
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


def prices_text(prices: pd.DataFrame) -> str:
    """Which price each model was charged at, from `pricing.describe`."""
    if prices.empty:
        return "No models to price."
    parts = []
    for _, p in prices.iterrows():
        if p["kind"] == "machine":
            rate = (f"unknown ({p['source']})" if _missing(p["usd_per_hour"])
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
    return (f"**{len(missing)} of {_count(len(coverage), 'model')} {verb} no price**, {consequence}: "
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
        text += (f"; {_count(len(aliased), 'model')} priced through data/model_aliases.yaml as a model a provider "
                 f"lists, {int(aliased['approximate'].sum())} of them approximately (a fine-tune at its base "
                 "model's price, or a model at the price its size costs to serve: each price's source says which)")
    reported = int((priced["matched"] == "reported").sum())
    if reported:
        text += f"; {_count(reported, 'model')} at the cost the import reported"
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


def latency_text(percentiles: pd.DataFrame, *, id_col: str = "config_id") -> str:
    """Fastest and slowest config by median end-to-end latency, with their p95."""
    known = percentiles.dropna(subset=["p50_e2e_s"]).sort_values("p50_e2e_s", kind="mergesort")
    if known.empty:
        return NO_TIMINGS
    fast, slow = known.iloc[0], known.iloc[-1]
    text = (f"Fastest: **{fast[id_col]}** with median end-to-end latency {secs(fast['p50_e2e_s'])} "
            f"(p95 {secs(fast.get('p95_e2e_s'))}, median TTFT {secs(fast.get('p50_ttft_s'))})")
    if len(known) > 1:
        text += (f"; slowest: **{slow[id_col]}** at {secs(slow['p50_e2e_s'])} (p95 "
                 f"{secs(slow.get('p95_e2e_s'))}), {slow['p50_e2e_s'] / fast['p50_e2e_s']:.1f}x the fastest")
    return text + "."


def decomposition_text(parts: pd.DataFrame, *, id_col: str = "config_id") -> str:
    """Whether waiting for the first token or generating the rest dominates, per config."""
    known = parts.dropna(subset=["decode_share"])
    if known.empty:
        return NO_TIMINGS
    # Waiting for the first token includes the network share: together they are 1 - decode.
    waiting = 1 - known["decode_share"].astype(float)
    decode_led = int((waiting < 0.5).sum())
    top = known.loc[waiting.idxmax()]
    text = (f"Generating the output after the first token (decode) is most of the median request in "
            f"{decode_led} of {len(known)} configurations; waiting for the first token is most of it in "
            f"{len(known) - decode_led}. The largest waiting share is in **{top[id_col]}**: "
            f"{pct(waiting.max())} of {secs(top['median_e2e_s'])}. Shorter outputs speed up "
            "decode-bound configurations; shorter prompts, or fewer requests queued ahead, speed up "
            "first-token-bound ones.")
    network = known["network_share"].astype(float) if "network_share" in known else pd.Series(dtype=float)
    if network.isna().all():
        text += (" Network time cannot be separated here: the endpoint reports no processing time of its own "
                 "(`server_s`), so the round trip is inside TTFT.")
    else:
        text += f" Network and client overhead is a median {pct(network.median())} of a request."
    return text


def goodput_text(goodput: pd.DataFrame, *, ttft_s: float | None, tpot_s: float | None,
                 e2e_s: float | None, id_col: str = "config_id") -> str:
    """Share of requests meeting every latency target given, best and worst config."""
    known = goodput[goodput["n_ok"] > 0].sort_values("good_share", ascending=False, kind="mergesort")
    if known.empty:
        return NO_TIMINGS
    given = [f"{name} <= {secs(value)}" for name, value in (("TTFT", ttft_s), ("TPOT", tpot_s),
                                                              ("e2e", e2e_s)) if value is not None]
    targets = ", ".join(given) or "no targets given: every timed request counts"
    best, worst = known.iloc[0], known.iloc[-1]
    rate = ("" if _missing(best["goodput_rps"]) else
            f" (goodput {best['goodput_rps']:.3g} requests/s at this run's load)")
    text = (f"Against the targets ({targets}), **{best[id_col]}** meets them on {pct(best['good_share'])} "
            f"of its requests{rate}")
    if len(known) > 1:
        text += f"; **{worst[id_col]}** on {pct(worst['good_share'])}"
    return text + "."


def fit_text(ttft: pd.DataFrame, e2e: pd.DataFrame, *, id_col: str = "model") -> str:
    """Seconds per prompt token (prefill) and per output token (decode) from the robust fits."""
    lines = []
    for _, t in ttft.iterrows():
        e = e2e[e2e[id_col] == t[id_col]]
        e = e.iloc[0] if len(e) else None
        prefill = (f"TTFT = {secs(t['intercept'])} + {_ms(t['slope'])} per prompt token "
                   f"(slope {_ms(t['slope_low'])} to {_ms(t['slope_high'])})"
                   if pd.isna(t["reason"]) else f"no TTFT fit ({t['reason']})")
        decode = ("no e2e fit (no rows)" if e is None else
                  f"e2e = {secs(e['intercept'])} + {_ms(e['slope'])} per output token "
                  f"(about {1 / e['slope']:.0f} tokens/s)" if pd.isna(e["reason"]) and e["slope"] > 0 else
                  f"no e2e fit ({e['reason'] or 'slope not positive'})")
        lines.append(f"- **{t[id_col]}**: {prefill}; {decode}.")
    return "\n".join(lines) if lines else NO_TIMINGS


def what_if_text(what_if: pd.DataFrame, *, observed_max_tokens: float, id_col: str = "model") -> str:
    """Test "n1 output tokens are n2/n1 times faster than n2" against the e2e fit, per group.

    The claim counts as roughly true when the predicted ratio is at least ROUGHLY x the
    proportional one; otherwise the fixed part (TTFT, overhead) makes it false.  When the run's
    outputs are all shorter than n2 the answer says first that it is an extrapolation.
    """
    rows = what_if.dropna(subset=["ratio"])
    if what_if.empty:
        return NO_TIMINGS
    lengths = sorted(what_if["output_tokens"].unique())
    n1, n2 = int(lengths[0]), int(lengths[-1])
    claim = f"Claim: {n1} output tokens are ~{n2 / n1:g}x faster than {n2}."
    if rows.empty:
        return f"{claim} No group has an e2e fit (too few requests or no spread in output length)."
    beyond = not _missing(observed_max_tokens) and observed_max_tokens < n2
    if beyond:
        where = "both lengths" if observed_max_tokens < n1 else f"{n2} tokens"
        claim += (f" **This run cannot test it directly**: its longest output has {observed_max_tokens:.0f} tokens, "
                  f"so {where} lie beyond the data. The answer below stretches the straight line fitted to the "
                  "measured lengths, e2e = fixed part + time per token x tokens; it holds only if generation "
                  "keeps that speed at those lengths.")
    parts, holds, groups = [], [], []
    for _, r in rows[rows["output_tokens"] == n2].iterrows():
        first = rows[(rows[id_col] == r[id_col]) & (rows["output_tokens"] == n1)].iloc[0]
        fixed = (n2 * first["e2e_s"] - n1 * r["e2e_s"]) / (n2 - n1)  # the fit's intercept
        holds.append(bool(r["ratio"] >= ROUGHLY * r["proportional_ratio"]))
        groups.append(str(r[id_col]))
        verdict = ("close to proportional: the fixed part is small next to "
                   f"{n1} tokens of decoding" if holds[-1] else
                   "far from proportional: the fixed part does not shrink with the output")
        parts.append(f"- **{r[id_col]}**: {'predicted' if not beyond else 'extrapolated'} e2e "
                     f"{secs(first['e2e_s'])} at {n1} tokens and {secs(r['e2e_s'])} at {n2}, so {n2} tokens take "
                     f"{r['ratio']:.1f}x as long (interval {r['ratio_low']:.1f} to {r['ratio_high']:.1f}) against "
                     f"a proportional {r['proportional_ratio']:g}x; with a fixed part of {secs(fixed)} per request "
                     f"that is {verdict}.")
    if all(holds):
        answer = "roughly yes" + (", if the line holds that far" if beyond else "")
    elif not any(holds):
        answer = "no: the fixed part per request keeps the ratio well below proportional"
    else:
        yes = ", ".join(g for g, h in zip(groups, holds) if h)
        no = ", ".join(g for g, h in zip(groups, holds) if not h)
        answer = (f"roughly yes for {yes}" + (" if the line holds that far" if beyond else "")
                  + f"; no for {no}, whose fixed part per request is too large")
    return claim + "\n\n" + "\n".join(parts) + f"\n\n**Answer:** {answer}."


def scaling_text(observed: pd.DataFrame, *, id_col: str = "model") -> str:
    """What the run itself shows about output length and time, from `overview.observed_scaling`."""
    if observed.empty:
        return NO_TIMINGS
    known = observed.dropna(subset=["time_ratio"])
    known = known[known["token_ratio"] > 1]
    if known.empty:
        return "The run has no spread in output length to measure how time grows with it."
    lines = [f"- **{r[id_col]}**: its longest outputs (median {_tokens(r['long_tokens'])}) took "
             f"{secs(r['long_e2e_s'])}, its shortest (median {_tokens(r['short_tokens'])}) "
             f"{secs(r['short_e2e_s'])}: {r['token_ratio']:.1f}x the tokens in {r['time_ratio']:.1f}x the time."
             for _, r in known.iterrows()]
    text = "Measured directly in this run (no fit):\n\n" + "\n".join(lines)
    if (known["time_ratio"] < ROUGHLY * known["token_ratio"]).all():
        text += ("\n\nAt these lengths time grows much more slowly than the output: the fixed part of a "
                 "request (mostly the wait for the first token) outweighs the tokens generated.")
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _tokens(count: float) -> str:
    return f"{count:.0f} token" + ("" if round(count) == 1 else "s")


def break_even_text(head: Headline) -> str:
    """The chosen config's break-even accuracy and expected value under V and E."""
    if head.choice.row is None or head.value_usd is None or head.error_cost_usd is None:
        return "No value of a success and cost of an error given, so no break-even accuracy."
    r = head.choice.row
    if _missing(head.break_even_accuracy):
        return f"The cost of **{head.choice.config_id}** is unknown, so its break-even accuracy is too."
    has = "" if _missing(r["accuracy"]) else f"; it has {pct(r['accuracy'])}, an expected value of {usd(head.ev_usd)} per request"
    text = (f"With a success worth {usd(head.value_usd)} and an error costing {usd(head.error_cost_usd)}, "
            f"**{head.choice.config_id}** breaks even at {pct(head.break_even_accuracy)} accuracy{has}.")
    failed = r.get("error_rate")
    if not _missing(failed) and failed > 0:
        each = head.error_cost_usd if head.failure_cost_usd is None else head.failure_cost_usd
        text += (f" That counts its {pct(failed)} failed requests at {usd(each)} each (a failure is no answer; "
                 "`failure_cost_usd` sets its cost).")
    low = r.get("accuracy_low")
    if not _missing(low) and not _missing(r["accuracy"]) and low < head.break_even_accuracy <= r["accuracy"]:
        text += (f" Its accuracy interval reaches down to {pct(low)}, below break-even: with {int(r['n'])} "
                 "graded requests it is not yet certain to pay off.")
    return text


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


def failures_text(frame: pd.DataFrame) -> str:
    """Why a run has no answer to analyse: no requests at all, or every request failed, with the kinds."""
    if frame.empty:
        return ("**This run holds no requests**: nothing was collected (it was stopped before its first "
                "request finished, or its grid is empty), so there is nothing to analyse.")
    kinds = frame.assign(kind=frame["error_type"].astype(object).fillna("unknown"),
                         status_code=frame["http_status"].astype("Float64")).groupby(
        ["kind", "status_code"], dropna=False).size().sort_values(ascending=False)
    listed = "; ".join(f"{kind}{'' if pd.isna(code) else f' (HTTP {int(code)})'}: {n:,}"
                       for (kind, code), n in kinds.items())
    example = frame["error_message"].dropna()
    said = f' The first error says: "{example.iloc[0][:300]}".' if len(example) else ""
    return (f"**Every one of the {len(frame):,} requests failed**, so this run has no answer to grade, time or "
            f"price, and no configuration can be recommended. Failures by kind: {listed}.{said} Fix the "
            "endpoint (or its key, limits or timeout) and collect again; `frontier collect CONFIG --resume "
            "RUN_DIR` sends the failed requests again.")


def choice_text(choice: Choice) -> str:
    """The best configuration under the rule, or why there is none and which is closest."""
    if choice.config_id is None:
        return f"No configurations to choose from (rule: {choice.rule})."
    r = choice.row
    assert r is not None
    numbers = f"accuracy {_interval(r, None)}"
    if not _missing(r.get("accuracy_target")):
        numbers += f" against the {pct(r['accuracy_target'])} it needs"
    cost = "cost unknown" if _missing(r["usd_per_1k"]) else f"{usd(r['usd_per_1k'])} per 1,000 requests"
    numbers += f", {latency_name(choice.latency_col)} {secs(r.get(choice.latency_col))}, {cost}"
    rate = r.get("error_rate")
    if not _missing(rate) and rate > 0:
        numbers += (f", {pct(rate)} of its requests failed (interval {pct(r['error_rate_low'])} to "
                    f"{pct(r['error_rate_high'])}; accuracy counts the answered ones)")
    hit_rate = r.get("hit_rate")
    if not _missing(hit_rate) and 0 < hit_rate < 1:
        numbers += (f"; the response cache answered {pct(hit_rate)} of its requests, so its latency and cost "
                    "come from the others")
    if choice.met:
        return f"Best configuration: **{choice.config_id}** ({numbers}). Rule: {choice.rule}."
    return (f"**No configuration meets the targets** (rule: {choice.rule}). Closest: **{choice.config_id}** "
            f"({numbers}).")


def cascade_text(study: CascadeStudy) -> str:
    """What cascades achieve on the run as a whole against the best single config, the oracle and a budget."""
    if study.summary.empty:
        reasons = list(dict.fromkeys(study.notes["note"])) or ["the run has no datasets"]
        return "**No cascades**: " + "; ".join(reasons) + "."
    r = study.summary.set_index("dataset").loc[study.overall]
    where = "pooled over all datasets" if study.overall == POOLED else f"on {study.overall}"
    text = (f"On the held-out items ({int(r['n'])} requests {where}) the most accurate single configuration is "
            f"**{r['best_single']}** at {_span(r, 'best_single')}, {usd(r['best_single_usd_per_1k'])} per 1,000 "
            "requests.")
    if r["best_cascade"] is None or _missing(r["best_cascade"]):
        text += " No cascade was evaluated (see the notes)."
    else:
        text += (f" The most accurate cascade, **{r['best_cascade']}** ({r['signal']} signal), reaches "
                 f"{_span(r, 'best_cascade')} at {usd(r['best_cascade_usd_per_1k'])} per 1,000.")
        if _missing(r["saving"]):
            text += " No cascade matches the best single configuration's accuracy."
        elif r["saving"] > 0:
            text += (f" The cheapest cascade that matches the best single configuration, **{r['matching_cascade']}**, "
                     f"costs {pct(r['saving'])} less ({usd(r['matching_usd_per_1k'])} per 1,000).")
        else:
            text += (f" The cheapest cascade that matches it costs {pct(-r['saving'])} more "
                     f"({usd(r['matching_usd_per_1k'])} per 1,000): here cascading does not save money.")
            if r["signal"] == "agreement":
                text += (" With the agreement signal every item pays for the first two stages, which pays off "
                         "only when the last stage costs several times as much as they do together.")
    text += (f" An oracle router that knew which configuration is right for each item would reach "
             f"{pct(r['oracle_accuracy'])} at {usd(r['oracle_usd_per_1k'])} per 1,000: no router over these "
             "configurations can do better.")
    if _missing(r["best_at_budget_accuracy"]):
        text += f" Nothing costs at most {usd(r['budget_usd_per_1k'])} per 1,000 requests."
    else:
        text += (f" Within {usd(r['budget_usd_per_1k'])} per 1,000 requests the most accurate choice is "
                 f"**{r['best_at_budget']}** ({r['best_at_budget_kind']}) at {pct(r['best_at_budget_accuracy'])}.")
    if r["n"] < 30:
        text += (f" With only {int(r['n'])} held-out requests the intervals are wide: a demonstration of the "
                 "method, not grounds for a decision.")
    return text


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


def latency_model_text(model: pd.DataFrame) -> str:
    """Each group's e2e = TTFT + overhead + per-token time x output tokens, with intervals."""
    if model.empty:
        return NO_TIMINGS
    lines = []
    for _, r in model.iterrows():
        ttft = (f"TTFT {secs(r['ttft_s'])} (+ {_ms(r['ttft_per_prompt_token_s'])} per prompt token)"
                if r["ttft_kind"] == "fit" else
                f"TTFT {secs(r['ttft_s'])} (prompt length not varied enough to fit: held constant)")
        overhead = (f"overhead {secs(r['overhead_s'])} ({secs(r['overhead_low'])} to {secs(r['overhead_high'])})"
                    if r["decode_kind"] == "fit" else "overhead taken as 0 (output lengths barely vary)")
        lines.append(f"- **{r['label']}**: {ttft} + {overhead} + {_ms(r['per_token_s'])} per output token "
                     f"({_ms(r['per_token_low'])} to {_ms(r['per_token_high'])}) x {r['output_tokens']:.0f} tokens "
                     f"= {secs(r['e2e_model_s'])}; measured median {secs(r['median_e2e_s'])}.")
    quick = model.sort_values("per_token_s", kind="mergesort").iloc[0]
    first = model.sort_values("ttft_s", kind="mergesort").iloc[0]
    return (f"Per group, end-to-end latency = TTFT + overhead + per-token time x output tokens (95% intervals). "
            f"Fastest generation: **{quick['label']}** ({_ms(quick['per_token_s'])} per token); quickest first "
            f"token: **{first['label']}** ({secs(first['ttft_s'])}).\n\n" + "\n".join(lines))


def heldout_text(errors: pd.DataFrame) -> str:
    """How well the latency model predicted requests it never saw, from `latency_model.heldout_errors`."""
    if errors.empty:
        return NO_TIMINGS
    parts = []
    for split, what in (("kfold", "held-out requests (k-fold)"),
                        ("extrapolation", "requests longer than any it was fitted on")):
        rows = errors[errors["split"] == split]
        if rows.empty:
            parts.append(f"no group has enough spread in output length to test on {what}")
            continue
        worst = rows.sort_values("mape_pct", ascending=False, kind="mergesort").iloc[0]
        parts.append(f"on {what} the median error of the predicted p50 is {rows['mape_pct'].median():.1f}% "
                     f"across {len(rows)} groups (worst **{worst['label']}** {worst['mape_pct']:.1f}%), and "
                     f"{pct(rows['p95_coverage'].median())} of requests stay under the predicted p95")
    return "How good is the model? " + "; ".join(parts) + "."


def prediction_text(predictions: pd.DataFrame) -> str:
    """The predicted p50/p95 e2e at the largest lengths asked for, fastest and slowest group."""
    if predictions.empty:
        return NO_TIMINGS
    at = predictions[(predictions["prompt_tokens"] == predictions["prompt_tokens"].max())
                     & (predictions["output_tokens"] == predictions["output_tokens"].max())]
    at = at.sort_values("p50_e2e_s", kind="mergesort")
    fast, slow = at.iloc[0], at.iloc[-1]
    text = (f"At {fast['prompt_tokens']:.0f} prompt and {fast['output_tokens']:.0f} output tokens the model predicts "
            f"**{fast['label']}** fastest (p50 {secs(fast['p50_e2e_s'])}, p95 {secs(fast['p95_e2e_s'])})")
    if len(at) > 1:
        text += f" and **{slow['label']}** slowest (p50 {secs(slow['p50_e2e_s'])}, p95 {secs(slow['p95_e2e_s'])})"
    outside = int(predictions["outside"].sum())
    text += "."
    if outside:
        text += (f" {outside} of {len(predictions)} predictions lie outside the lengths measured (column `outside`): "
                 "they extrapolate, and where TTFT is held constant a longer prompt is assumed to cost nothing.")
    return text


# The parts of `latency.latency_split`, as a sentence names them.
SPLIT_NAMES = {"network_queue": "network + queue (TTFT - prefill)", "prefill": "prefill (prompt processing)",
               "decode": "decode (after the first token)", "overhead": "overhead (after the last token)",
               "ttft": "TTFT (network, queue and prefill: no server timings to split them)",
               "after_first": "everything after the first token (decode and overhead: no token gaps to split them)"}
_SPLIT_SHORT = {"network_queue": "network + queue", "prefill": "prefill", "decode": "decode",
                "overhead": "overhead", "ttft": "TTFT", "after_first": "the time after the first token"}


def latency_split_text(split: pd.DataFrame, *, id_col: str = "config_id") -> str:
    """Which part of a request's time dominates, in seconds and shares, and which lever would cut it,
    from `latency.latency_split`."""
    known = split.dropna(subset=["dominant"])
    if known.empty:
        return NO_TIMINGS
    counts = known["dominant"].value_counts()
    lead = "; ".join(f"**{SPLIT_NAMES[part]}** in {n} of {len(known)}" for part, n in counts.items())
    sentences = [f"The largest part of the mean request: {lead} configurations."]
    for part in counts.index:
        rows = known[known["dominant"] == part]
        top = rows.loc[rows[f"{part}_share"].astype(float).idxmax()]
        sentences.append(f"Where {_SPLIT_SHORT[part]} weighs most, **{top[id_col]}**: "
                         f"{secs(top[f'mean_{part}_s'])} of {secs(top['mean_e2e_s'])} "
                         f"({pct(top[f'{part}_share'])}); {_lever(part, top)}.")
    unsplit = int(split["prefill_share"].isna().sum())
    if unsplit:
        sentences.append(f"In {unsplit} of {len(split)} configurations the endpoint reports no server timings "
                         "(llama.cpp's `timings`): network + queue and prefill cannot be told apart there.")
    gapless = int(split["decode_share"].isna().sum())
    if gapless:
        sentences.append(f"In {gapless} of {len(split)} the token gaps were not recorded either, so decode and "
                         "overhead cannot be told apart.")
    return " ".join(sentences)


def _lever(part: str, row: pd.Series) -> str:
    """What would cut `part` of `row`'s time, with the measured per-token cost where there is one."""
    if part in ("decode", "after_first"):
        tokens, seconds = float(row["mean_completion_tokens"]), row[f"mean_{part}_s"]
        return (f"fewer output tokens cut it ({_ms(seconds / max(tokens - 1, 1))} per token after the first, "
                f"{_tokens(tokens)} on average: half as many saves about {secs(seconds / 2)}), through a lower "
                "max_tokens, a stop sequence or a terser prompt; a smaller model generates each token faster")
    if part == "prefill":
        cached = row.get("cached_prompt_share")
        reuse = "" if _missing(cached) else f", {pct(cached)} of them already in the server's cache"
        return (f"a shorter prompt cuts it ({_tokens(float(row['mean_prompt_tokens']))} on average{reuse}: half "
                f"as long saves about {secs(row['mean_prefill_s'] / 2)}), and so does a prompt whose shared "
                "prefix comes first, where the server caches it")
    if part == "network_queue":
        return ("fewer requests in flight cut the wait for a free server slot that is part of it (or more slots "
                "on the server); what is left at one in flight is the network")
    if part == "overhead":
        return "it comes after the last token (closing the stream, the client's own work): the model is not the lever"
    return ("a shorter prompt, fewer requests in flight or prompt caching cut it; which of them would help most "
            "needs the server's timings")


def load_sweep_text(sweep: pd.DataFrame, *, id_col: str = "config_group", level: str = "concurrency",
                    limit: int = 12) -> str:
    """What more requests in flight bought, per configuration group, and where the knee is, from
    `latency.load_sweep`."""
    if sweep.empty or sweep["p50_e2e_s"].isna().all():
        return NO_TIMINGS
    groups = [part.sort_values(level, kind="mergesort") for _, part in sweep.groupby(id_col, sort=False)]
    swept = [g for g in groups if g[level].nunique() > 1]
    if not swept:
        levels = ", ".join(f"{v:g}" for v in sorted(sweep[level].dropna().unique()))
        return (f"Every configuration ran at one {level} level ({levels}): there is no load sweep to read. "
                "Collect with `grid.concurrency: [1, 2, 4, 8]` to see what more requests in flight buy.")
    lines = []
    for g in swept[:limit]:
        first, last, knee = g.iloc[0], g.iloc[-1], g[g["knee"].astype(bool)]
        line = (f"- **{first[id_col]}**, {first[level]:g} → {last[level]:g} in flight: throughput "
                f"{_rate(first['throughput_rps'])} → {_rate(last['throughput_rps'])} requests/s "
                f"({_times(last['throughput_rps'] / first['throughput_rps'])}), "
                f"{_rate(first['throughput_tokens_per_s'])} → {_rate(last['throughput_tokens_per_s'])} output "
                f"tokens/s; p50 e2e {secs(first['p50_e2e_s'])} → {secs(last['p50_e2e_s'])} "
                f"({_times(last['p50_e2e_s'] / first['p50_e2e_s'])}), p95 {secs(first['p95_e2e_s'])} → "
                f"{secs(last['p95_e2e_s'])}")
        if knee.empty:
            line += (f"; no knee up to {last[level]:g}: throughput grew at least as fast as latency, so more in "
                     "flight may still pay.")
        else:
            k = knee.iloc[0]
            before = g[g[level] < k[level]].iloc[-1]
            line += (f"; **knee at {k[level]:g}**: from {before[level]:g} to {k[level]:g} p50 e2e grew "
                     f"{_times(k['e2e_ratio'])} but throughput {_times(k['throughput_ratio'])}, so run at most "
                     f"{before[level]:g} in flight per configuration like this one.")
        lines.append(line)
    if len(swept) > limit:
        lines.append(f"- and {len(swept) - limit} more groups (in the table).")
    kneed = sum(bool(g["knee"].astype(bool).any()) for g in swept)
    head = (f"Throughput is requests (output tokens) completed over the wall time of their phase, first send to "
            f"last byte. The knee, where p50 end-to-end latency grows by a larger factor than throughput, lies "
            f"within the levels measured in {kneed} of {_count(len(swept), 'configuration group')}; past it, "
            "fewer requests in flight is the lever.")
    rules = set("+".join(sweep["wall_rule"].astype(str)).split("+"))
    if "level" in rules:
        head += (" No phases were recorded (an older run or an import): each concurrency level, first send to "
                 "last byte, is taken as one phase.")
    if "none" in rules:
        head += " Where requests carry no send time, throughput cannot be measured (–)."
    return head + "\n\n" + "\n".join(lines)


def arrival_text(rates: pd.DataFrame, percentiles: pd.DataFrame | None = None, *,
                 id_col: str = "config_id") -> str:
    """Open loop: the rate achieved against the target per phase, and latency from the time requests
    were due against the time they were sent, from `latency.arrival_rates` and a `latency.percentiles`
    table with `e2e_s` and `e2e_from_scheduled_s`."""
    if rates.empty:
        return ("Closed loop: each concurrency level kept that many requests in flight, so each send waited "
                "for an answer and the load followed the server's speed. `grid.arrival: {rate_per_s: R}` "
                "sends at a set rate instead (open loop), whatever is in flight.")
    phases = "; ".join(
        f"phase {r.phase}: {_rate(r.achieved_rate_per_s)} requests/s sent of {_rate(r.target_rate_per_s)} "
        f"asked for ({pct(r.achieved_share)}), the latest request {secs(r.max_send_lag_s)} late"
        for r in rates.itertuples())
    text = f"Open loop (each request sent when due, whatever was in flight): {phases}."
    short = rates[rates["achieved_share"] < 0.98]
    if not short.empty:
        text += (f" In {_count(len(short), 'phase')} the client fell more than 2% behind: max_in_flight, the "
                 "rate limits or the client's own CPU held requests back, and their wait counts in the latency "
                 "from the due time.")
    columns = {"p50_e2e_s", "p50_e2e_from_scheduled_s"}
    if percentiles is not None and columns <= set(percentiles.columns):
        timed = percentiles.dropna(subset=list(columns))
        if not timed.empty:
            gap = timed["p50_e2e_from_scheduled_s"] - timed["p50_e2e_s"]
            worst = timed.loc[gap.idxmax()]
            text += (f" Measured from the due time, median end-to-end latency is at most {secs(gap.max())} longer "
                     f"than from the send (**{worst[id_col]}**: {secs(worst['p50_e2e_from_scheduled_s'])} against "
                     f"{secs(worst['p50_e2e_s'])}).")
    return text


def _rate(value: float) -> str:
    return "n/a" if _missing(value) else f"{value:.3g}"


def _times(value: float) -> str:
    return "n/a" if _missing(value) else f"x{value:.2g}"


# Headers of the tables `show` returns; units live in the cells.
HEADERS = {
    "config_id": "configuration", "n": "requests", "accuracy": "accuracy", "hit_rate": "cache hit rate",
    "usd_per_1k": "cost per 1,000 requests", "usd_per_request": "cost per request",
    "break_even_accuracy": "break-even accuracy", "accuracy_target": "accuracy needed",
    "ev_usd": "expected value per request", "monthly_ev_usd": "expected value per month",
    "break_even_verdict": "vs break-even", "human_verdict": "vs human",
    "mean_prompt_tokens": "prompt tokens (mean)", "mean_completion_tokens": "output tokens (mean)",
    "median_completion_tokens": "output tokens (median)", "pareto": "on the 3-objective front",
    "dominated_by": "beaten on all three by", "good_share": "meets every target", "n_ok": "ok",
    "n_good": "meet every target", "goodput_rps": "goodput", "throughput_rps": "throughput",
    "accuracy_diff": "accuracy A − B", "p_value": "p", "p_adjusted": "p (Holm-adjusted)",
    "n_pairs": "paired items", "a_only": "only A right", "b_only": "only B right", "config_a": "A",
    "config_b": "B", "hits": "cache hits", "e2e_hit_s": "mean e2e of a hit", "e2e_miss_s": "mean e2e of a miss",
    "usd_saved_per_1k": "saved per 1,000 requests", "input_usd_per_mtok": "input per million tokens",
    "output_usd_per_mtok": "output per million tokens", "usd_per_hour": "machine time per hour",
    "prompt_tokens_mean": "prompt tokens (mean)", "n_shared": "requests after a shared prefix",
    "n_changed": "requests after a changed prefix", "cached_input_usd_per_mtok": "cached input per million tokens",
    "ttft_base_s": "TTFT before prefill", "prefill_s_per_token": "prefill time",
    "cached_prefill_s_per_token": "prefill time of a cached token", "decode_s_per_token": "decode time",
    "lookup_s": "response-cache lookup", "batch_wait_s": "batch wait (the promised worst case)",
    "below_minimum_share": "prompts too short to cache", "batch_rows": "sent as a batch",
    "usd_online": "cost online", "usd_batch": "cost as a batch", "machine_usd": "machine time of the batch", "ttft_shared_median_s": "median TTFT, shared prefix",
    "ttft_changed_median_s": "median TTFT, changed prefix", "ttft_saved_s": "TTFT saved (mean)",
    "speedup": "speed-up", "prompt_variant": "prompt variant", "monthly_usd": "cost per month",
    "usd_saved": "saved", "saved_share": "saved share", "online_e2e_s": "mean e2e online",
    "deferred_share": "deferred to a batch", "cached_tokens_per_request": "cached tokens per request",
    "throughput_tokens_per_s": "output throughput",
}
_ABBREVIATIONS = {"e2e": "e2e", "ttft": "TTFT", "tpot": "TPOT", "usd": "USD"}


def header(column: str) -> str:
    """A table header for a column: `HEADERS`, else the name without its unit (`p95_e2e_s` -> `p95 e2e`)."""
    if column in HEADERS:
        return HEADERS[column]
    name = column
    if name.endswith("_output_tokens_per_s"):
        name = name.removesuffix("_output_tokens_per_s") + "_output_speed"
    for suffix in ("_usd", "_rps", "_s"):
        name = name.removesuffix(suffix)
    return " ".join(_ABBREVIATIONS.get(w, w) for w in name.split("_"))


def cell(column: str, value: object) -> str:
    """One value with its unit, chosen by the column's name: percent, ms or s, USD, tokens/s, counts."""
    if _missing(value):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    number = float(value)  # type: ignore[arg-type]
    if column == "accuracy_diff":
        return f"{100 * number:+.1f} pp"
    if column == "accuracy" or column.endswith(("_accuracy", "_share", "_rate", "_discount")):
        return pct(number)
    if column.endswith("_s_per_token"):
        return f"{secs(number)} per token"
    if column.endswith("_rps"):
        return f"{number:.3g}/s"
    if column == "speedup" or column.endswith("_ratio"):
        return f"{number:.1f}x"
    if column.endswith("_per_s"):
        return f"{number:.1f} tokens/s"
    if "usd" in column:
        return usd(number)
    if column.endswith("_s"):
        return secs(number)
    if column.startswith("p_") or column.endswith("_p"):
        return f"{number:.2g}"
    return f"{number:,.0f}" if number == int(number) else f"{number:,.1f}"


def show(table: pd.DataFrame, columns: Sequence[str], *, index: str | None = "config_id") -> pd.DataFrame:
    """`table` for reading: `index` as the index, `columns` under readable headers, a unit in every cell
    (percent, ms or s, USD) and a value's interval folded into its cell when the table has one
    (`accuracy` with `accuracy_low`/`accuracy_high`, `ev_usd` with `ev_low_usd`/`ev_high_usd`,
    `e2e_miss_s` with `e2e_miss_low`/`e2e_miss_high`).  A column with no value at all is left out:
    it would say nothing.  Returns text: for display only."""
    missing = [c for c in [*columns, *([index] if index else [])] if c not in table.columns]
    if missing:
        raise ParameterError(f"show: table has no column(s) {', '.join(missing)}")
    out = pd.DataFrame(index=table.index)
    for column in columns:
        if table[column].isna().all() and len(table):
            continue
        low, high = _bounds(table, column)
        values = [cell(column, v) for v in table[column]]
        if low is not None:
            values = [_with_interval(v, cell(column, lo), cell(column, hi))
                      for v, lo, hi in zip(values, table[low], table[high])]
        out[header(column)] = values
    if index is not None:
        out.index = pd.Index(table[index].astype(str).to_numpy(), name=header(index))
    else:
        out.index = pd.RangeIndex(1, len(out) + 1)
    return out


def hit_rate_note(cache: pd.DataFrame, *, id_col: str = "config_id") -> str:
    """Why some configurations hit the response cache every time, from `caching.response_cache_savings`."""
    full = cache[(cache["requests"] > 0) & (cache["hits"] == cache["requests"])]
    if full.empty:
        return ""
    return (f"{_count(len(full), 'configuration')} had every request answered from the cache: each request had been sent "
            "before, by an earlier repeat or by another configuration with the same prompt, model and sampling "
            "settings (the cache key does not include concurrency). These hit rates say how this run was laid "
            "out, not what your traffic would hit: that depends on how often your users repeat a request "
            "exactly (`repeat_share` in the what-if below).")


def assumptions(*settings: object) -> pd.DataFrame:
    """The fields of frozen dataclasses (prices, a latency model) as a two-column table with units."""
    rows = [(header(f.name), cell(f.name, getattr(s, f.name))) for s in settings for f in dataclasses.fields(s)]
    return pd.DataFrame(rows, columns=["assumption", "value"]).set_index("assumption")


def accuracy_matrix(table: pd.DataFrame, *, id_col: str = "config_id", column: str = "dataset") -> pd.DataFrame:
    """Accuracy per config (rows) and `column` (columns) as percentages, from a two-key `accuracy_table`."""
    wide = table.pivot(index=id_col, columns=column, values="accuracy")
    wide = wide.reindex(index=list(dict.fromkeys(table[id_col])))
    out = wide.apply(lambda values: [pct(v) for v in values])
    out.index.name, out.columns.name = header(id_col), None
    return out


def _bounds(table: pd.DataFrame, column: str) -> tuple[str | None, str | None]:
    candidates = [(f"{column}_low", f"{column}_high")]
    for unit in ("_usd", "_s"):
        if column.endswith(unit):
            base = column.removesuffix(unit)
            candidates += [(f"{base}_low{unit}", f"{base}_high{unit}"), (f"{base}_low", f"{base}_high")]
    for low, high in candidates:
        if low in table.columns and high in table.columns:
            return low, high
    return None, None


def _with_interval(value: str, low: str, high: str) -> str:
    if value == "–" or low == "–" or high == "–":
        return value
    for unit in ("%", " USD", " ms", " s"):
        if value.endswith(unit) and low.endswith(unit) and high.endswith(unit):
            return f"{value} ({low.removesuffix(unit)} to {high})"
    return f"{value} ({low} to {high})"


def _interval(row: pd.Series, level: str | None) -> str:
    if _missing(row.get("accuracy")):
        return "unknown"
    low, high = row.get("accuracy_low"), row.get("accuracy_high")
    where = f"{level} " if level else ""
    span = "" if _missing(low) else f" ({where}interval {pct(low)} to {pct(high)}"
    n = row.get("n")
    span += "" if not span else (f", n = {int(n)})" if not _missing(n) else ")")
    return pct(row["accuracy"]) + span


def _ms(value: float) -> str:
    return "n/a" if _missing(value) else f"{value * 1000:.2f} ms"


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _span(row: pd.Series, prefix: str) -> str:
    return f"{pct(row[prefix + '_accuracy'])} ({pct(row[prefix + '_low'])} to {pct(row[prefix + '_high'])})"
