"""The `frontier` command: serve, collect, runs (and the report, import, batch and cache commands)."""
from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from toolkit.errors import FrontierError, ParameterError

log = logging.getLogger("toolkit")

# exit statuses of `frontier collect` (2 and 130 hold for every command)
EXIT_COMPLETE = 0
EXIT_ERROR = 2  # a FrontierError (bad option, config, dataset, run dir in use, refused key) or a usage error
EXIT_STOPPED = 3  # stopped early on a limit (max_error_rate, max_cost_usd, max_requests): the run is incomplete
EXIT_ALL_FAILED = 4  # every request this session sent failed
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM
COLLECT_EXIT_STATUSES = f"""exit status:
  {EXIT_COMPLETE}    every planned request has a record (some may be errors, below max_error_rate)
  {EXIT_ERROR}    an error: a bad option, config, dataset or run directory (found before anything is
       sent), a run directory another process is collecting into, a refused key, a full disk
  {EXIT_STOPPED}    stopped early on a limit (max_error_rate, max_cost_usd, max_requests); continue with --resume
  {EXIT_ALL_FAILED}    every request sent failed (an unreachable endpoint, a wrong model name, ...)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C, SIGTERM); what was collected is kept, continue with --resume"""


def _serve(args: argparse.Namespace) -> int:
    from toolkit.local_server import EmbeddedServer

    with EmbeddedServer(port=args.port, log_path=args.log, slots=args.slots) as server:
        print(f"embedded LLM {server.model} serving at {server.base_url} (Ctrl-C stops it)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)
    return 0


def _collect(args: argparse.Namespace) -> int:
    from toolkit.collect import collect

    bar = tqdm(unit="req", dynamic_ncols=True, smoothing=0.05, delay=0.5)
    errors = 0
    error_types: Counter[str] = Counter()

    def on_start(pending: int) -> None:
        bar.reset(total=pending)

    def on_record(record) -> None:
        nonlocal errors
        errors += record.status != "ok"
        if record.status != "ok":
            error_types[record.error_type or "unknown"] += 1
        bar.update()
        if errors:
            bar.set_postfix(errors=errors, refresh=False)

    def on_progress(done: int, types: dict[str, int]) -> None:
        nonlocal errors
        errors = sum(types.values())
        error_types.clear()
        error_types.update(types)
        bar.update(done - bar.n)
        if errors:
            bar.set_postfix(errors=errors, refresh=False)

    options = dict(runs_root=args.runs_root, resume=args.resume, items_per_dataset=args.limit,
                   concurrency=args.concurrency, base_url=args.base_url, run_id=args.run_id, on_start=on_start,
                   max_cost_usd=args.max_cost, max_requests=args.max_requests)
    try:
        if args.workers is None and args.ray_address is None:
            summary = collect(args.config, on_record=on_record, **options)
        elif args.workers is None:
            raise ParameterError("--ray-address needs --workers N: how many workers to start on the cluster")
        else:
            from toolkit.sharded import collect_sharded

            summary = collect_sharded(args.config, workers=args.workers, ray_address=args.ray_address,
                                      on_progress=on_progress, **options)
    finally:
        bar.close()
    rate = summary.sent / summary.elapsed_s if summary.elapsed_s else 0.0
    print(f"{summary.run_dir}: sent {summary.sent} requests in {summary.elapsed_s:.1f} s ({rate:.1f}/s), "
          f"{summary.errors} errors, {summary.already_done} already done of {summary.planned} planned")
    status = EXIT_COMPLETE
    if summary.stop_reason:
        status = EXIT_STOPPED
        print(f"stopped early: {summary.stop_reason}; continue with --resume {summary.run_dir}")
    if summary.sent and summary.errors == summary.sent:
        status = EXIT_ALL_FAILED
        kinds = ", ".join(f"{kind}: {count}" for kind, count in error_types.most_common())
        print(f"every request sent failed ({kinds}); the run's error_type and error_message columns say why")
    if status != EXIT_COMPLETE:
        print(f"exit status {status} (see frontier collect --help)")
    return status


def _runs(args: argparse.Namespace) -> int:
    from toolkit.store import list_runs, load_run, read_manifest

    rows, problems = [], []
    for run_dir in list_runs(args.runs_root):
        size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
        try:  # one damaged run must not hide the healthy ones
            manifest = read_manifest(run_dir)
            table = load_run(run_dir)
        except FrontierError as exc:
            problems.append(str(exc))
            rows.append((run_dir.name, f"{size / 1e6:.1f} MB", "?", "?", "?", "unreadable", "-"))
            continue
        started = table["started_at"].min()
        rows.append((run_dir.name, f"{size / 1e6:.1f} MB", str(table["config_id"].nunique()), str(len(table)),
                     str(int((table["status"] != "ok").sum())), str(manifest.get("status", "imported")),
                     "-" if started is None or str(started) == "NaT" else f"{started:%Y-%m-%d %H:%M}"))
    header = ("run", "size", "configs", "requests", "errors", "status", "started (UTC)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    for problem in problems:
        print(f"frontier: unreadable run: {problem}", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    import yaml

    from toolkit.importers import import_to_run_dir

    options = {}
    for pair in args.option:
        name, sep, value = pair.partition("=")
        if not sep:
            print(f"frontier: error: option {pair!r} must look like name=value", file=sys.stderr)
            return 2
        options[name] = yaml.safe_load(value)
    run_dir = import_to_run_dir(args.kind, args.path, args.output, **options)
    print(run_dir)
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    from toolkit.resources import copy_notebooks

    copies = copy_notebooks(args.dir, force=args.force)
    print("\n".join(map(str, copies)))
    print(f"open them with: jupyter lab {args.dir} (run_dir = \"data/runs/sample\" is the shipped sample run; "
          f"set it to your own run directory)")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from toolkit.replay import replay
    from toolkit.replay_plan import ReplaySettings

    settings = ReplaySettings(speed=args.speed, token_scale=args.token_scale, max_requests=args.max_requests,
                              duration_s=args.duration, steady=args.steady, max_in_flight=args.max_in_flight,
                              max_prompt_tokens=args.max_prompt_tokens, timeout_s=args.timeout, seed=args.seed,
                              ignore_eos=not args.allow_eos)
    bar = tqdm(unit="req", dynamic_ncols=True, smoothing=0.05, delay=0.5)
    try:
        summary = replay(args.trace, settings, base_url=args.base_url, embedded=args.embedded, model=args.model,
                         api_key_env=args.api_key_env, out_dir=args.output, runs_root=args.runs_root,
                         on_start=lambda total: bar.reset(total=total), on_record=lambda _: bar.update())
    finally:
        bar.close()
    for phase in summary.phases:
        arrival = phase.get("arrival") or {}
        achieved, target, lag = (arrival.get(key) for key in ("achieved_rate_per_s", "target_rate_per_s",
                                                               "max_send_lag_s"))
        print(f"phase {phase['phase']} ({phase['pattern']}): sent {phase['sent']} of {phase['planned']}, "
              f"{_shown(achieved, '.3g')}/s achieved of the trace's {_shown(target, '.3g')}/s, "
              f"largest send lag {_shown(lag and lag * 1000, '.1f')} ms")
    print(f"{summary.run_dir}: {summary.sent} requests, {summary.errors} errors in {summary.elapsed_s:.1f} s; "
          f"see it with: frontier report {summary.run_dir}")
    if summary.sent and summary.errors == summary.sent:
        return EXIT_ALL_FAILED
    if summary.stop_reason:
        print(f"stopped early: {summary.stop_reason}")
        return EXIT_STOPPED
    return EXIT_COMPLETE


def _shown(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: a finite number > 0 of `kind` (argparse names the option in its error)."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'} > 0, "
                                             f"got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frontier", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the embedded LLM and print its base_url")
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--slots", type=int, default=4,
                       help="requests decoded together; at least the highest concurrency you will send")
    serve.add_argument("--log", type=Path, default=None, help="file for the server's own log")
    serve.set_defaults(func=_serve)

    collect = sub.add_parser("collect", help="run a collect config's grid into a run directory",
                             epilog=COLLECT_EXIT_STATUSES,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    collect.add_argument("config", type=Path)
    collect.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                         help="continue a run: send only requests without an ok record")
    collect.add_argument("--limit", type=_positive(int), default=None, help="items per dataset (first N)")
    collect.add_argument("--concurrency", type=_positive(int), default=None,
                         help="one concurrency level for all configs")
    collect.add_argument("--base-url", default=None, help="use this server instead of starting the embedded one")
    collect.add_argument("--runs-root", type=Path, default=Path("data/runs"))
    collect.add_argument("--max-cost", type=_positive(float), default=None, metavar="USD",
                         help="stop once the priced cost of the run reaches this many dollars")
    collect.add_argument("--max-requests", type=_positive(int), default=None,
                         help="stop after sending this many requests")
    collect.add_argument("--run-id", default=None, help="name of the new run directory (default: name-timestamp)")
    collect.add_argument("--workers", type=_positive(int), default=None, metavar="N",
                         help="send the grid from N worker processes through Ray (pip install "
                              "'frontier-toolkit[ray]'); each writes its own part of the run dir")
    collect.add_argument("--ray-address", default=None, metavar="ADDR",
                         help="run the --workers on this existing Ray cluster (e.g. 10.0.0.5:6379) instead of a "
                              "local Ray; the run dir must be on storage every node sees")
    collect.set_defaults(func=_collect,
                         interrupted="frontier: interrupted; what was collected is kept (continue with --resume)")

    runs = sub.add_parser("runs", help="list run directories")
    runs.add_argument("--runs-root", type=Path, default=Path("data/runs"))
    runs.set_defaults(func=_runs)

    from toolkit.importers import IMPORTERS

    importer = sub.add_parser("import", help="turn someone else's data into a run directory")
    importer.add_argument("kind", choices=sorted(IMPORTERS))
    importer.add_argument("path", type=Path)
    importer.add_argument("-o", "--output", type=Path, required=True, metavar="RUN_DIR")
    importer.add_argument("--option", "-O", action="append", default=[], metavar="NAME=VALUE",
                          help="importer option, value read as YAML (e.g. -O 'mapping={latency_ms: e2e_s}')")
    importer.set_defaults(func=_import)

    notebooks = sub.add_parser("notebooks", help="copy the analysis notebooks into a folder to open in JupyterLab")
    notebooks.add_argument("dir", type=Path, metavar="DIR", help="folder to copy them into (created if missing)")
    notebooks.add_argument("--force", action="store_true", help="overwrite notebooks of the same name in DIR")
    notebooks.set_defaults(func=_notebooks)

    replay = sub.add_parser("replay", help="send a trace's requests at its arrival times and measure the endpoint",
                            description="Send the requests of a run directory or a trace (azure2023, mooncake) at "
                                        "their arrival times, open loop, with synthetic prompts of their input "
                                        "lengths and max_tokens = their output lengths, into a new run directory.",
                            epilog="exit status: 0 done, 2 bad input, 3 the client fell so far behind that "
                                   "--duration ran out before every request was sent, 4 every request failed, "
                                   "130 interrupted (what was sent is kept)")
    replay.add_argument("trace", type=Path, metavar="RUN_DIR_OR_TRACE")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("--base-url", default=None,
                        help="your OpenAI-compatible endpoint (e.g. http://127.0.0.1:8080/v1)")
    target.add_argument("--embedded", action="store_true",
                        help="start the embedded LLM for the replay and stop it after")
    replay.add_argument("--model", default=None, help="model name to send (default: the endpoint's first listed model)")
    replay.add_argument("--api-key-env", default=None, metavar="VAR", help="environment variable holding the API key")
    replay.add_argument("--speed", type=_positive(float), default=1.0,
                        help="divide the trace's arrival times by this (2 = twice as fast)")
    replay.add_argument("--token-scale", type=_positive(float), default=1.0, metavar="F",
                        help="multiply input and output lengths by this (at least 1 token each)")
    replay.add_argument("--max-requests", type=_positive(int), default=None, help="replay the first N requests")
    replay.add_argument("--duration", type=_positive(float), default=None, metavar="S",
                        help="replay the requests due in the first S seconds of sending (after --speed)")
    replay.add_argument("--steady", action="store_true",
                        help="then send the same requests evenly spaced at the same mean rate, as a second phase")
    replay.add_argument("--max-in-flight", type=_positive(int), default=64, help="requests out at once, at most")
    replay.add_argument("--max-prompt-tokens", type=_positive(int), default=None,
                        help="cut longer prompts to this (a llama.cpp server tells its context itself)")
    replay.add_argument("--timeout", type=_positive(float), default=300.0, metavar="S", help="per request")
    replay.add_argument("--seed", type=int, default=0, help="seed of the prompts' words")
    replay.add_argument("--allow-eos", action="store_true",
                        help="do not send ignore_eos (for an endpoint that refuses it); answers may end early")
    replay.add_argument("-o", "--output", type=Path, default=None, metavar="RUN_DIR",
                        help="the new run directory (default: RUNS_ROOT/replay-<dataset>-<time>)")
    replay.add_argument("--runs-root", type=Path, default=Path("data/runs"))
    replay.set_defaults(func=_replay, interrupted="frontier: interrupted; every request sent so far is kept")

    from toolkit import cache, cli_batch, report

    report.register_cli(sub)
    cli_batch.register_cli(sub)
    cache.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops as cleanly as Ctrl-C
    try:
        return args.func(args)
    except FrontierError as exc:
        print(f"frontier: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(getattr(args, "interrupted", "frontier: interrupted"), file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
