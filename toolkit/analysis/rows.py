"""Which rows of a requests table count for what: graded, timed, answered by the model or the cache."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd

from toolkit import warehouse
from toolkit.errors import ParameterError
from toolkit.warehouse import Rows


T = TypeVar("T")


def each_group(work: Iterable[Callable[[], T]]) -> list[T]:
    """Each group's result of `work` (one callable per group), on a thread per core, in order: numpy's array
    work and random draws release the GIL.  A group's work must not share a random generator with another's,
    so that the results are those of a loop."""
    tasks = list(work)
    if len(tasks) < 2:  # a thread of its own would only add its start
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return list(pool.map(lambda task: task(), tasks))


def group_keys(by: str | Sequence[str]) -> list[str]:
    """A `by=` argument as a list of column names (one name or several)."""
    return [by] if isinstance(by, str) else list(by)


def quantile_name(q: float) -> str:
    """The column prefix of a quantile: 0.95 -> "p95"."""
    return f"p{q * 100:g}"


def graded_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows that carry a grade: status ok and `correct` not null."""
    return frame["status"].eq("ok").fillna(False).astype(bool) & frame["correct"].notna()


def timed_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows that carry timings: status ok with both `ttft_s` and `e2e_s`."""
    ok = frame["status"].eq("ok").fillna(False).astype(bool)
    return ok & frame["ttft_s"].notna() & frame["e2e_s"].notna()


def timed_sql(source: duckdb.DuckDBPyRelation) -> str:
    """`timed_mask` in SQL over `source`: status ok with both `ttft_s` and `e2e_s` (NaN counts as missing)."""
    return (f"coalesce({warehouse.text(source, 'status')} = 'ok', false) AND {warehouse.number(source, 'ttft_s')} "
            f"IS NOT NULL AND {warehouse.number(source, 'e2e_s')} IS NOT NULL")


def cache_hit_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows the response cache answered (`cache_hit` true); all False when the column is absent."""
    if "cache_hit" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["cache_hit"].astype("boolean").fillna(False).astype(bool)


def model_answered(rows: Rows) -> Rows:
    """The rows the model itself answered: response-cache hits left out (their time is a lookup's); a
    DataFrame's rows, or a relation over a relation."""
    if isinstance(rows, pd.DataFrame):
        return rows.loc[~cache_hit_mask(rows)]
    return warehouse.over(rows, f"SELECT * FROM {{rows}} WHERE NOT {warehouse.flag(rows, 'cache_hit')}")


def cache_hits(rows: Rows, *, id_col: str = "config_id") -> pd.DataFrame:
    """Per config: requests, hits (answered by the response cache) and hit_rate, in id order (counted in DuckDB)."""
    source = warehouse.relation(rows)
    key = warehouse.text(source, id_col)
    table = warehouse.over(source, f"""
        SELECT {key} AS {warehouse.quoted(id_col)}, count(*) AS requests,
               count(*) FILTER (WHERE {warehouse.flag(source, 'cache_hit')}) AS hits
        FROM {{rows}} WHERE {key} IS NOT NULL GROUP BY ALL ORDER BY ALL""").df()
    table = table.astype({"requests": np.int64, "hits": np.int64})
    table["hit_rate"] = table["hits"] / table["requests"]
    return table


def run_overview(rows: Rows, manifest: dict | None = None) -> pd.DataFrame:
    """One row describing a run: id, requests, ok, errors, graded, timed, configs, models, datasets, span
    (counted in DuckDB)."""
    source = warehouse.relation(rows)
    status, model, dataset = (warehouse.text(source, c) for c in ("status", "model", "dataset"))
    ok = f"coalesce({status} = 'ok', false)"
    found = warehouse.over(source, f"""
        SELECT count(*), count(*) FILTER (WHERE {ok}),
               count(*) FILTER (WHERE {ok} AND correct IS NOT NULL),
               count(*) FILTER (WHERE {timed_sql(source)}),
               count(DISTINCT config_id), list(DISTINCT {model}), list(DISTINCT {dataset}),
               min(started_at), max(started_at), min({warehouse.text(source, 'run_id')})
        FROM {{rows}}""").fetchall()[0]
    requests, ok_count, graded, timed, configs, models, datasets, first, last, some_run = found
    return pd.DataFrame([{
        "run_id": (manifest or {}).get("run_id") or some_run, "requests": requests, "ok": ok_count,
        "errors": requests - ok_count, "graded": graded, "timed": timed, "configs": configs,
        "models": ", ".join(sorted_values(models or [])), "datasets": ", ".join(sorted_values(datasets or [])),
        "first_request": pd.NaT if first is None else pd.Timestamp(first),
        "last_request": pd.NaT if last is None else pd.Timestamp(last),
    }])


def select_dataset(rows: Rows, dataset: str | None) -> Rows:
    """Rows of one dataset (all rows for None); an unknown name is a `ParameterError` listing the known ones."""
    if dataset is None:
        return rows
    source = warehouse.relation(rows)
    value = warehouse.text(source, "dataset")
    selected = warehouse.over(source, f"SELECT * FROM {{rows}} WHERE {value} = {warehouse.literal(dataset)}")
    if not warehouse.over(selected, "SELECT 1 FROM {rows} LIMIT 1").fetchall():
        raise ParameterError(f"parameter dataset: {dataset!r} has no rows in this run; known: "
                             f"{', '.join(warehouse.distinct_texts(source, 'dataset')) or 'none'}")
    return selected


def distinct(rows: Rows, column: str) -> list[str]:
    """The values `column` takes (nulls left out), as sorted text (found in DuckDB)."""
    return warehouse.distinct_texts(warehouse.relation(rows), column)


def sorted_values(values: Sequence[object] | pd.Series) -> list[str]:
    return sorted({str(v) for v in pd.Series(values).dropna().unique()})


def per_distinct(values: pd.Series, function: Callable[[object], object]) -> pd.Series:
    """`values.map(function)` with one call per distinct value (a million rows hold a few dozen; a null
    is a value too); a string column stays one, and a categorical one whose values map to text stays a
    categorical, of the mapped texts in sorted order."""
    codes, distinct = pd.factorize(values, use_na_sentinel=False)
    mapped = np.empty(len(distinct), dtype=object)
    mapped[:] = [function(v) for v in distinct]
    if isinstance(values.dtype, pd.CategoricalDtype) and all(isinstance(m, str) or m is None or m is pd.NA
                                                             or (isinstance(m, float) and np.isnan(m)) for m in mapped):
        texts = sorted({m for m in mapped if isinstance(m, str)})
        position = {text: number for number, text in enumerate(texts)}
        new_codes = np.array([position.get(m, -1) if isinstance(m, str) else -1 for m in mapped], dtype=np.int32)
        return pd.Series(pd.Categorical.from_codes(new_codes[codes], categories=pd.Index(texts, dtype="str")),
                         index=values.index)
    out = pd.Series(mapped[codes], index=values.index)
    return out.astype(values.dtype) if isinstance(values.dtype, pd.StringDtype) else out
