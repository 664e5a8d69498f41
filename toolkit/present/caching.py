"""What caching and batching save, in words."""
from __future__ import annotations

import math

import pandas as pd

from toolkit.analysis.caching import MIN_CACHEABLE_PROMPT_TOKENS, SCENARIOS
from toolkit.present.units import pct, secs, usd


def response_cache_text(table: pd.DataFrame) -> str:
    """One paragraph from `response_cache_savings(..., by=[])` (a single row)."""
    if table.empty or table["hits"].sum() == 0:
        return ("**No response-cache hits in this run**: it was collected without `cache: response` or "
                "no request repeated an earlier one exactly. The what-if below estimates what a cache "
                "would save for your share of repeats.")
    r = table.iloc[0]
    return (f"The response cache answered **{pct(r['hit_rate'])}** of {int(r['requests'])} requests "
            f"({pct(r['hit_rate_low'])} to {pct(r['hit_rate_high'])}) in {secs(r['e2e_hit_s'])} on average, "
            f"against {secs(r['e2e_miss_s'])} for a request the model answered; it saved "
            f"{usd(r['usd_saved'])} of {usd(r['usd_without_cache'])} ({pct(r['saved_share'])}).")


def prompt_caching_text(table: pd.DataFrame) -> str:
    """One paragraph from `prompt_caching_savings`."""
    if table.empty:
        return "**No requests with token counts**: prompt caching cannot be assessed on this run."
    tokens = table[table["kind"] == "tokens"]
    below = float((table["below_minimum_share"] * table["requests"]).sum() / table["requests"].sum())
    text = ""
    if below > 0:
        text = (f"{pct(below)} of the requests have prompts under {MIN_CACHEABLE_PROMPT_TOKENS:,} tokens, "
                "the minimum OpenAI caches, so provider prompt caching cannot help them. ")
    if tokens.empty:
        return text + ("Every model here is self-hosted and paid by machine time: a reused prefix shows up "
                       "as a shorter TTFT (prefix reuse, below), not as a cheaper token.")
    saved, without = tokens["usd_saved"].sum(), tokens["usd_without_prompt_cache"].sum()
    return text + (f"Cached input tokens saved {usd(saved)} of {usd(without)} "
                   f"({pct(saved / without if without else math.nan)}) on the token-priced models.")


def batch_text(table: pd.DataFrame, turnaround_s: float | None = None) -> str:
    """One paragraph from `batch_savings`, with the measured turnaround when there was a batch."""
    tokens = table[table["kind"] == "tokens"] if not table.empty else table
    measured = int(table["batch_rows"].sum()) if not table.empty else 0
    text = (f"{measured} requests of this run went through a batch" + (
        f", which took {secs(turnaround_s)} from creation to completion. " if turnaround_s is not None else ". ")
        if measured else "**No batch rows in this run**: the figures below are what Batch pricing would give. ")
    if tokens.empty:
        return text + "No token-priced model here: a self-hosted batch costs the machine time it takes."
    online, batch = tokens["usd_online"].sum(), tokens["usd_batch"].sum()
    return text + (f"At a batch discount of {pct(tokens['batch_discount'].iloc[0])}, these requests cost "
                   f"{usd(batch)} through a Batch API instead of {usd(online)} online.")


def prefix_reuse_text(table: pd.DataFrame) -> str:
    """One paragraph from `prefix_reuse(..., by=[...])`: the largest TTFT saving measured."""
    known = table.dropna(subset=["ttft_saved_s"]) if not table.empty else table
    if known.empty:
        return ("**No prefix-reuse experiment in this run**: it needs serial requests (concurrency 1) whose "
                "order mixes shared and changed prompt prefixes (`order: shuffled`).")
    best = known.sort_values("ttft_saved_s", ascending=False).iloc[0]
    label = ", ".join(str(best[c]) for c in table.columns[:table.columns.get_loc("prompt_tokens_mean")])
    return (f"When the previous request shared the prompt prefix, TTFT fell from {secs(best['ttft_changed_s'])} "
            f"to {secs(best['ttft_shared_s'])} for **{label}** (about {best['prompt_tokens_mean']:.0f} prompt "
            f"tokens; {best['speedup']:.1f}x). Sending requests with the same prefix back to back (`order: "
            "grouped`) buys this on a self-hosted server.")


def simulate_text(table: pd.DataFrame) -> str:
    """One paragraph from `simulate`: each lever's monthly saving and the combined one."""
    by = table.set_index("scenario")
    parts = [f"{name}: {usd(by.loc[name, 'usd_saved'])} ({pct(by.loc[name, 'saved_share'])})"
             for name in SCENARIOS[1:]]
    return (f"Baseline {usd(by.loc['baseline', 'monthly_usd'])} a month. Savings — " + "; ".join(parts)
            + f". With all three, online requests take {secs(by.loc['all three', 'online_e2e_s'])} on average and "
              f"{pct(by.loc['all three', 'deferred_share'])} of requests wait for a batch.")
