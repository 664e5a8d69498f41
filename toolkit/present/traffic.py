"""The traffic a team has, in words: how it arrives, how long its requests are, what it costs and
what each lever would save."""
from __future__ import annotations

import math

import pandas as pd

from toolkit.present.units import count_of, is_missing, pct, secs, token_count, usd

WHY_MODEL = {"chosen": "the model you chose (`model`)",
             "named": "the model most of the traffic names",
             "default": "`default_model`: the traffic names no model with token prices (a public trace, or a "
                        "self-hosted endpoint priced by machine time), so this is what it would cost on that API"}


def traffic_arrivals_text(summary: pd.DataFrame) -> str:
    """Rate, peak and burstiness from `traffic.arrival_summary`."""
    r = summary.iloc[0]
    if is_missing(r["mean_rate_per_s"]):
        return (f"**Arrivals**: {count_of(int(r['requests']), 'request')}, too few with a send time to measure a "
                "rate.")
    burst = r["interarrival_cv"]
    kind = ("close to a Poisson process (a coefficient of variation of about 1)" if 0.7 <= burst <= 1.3 else
            "bursty: requests come in clumps" if burst > 1.3 else "more regular than a Poisson process")
    return (f"**Arrivals**: {count_of(int(r['requests']), 'request')} over {secs(r['span_s'])}, "
            f"{r['mean_rate_per_s']:.3g} per second on average ({r['requests_per_month']:,.0f} a month at that "
            f"rate); the busiest {secs(r['bin_s'])} reached {r['peak_rate_per_s']:.3g} per second, "
            f"{r['peak_to_mean']:.2g}x the mean. The gaps between arrivals have a coefficient of variation of "
            f"{burst:.2g}: {kind}. An endpoint sized for the mean rate queues at the peaks: size for the peak, "
            "or let a batch absorb what can wait.")


def traffic_tokens_text(tokens: pd.DataFrame) -> str:
    """Prompt and output lengths from `traffic.token_summary`."""
    rows = tokens.set_index("tokens")
    if "prompt_tokens" not in rows.index and "completion_tokens" not in rows.index:
        return "**Tokens**: the traffic records no token counts."
    parts = []
    for column, name in (("prompt_tokens", "Prompts"), ("completion_tokens", "Outputs")):
        if column in rows.index:
            r = rows.loc[column]
            parts.append(f"{name}: median {token_count(r['p50'])}, p90 {token_count(r['p90'])}, p99 "
                         f"{token_count(r['p99'])} (mean {token_count(r['mean'])})")
    ratio = ""
    if {"prompt_tokens", "completion_tokens"} <= set(rows.index) and rows.loc["completion_tokens", "total"] > 0:
        share = rows.loc["prompt_tokens", "total"] / rows.loc["completion_tokens", "total"]
        ratio = (f" The traffic sends {share:.3g} prompt tokens for every output token, so "
                 + ("input prices and prompt caching dominate its cost." if share > 4 else
                    "output prices and output length matter as much as the prompt."))
    return "**Tokens**. " + "; ".join(parts) + "." + ratio


def traffic_cost_text(usd_total: float, requests: int, model: str, why: str, requests_per_month: float) -> str:
    """What the traffic costs at `model`'s token prices, per request and per month."""
    per_request = usd_total / requests if requests else math.nan
    month = "" if is_missing(requests_per_month) else (
        f", {usd(per_request * requests_per_month)} a month at {requests_per_month:,.0f} requests")
    return (f"**Cost**: priced as **{model}** ({WHY_MODEL[why]}), these {requests:,} requests cost {usd(usd_total)}, "
            f"{usd(per_request * 1000)} per 1,000 requests{month}.")


def levers_text(levers: pd.DataFrame) -> str:
    """Each lever's saving, largest first, with what it cannot say."""
    known = levers[levers["applies"]].sort_values("usd_saved", ascending=False, kind="mergesort")
    sentences = []
    for _, r in known.iterrows():
        monthly = "" if is_missing(r["usd_saved_per_month"]) else f", {usd(r['usd_saved_per_month'])} a month"
        latency = ""
        if not is_missing(r["p50_e2e_after_s"]):
            latency = (f"; the endpoint you measured would answer the median request in {secs(r['p50_e2e_after_s'])} "
                       f"instead of {secs(r['p50_e2e_before_s'])}"
                       + (" (an extrapolation: this traffic's prompts are longer than any the endpoint was "
                          "measured on)" if r["extrapolated"] else ""))
        sentences.append(f"**{r['lever']}** saves {pct(r['saved_share'])} ({usd(r['usd_saved'])}{monthly}), touching "
                         f"{pct(r['touched_share'])} of the requests{latency}")
    text = "; ".join(sentences) + "." if sentences else "No lever applies to this traffic."
    missing = levers[~levers["applies"]]
    if len(missing):
        text += " Not measurable here: " + "; ".join(f"{r['lever']} ({r['why_not']})" for _, r in missing.iterrows()) + "."
    return text + (" The savings do not add up: a request answered from the response cache cannot also be "
                   "batched, and a cached prefix is already cheap to send.")
