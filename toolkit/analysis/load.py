"""How an endpoint behaves under load: what more requests in flight buy (`load_sweep`) and whether
an open-loop run kept its arrival rate (`arrival_rates`)."""
from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd

from toolkit import warehouse
from toolkit.analysis.rows import group_keys, quantile_name, timed_sql
from toolkit.machine_time import with_machine_time
from toolkit.warehouse import Rows

LOAD_GROUP = ("endpoint", "model", "prompt_variant", "max_tokens", "stop_sequences", "temperature",
              "response_cache")
# the phase of a row collected without one: one per (run, endpoint, concurrency), numbered below every
# recorded phase (those count up from 0) by a hash whose collisions are a few in 2^52
_LEVEL_PHASE = "-1.0 - CAST(hash({run}, {endpoint}, {level}) % 4503599627370496 AS DOUBLE)"


def _phase_totals(rows: Rows, keys: Sequence[str], level: str) -> pd.DataFrame:
    """Per group of `keys`: n, n_ok, and over the rows whose machine time is known, `wall_s` (their shares
    of their phases' wall time, `machine_time.with_machine_time`), `done` (ok rows) and `tokens` (their
    output tokens), and `wall_rule`: how the seconds were known.  "phase"; "level" for rows collected
    without a recorded phase (older runs, imports), taken as one phase per run, endpoint and concurrency
    level (the collector has always sent one level at a time, and llmperf does too); response-cache hits
    count with 0 s; rows with no send time to make a phase count in neither ("none" when no row has one).
    Rows that carry `machine_s` (shares of a whole run, of which `rows` may be a part) keep them."""
    timed = with_machine_time(rows)
    ok = f"coalesce({warehouse.text(timed, 'status')} = 'ok', false)"
    tokens = f"coalesce({warehouse.number(timed, 'completion_tokens')}, 0)"
    picked = warehouse.group_columns(timed, keys)

    def totals(source: duckdb.DuckDBPyRelation, known: str, extra: str = "") -> pd.DataFrame:
        rule = warehouse.text(source, "machine_rule")  # a categorical's codes compare only with its values
        known, extra = known.format(rule=rule), extra.format(rule=rule)
        return warehouse.over(source, f"""
            SELECT {picked}sum(machine_s) FILTER (WHERE {known}) AS wall_s,
                   count(*) FILTER (WHERE {ok} AND {known}) AS done,
                   coalesce(sum({tokens}) FILTER (WHERE {ok} AND {known}), 0) AS tokens,
                   bool_or({rule} = 'phase') AS phased{extra}
            FROM {{rows}} GROUP BY ALL {warehouse.group_order(keys)}""").df()

    table = totals(timed, "{rule} IN ('phase', 'cache_hit')",
                   f", count(*) AS n, count(*) FILTER (WHERE {ok}) AS n_ok, "
                   "count(*) FILTER (WHERE {rule} = 'e2e') AS loose")
    table["wall_rule"] = np.where(table["phased"], "phase", "none")
    if table["loose"].sum() > 0:
        column = lambda name: warehouse.quoted(name) if name in timed.columns else "NULL"  # noqa: E731
        phase = _LEVEL_PHASE.format(run=column("run_id"), endpoint=column("endpoint"), level=column("concurrency"))
        loose = with_machine_time(warehouse.over(timed, f"""
            SELECT * EXCLUDE (machine_s, machine_rule{', phase' if 'phase' in timed.columns else ''}), {phase} AS phase
            FROM {{rows}} WHERE {warehouse.text(timed, 'machine_rule')} = 'e2e'"""))
        levels = totals(loose, "{rule} = 'phase'")
        table = table.merge(levels, on=list(keys), how="left", suffixes=("", "_level"))
        table["wall_s"] = table[["wall_s", "wall_s_level"]].sum(axis=1, min_count=1)
        table["done"] += table["done_level"].fillna(0).astype(np.int64)
        table["tokens"] += table["tokens_level"].fillna(0.0)
        leveled = table["phased_level"].fillna(False).astype(bool)
        table["wall_rule"] = np.where(leveled, np.where(table["phased"], "level+phase", "level"), table["wall_rule"])
    return table[[*keys, "n", "n_ok", "wall_s", "wall_rule", "done", "tokens"]]


