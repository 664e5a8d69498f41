"""Machine time of self-hosted requests: each request's share of the wall time of the phase it ran in.

A self-hosted request's machine cost is the hourly rate x its share of the wall time of its phase
(one concurrency level of one collection session): what the machine actually delivered at that
load, never the request's own e2e divided by its nominal concurrency.  `machine_seconds` gives the
shares, `MACHINE_RULES` says in words how each was found, and `pricing_rules` counts which rule
priced which requests, so a report can say so.  `pricing.price_requests` turns the seconds into dollars.
"""
from __future__ import annotations

import duckdb
import pandas as pd

from toolkit import warehouse
from toolkit.price_table import MachinePrice, PriceTable, resolve_price
from toolkit.warehouse import Rows


MACHINE_RULES = {
    "phase": "machine time by phase: the wall time of the phase a request ran in (one concurrency level "
             "of one collection session, first send to last byte), shared among the phase's requests in "
             "proportion to the work each did (the server's prefill + decode time where it reports it, else "
             "end-to-end time); what the machine delivered at that load",
    "e2e": "machine time by request: no phase was recorded (imported data), so each request is charged "
           "its own end-to-end time as if the machine served it alone (exact for a server that runs one "
           "request at a time, an upper bound for one that batches)",
    "batch": "machine time by batch: a batch answer has no time of its own, so the span from the batch's "
             "first answer to its last is shared equally among its answers",
    "cache_hit": "response-cache hit: no machine time",
}


MACHINE_INPUTS = ("run_id", "endpoint", "phase", "started_at", "e2e_s", "cache_hit", "batch", "server_prefill_s",
                  "server_decode_s")  # what `machine_seconds` reads


def machine_seconds(frame: pd.DataFrame) -> pd.DataFrame:
    """Each request's share of a self-hosted machine's wall time, and the rule that gave it.

    Columns `machine_s` and `machine_rule` (a categorical of `MACHINE_RULES`' keys), on `frame`'s index:
    `with_machine_time` over `frame`, in its row order.
    """
    used = [name for name in MACHINE_INPUTS if name in frame.columns]
    found = with_machine_time(frame[used], keep_order=True).select("machine_s", "machine_rule").df()
    return found.set_axis(frame.index)


