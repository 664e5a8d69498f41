"""The requests table of one or more run dirs as a DuckDB relation over their files, in place.

Every Parquet part is read where it lies (`read_parquet`, only the columns asked for); journals of
an interrupted run and the rare part whose column types differ from the schema go through Arrow.
Per run dir and `request_id` one record is kept: with several files, the highest `sequence`
(the latest attempt), ties going to the later file (journals after Parquet parts) and the later
row; with one file, the later row.  Setting columns a run written before they existed left null
are filled from its manifest's configs.  Aggregations run in DuckDB over this relation, so pandas
holds only what a caller fetches (`store.load_run` with `columns=`, an aggregate or a sample).
"""
from __future__ import annotations

import contextlib
import glob
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from toolkit.errors import RunDirError
from toolkit.schema import ARROW_SCHEMA, LABEL_COLUMNS, LATER_COLUMNS, REQUEST_COLUMNS, SETTING_COLUMNS, to_arrow

RunDirs = str | os.PathLike | Sequence[str | os.PathLike]
# what an analysis reads: the requests of a run dir where they lie (`store.open_run`), or a DataFrame
Rows = pd.DataFrame | duckdb.DuckDBPyRelation

_SQL_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
              pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ", pa.list_(pa.float64()): "DOUBLE[]",
              pa.list_(pa.int64()): "BIGINT[]"}
# a manifest written before the settings were columns names them so
# per-request token-gap statistics summed in DuckDB, so that a reader of them never holds the lists
GAP_COLUMNS = {"tbt_sum_s": ("coalesce(list_sum(tbt_s), 0.0)", pa.float64()),
               "tbt_count": ("coalesce(len(tbt_s), 0)", pa.int64())}
_NAMES = itertools.count()
# Parquet key-value metadata of a requests file holding one record per request_id (`store.write_requests`)
UNIQUE_REQUESTS = b"frontier.unique_request_ids"  # names of the Arrow tables registered on a connection
_OLD_SETTING_KEYS = {"endpoint_name": "endpoint", "stop_sequences": "stop", "response_cache": "cache"}


def sql_type(column: str) -> str:
    kind = GAP_COLUMNS[column][1] if column in GAP_COLUMNS else ARROW_SCHEMA.field(column).type
    return _SQL_TYPES[kind]


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def expand_run_dirs(run_dir: RunDirs) -> list[Path]:
    """The run dirs `run_dir` names: one path, a list of paths, or glob patterns (sorted matches)."""
    names = [run_dir] if isinstance(run_dir, (str, os.PathLike)) else list(run_dir)
    if not names:
        raise RunDirError("no run directory given (an empty list)")
    found: list[Path] = []
    for name in names:
        text = os.fspath(name)
        if glob.has_magic(text):
            matches = sorted(Path(match) for match in glob.glob(text) if Path(match).is_dir())
            if not matches:
                raise RunDirError(f"{text}: the pattern matches no run directory")
            found += matches
        else:
            found.append(Path(text))
    return list(dict.fromkeys(found))


# rows per Parquet row group of a requests file: DuckDB scans a file one row group per thread, and pyarrow's
# default (1,048,576 rows) left a run of a million requests to one thread; this is DuckDB's own row group size
ROW_GROUP_ROWS = 122_880