def load_sweep(rows: Rows, *, by: str | Sequence[str] = LOAD_GROUP, level: str = "concurrency") -> pd.DataFrame:
    """What more requests in flight buy: per config group (`by`, every setting but the load) and
    `level`, the throughput against the latency it costs, and the knee.

    throughput_rps and throughput_tokens_per_s = requests (output tokens) completed over the wall
    time of the phases they ran in, first send to last byte, shared among a phase's requests as
    `machine_time.with_machine_time` shares it (the same seconds a self-hosted request is priced by).
    p50/p95 of ttft_s and e2e_s over the timed rows.  e2e_ratio and throughput_ratio are the
    factors from the previous level; `knee` marks the first level where p50 e2e grows by a larger
    factor than throughput_rps: past it, more in flight buys latency rather than throughput.
    Columns: keys, level, n, n_ok, wall_s,
    wall_rule ("phase", "level", "level+phase" or "none": see `_phase_totals`), throughput_rps,
    throughput_tokens_per_s, p50_/p95_ ttft_s and e2e_s, e2e_ratio, throughput_ratio, knee.
    Counted in DuckDB, groups in sorted order.
    """
    source = warehouse.relation(rows)
    keys = [k for k in group_keys(by) if k in source.columns and k != level]
    table = _phase_totals(source, [*keys, level], level)
    wall = table["wall_s"].astype(float)
    table["wall_s"] = wall.where(wall > 0)
    table["throughput_rps"] = table["done"] / table["wall_s"]
    table["throughput_tokens_per_s"] = table["tokens"] / table["wall_s"]
    timed = timed_sql(source)
    q, metrics = (0.5, 0.95), ("ttft_s", "e2e_s")
    table = warehouse.with_quantiles(table, source, [*keys, level], {m: warehouse.number(source, m) for m in metrics},
                                     q, {m: [f"{quantile_name(p)}_{m}" for p in q] for m in metrics}, where=timed)
    # rows come sorted by group, then level: compare each level with the one before it
    group = table.groupby(keys, dropna=False, sort=False).ngroup() if keys else pd.Series(0, index=table.index)
    table["e2e_ratio"] = table["p50_e2e_s"] / table.groupby(group)["p50_e2e_s"].shift()
    table["throughput_ratio"] = table["throughput_rps"] / table.groupby(group)["throughput_rps"].shift()
    past = (table["e2e_ratio"] > table["throughput_ratio"]).astype(int)
    table["knee"] = (past == 1) & (past.groupby(group).cumsum() == 1)
    return table[[*keys, level, "n", "n_ok", "wall_s", "wall_rule", "throughput_rps", "throughput_tokens_per_s",
                  "p50_ttft_s", "p95_ttft_s", "p50_e2e_s", "p95_e2e_s", "e2e_ratio", "throughput_ratio", "knee"]]


def arrival_rates(phases: Sequence[dict]) -> pd.DataFrame:
    """The open-loop phases of a manifest's "phases" list: target and achieved rate, their ratio,
    requests sent and the largest send lag.  Empty (with the columns) for a closed-loop run."""
    columns = ["phase", "target_rate_per_s", "achieved_rate_per_s", "achieved_share", "requests",
               "max_in_flight", "max_send_lag_s"]
    rows = []
    for entry in phases:
        arrival = entry.get("arrival")
        if not arrival:
            continue
        target, achieved = arrival.get("target_rate_per_s"), arrival.get("achieved_rate_per_s")
        rows.append({"phase": entry.get("phase"), "target_rate_per_s": target, "achieved_rate_per_s": achieved,
                     "achieved_share": achieved / target if achieved is not None and target else np.nan,
                     "requests": arrival.get("requests"), "max_in_flight": arrival.get("max_in_flight"),
                     "max_send_lag_s": arrival.get("max_send_lag_s")})
    return pd.DataFrame(rows, columns=columns).astype({"achieved_rate_per_s": float, "max_send_lag_s": float})
