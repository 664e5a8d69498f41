"""Import AlpacaEval per-item judge preferences (`per_item.csv`: annotator x model x instruction).

`preference - 1` is the judge's probability that the model beat the reference output, so it is the
item's score; an item counts as correct when that probability is above one half (a draw, 1.5, is not
a win).  AlpacaEval keeps no tokens, timings or generator prices: completion tokens are estimated
from the output's character count, and cost is left to the pricing module.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from toolkit.errors import DataFileError
from toolkit.importers._common import (CHARS_PER_TOKEN, build_manifest, estimate_tokens, finish, numeric,
                                       read_table, require_columns, require_text, row_error)

KIND = "alpacaeval"
VERSION = "1"
ENDPOINT = "alpacaeval"  # no endpoint host is recorded upstream
REQUIRED = ("annotator", "model", "instruction_hash", "preference", "model_output_chars")
# Short judge names for the dataset column; the two judges use different references, never mix them.
ANNOTATOR_NAMES = {
    "alpaca_eval_gpt4": "gpt4",
    "weighted_alpaca_eval_gpt4_turbo": "gpt4-turbo-weighted",
}


def import_alpacaeval(path: str | os.PathLike, *, run_id: str | None = None,
                      instructions: str | os.PathLike | None = None) -> tuple[pd.DataFrame, dict]:
    """Read `per_item.csv` into a requests table: one row per (annotator, model, instruction).

    dataset = "alpacaeval-<judge>", item_id = instruction_hash, config_id = model, score = win
    probability, correct = score > 0.5.  Prompt tokens are estimated only when `instructions.csv`
    (given, or beside the file) supplies instruction lengths.  Returns (table, manifest).
    """
    path = Path(path)
    raw = read_table(path)
    require_columns(raw, REQUIRED, path)
    for name in ("annotator", "model", "instruction_hash"):
        require_text(raw[name], path, name)
    preference = numeric(raw["preference"], path, "preference")
    outside = preference.notna() & ~preference.between(1.0, 2.0)
    if outside.any():
        row = int(outside.to_numpy().nonzero()[0][0])
        raise row_error(path, row, "preference", f"must lie in [1, 2], got {preference.iloc[row]}")
    output_chars = numeric(raw["model_output_chars"], path, "model_output_chars", required=True)
    score = preference - 1.0
    dataset = "alpacaeval-" + raw["annotator"].map(lambda name: ANNOTATOR_NAMES.get(name, name))
    run_id = run_id or KIND
    frame = pd.DataFrame({
        "run_id": run_id,
        "request_id": dataset + "/" + raw["model"] + "/" + raw["instruction_hash"],
        "config_id": raw["model"],
        "model": raw["model"],
        "dataset": dataset,
        "item_id": raw["instruction_hash"],
        "repeat": 0,
        "endpoint": ENDPOINT,
        "batch": False,
        "cache_hit": False,
        "completion_tokens": estimate_tokens(output_chars),
        "usage_source": "estimated",
        "score": score,
        "correct": (score > 0.5).astype("boolean").where(score.notna()),
        "grader": raw["annotator"],
        "status": "ok",
    })
    notes = [
        "score = preference - 1 (the judge's win probability against the reference); "
        "correct = score > 0.5, so a draw (AE1 preference 1.5) is not correct.",
        f"completion_tokens = model_output_chars / {CHARS_PER_TOKEN} (an estimate, usage_source "
        "estimated): AlpacaEval gives no token counts.",
        "No timings, no generator prices: cost must come from a price table; annotator_price_usd is "
        "the judge's cost and was not imported.",
        "dataset names the judge: the two judges compare with different references "
        "(text_davinci_003 vs gpt4_1106_preview), so their scores are on different scales.",
        "The AlpacaEval subset (helpful_base, koala, oasst, selfinstruct, vicuna) is not a requests "
        "column: join instructions.csv on item_id = instruction_hash.",
        f"{int(score.isna().sum())} rows have no parseable judge verdict: status ok (the model "
        "answered), score and correct null.",
    ]
    sources = [path]
    instructions_path = Path(instructions) if instructions else path.parent / "instructions.csv"
    if instructions_path.is_file():
        frame["prompt_tokens"] = _prompt_tokens(raw, instructions_path)
        sources.append(instructions_path)
        notes.append(f"prompt_tokens = instruction_chars / {CHARS_PER_TOKEN} from "
                     f"{instructions_path.name}: a lower bound, the judge/generator template adds more.")
    else:
        notes.append("prompt_tokens null: no instructions.csv beside the file.")
    table = finish(frame, path=path)
    references = (raw.groupby("annotator")["reference_model"].first().to_dict()
                  if "reference_model" in raw.columns else {})
    manifest = build_manifest(kind=KIND, version=VERSION, run_id=run_id, sources=sources, table=table,
                              notes=notes, reference_models=references,
                              licence="AlpacaEval data: CC BY-NC 4.0 (non-commercial)")
    return table, manifest


def _prompt_tokens(raw: pd.DataFrame, path: Path) -> pd.Series:
    table = read_table(path)
    require_columns(table, ("instruction_hash", "instruction_chars"), path)
    chars = numeric(table["instruction_chars"], path, "instruction_chars", required=True)
    lengths = pd.Series(chars.to_numpy(), index=table["instruction_hash"].astype(str))
    if lengths.index.duplicated().any():
        duplicate = lengths.index[lengths.index.duplicated()][0]
        raise DataFileError(path, f"instruction_hash {duplicate!r} appears twice", field="instruction_hash")
    return estimate_tokens(raw["instruction_hash"].map(lengths))