# DuckDB's own working memory; past it, its joins, aggregates and sorts spill to the temp directory.
# By default it takes 80% of the machine: the per-group sample of a 10,000,000-row synthetic run peaked
# at 0.9 GB of process memory, and with a 300 MB limit at 0.6 GB, no slower (measured for issue 13)
MEMORY_LIMIT = "1GB"


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that reads timestamps as UTC (the schema's time zone), works in at
    most `MEMORY_LIMIT` and spills to the system's temporary directory (not the notebook's folder)."""
    connection = duckdb.connect(config={"memory_limit": MEMORY_LIMIT,
                                        "temp_directory": str(Path(tempfile.gettempdir()) / "frontier-duckdb")})
    connection.execute("SET TimeZone = 'UTC'")
    with contextlib.suppress(duckdb.InvalidInputException):
        # a bar on stderr for every long query; in Jupyter without ipywidgets DuckDB refuses to change the
        # setting, and draws no bar there either
        connection.execute("SET enable_progress_bar = false")
    return connection


def relation(rows: Rows) -> duckdb.DuckDBPyRelation:
    """`rows` as a DuckDB relation: a relation as it is, a DataFrame scanned where it lies (no copy)."""
    if isinstance(rows, duckdb.DuckDBPyRelation):
        return rows
    if not isinstance(rows, pd.DataFrame):
        raise TypeError(f"expected a DataFrame or a DuckDB relation of requests, got {type(rows).__name__}")
    return connect().from_df(rows)


def over(rows: Rows, query: str) -> duckdb.DuckDBPyRelation:
    """The relation `query` makes of `rows`, which it names `{rows}`: nothing runs until it is fetched."""
    rows_relation = relation(rows)
    # The query reads the relation by the name of the variable that holds it (DuckDB's replacement scan).
    # `relation.query(name, ...)` would put the name in the catalog for the call, and every change of the
    # catalog makes each relation built so far bind again when next read: a chain of analyses bound its
    # first steps hundreds of times.  (A relation offers no public way to its connection.)
    return rows_relation._con.sql(query.replace("{rows}", "rows_relation"))


# values (rows x columns) a chain may hold as a temporary table.  Past DuckDB's memory limit the table spills to
# disk, and reading it back cost more than running the chain again: 05's cache tables at 100,000,000 rows took
# 203 s materialized against 112 s; at 10,000,000 rows, held in memory, 11.4 s against 19.1 s
MATERIALIZED_VALUES = 100_000_000


@contextlib.contextmanager
def materialized(rows: Rows) -> Iterator[duckdb.DuckDBPyRelation]:
    """`rows` computed once into a temporary table for the statements in the block that read it, each of which
    would run the chain again, and dropped after.  A chain of more than `MATERIALIZED_VALUES` values is given
    back as it is, after its first rows past that bound were computed to find out (a count of its rows would run
    the whole of a smaller chain once more: a window, a seeded sample)."""
    source = relation(rows)
    limit = MATERIALIZED_VALUES // max(len(source.columns), 1)
    name = f"materialized_{next(_NAMES)}"
    # (`over` says why the relation's connection)
    source._con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM source LIMIT {limit + 1}")
    try:
        (held,), = source._con.execute(f"SELECT count(*) FROM {name}").fetchall()
        if held > limit:
            source._con.execute(f"DROP TABLE {name}")  # its memory is the block's
            yield source
        else:
            yield source._con.table(name)
    finally:
        source._con.execute(f"DROP TABLE IF EXISTS {name}")


def is_enum(relation: duckdb.DuckDBPyRelation, column: str) -> bool:
    return str(dict(zip(relation.columns, relation.types))[column]).startswith("ENUM")


def text(relation: duckdb.DuckDBPyRelation, column: str) -> str:
    """`column` of `relation` in SQL as text: an ENUM (a categorical's codes) compared with a literal
    that is not one of its values is an error, not false."""
    return f"CAST({quoted(column)} AS VARCHAR)" if is_enum(relation, column) else quoted(column)


def number(relation: duckdb.DuckDBPyRelation, column: str) -> str:
    """`column` of `relation` in SQL as a DOUBLE, null where it is null, NaN (pandas' missing number, which
    SQL would count, sum and compare as a number) or not a column of `relation`."""
    if column not in relation.columns:
        return "CAST(NULL AS DOUBLE)"
    value = f"CAST({quoted(column)} AS DOUBLE)"
    return f"CASE WHEN isnan({value}) THEN NULL ELSE {value} END"


def flag(relation: duckdb.DuckDBPyRelation, column: str) -> str:
    """`column` of `relation` in SQL as a BOOLEAN, false where it is null or not a column of `relation`."""
    return f"coalesce(CAST({quoted(column)} AS BOOLEAN), false)" if column in relation.columns else "false"


def group_columns(relation: duckdb.DuckDBPyRelation, by: Sequence[str]) -> str:
    """The keys `by` of `relation` as text columns named after themselves, each followed by a comma: the start
    of a grouped SELECT list (nothing for one group)."""
    return "".join(f"{text(relation, key)} AS {quoted(key)}, " for key in by)


def group_order(by: Sequence[str]) -> str:
    """ORDER BY the keys `by` (nothing for one group)."""
    return f"ORDER BY {', '.join(map(quoted, by))}" if by else ""


def distinct_texts(relation: duckdb.DuckDBPyRelation, column: str) -> list[str]:
    """The values `column` takes in `relation` (nulls left out), as sorted text."""
    value = text(relation, column)
    found = over(relation, f"SELECT DISTINCT {value} FROM {{rows}} WHERE {value} IS NOT NULL").fetchall()
    return sorted(str(v) for v, in found)


def literal(value: str | None) -> str:
    """A text (or None) as a SQL literal."""
    return "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"


def inline(frame: pd.DataFrame, alias: str) -> str:
    """A small table (a few hundred rows of per-group numbers) as a SQL subquery named `alias`, to join a large
    relation to in one streaming pass: a CTE read twice is materialized whole, every row of it."""
    def value(item: object, kind: str) -> str:
        if item is None or (isinstance(item, float) and np.isnan(item)) or item is pd.NA:
            return f"CAST(NULL AS {kind})"
        if kind == "DOUBLE":
            return f"CAST('{float(item)!r}' AS DOUBLE)"
        if kind == "BOOLEAN":
            return "true" if item else "false"
        return str(int(item)) if kind == "BIGINT" else literal(str(item))
    kinds = {column: "BOOLEAN" if pd.api.types.is_bool_dtype(dtype) else "BIGINT"
             if pd.api.types.is_integer_dtype(dtype) else "DOUBLE" if pd.api.types.is_float_dtype(dtype) else "VARCHAR"
             for column, dtype in frame.dtypes.items()}
    names = ", ".join(map(quoted, frame.columns))
    if frame.empty:
        empty = ", ".join(f"CAST(NULL AS {kind}) AS {quoted(column)}" for column, kind in kinds.items())
        return f"(SELECT {empty} LIMIT 0) {alias}"
    rows = ", ".join("(" + ", ".join(value(item, kinds[column]) for column, item in zip(frame.columns, row)) + ")"
                     for row in frame.itertuples(index=False))
    return f"(VALUES {rows}) {alias}({names})"


def replaced(rows: Rows, column: str, mapping: Mapping[str, str]) -> duckdb.DuckDBPyRelation:
    """`rows` with the text values of `column` that `mapping` names replaced (the others as they are)."""
    source = relation(rows)
    if column not in source.columns or not mapping:
        return source
    value = text(source, column)
    cases = " ".join(f"WHEN {literal(old)} THEN {literal(new)}" for old, new in mapping.items())
    return over(source, f"SELECT * REPLACE (CASE {value} {cases} ELSE {value} END AS {quoted(column)}) FROM {{rows}}")


def requests(connection: duckdb.DuckDBPyConnection, run_dir: RunDirs,
             columns: Sequence[str] | None = None, *, order: bool = False,
             sample: Sample | None = None) -> duckdb.DuckDBPyRelation:
    """The requests table of `run_dir` (one or several run dirs) as a relation with `columns`
    (every schema column when None); `order` keeps the files' row order (run dir, file, row);
    `sample` keeps a seeded random choice of at most `sample.rows` rows per group."""
    from toolkit import store  # store's load_run is built on this module

    dirs = expand_run_dirs(run_dir)
    files = []
    for directory in dirs:
        if not directory.is_dir():
            raise RunDirError(f"{directory}: no such run directory")
        parquet_paths, journal_paths = store.run_files(directory)
        if not parquet_paths and not journal_paths:
            raise RunDirError(f"{directory}: neither {store.REQUESTS} nor {store.JOURNAL} found: "
                              "not a run directory")
        files.append((parquet_paths, journal_paths))
    return records(connection, files, columns, settings=lambda: _manifest_settings(dirs), order=order, sample=sample)


def records(connection: duckdb.DuckDBPyConnection, files: Sequence[tuple[Sequence[Path], Sequence[Path]]],
            columns: Sequence[str] | None = None, *, settings: Callable[[], pd.DataFrame] | None = None,
            order: bool = False, sample: Sample | None = None) -> duckdb.DuckDBPyRelation:
    """One record per (run, request_id) from each run's (Parquet parts, journals), as a relation.

    `settings` gives (columns `_run`, `config_id` and the setting columns) what fills the settings of
    rows that have none; it is called only when a row has none (a manifest is read only then).  The relation's Arrow tables stay registered on `connection`.
    """
    from toolkit import store

    wanted = list(REQUEST_COLUMNS) if columns is None else list(dict.fromkeys(columns))
    if sample is not None:
        wanted += [key for key in sample.by if key not in wanted]
    unknown = [name for name in wanted if name not in REQUEST_COLUMNS and name not in GAP_COLUMNS]
    if unknown:
        raise RunDirError(f"unknown column(s) {', '.join(unknown)}: the requests table has "
                          f"{', '.join(REQUEST_COLUMNS)} (and {', '.join(GAP_COLUMNS)} from tbt_s)")
    computed = [name for name in wanted if name in GAP_COLUMNS]
    stored = [name for name in wanted if name not in GAP_COLUMNS] + (["tbt_s"] if computed else [])
    fill = settings is not None and any(name in SETTING_COLUMNS for name in wanted)
    needed = list(dict.fromkeys([*stored, "request_id", "sequence", *(["config_id", *SETTING_COLUMNS] if fill else [])]))
    sources, in_memory = [], []
    # a run whose one file says its writer kept one record per request needs no search for duplicates
    unique_runs = 0
    for run, (parquet_paths, journal_paths) in enumerate(files):
        several = len(parquet_paths) + len(journal_paths) > 1
        for number, path in enumerate(parquet_paths):
            schema = _parquet_schema(path)
            unique_runs += not several and (schema.metadata or {}).get(UNIQUE_REQUESTS) == b"true"
            if all(schema.field(name).type == ARROW_SCHEMA.field(name).type
                   for name in schema.names if name in REQUEST_COLUMNS):
                sources.append(_parquet_source(path, schema, needed, run, number, several))
            else:  # a foreign writer's types: store's reader casts them or names the column it cannot
                table = to_arrow(store.parquet_frame(path), source=str(path))
                in_memory.append(_tagged(table, needed, run, number, several))
        for number, path in enumerate(journal_paths, start=len(parquet_paths)):
            table = store.journal_table(path)
            if table is not None:
                in_memory.append(_tagged(table, needed, run, number, several))
    if in_memory:
        name = f"in_memory_rows_{next(_NAMES)}"
        connection.register(name, pa.concat_tables(in_memory))
        sources.append(f"SELECT * FROM {name}")
    if not sources:
        empty = ", ".join(f"CAST(NULL AS {sql_type(c)}) AS {quoted(c)}" for c in wanted)
        return connection.sql(f"SELECT {empty} LIMIT 0")
    latest = " UNION ALL BY NAME ".join(sources)
    # the latest record of each request: a window over every row costs a second copy of the table,
    # so it runs only when a request has more than one record (reading request_id alone finds out)
    # (on the ids' hashes: a hash table of numbers, not strings; a collision only costs the window)
    duplicated = unique_runs < len(files) and connection.sql(
        f"SELECT count(*) FROM (SELECT 1 FROM ({latest}) GROUP BY _run, hash(request_id) HAVING count(*) > 1)"
    ).fetchall()[0][0]
    if duplicated:
        latest = (f"SELECT * FROM ({latest}) QUALIFY row_number() OVER (PARTITION BY _run, request_id "
                  "ORDER BY _sequence DESC NULLS LAST, _file DESC, _row DESC) = 1")
    unset = " AND ".join(f"{quoted(c)} IS NULL" for c in SETTING_COLUMNS)
    unknown_rows = fill and connection.sql(f"SELECT count(*) FROM ({latest}) WHERE {unset}").fetchall()[0][0] > 0
    known = settings() if unknown_rows else None
    backfill = known is not None and len(known) > 0
    if backfill:
        name = f"manifest_settings_{next(_NAMES)}"
        connection.register(name, pa.Table.from_pandas(known, preserve_index=False))
        unset = " AND ".join(f"r.{quoted(c)} IS NULL" for c in SETTING_COLUMNS)
        filled = [f"CASE WHEN {unset} AND s.config_id IS NOT NULL THEN CAST(s.{quoted(c)} AS {sql_type(c)}) "
                  f"ELSE r.{quoted(c)} END AS {quoted(c)}" if c in SETTING_COLUMNS else f"r.{quoted(c)}"
                  for c in needed]
        latest = (f"SELECT {', '.join(filled)}, r._run, r._file, r._row FROM ({latest}) r "
                  f"LEFT JOIN {name} s ON s._run = r._run AND s.config_id = r.config_id")
    selected = [f"{GAP_COLUMNS[c][0]} AS {quoted(c)}" if c in GAP_COLUMNS else quoted(c) for c in wanted]
    if sample is not None:
        latest = _sampled(connection, latest, sample)
    query = f"SELECT {', '.join(selected)} FROM ({latest})"
    # one file read as it lies keeps its order (DuckDB preserves insertion order); anything else is sorted
    if order and (duplicated or backfill or sample is not None or len(sources) > 1):
        query += " ORDER BY _run, _file, _row"
    return connection.sql(query)


def with_labels_as_enums(relation: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """`relation` with its `LABEL_COLUMNS` cast to ENUMs of their sorted values: Arrow receives them as
    dictionaries and pandas as categoricals (a byte per row, where text took some 30, and converting it
    needs no copy of the text), ordered as the text sorts so that groups come out in the same order."""
    labels = [name for name in relation.columns if name in LABEL_COLUMNS and not is_enum(relation, name)]
    if not labels:
        return relation
    found = over(relation, "SELECT " + ", ".join(f"list(DISTINCT {quoted(c)} ORDER BY {quoted(c)})" for c in labels)
                 + " FROM {rows}").fetchall()[0]
    enums = {column: "ENUM(" + ", ".join(literal(value) for value in values if value is not None) + ")"
             for column, values in zip(labels, found) if any(value is not None for value in values or ())}
    return over(relation, "SELECT " + ", ".join(f"CAST({quoted(c)} AS {enums[c]}) AS {quoted(c)}" if c in enums
                                                 else quoted(c) for c in relation.columns) + " FROM {rows}")


# the rank width of the first bracket around each quantile: DuckDB's t-digest was within a thousandth
QUANTILE_BRACKET = 0.002
# up to this many values in all, DuckDB's exact quantile holds them (80 MB) and takes one pass, 6x faster
# than bracketing them (6 medians of 1,000,000 rows: 0.3 s against 1.7 s)
EXACT_QUANTILE_VALUES = 10_000_000


def measured_values(relation: duckdb.DuckDBPyRelation, by: Sequence[str], values: Mapping[str, str],
                    where: str = "TRUE") -> duckdb.DuckDBPyRelation:
    """The rows of `relation` that meet `where`: the text keys of `by` and a DOUBLE column per name of
    `values` (each a SQL expression over `relation`), NaN as null."""
    named = ", ".join(f"CASE WHEN isnan(CAST({expression} AS DOUBLE)) THEN NULL ELSE CAST({expression} AS DOUBLE) END "
                      f"AS {quoted(name)}" for name, expression in values.items())
    return over(relation, f"SELECT {group_columns(relation, by)}{named} FROM {{rows}} WHERE {where}")


def unpivoted(measured: duckdb.DuckDBPyRelation, names: Iterable[str]) -> duckdb.DuckDBPyRelation:
    """`measured_values`' rows as one row per key and measured name: the keys, `value` (the name) and `_value`,
    nulls left out, so that every name takes the same passes."""
    return over(measured, f"SELECT * FROM {{rows}} UNPIVOT (_value FOR value IN ({', '.join(map(quoted, names))}))")


def quantiles(relation: duckdb.DuckDBPyRelation, by: Sequence[str], values: Mapping[str, str], q: Sequence[float], *,
              where: str = "TRUE") -> pd.DataFrame:
    """Per group of `by` (text keys) and per name of `values` (each a SQL expression over `relation`, its
    nulls and NaN left out): n and the exact quantiles `q` with linear interpolation (numpy's default), as
    columns *by, value (the name), n, q0, q1, ...; a group without values for a name has no row for it.

    DuckDB's exact quantile holds all of a group's values in memory and cannot spill (100,000,000 latencies
    take 0.8 GB a metric): it takes at most `EXACT_QUANTILE_VALUES` values in all.  Past that, a t-digest (`approx_quantile`, bounded memory) first brackets each quantile by
    the values at ranks a little below and above it; one more pass counts each group's values below the
    bracket and collects those inside it (a few thousandths of the group), among which the exact order
    statistics lie.  A bracket that misses them is widened and tried again, at worst to the whole group.
    The values are unpivoted, so that all of them take the same two passes.
    """
    keys = [quoted(key) for key in [*by, "value"]]
    listed = "".join(f"{key}, " for key in keys)
    measured = measured_values(relation, by, values, where)
    q = [float(p) for p in q]
    if over(measured, "SELECT count(*) FROM {rows}").fetchall()[0][0] * len(values) <= EXACT_QUANTILE_VALUES:
        return _exact_quantiles(measured, by, list(values), q)
    values_of = unpivoted(measured, values)
    order = group_order([*by, "value"])
    width = QUANTILE_BRACKET
    # the t-digest is asked for the brackets of three widths at once: a bracket that misses is widened 8x without
    # another pass over every value (at 10,000,000 rows its rank error near a median can pass 0.002)
    steps = [sign * width * 8**widening for widening in range(3) for sign in (-1, 1)]
    bounds = sorted({min(max(p + step, 0.0), 1.0) for p in q for step in steps})
    counted = over(values_of, f"SELECT {listed}count(*) AS n, approx_quantile(_value, CAST({bounds} AS FLOAT[])) AS _approx "
                              f"FROM {{rows}} GROUP BY ALL {order}").df()
    found = np.full((len(counted), len(q)), np.nan)
    approx = {bound: [row[position] for row in counted["_approx"]] for position, bound in enumerate(bounds)}
    pending = [(group, position) for group in range(len(counted)) for position in range(len(q))]
    while pending:
        brackets = []
        for group, position in pending:
            low, high = q[position] - width, q[position] + width
            brackets.append([*(literal(None if pd.isna(counted.at[group, key]) else counted.at[group, key])
                               for key in [*by, "value"]), str(group), str(position),
                             "NULL" if low <= 0 else f"CAST('{float(approx[low][group])!r}' AS DOUBLE)",
                             "NULL" if high >= 1 else f"CAST('{float(approx[high][group])!r}' AS DOUBLE)"])
        table = ", ".join("(" + ", ".join(row) + ")" for row in brackets)
        names = ", ".join([*keys, "_group", "_position", "_low", "_high"])
        match = " AND ".join(f"v.{key} IS NOT DISTINCT FROM b.{key}" for key in keys)
        inside = "(_low IS NULL OR _value >= _low) AND (_high IS NULL OR _value <= _high)"
        # the values inside come as (value, count): a bracket of tied values (token counts) holds millions of rows
        parts = over(values_of, f"""
            SELECT _group, _position, coalesce(sum(_count) FILTER (WHERE NOT _inside), 0) AS below,
                   list(_value ORDER BY _value) FILTER (WHERE _inside) AS inside,
                   list(_count ORDER BY _value) FILTER (WHERE _inside) AS counts
            FROM (SELECT _group, _position, {inside} AS _inside, CASE WHEN {inside} THEN _value END AS _value,
                         count(*) AS _count
                  FROM {{rows}} v JOIN (VALUES {table}) b({names}) ON {match}
                  WHERE _value < _low OR ({inside}) GROUP BY ALL)
            GROUP BY _group, _position""").fetchall()
        missed = []
        for group, position, below, inside, counts in parts:
            rank = q[position] * (counted.at[group, "n"] - 1)
            first, last = int(np.floor(rank)) - below, int(np.ceil(rank)) - below
            ends = np.cumsum(counts or [])  # the values at 0-based positions below ends[i] are inside[i] or less
            if 0 <= first and len(ends) and last < ends[-1]:
                low, high = (inside[int(np.searchsorted(ends, at, side="right"))] for at in (first, last))
                found[group, position] = low + (high - low) * (rank - np.floor(rank))
            else:
                missed.append((group, position))
        # a bracket with no value below or inside it has no row in `parts`
        missed += sorted(set(pending) - {(group, position) for group, position, *_ in parts})
        if not missed:
            break
        width *= 8
        bounds = sorted({min(max(q[position] + step, 0.0), 1.0) for _, position in missed for step in (-width, width)})
        if not set(bounds) <= set(approx):
            again = over(values_of, f"SELECT {listed}approx_quantile(_value, CAST({bounds} AS FLOAT[])) AS _approx "
                                    f"FROM {{rows}} GROUP BY ALL {order}").df()
            approx = {bound: [row[position] for row in again["_approx"]] for position, bound in enumerate(bounds)}
        pending = missed
    table = counted.drop(columns="_approx")
    for position in range(len(q)):
        table[f"q{position}"] = found[:, position]
    return table


def _exact_quantiles(measured: duckdb.DuckDBPyRelation, by: Sequence[str], names: Sequence[str],
                     q: Sequence[float]) -> pd.DataFrame:
    """`quantiles` by DuckDB's exact quantile, in one pass over `measured` (keys and a column per name)."""
    grouping = ", ".join(map(quoted, by))
    found = over(measured, "SELECT " + "".join(f"{quoted(key)}, " for key in by) + ", ".join(
        f"count({quoted(name)}) AS {quoted('n_' + name)}, quantile_cont({quoted(name)}, CAST({list(q)} AS DOUBLE[])) "
        f"AS {quoted('q_' + name)}" for name in names) + " FROM {rows}"
        + (f" GROUP BY {grouping} ORDER BY {grouping}" if by else "")).df()
    parts = []
    for name in sorted(names):
        kept = found[found[f"n_{name}"] > 0]
        part = kept[list(by)].assign(value=name, n=kept[f"n_{name}"].astype(np.int64))
        values = np.array(kept[f"q_{name}"].tolist(), dtype=float).reshape(len(kept), len(q))
        parts.append(part.assign(**{f"q{position}": values[:, position] for position in range(len(q))}))
    # each group's rows together, in the groups' order, its names sorted (as `quantiles` orders them)
    return pd.concat(parts).sort_index(kind="stable").reset_index(drop=True)


def with_quantiles(table: pd.DataFrame, rows: Rows, by: Sequence[str], values: Mapping[str, str],
                   q: Sequence[float], names: Mapping[str, Sequence[str]], *, where: str = "TRUE") -> pd.DataFrame:
    """`table` (one row per group of `by`) with the `quantiles` `q` of `values` over `rows` as columns: for each
    value name, one column per quantile under `names[name]`; NaN for a group without values."""
    if table.empty or not values:
        return table.assign(**{column: np.nan for columns in names.values() for column in columns})
    found = quantiles(relation(rows), by, values, q, where=where)
    wide = found[list(by)].drop_duplicates().reset_index(drop=True) if by else pd.DataFrame(index=[0])
    for name in values:
        part = found.loc[found["value"] == name, [*by, *(f"q{i}" for i in range(len(q)))]]
        part = part.rename(columns=dict(zip((f"q{i}" for i in range(len(q))), names[name])))
        wide = wide.merge(part, on=list(by), how="left") if by else wide.join(part.reset_index(drop=True))
    return table.merge(wide, on=list(by), how="left") if by else table.join(wide)


@dataclass(frozen=True)
class Sample:
    """A seeded random choice of at most `rows` requests of each group of `by` (enough for a fit)."""

    by: tuple[str, ...]
    rows: int
    seed: int = 0


def _sampled(connection: duckdb.DuckDBPyConnection, query: str, sample: Sample) -> str:
    """`query` cut to the `sample.rows` rows of each group with the smallest hash of (run, request, seed):
    the same rows on every read.  Ranking every row of a large table by its hash takes gigabytes, so
    each group is first thinned to the rows whose hash falls below a threshold that keeps some 10% more
    than `rows` of it (short by over ten standard deviations before it could miss one), and only
    those are ranked."""
    keys = ", ".join(map(quoted, sample.by)) or "NULL"
    rank = f"hash(_run, request_id, {int(sample.seed)})"
    counts = connection.sql(f"SELECT {keys}, count(*) AS _rows FROM ({query}) GROUP BY ALL").to_arrow_table()
    wanted = 1.1 * sample.rows + 10 * np.sqrt(sample.rows)
    share = np.minimum(1.0, wanted / np.maximum(counts["_rows"].to_numpy(), 1))
    limits = counts.drop_columns(["_rows"]).append_column(
        "_below", pa.array([min(int(s * 2.0**64), 2**64 - 1) for s in share], pa.uint64()))
    name = f"sample_limits_{next(_NAMES)}"
    connection.register(name, limits)
    on = " AND ".join(f"r.{quoted(k)} IS NOT DISTINCT FROM l.{quoted(k)}" for k in sample.by) or "TRUE"
    return (f"SELECT r.* FROM ({query}) r JOIN {name} l ON {on} WHERE {rank} <= l._below "
            f"QUALIFY row_number() OVER (PARTITION BY {', '.join(f'r.{quoted(k)}' for k in sample.by) or 'NULL'} "
            f"ORDER BY {rank}, r._run, r.request_id) <= {int(sample.rows)}")


def _parquet_schema(path: Path) -> pa.Schema:
    from toolkit import store

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise store.damaged(path, exc) from exc
    missing = [name for name in REQUEST_COLUMNS if name not in schema.names and name not in LATER_COLUMNS]
    if missing:
        raise RunDirError(f"{path}: requests table is missing column(s) {', '.join(missing)}")
    return schema


def _parquet_source(path: Path, schema: pa.Schema, needed: list[str], run: int, number: int,
                    several: bool) -> str:
    text = str(path).replace("'", "''")
    columns = [quoted(name) if name in schema.names else f"CAST(NULL AS {sql_type(name)}) AS {quoted(name)}"
               for name in needed]
    sequence = "sequence" if several else "CAST(NULL AS BIGINT)"
    return (f"SELECT {', '.join(columns)}, {sequence} AS _sequence, {run} AS _run, {number} AS _file, "
            f"file_row_number AS _row FROM read_parquet('{text}', file_row_number = true)")


def _tagged(table: pa.Table, needed: list[str], run: int, number: int, several: bool) -> pa.Table:
    """`needed` columns of an in-memory table with the keys `records` orders by."""
    rows = table.num_rows
    table = table.select(needed)
    sequence = table["sequence"] if several else pa.nulls(rows, pa.int64())
    return (table.append_column("_sequence", sequence)
            .append_column("_run", pa.array([run] * rows, pa.int32()))
            .append_column("_file", pa.array([number] * rows, pa.int32()))
            .append_column("_row", pa.array(range(rows), pa.int64())))


def _manifest_settings(dirs: Sequence[Path]) -> pd.DataFrame:
    """Each run dir's configs' settings from its manifest (`_run`, `config_id`, setting columns)."""
    from toolkit import store

    rows = []
    for run, directory in enumerate(dirs):
        if not (directory / store.MANIFEST).exists():
            continue
        configs = (store.read_manifest(directory).get("config") or {}).get("configs") or []
        for entry in configs:
            if "config_id" in entry:
                rows.append({"_run": run, "config_id": entry["config_id"],
                             **{c: entry.get(c, entry.get(_OLD_SETTING_KEYS.get(c, c))) for c in SETTING_COLUMNS}})
    frame = pd.DataFrame(rows, columns=["_run", "config_id", *SETTING_COLUMNS])
    return frame.drop_duplicates(["_run", "config_id"], keep="last")
