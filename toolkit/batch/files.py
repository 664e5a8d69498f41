"""Batch input files: a config grid as OpenAI Batch input lines, written and read back as JSONL.

Each line is the request the collector would send for one planned request (without `stream`), with
`custom_id` = the collector's `request_id`, so every answer joins back to its plan.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from toolkit.config import CollectConfig
from toolkit.errors import DataFileError
from toolkit.runner import plan, request_for

URLS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


def build_batch_input(config: CollectConfig, *, items_per_dataset: int | None = None) -> list[dict]:
    """One Batch input line per planned request: custom_id = request_id, POST, url, body (no stream)."""
    lines = []
    for planned in plan(config, items_per_dataset=items_per_dataset):
        request = request_for(planned)
        lines.append({"custom_id": planned.request_id, "method": "POST", "url": URLS[request.api],
                      "body": request.body()})
    return lines


def split_batch_input(lines: Iterable[dict]) -> dict[tuple[str, str], list[dict]]:
    """Lines grouped by (url, model): an OpenAI batch takes one endpoint and one model per file."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for line in lines:
        groups.setdefault((line["url"], line["body"]["model"]), []).append(line)
    return groups


def group_path(path: str | os.PathLike, url: str, model: str) -> Path:
    """Where the (url, model) group of a grid that needs several batch files goes, beside `path`:
    `in.jsonl` -> `in.chat.<model>.jsonl` (the model made safe for a file name)."""
    path = Path(path)
    kind = "chat" if url == URLS["chat"] else "completions"
    return path.with_name(f"{path.stem}.{kind}.{re.sub(r'[^A-Za-z0-9._-]', '_', model)}{path.suffix}")


def write_jsonl(lines: Iterable[dict], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def read_batch_input(path: str | os.PathLike) -> list[dict]:
    """Batch input lines, checked as OpenAI validates them (unique custom_id, POST, known url, body)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "no such file")
    lines, seen = [], set()
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFileError(path, f"not valid JSON ({exc.msg})", line=number) from exc
        for name, ok in (("custom_id", isinstance(line.get("custom_id"), str) and line["custom_id"]),
                         ("method", line.get("method") == "POST"),
                         ("url", line.get("url") in URLS.values()),
                         ("body", isinstance(line.get("body"), dict) and "model" in line["body"])):
            if not ok:
                raise DataFileError(path, f"invalid value {line.get(name)!r}", line=number, field=name)
        if line["custom_id"] in seen:
            raise DataFileError(path, f"duplicate custom_id {line['custom_id']!r}", line=number, field="custom_id")
        seen.add(line["custom_id"])
        lines.append(line)
    if not lines:
        raise DataFileError(path, "the file is empty")
    return lines
