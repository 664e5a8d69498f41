"""Import ray-project/llmperf per-request results (`individual/<provider>_<size>.json`).

llmperf's `inter_token_latency_s` is end-to-end latency divided by output tokens (TTFT included),
not a gap between tokens, and its per-request throughput does not match its own counts; neither is
copied.  llmperf keeps no per-token arrival times, so `tbt_s` stays null: the stored TTFT, e2e and
token count are enough to derive TPOT and output speed by the DESIGN definitions.
"""
from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from toolkit.errors import DataFileError
from toolkit.importers._common import build_manifest, finish, numeric, read_json, row_error

KIND = "llmperf"
VERSION = "1"
DEFAULT_CONCURRENCY = 5  # the llmperf-leaderboard setting (--num-concurrent-requests 5)
SHORT_OUTPUT_CODE = -100  # bedrock client's "Output too few tokens N": a completed, shorter answer

# Models of the llmperf-leaderboard runs (its README and summaries), for when no summary is beside.
LEADERBOARD_MODELS: dict[str, str] = {
    "anyscale_7b": "meta-llama/Llama-2-7b-chat-hf",
    "anyscale_13b": "meta-llama/Llama-2-13b-chat-hf",
    "anyscale_70b": "meta-llama/Llama-2-70b-chat-hf",
    "bedrock_13b": "meta.llama2-13b-chat-v1",
    "bedrock_70b": "meta.llama2-70b-chat-v1",
    "fireworks_7b": "accounts/fireworks/models/llama-v2-7b-chat",
    "fireworks_13b": "accounts/fireworks/models/llama-v2-13b-chat",
    "fireworks_70b": "accounts/fireworks/models/llama-v2-70b-chat",
    "lepton_7b": "llama2-7b",
    "lepton_13b": "llama2-13b",
    "lepton_70b": "llama2-70b",
    "together_7b": "together_ai/togethercomputer/llama-2-7b-chat",
    "together_13b": "together_ai/togethercomputer/llama-2-13b-chat",
    "together_70b": "together_ai/togethercomputer/llama-2-70b-chat",
}

NOTES = [
    "inter_token_latency_s (= e2e / output tokens, TTFT included) and "
    "request_output_throughput_token_per_s (inconsistent with llmperf's own counts) were not copied; "
    "derive TPOT and output speed from ttft_s, e2e_s and completion_tokens.",
    "tbt_s is null: llmperf stores no per-token arrival times, and none are invented.",
    "Token counts come from llmperf's client-side tokenizer: usage_source = estimated.",
    "Failed requests (error_code 429 or -1) have zeros in place of timings upstream: they are "
    "status error with null timings and null completion_tokens (429 -> http_status 429, "
    "error_type rate_limited; -1 -> error_type client_error).",
    "bedrock's error_code -100 ('Output too few tokens N') marks a request the provider completed "
    "with fewer tokens than asked. Other providers' short answers (e.g. 22 tokens in anyscale_70b) are "
    "not flagged, so these are kept as status ok with their real timings and token counts: a "
    "latency analyst compares per-token metrics, which stay right. llmperf's summary counts them as "
    "errors; their ids are in files[].short_output_request_ids to reproduce it.",
    "llmperf records no send time and no send order: started_at and sequence are null, and "
    "request_id is <file stem>-<array index>.",
]


def import_llmperf(path: str | os.PathLike, *, run_id: str | None = None,
                   concurrency: int | None = None, models: Mapping[str, str] | None = None,
                   summary_dir: str | os.PathLike | None = None,
                   dataset: str = "llmperf") -> tuple[pd.DataFrame, dict]:
    """Read llmperf per-request results into a requests table.

    `path` is one `individual/*.json` file, the `individual/` folder, or the folder holding
    `individual/` and `summary/` (llmperf-leaderboard's `raw_data/`).  Model, concurrency,
    max_tokens and endpoint host come from the matching summary file (`../summary/<same name>` or
    `summary_dir`), else from `models` / LEADERBOARD_MODELS and `concurrency` (default 5, the
    leaderboard's setting).  Returns (table, manifest).
    """
    path = Path(path)
    files = _request_files(path)
    known = {**LEADERBOARD_MODELS, **(models or {})}
    frames, described = [], []
    for file in files:
        summary_path = _summary_path(file, summary_dir)
        summary = _read_summary(summary_path) if summary_path else {}
        frame, short_ids = _read_file(file, summary, known, concurrency, dataset)
        frames.append(frame)
        described.append(_describe(file, summary_path, summary, frame, concurrency, short_ids))
    run_id = run_id or f"{KIND}-{path.stem}"
    table = pd.concat(frames, ignore_index=True)
    table["run_id"] = run_id
    table = finish(table, path=path)
    manifest = build_manifest(kind=KIND, version=VERSION, run_id=run_id, sources=files,
                              table=table, notes=NOTES, files=described)
    return table, manifest


