"""Import FrugalGPT per-query generations (`_id, answer, ref_answer, cost, model` per row).

This is the format of the 12-API generation CSVs of FrugalGPT's release 0.0.1 (per its notebooks);
no such file is in the shared data, so the importer follows that spec.  Correctness is FrugalGPT's
`em`: exact match after SQuAD-style normalisation.  The reported `cost` (USD) is not part of the
requests table (cost is derived from tokens there); `load_reported_costs` returns it for analyses
such as cascades that need a per-request cost.
"""
from __future__ import annotations

import os
import re
import string
from pathlib import Path

import pandas as pd

from toolkit.importers._common import (build_manifest, finish, numeric, read_table, require_columns,
                                       require_text)

KIND = "frugalgpt"
VERSION = "1"
REQUIRED = ("_id", "answer", "ref_answer", "cost", "model")
GRADER = "frugalgpt-em"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and English articles, collapse white space (FrugalGPT's `em`)."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(answer: str, reference: str) -> bool:
    return normalize_answer(answer) == normalize_answer(reference)


def import_frugalgpt(path: str | os.PathLike, *, dataset: str | None = None,
                     run_id: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a FrugalGPT per-query CSV (or Parquet) into a requests table, graded by exact match.

    `model` holds FrugalGPT's service name "<provider>/<model>": it becomes config_id, and the part
    after the provider becomes `model`.  `dataset` defaults to the file's stem.
    """
    path = Path(path)
    raw = _read(path)
    dataset = dataset or path.stem
    run_id = run_id or f"{KIND}-{dataset}"
    service = raw["model"]
    correct = [exact_match(a, r) for a, r in zip(raw["answer"], raw["ref_answer"])]
    frame = pd.DataFrame({
        "run_id": run_id,
        "request_id": dataset + "/" + service + "/" + raw["_id"],
        "config_id": service,
        "model": service.str.split("/", n=1).str[-1],
        "dataset": dataset,
        "item_id": raw["_id"],
        "repeat": 0,
        "endpoint": service.str.split("/", n=1).str[0],
        "batch": False,
        "cache_hit": False,
        "output_text": raw["answer"],
        "expected": raw["ref_answer"],
        "score": [float(c) for c in correct],
        "correct": correct,
        "grader": GRADER,
        "status": "ok",
    })
    table = finish(frame, path=path)
    costs = load_reported_costs(path, dataset=dataset, raw=raw)
    notes = [
        "correct = exact match after normalisation (lower case, no punctuation, no articles, "
        "collapsed white space), as FrugalGPT's em metric; an empty answer counts as wrong.",
        "endpoint = the provider part of FrugalGPT's service name; no host is recorded.",
        "Token counts and timings are not in this format: those columns are null.",
        "The reported USD cost per query is not stored in the requests table; use "
        "load_reported_costs(path) (means per config are in reported_usd_per_query).",
    ]
    manifest = build_manifest(
        kind=KIND, version=VERSION, run_id=run_id, sources=[path], table=table, notes=notes,
        reported_usd_per_query=costs.groupby("config_id")["usd"].mean().to_dict())
    return table, manifest


def load_reported_costs(path: str | os.PathLike, *, dataset: str | None = None,
                        raw: pd.DataFrame | None = None) -> pd.DataFrame:
    """The per-query USD cost FrugalGPT reported, keyed like the imported requests table.

    Columns: request_id, dataset, item_id, config_id, usd.
    """
    path = Path(path)
    raw = _read(path) if raw is None else raw
    dataset = dataset or path.stem
    return pd.DataFrame({
        "request_id": dataset + "/" + raw["model"] + "/" + raw["_id"],
        "dataset": dataset,
        "item_id": raw["_id"],
        "config_id": raw["model"],
        "usd": raw["cost"],
    })


def _read(path: Path) -> pd.DataFrame:
    raw = read_table(path)
    require_columns(raw, REQUIRED, path)
    for name in ("_id", "ref_answer", "model"):
        raw[name] = require_text(raw[name], path, name)
    raw["cost"] = numeric(raw["cost"], path, "cost", required=True)
    raw["answer"] = raw["answer"].fillna("").astype(str)
    return raw
