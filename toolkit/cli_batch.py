"""`frontier batch build | submit | status | ingest | run`: the command line of toolkit.batch.

API keys are read from environment variables only and never logged or stored.
"""
from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai

from toolkit.batch import (BatchProgress, build_batch_input, download_finished, group_path, ingest,
                           read_batch_input, read_sidecar, run_batch_file, split_batch_input, submit, wait,
                           write_jsonl, write_sidecar)
from toolkit.config_file import load_config
from toolkit.endpoints import OPENAI_BASE_URL
from toolkit.errors import EndpointError


def _api_key(env: str | None, base_url: str | None) -> str:
    key = os.environ.get(env) if env else None
    if key:
        return key
    if base_url is None or base_url.rstrip("/") == OPENAI_BASE_URL:
        raise EndpointError(f"OpenAI needs a key: set the environment variable {env or 'OPENAI_API_KEY'}")
    return "none"  # local servers take any key, the client insists on one


def _client(args: argparse.Namespace) -> openai.OpenAI:
    return openai.OpenAI(base_url=args.base_url or OPENAI_BASE_URL, api_key=_api_key(args.api_key_env, args.base_url),
                         max_retries=3)


def _progress_bar() -> tuple[Any, Callable[[BatchProgress], None]]:
    from tqdm import tqdm

    bar = tqdm(unit="req", dynamic_ncols=True)

    def update(progress: BatchProgress) -> None:
        bar.total = progress.total or None
        bar.n = progress.done
        bar.set_postfix(status=progress.status, failed=progress.failed, refresh=False)
        bar.refresh()

    return bar, update


def _wait_with_bar(client: openai.OpenAI, batch_id: str, poll_s: float) -> Any:
    bar, update = _progress_bar()
    try:
        return wait(client, batch_id, poll_s=poll_s, on_progress=update)
    finally:
        bar.close()


def _build_command(args: argparse.Namespace) -> int:
    groups = split_batch_input(build_batch_input(load_config(args.config), items_per_dataset=args.limit))
    for (url, model), lines in groups.items():
        path = group_path(args.output, url, model) if len(groups) > 1 else args.output
        write_jsonl(lines, path)
        print(f"{path}: {len(lines)} requests to {url} ({model})")
    return 0


def _submit_command(args: argparse.Namespace) -> int:
    client = _client(args)
    batch_id = submit(client, args.input)
    print(batch_id)
    if args.wait:
        print(f"{batch_id}: {_wait_with_bar(client, batch_id, args.poll_s).status}")
    return 0


def _status_command(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.wait:
        batch = _wait_with_bar(client, args.batch_id, args.poll_s)
    else:
        batch = client.batches.retrieve(args.batch_id)
    counts = batch.request_counts
    done = f"{counts.completed} completed, {counts.failed} failed of {counts.total}" if counts else "no counts yet"
    print(f"{batch.id}: {batch.status} ({done}); output {batch.output_file_id or '-'}, "
          f"errors {batch.error_file_id or '-'}")
    return 0


def _ingest_command(args: argparse.Namespace) -> int:
    source = Path(args.source)
    if source.is_file():
        output = source.read_text(encoding="utf-8").splitlines()
        errors = Path(args.errors).read_text(encoding="utf-8").splitlines() if args.errors else []
        batch = read_sidecar(source)
        endpoint = args.endpoint or (batch or {}).get("host")
    else:
        client = _client(args)
        batch, output, errors = download_finished(client, args.source)
        endpoint = args.endpoint or urlsplit(str(client.base_url)).netloc
    table = ingest(output, errors, args.config, args.output, items_per_dataset=args.limit, batch=batch,
                   endpoint=endpoint)
    print(f"{args.output}: {len(table)} requests, {int((table['status'] != 'ok').sum())} errors")
    return 0


def _run_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from toolkit.local_server import EmbeddedServer

    lines = read_batch_input(args.input)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    with contextlib.ExitStack() as stack:
        base_url = args.base_url
        if base_url is None:  # no server named: run the batch on the embedded LLM
            # one slot per request in flight, so the server decodes them together instead of queueing
            server = EmbeddedServer(log_path=Path(args.output).with_suffix(".server.log"), slots=args.concurrency)
            base_url = stack.enter_context(server).base_url
        with tqdm(total=len(lines), unit="req", dynamic_ncols=True) as bar:
            summary = run_batch_file(args.input, args.output, base_url=base_url, api_key=key,
                                     concurrency=args.concurrency, error_path=args.errors,
                                     on_done=lambda _: bar.update())
    write_sidecar(args.output, summary)
    print(f"{args.output}: {summary.completed} ok, {summary.failed} failed in "
          f"{summary.completed_at - summary.created_at:.1f} s")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `frontier batch build | submit | status | ingest | run`."""
    batch = subparsers.add_parser("batch", help="run a grid through a Batch API (or a local server) and ingest it")
    commands = batch.add_subparsers(dest="batch_command", required=True)

    def remote(command: argparse.ArgumentParser) -> None:
        command.add_argument("--base-url", default=None, help=f"Batch API base URL (default {OPENAI_BASE_URL})")
        command.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
        command.add_argument("--poll-s", type=float, default=30.0, help="seconds between status checks")

    build = commands.add_parser("build", help="write a collect config's grid as Batch input JSONL")
    build.add_argument("config", type=Path)
    build.add_argument("-o", "--output", type=Path, required=True, metavar="INPUT.jsonl",
                       help="one file per (url, model) when the grid needs several: INPUT.chat.MODEL.jsonl, ...")
    build.add_argument("--limit", type=int, default=None, help="items per dataset (first N)")
    build.set_defaults(func=_build_command)

    submit_ = commands.add_parser("submit", help="upload an input file and create a batch; prints its id")
    submit_.add_argument("input", type=Path)
    submit_.add_argument("--wait", action="store_true", help="poll until the batch finishes")
    remote(submit_)
    submit_.set_defaults(func=_submit_command)

    status = commands.add_parser("status", help="show (or --wait for) a batch's status")
    status.add_argument("batch_id")
    status.add_argument("--wait", action="store_true")
    remote(status)
    status.set_defaults(func=_status_command)

    ingest_ = commands.add_parser(
        "ingest", help="turn a finished batch (id or output file) into a run dir, joined to the grid that built "
        "it and graded (`frontier import openai_batch` reads the same files when no frontier config built them)")
    ingest_.add_argument("source", help="BATCH_ID or OUTPUT.jsonl")
    ingest_.add_argument("--config", type=Path, required=True)
    ingest_.add_argument("-o", "--output", type=Path, required=True, metavar="RUN_DIR")
    ingest_.add_argument("--errors", type=Path, default=None, help="error JSONL (with an output file)")
    ingest_.add_argument("--limit", type=int, default=None, help="items per dataset used when building")
    ingest_.add_argument("--endpoint", default=None, help="host recorded in the rows")
    remote(ingest_)
    ingest_.set_defaults(func=_ingest_command)

    run = commands.add_parser("run", help="run an input file against any OpenAI-compatible server")
    run.add_argument("input", type=Path)
    run.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT.jsonl")
    run.add_argument("--base-url", default=None, help="OpenAI-compatible server (default: start the embedded LLM)")
    run.add_argument("--errors", type=Path, default=None, help="write failed lines here instead")
    run.add_argument("--api-key-env", default=None, help="environment variable holding the key")
    run.add_argument("--concurrency", type=int, default=16,
                     help="requests in flight (the embedded LLM gets one slot per request)")
    run.set_defaults(func=_run_command)
