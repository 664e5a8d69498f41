"""Which rows of a requests table count for what: graded, timed, answered by the model or the cache."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from toolkit.errors import ParameterError


def group_keys(by: str | Sequence[str]) -> list[str]:
    """A `by=` argument as a list of column names (one name or several)."""
    return [by] if isinstance(by, str) else list(by)


def floats(series: pd.Series) -> np.ndarray:
    """A column as float64 values, NaN where null or not a number."""
    return pd.to_numeric(series, errors="coerce").astype("Float64").to_numpy(dtype=float, na_value=np.nan)


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


def cache_hit_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows the response cache answered (`cache_hit` true); all False when the column is absent."""
    if "cache_hit" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["cache_hit"].astype("boolean").fillna(False).astype(bool)


def model_answered(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the model itself answered: response-cache hits left out (their time is a lookup's)."""
    return frame.loc[~cache_hit_mask(frame)]


def cache_hits(frame: pd.DataFrame, *, id_col: str = "config_id") -> pd.DataFrame:
    """Per config: requests, hits (answered by the response cache) and hit_rate, in id order."""
    hits = cache_hit_mask(frame)
    table = hits.groupby(frame[id_col], sort=True).agg(["size", "sum"]).reset_index()
    table.columns = [id_col, "requests", "hits"]
    table["hits"] = table["hits"].astype(int)
    table["hit_rate"] = table["hits"] / table["requests"]
    return table


def run_overview(frame: pd.DataFrame, manifest: dict | None = None) -> pd.DataFrame:
    """One row describing a run: id, requests, ok, errors, graded, timed, configs, models, datasets, span."""
    ids = frame["run_id"].dropna().unique()
    run_id = (manifest or {}).get("run_id") or (ids[0] if len(ids) else None)
    ok = frame["status"].eq("ok").fillna(False).astype(bool)
    started = frame["started_at"].dropna()
    return pd.DataFrame([{
        "run_id": run_id, "requests": len(frame), "ok": int(ok.sum()), "errors": int((~ok).sum()),
        "graded": int(graded_mask(frame).sum()), "timed": int(timed_mask(frame).sum()),
        "configs": frame["config_id"].nunique(), "models": ", ".join(sorted_values(frame["model"])),
        "datasets": ", ".join(sorted_values(frame["dataset"])),
        "first_request": started.min() if len(started) else pd.NaT,
        "last_request": started.max() if len(started) else pd.NaT,
    }])


def select_dataset(frame: pd.DataFrame, dataset: str | None) -> pd.DataFrame:
    """Rows of one dataset (all rows for None); an unknown name is a `ParameterError` listing the known ones."""
    if dataset is None:
        return frame
    selected = frame[frame["dataset"].eq(dataset).fillna(False).astype(bool)]
    if selected.empty:
        raise ParameterError(f"parameter dataset: {dataset!r} has no rows in this run; known: "
                             f"{', '.join(sorted_values(frame['dataset'])) or 'none'}")
    return selected


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