def with_machine_time(rows: Rows, *, keep_order: bool = False) -> duckdb.DuckDBPyRelation:
    """`rows` with each request's share of a self-hosted machine's wall time (`machine_s`) and the rule
    that gave it (`machine_rule`, an ENUM of `MACHINE_RULES`' keys); `rows` as they are when they have both.

    Rows with a `phase` share the wall time of (run_id, endpoint, phase), from its first send to its last
    byte, in proportion to the work each did (the server's prefill + decode seconds where it reports
    them, else e2e_s): a serial server at concurrency 4 queues every request four deep but takes
    the same wall time per request, so a request costs what it costs at concurrency 1; a server
    that truly runs four at once finishes the phase sooner and each request costs less in
    proportion to the measured throughput.  Rows without a phase pay their own e2e_s.  Batch
    answers without times share their batch's span equally.  Response-cache hits use no machine time.
    A missing run_id or endpoint groups with an empty one.  The spans are summed per group in DuckDB
    and joined back, so `rows` may be a whole run on disk; `keep_order` keeps `rows`' order (a join
    does not), for a caller that lines the result up with a DataFrame.  The spans are computed when this
    is called (a pass over `rows`); the shares when the result is read.
    """
    source = warehouse.relation(rows)
    columns = set(source.columns)
    if {"machine_s", "machine_rule"} <= columns:
        return source

    def number(name: str) -> str:
        return warehouse.number(source, name)

    def flag(name: str) -> str:
        return warehouse.flag(source, name)

    def key(name: str) -> str:
        return f"coalesce(CAST({warehouse.quoted(name)} AS VARCHAR), '')" if name in columns else "''"

    sent = "epoch_us(started_at) / 1e6" if "started_at" in columns else "CAST(NULL AS DOUBLE)"
    # the server's own prefill + decode time is the work a request did; e2e adds queueing, so it is the
    # weight only where the server reports no timings
    work = (f"coalesce({number('server_prefill_s')} + {number('server_decode_s')}, {number('e2e_s')})"
            if {"server_prefill_s", "server_decode_s"} <= columns else number("e2e_s"))
    rule_type = "ENUM(" + ", ".join(warehouse.literal(name) for name in MACHINE_RULES) + ")"
    numbered = "SELECT row_number() OVER () AS _machine_order, * FROM {rows}" if keep_order else "SELECT * FROM {rows}"
    helpers = "_e2e, _hit, _sent, _work, _run_key, _endpoint_key, _phase, _by_batch, _by_phase"
    marked = warehouse.over(source, f"""
        SELECT *, _phase IS NOT NULL AND _sent IS NOT NULL AND NOT _by_batch AS _by_phase
        FROM (SELECT *, {flag('batch')} AND _e2e IS NULL AND _sent IS NOT NULL AND NOT _hit AS _by_batch
              FROM (SELECT *, {number('e2e_s')} AS _e2e, {flag('cache_hit')} AS _hit, {sent} AS _sent,
                           {work} AS _work, {key('run_id')} AS _run_key, {key('endpoint')} AS _endpoint_key,
                           {number('phase')} AS _phase
                    FROM ({numbered})))""")
    # the spans per phase and per batch are a few rows, joined back in one streaming pass
    phases = warehouse.over(marked, """
        SELECT _run_key, _endpoint_key, _phase, max(_sent + greatest(coalesce(_e2e, 0), 0)) - min(_sent) AS _wall,
               sum(CASE WHEN _hit THEN 0 ELSE coalesce(_work, 0) END) AS _busy
        FROM {rows} WHERE _by_phase GROUP BY ALL""").df()
    batches = warehouse.over(marked, """
        SELECT _run_key, _endpoint_key, (max(_sent) - min(_sent)) / count(*) AS _batch_share
        FROM {rows} WHERE _by_batch GROUP BY ALL""").df()
    return warehouse.over(marked, f"""
        SELECT r.* EXCLUDE ({helpers}{', _machine_order' if keep_order else ''}),
               CASE WHEN r._hit THEN 0.0
                    WHEN r._by_batch THEN b._batch_share
                    WHEN r._by_phase THEN CASE WHEN r._e2e IS NULL THEN NULL
                                               WHEN p._busy > 0 THEN p._wall * coalesce(r._work, 0) / p._busy
                                               ELSE 0.0 END
                    ELSE r._e2e END AS machine_s,
               CAST(CASE WHEN r._hit THEN 'cache_hit' WHEN r._by_batch THEN 'batch' WHEN r._by_phase THEN 'phase'
                         ELSE 'e2e' END AS {rule_type}) AS machine_rule
        FROM {{rows}} r
        LEFT JOIN {warehouse.inline(phases.astype({'_phase': float, '_wall': float, '_busy': float}), 'p')}
            ON r._by_phase AND p._run_key = r._run_key AND p._endpoint_key = r._endpoint_key AND p._phase = r._phase
        LEFT JOIN {warehouse.inline(batches.astype({'_batch_share': float}), 'b')}
            ON r._by_batch AND b._run_key = r._run_key AND b._endpoint_key = r._endpoint_key
        {'ORDER BY r._machine_order' if keep_order else ''}""")


def pricing_rules(rows: Rows, table: PriceTable) -> pd.DataFrame:
    """Which rule priced which requests: one row per (model, rule) with its request count (counted in DuckDB).

    Columns: model, kind ("tokens" or "machine"), rule (a `MACHINE_RULES` key, "tokens" or
    "batch tokens"), requests, description.  A report shows this so a reader knows whether a
    self-hosted cost came from measured phases or from the per-request fallback.
    """
    source = with_machine_time(rows)
    model = warehouse.text(source, "model")
    machines = [m for m in warehouse.distinct_texts(source, "model")
                if isinstance(resolve_price(table, m)[1], MachinePrice)]
    is_machine = (f"{model} IN ({', '.join(map(warehouse.literal, machines))})" if machines else "false")
    counts = warehouse.over(source, f"""
        SELECT {model} AS model, CASE WHEN {is_machine} THEN 'machine' ELSE 'tokens' END AS kind,
               CASE WHEN {is_machine} THEN CAST(machine_rule AS VARCHAR)
                    WHEN machine_rule = 'cache_hit' THEN 'cache_hit'
                    WHEN {warehouse.flag(source, 'batch')} THEN 'batch tokens' ELSE 'tokens' END AS rule,
               count(*) AS requests
        FROM {{rows}} WHERE {model} IS NOT NULL GROUP BY ALL ORDER BY ALL""").df()
    token_words = {"tokens": "token prices x the request's tokens",
                   "batch tokens": f"token prices less the batch discount ({table.batch_discount:.0%})"}
    counts["description"] = counts["rule"].map(lambda r: MACHINE_RULES.get(r) or token_words[r])
    return counts.astype({"requests": int})
