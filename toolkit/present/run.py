"""What a run holds, in words: its size, its failures, its cache hits."""
from __future__ import annotations

import pandas as pd

from toolkit.analysis.rows import cache_hit_mask, cache_hits
from toolkit.present.units import count_of, secs


NO_GRADES = ("**No graded requests**: this run carries no correctness labels (e.g. a latency-only "
             "import), so there is no accuracy to report.")

NO_TIMINGS = ("**No timed requests**: this run carries no latency measurements (e.g. an accuracy-only "
              "import), so there is no latency to report.")


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


def cache_note(frame: pd.DataFrame, *, measures: str = "latency and cost") -> str:
    """Why response-cache hits are left out of `measures`, and how many; empty when there are none."""
    hits = cache_hits(frame)
    total = int(hits["hits"].sum())
    if total == 0:
        return ""
    lookup = frame.loc[cache_hit_mask(frame), "e2e_s"].astype(float).median()
    full = hits.loc[hits["hit_rate"] == 1, "config_id"].tolist()
    text = (f"**Cache hits are set aside.** The response cache answered {total} of {int(hits['requests'].sum())} "
            f"requests ({count_of(int((hits['hits'] > 0).sum()), 'configuration')}), each in a median {secs(lookup)} at no "
            f"model cost. How often that happens here says how often this run repeated a request, not what a "
            f"configuration costs, so only the requests the model answered count towards {measures} here.")
    if full:
        shown = ", ".join(f"**{c}**" for c in full[:3]) + (f" and {len(full) - 3} more" if len(full) > 3 else "")
        one = len(full) == 1
        text += (f" {count_of(len(full), 'configuration')} {'was' if one else 'were'} answered entirely from the cache "
                 f"({shown}): {'it has' if one else 'they have'} no {measures.replace(' and ', ' or ')} of "
                 f"{'its' if one else 'their'} own.")
    return text + " `05_caching_batch` shows what a cache saves at your repeat rate."


def hit_rate_note(cache: pd.DataFrame, *, id_col: str = "config_id") -> str:
    """Why some configurations hit the response cache every time, from `caching.response_cache_savings`."""
    full = cache[(cache["requests"] > 0) & (cache["hits"] == cache["requests"])]
    if full.empty:
        return ""
    return (f"{count_of(len(full), 'configuration')} had every request answered from the cache: each request had been sent "
            "before, by an earlier repeat or by another configuration with the same prompt, model and sampling "
            "settings (the cache key does not include concurrency). These hit rates say how this run was laid "
            "out, not what your traffic would hit: that depends on how often your users repeat a request "
            "exactly (`repeat_share` in the what-if below).")
