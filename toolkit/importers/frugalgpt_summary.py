"""Published FrugalGPT operating points (`summary_<DATASET>_e<N>_full_<YEAR>.csv`), to draw beside a frontier.

These are aggregates, not requests: one row per single model and one per FrugalGPT cascade budget,
with test-split accuracy and mean USD per query.  The older `*_perf_seed_*` files share the column
names but mix units (total vs per-query cost, placeholder accuracies), so they are refused.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from toolkit.errors import DataFileError, ParameterError
from toolkit.importers._common import numeric, read_table, require_columns, require_text
from toolkit.params import not_found
from toolkit.resources import candidates

REQUIRED = ("Test_acc", "Test_cost", "Test_size", "Budget", "Method", "Provider")
NAME = re.compile(r"summary_(?P<dataset>[A-Za-z0-9]+)_e\d+_full_\d{4}\.csv")
CASCADE = "FrugalGPT"


def load_reference_points(path: str | os.PathLike, *, dataset: str | None = None) -> pd.DataFrame:
    """Published points: dataset, method, provider, accuracy, usd_per_query, usd_per_1k, budget, n, kind.

    accuracy and cost are FrugalGPT's test split (exact match; mean USD per query); `budget` is the
    per-query budget given to the cascade optimiser (null for single models); kind = "published".
    """
    path = Path(path)
    match = NAME.fullmatch(path.name)
    if dataset is None and match is None:
        raise DataFileError(path, "not a summary_<DATASET>_e<N>_full_<YEAR>.csv file; the older "
                                  "*_perf_seed_* files mix cost units and are not supported "
                                  "(pass dataset= to read a renamed summary file)")
    raw = read_table(path)
    require_columns(raw, REQUIRED, path)
    method = require_text(raw["Method"], path, "Method")
    provider = require_text(raw["Provider"], path, "Provider")
    cost = numeric(raw["Test_cost"], path, "Test_cost", required=True)
    budget = numeric(raw["Budget"], path, "Budget", required=True)
    is_cascade = method == CASCADE
    return pd.DataFrame({
        "dataset": dataset or match["dataset"],
        "method": method,
        "provider": provider,
        "accuracy": numeric(raw["Test_acc"], path, "Test_acc", required=True),
        "usd_per_query": cost,
        "usd_per_1k": cost * 1000.0,
        "budget": budget.where(is_cascade),  # single-model rows carry a placeholder 10
        "n": numeric(raw["Test_size"], path, "Test_size", required=True).round().astype("Int64"),
        "kind": "published",
        "source": f"FrugalGPT {path.name}",
    })


def reference_points(path: str | None, *, name: str = "reference_points") -> pd.DataFrame | None:
    """Published FrugalGPT points (`importers.load_reference_points`) for a frontier figure, with a
    `label` column (the model; empty for cascade points); None for None.  A relative path is read from the
    cwd (a path under `data/`, else from the package's data, like a run dir: `resources.candidates`)."""
    if path is None:
        return None
    tried = candidates(path)
    found = next((p for p in tried if p.is_file()), None)
    if found is None:
        raise ParameterError(f"parameter {name}: file {path!r} not found ({not_found(tried)})")
    points = load_reference_points(found)
    # the 20 cascade budgets would bury the figure in labels: only the single models are named
    return points.assign(label=points["method"].where(points["method"] != "FrugalGPT", ""))
