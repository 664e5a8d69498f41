"""OpenAI's Batch API: upload an input file and create a batch, poll it, download its output.

API keys are read from environment variables only (by the caller) and never logged or stored.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from toolkit.batch.files import read_batch_input, split_batch_input
from toolkit.errors import DataFileError, EndpointError

log = logging.getLogger("toolkit")

TERMINAL = ("completed", "failed", "expired", "cancelled")


def submit(client: openai.OpenAI, input_path: str | os.PathLike, *, endpoint: str | None = None,
           completion_window: str = "24h", metadata: Mapping[str, str] | None = None) -> str:
    """Upload `input_path` (purpose "batch") and create a batch; returns the batch id.

    `endpoint` defaults to the one url all lines share (an error if they mix urls or models).
    """
    lines = read_batch_input(input_path)
    groups = split_batch_input(lines)
    if len(groups) > 1:
        raise DataFileError(input_path, f"mixes {len(groups)} (url, model) pairs; one batch takes one of each "
                            "(`frontier batch build` writes one file per pair)", field="url")
    endpoint = endpoint or next(iter(groups))[0]
    with Path(input_path).open("rb") as handle:
        uploaded = client.files.create(file=handle, purpose="batch")
    extra = {"metadata": dict(metadata)} if metadata else {}
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=endpoint,
                                  completion_window=completion_window, **extra)
    log.info("submitted batch %s (%d requests, file %s)", batch.id, len(lines), uploaded.id)
    return batch.id


@dataclass(frozen=True)
class BatchProgress:
    """Where a batch stands: for a progress bar, `bar.total = total; bar.n = done`."""

    batch_id: str
    status: str
    done: int
    failed: int
    total: int


def wait(client: openai.OpenAI, batch_id: str, *, poll_s: float = 30.0,
         on_progress: Callable[[BatchProgress], None] | None = None, timeout_s: float | None = None,
         sleep: Callable[[float], None] = time.sleep) -> Any:
    """Poll the batch until it is completed, failed, expired or cancelled; returns the final Batch."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        batch = client.batches.retrieve(batch_id)
        counts = batch.request_counts
        if on_progress is not None:
            done = counts.completed + counts.failed if counts else 0
            on_progress(BatchProgress(batch.id, batch.status, done, counts.failed if counts else 0,
                                      counts.total if counts else 0))
        if batch.status in TERMINAL:
            return batch
        if deadline is not None and time.monotonic() >= deadline:
            raise EndpointError(f"batch {batch_id} still {batch.status} after {timeout_s:g} s; "
                                f"check later with `frontier batch status {batch_id}`")
        sleep(poll_s)


def download(client: openai.OpenAI, batch: Any) -> tuple[list[str], list[str]]:
    """The output lines and the error lines of a finished batch (empty when it has no such file)."""
    def lines(file_id: str | None) -> list[str]:
        return [] if not file_id else [t for t in client.files.content(file_id).text.splitlines() if t.strip()]

    return lines(batch.output_file_id), lines(batch.error_file_id)


def download_finished(client: openai.OpenAI, batch_id: str) -> tuple[Any, list[str], list[str]]:
    """The batch `batch_id` with its output and error lines; an EndpointError while it is still running."""
    batch = client.batches.retrieve(batch_id)
    if batch.status not in TERMINAL:
        raise EndpointError(f"batch {batch.id} is still {batch.status}; wait with "
                            f"`frontier batch status {batch.id} --wait`")
    return (batch, *download(client, batch))
