"""What a run holds, in words: its size, its failures, its cache hits."""
from __future__ import annotations

import math

import pandas as pd

from toolkit import warehouse
from toolkit.analysis.rows import cache_hits
from toolkit.warehouse import Rows
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


def failures_text(rows: Rows) -> str:
    """Why a run has no answer to analyse: no requests at all, or every request failed, with the kinds
    (counted in DuckDB)."""
    source = warehouse.relation(rows)
    kinds = warehouse.over(source, f"""
        SELECT coalesce({warehouse.text(source, 'error_type')}, 'unknown') AS kind,
               CAST({warehouse.number(source, 'http_status')} AS BIGINT) AS status_code, count(*) AS n
        FROM {{rows}} GROUP BY ALL ORDER BY n DESC, kind, status_code""").fetchall()
    if not kinds:
        return ("**This run holds no requests**: nothing was collected (it was stopped before its first "
                "request finished, or its grid is empty), so there is nothing to analyse.")
    listed = "; ".join(f"{kind}{'' if code is None else f' (HTTP {code})'}: {n:,}" for kind, code, n in kinds)
    example = [message for message, in warehouse.over(
        source, "SELECT error_message FROM {rows} WHERE error_message IS NOT NULL LIMIT 1").fetchall()]
    total = sum(n for _, _, n in kinds)
    said = f' The first error says: "{example[0][:300]}".' if example else ""
    return (f"**Every one of the {total:,} requests failed**, so this run has no answer to grade, time or "
            f"price, and no configuration can be recommended. Failures by kind: {listed}.{said} Fix the "
            "endpoint (or its key, limits or timeout) and collect again; `frontier collect CONFIG --resume "
            "RUN_DIR` sends the failed requests again.")


def cache_note(rows: Rows, *, measures: str = "latency and cost") -> str:
    """Why response-cache hits are left out of `measures`, and how many; empty when there are none."""
    hits = cache_hits(rows)
    total = int(hits["hits"].sum())
    if total == 0:
        return ""
    source = warehouse.relation(rows)
    (lookup,), = warehouse.over(source, f"SELECT median({warehouse.number(source, 'e2e_s')}) FROM {{rows}} "
                                        f"WHERE {warehouse.flag(source, 'cache_hit')}").fetchall()
    lookup = math.nan if lookup is None else lookup
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