def _request_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    # A clone of llmperf-leaderboard has raw_data/{individual,summary}/: accept its parent folder too.
    folder = path / "individual" if (path / "individual").is_dir() else path
    files = sorted(folder.glob("*.json"))
    if not files:
        raise DataFileError(folder, "no *.json files in this folder")
    return files


def _summary_path(file: Path, summary_dir: str | os.PathLike | None) -> Path | None:
    folder = Path(summary_dir) if summary_dir is not None else file.parent.parent / "summary"
    candidate = folder / file.name
    return candidate if candidate.is_file() and candidate.resolve() != file.resolve() else None


def _read_summary(path: Path) -> dict:
    summary = read_json(path)
    if not isinstance(summary, dict):
        raise DataFileError(path, "an llmperf summary must be one JSON object")
    return summary


def _read_file(file: Path, summary: dict, known: Mapping[str, str], concurrency: int | None,
               dataset: str) -> tuple[pd.DataFrame, list[str]]:
    records = read_json(file)
    if not isinstance(records, list):
        raise DataFileError(file, "an llmperf individual file must be a JSON array of request objects")
    if not records:
        raise DataFileError(file, "the array holds no requests")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise row_error(file, index, None, "is not a JSON object", unit="record")
        if "error_code" not in record:
            raise row_error(file, index, "error_code", "is missing", unit="record")
    raw = pd.DataFrame.from_records(records)
    code = numeric(raw["error_code"], file, "error_code", unit="record")
    failed = (code.notna() & (code != SHORT_OUTPUT_CODE)).to_numpy()
    completed = ~failed

    def field(name: str, *, when: np.ndarray) -> pd.Series:
        values = raw[name] if name in raw.columns else pd.Series([None] * len(raw))
        return numeric(values, file, name, required=when, unit="record").where(when)

    everywhere = np.ones(len(raw), dtype=bool)
    provider = file.stem.rsplit("_", 1)[0]
    model = summary.get("model") or known.get(file.stem) or file.stem
    frame = pd.DataFrame({
        "request_id": [f"{file.stem}-{index:04d}" for index in range(len(raw))],
        "config_id": f"{provider}/{model}",
        "model": model,
        "dataset": dataset,
        "endpoint": _host(summary.get("api")) or provider,
        "batch": False,
        "cache_hit": False,
        "ttft_s": field("ttft_s", when=completed),
        "e2e_s": field("end_to_end_latency_s", when=completed),
        "prompt_tokens": field("number_input_tokens", when=everywhere).round().astype("Int64"),
        "completion_tokens": field("number_output_tokens", when=completed).round().astype("Int64"),
        "usage_source": "estimated",
        "status": np.where(failed, "error", "ok"),
        "error_type": [_error_type(c) if f else None for c, f in zip(code, failed)],
        "http_status": [int(c) if f and 100 <= c < 600 else None for c, f in zip(code, failed)],
        "attempts": 1,  # llmperf does not retry: a refused request is recorded as failed
        "concurrency": concurrency or summary.get("num_concurrent_requests") or DEFAULT_CONCURRENCY,
        "max_tokens": _max_tokens(summary),
    })
    if "GEN_TEXT" in raw.columns:
        frame["output_text"] = raw["GEN_TEXT"].where(raw["GEN_TEXT"].notna(), None)
    return frame, frame.loc[(code == SHORT_OUTPUT_CODE).to_numpy(), "request_id"].tolist()


def _error_type(code: float) -> str:
    if code == 429:
        return "rate_limited"
    if code == -1:
        return "client_error"
    return "http_error" if 100 <= code < 600 else f"llmperf_error_{int(code)}"


def _max_tokens(summary: dict) -> int | None:
    # llmperf asks for max_tokens = the sampled output length; fixed when its stddev is 0
    if summary.get("stddev_output_tokens") == 0 and summary.get("mean_output_tokens"):
        return int(summary["mean_output_tokens"])
    return None


def _host(api: object) -> str | None:
    return urlparse(api).hostname if isinstance(api, str) and api else None


def _describe(file: Path, summary_path: Path | None, summary: dict, frame: pd.DataFrame,
              concurrency: int | None, short_ids: list[str]) -> dict:
    stamp = summary.get("timestamp")
    source = ("option" if concurrency else "summary" if summary.get("num_concurrent_requests")
              else "default (leaderboard setting)")
    return {
        "file": str(file),
        "summary": str(summary_path) if summary_path else None,
        "config_id": frame["config_id"].iloc[0],
        "run_timestamp": dt.datetime.fromtimestamp(stamp, dt.timezone.utc).isoformat() if stamp else None,
        "concurrency": int(frame["concurrency"].iloc[0]),
        "concurrency_from": source,
        "n_requests": int(len(frame)),
        "error_types": dict(Counter(frame["error_type"].dropna())),
        # llmperf's own summary drops these; listing them lets anyone reproduce its numbers
        "short_output_request_ids": short_ids,
    }
