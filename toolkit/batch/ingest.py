"""Batch output and error lines joined to the grid that built the batch, written as a run directory.

The lines are read by the openai_batch importer (the one reader of that format) and each row is
built by `records.request_record`, as the collector builds its own, so a batch row compares item by
item and column by column with the same grid collected online.  Batch rows carry `batch = True`
and no timings: a batch has no per-request latency, only the turnaround of the whole batch
(created -> completed), which the manifest records.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from toolkit import __version__
from toolkit.collect import describe_config
from toolkit.config import CollectConfig, EndpointConfig
from toolkit.config_file import load_config
from toolkit.endpoints import OPENAI_BASE_URL
from toolkit.errors import DataFileError, RunDirError
from toolkit.importers.openai_batch import read_batch_lines
from toolkit.records import request_record
from toolkit.runner import plan
from toolkit.store import MANIFEST, load_run, save_run

log = logging.getLogger("toolkit")


def ingest(output_lines: Iterable[str], error_lines: Iterable[str], config: CollectConfig | str | Path,
           run_dir: str | os.PathLike, *, items_per_dataset: int | None = None, batch: Any = None,
           endpoint: str | None = None, run_id: str | None = None) -> pd.DataFrame:
    """Write a run dir from Batch output and error lines, joined to `config`'s plan by custom_id.

    Rows get the plan's configuration, dataset, item, repeat and expected answer, are graded with
    the dataset's grader, and carry batch = True with no timings.  `batch` (an openai Batch or its
    dict) puts the turnaround into the manifest.  A custom_id the plan does not know is a
    DataFileError; planned requests absent from both files are counted in the manifest.
    """
    if not isinstance(config, CollectConfig):
        config = load_config(config)
    run_dir = Path(run_dir)
    if (run_dir / MANIFEST).exists():
        raise RunDirError(f"{run_dir}: already a run directory; ingest into a new one")
    lines = read_batch_lines((output_lines, "batch output"), (error_lines, "batch errors"))
    planned = plan(config, items_per_dataset=items_per_dataset)
    by_id = {p.request_id: (sequence, p) for sequence, p in enumerate(planned)}
    info = batch_info(batch)
    created = None if info.get("created_at") is None else dt.datetime.fromtimestamp(info["created_at"], dt.UTC)
    run_id = run_id or run_dir.name
    records = []
    for line in lines:
        if line.custom_id not in by_id:
            raise DataFileError(line.source, f"custom_id {line.custom_id!r} is not a request of config "
                                f"{config.name!r} ({config.path}) with items_per_dataset="
                                f"{items_per_dataset or config.items_per_dataset}", line=line.line, field="custom_id")
        sequence, p = by_id[line.custom_id]
        # a failed line has no body to date it: it takes the batch's creation time
        records.append(request_record(p, line.outcome, run_id=run_id, sequence=sequence,
                                      endpoint=endpoint or host_of(p.config.endpoint),
                                      started_at=line.created or created, batch=True))
    frame = pd.DataFrame([dataclasses.asdict(r) for r in sorted(records, key=lambda r: r.sequence)])
    missing = len(by_id) - len(frame)
    if missing:
        log.warning("%d planned requests are in neither the batch output nor the error file", missing)
    manifest = {
        "run_id": run_id, "source": "batch", "toolkit_version": __version__,
        "config": describe_config(config, {}), "planned_requests": len(planned),
        "requests": len(frame), "errors": int((frame["status"] != "ok").sum()), "missing_requests": missing,
        "batch": info, "ingested_at": dt.datetime.now(dt.UTC).isoformat(), "status": "complete",
    }
    save_run(run_dir, frame, manifest)
    return load_run(run_dir)


def batch_info(batch: Any) -> dict:
    """What the manifest keeps of an openai Batch (or its dict): ids, times, counts and the turnaround."""
    info = batch.model_dump() if hasattr(batch, "model_dump") else dict(batch or {})
    keep = ("id", "status", "endpoint", "input_file_id", "output_file_id", "error_file_id", "created_at",
            "in_progress_at", "completed_at", "failed_at", "expired_at", "request_counts", "host")
    out = {k: info.get(k) for k in keep if info.get(k) is not None}
    if out.get("created_at") is not None and out.get("completed_at") is not None:
        out["turnaround_s"] = float(out["completed_at"] - out["created_at"])
    return out


def host_of(endpoint: EndpointConfig) -> str:
    """The host a config's endpoint names (never a key), as the rows' `endpoint` column records it."""
    if endpoint.base_url:
        return urlsplit(endpoint.base_url).netloc.rpartition("@")[2]
    return "embedded" if endpoint.kind == "embedded" else urlsplit(OPENAI_BASE_URL).netloc
