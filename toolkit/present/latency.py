"""Latency in words: percentiles, where the time goes, what the fits predict, how load changes it."""
from __future__ import annotations

import pandas as pd

from toolkit.present.run import NO_TIMINGS
from toolkit.present.units import count_of, factor, is_missing, ms, pct, per_second, secs, token_count


# A what-if ratio at least this share of the proportional one counts as "roughly proportional".
ROUGHLY = 0.8


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
    rate = ("" if is_missing(best["goodput_rps"]) else
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
        prefill = (f"TTFT = {secs(t['intercept'])} + {ms(t['slope'])} per prompt token "
                   f"(slope {ms(t['slope_low'])} to {ms(t['slope_high'])})"
                   if pd.isna(t["reason"]) else f"no TTFT fit ({t['reason']})")
        decode = ("no e2e fit (no rows)" if e is None else
                  f"e2e = {secs(e['intercept'])} + {ms(e['slope'])} per output token "
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
    beyond = not is_missing(observed_max_tokens) and observed_max_tokens < n2
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
    lines = [f"- **{r[id_col]}**: its longest outputs (median {token_count(r['long_tokens'])}) took "
             f"{secs(r['long_e2e_s'])}, its shortest (median {token_count(r['short_tokens'])}) "
             f"{secs(r['short_e2e_s'])}: {r['token_ratio']:.1f}x the tokens in {r['time_ratio']:.1f}x the time."
             for _, r in known.iterrows()]
    text = "Measured directly in this run (no fit):\n\n" + "\n".join(lines)
    if (known["time_ratio"] < ROUGHLY * known["token_ratio"]).all():
        text += ("\n\nAt these lengths time grows much more slowly than the output: the fixed part of a "
                 "request (mostly the wait for the first token) outweighs the tokens generated.")
    return text


def latency_model_text(model: pd.DataFrame) -> str:
    """Each group's e2e = TTFT + overhead + per-token time x output tokens, with intervals."""
    if model.empty:
        return NO_TIMINGS
    lines = []
    for _, r in model.iterrows():
        ttft = (f"TTFT {secs(r['ttft_s'])} (+ {ms(r['ttft_per_prompt_token_s'])} per prompt token)"
                if r["ttft_kind"] == "fit" else
                f"TTFT {secs(r['ttft_s'])} (prompt length not varied enough to fit: held constant)")
        overhead = (f"overhead {secs(r['overhead_s'])} ({secs(r['overhead_low'])} to {secs(r['overhead_high'])})"
                    if r["decode_kind"] == "fit" else "overhead taken as 0 (output lengths barely vary)")
        lines.append(f"- **{r['label']}**: {ttft} + {overhead} + {ms(r['per_token_s'])} per output token "
                     f"({ms(r['per_token_low'])} to {ms(r['per_token_high'])}) x {r['output_tokens']:.0f} tokens "
                     f"= {secs(r['e2e_model_s'])}; measured median {secs(r['median_e2e_s'])}.")
    quick = model.sort_values("per_token_s", kind="mergesort").iloc[0]
    first = model.sort_values("ttft_s", kind="mergesort").iloc[0]
    return (f"Per group, end-to-end latency = TTFT + overhead + per-token time x output tokens (95% intervals). "
            f"Fastest generation: **{quick['label']}** ({ms(quick['per_token_s'])} per token); quickest first "
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
        return (f"fewer output tokens cut it ({ms(seconds / max(tokens - 1, 1))} per token after the first, "
                f"{token_count(tokens)} on average: half as many saves about {secs(seconds / 2)}), through a lower "
                "max_tokens, a stop sequence or a terser prompt; a smaller model generates each token faster")
    if part == "prefill":
        cached = row.get("cached_prompt_share")
        reuse = "" if is_missing(cached) else f", {pct(cached)} of them already in the server's cache"
        return (f"a shorter prompt cuts it ({token_count(float(row['mean_prompt_tokens']))} on average{reuse}: half "
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
    `load.load_sweep`."""
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
                f"{per_second(first['throughput_rps'])} → {per_second(last['throughput_rps'])} requests/s "
                f"({factor(last['throughput_rps'] / first['throughput_rps'])}), "
                f"{per_second(first['throughput_tokens_per_s'])} → {per_second(last['throughput_tokens_per_s'])} output "
                f"tokens/s; p50 e2e {secs(first['p50_e2e_s'])} → {secs(last['p50_e2e_s'])} "
                f"({factor(last['p50_e2e_s'] / first['p50_e2e_s'])}), p95 {secs(first['p95_e2e_s'])} → "
                f"{secs(last['p95_e2e_s'])}")
        if knee.empty:
            line += (f"; no knee up to {last[level]:g}: throughput grew at least as fast as latency, so more in "
                     "flight may still pay.")
        else:
            k = knee.iloc[0]
            before = g[g[level] < k[level]].iloc[-1]
            line += (f"; **knee at {k[level]:g}**: from {before[level]:g} to {k[level]:g} p50 e2e grew "
                     f"{factor(k['e2e_ratio'])} but throughput {factor(k['throughput_ratio'])}, so run at most "
                     f"{before[level]:g} in flight per configuration like this one.")
        lines.append(line)
    if len(swept) > limit:
        lines.append(f"- and {len(swept) - limit} more groups (in the table).")
    kneed = sum(bool(g["knee"].astype(bool).any()) for g in swept)
    head = (f"Throughput is requests (output tokens) completed over the wall time of their phase, first send to "
            f"last byte. The knee, where p50 end-to-end latency grows by a larger factor than throughput, lies "
            f"within the levels measured in {kneed} of {count_of(len(swept), 'configuration group')}; past it, "
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
    were due against the time they were sent, from `load.arrival_rates` and a `latency.percentiles`
    table with `e2e_s` and `e2e_from_scheduled_s`."""
    if rates.empty:
        return ("Closed loop: each concurrency level kept that many requests in flight, so each send waited "
                "for an answer and the load followed the server's speed. `grid.arrival: {rate_per_s: R}` "
                "sends at a set rate instead (open loop), whatever is in flight.")
    phases = "; ".join(
        f"phase {r.phase}: {per_second(r.achieved_rate_per_s)} requests/s sent of {per_second(r.target_rate_per_s)} "
        f"asked for ({pct(r.achieved_share)}), the latest request {secs(r.max_send_lag_s)} late"
        for r in rates.itertuples())
    text = f"Open loop (each request sent when due, whatever was in flight): {phases}."
    short = rates[rates["achieved_share"] < 0.98]
    if not short.empty:
        text += (f" In {count_of(len(short), 'phase')} the client fell more than 2% behind: max_in_flight, the "
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
