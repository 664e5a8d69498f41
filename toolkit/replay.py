"""`frontier replay`: send a trace's requests to an endpoint at the trace's arrival times, open loop,
and write an ordinary run directory of how the endpoint behaved under that traffic.

Like the collector's open-loop phases, each request falls due at an absolute time from one origin
(so a late wake-up delays one request, not every later one) and is sent then, whether or not
earlier ones have finished, with at most `max_in_flight` out at once; each row keeps when it was due
(`scheduled_at`) and how late it went out (`send_lag_s`); `replay_pacing` builds each request ahead and
holds it until it is due, so the client's own work delays no send.  Every request is streamed through
`measure.stream_request`, so TTFT, gaps and e2e mean what they mean in a collected run, and journaled
the moment it ends: a request cut off by Ctrl-C is kept as an `interrupted` error row, so the run dir
holds every request that was sent.  With `steady`, a second phase sends the same sizes evenly spaced
at the trace's mean rate, so the two phases compare a real arrival pattern with a steady one.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2
import openai

from toolkit import __version__
from toolkit.config import EndpointConfig
from toolkit.endpoints import Connection, TokenCounter, connect
from toolkit.errors import EndpointError, ParameterError, RunDirError
from toolkit.local_server import EmbeddedServer
from toolkit.measure import Request, stream_request
from toolkit.pacing import Due, achieved_rate
from toolkit.records import Answer, Failure, outcome_columns, stream_answer
from toolkit.replay_pacing import AHEAD_S, START_S, Pacer, Release, hold, hold_until_due
from toolkit.replay_plan import (CONTEXT_MARGIN, Plan, Planned, PromptText, ReplaySettings, Trace, calibrate,
                                 load_trace, plan)
from toolkit.retries import RETRYABLE, describe_error, error_kind
from toolkit.runner import request_id_for, run_stoppably
from toolkit.schema import RequestRecord
from toolkit.store import JOURNAL, Journal, RunLock, finalize, write_manifest

log = logging.getLogger("toolkit")

EMBEDDED_SLOTS = 8  # the embedded server batches this many at most; more in flight queue at the server
INTERRUPTED = Failure("interrupted", None, "the replay was interrupted before the answer finished")


class _WholeOutputRequest(Request):
    """A request that asks the server to ignore end-of-sequence (llama.cpp, vLLM, SGLang), so it
    generates the trace's whole output length instead of stopping where the model would."""

    def body(self) -> dict:
        return {**Request.body(self), "extra_body": {"ignore_eos": True}}


@dataclass(frozen=True)
class ReplaySummary:
    run_dir: Path
    planned: int  # requests per phase
    sent: int
    errors: int
    phases: list[dict]
    stop_reason: str | None
    elapsed_s: float


class Replayer:
    """Sends a plan to one endpoint in one or two open-loop phases and journals every request."""

    def __init__(self, trace: Trace, settings: ReplaySettings, connection: Connection, journal: Journal, *,
                 run_id: str, model: str | None, manifest: dict,
                 on_record: Callable[[RequestRecord], None] | None = None) -> None:
        self.trace, self.settings, self.connection, self.journal = trace, settings, connection, journal
        self.run_id, self.model, self.manifest, self.on_record = run_id, model, manifest, on_record
        self.plan: Plan | None = None
        self.text: PromptText | None = None
        self.phases: list[dict] = []
        self.sent = self.errors = self._sequence = 0
        self.stop_reason: str | None = None
        self.client = connection.client(timeout_s=settings.timeout_s, max_connections=settings.max_in_flight,
                                        before_send=[hold_until_due])

    async def run(self, run_dir: Path, on_start: Callable[[int], None] | None = None) -> None:
        headers = {"Authorization": f"Bearer {self.connection.api_key}"}
        try:
            async with httpx2.AsyncClient(timeout=30, headers=headers) as http:
                counter, context, context_from = await self._probe(http)
                self.text = await calibrate(counter, self.settings.seed)
                self.model = self.model or await self._served_model(http)
            await self.client.session()  # its connections open now, not while the first request is due
            self.plan = plan(self.trace, self.settings, context_tokens=context)
            self.manifest.update(endpoint={**self.manifest["endpoint"], "model": self.model},
                                 prompts=self._prompt_manifest(context, context_from), notes=self._notes(context))
            self.manifest["replay"].update(planned_requests=len(self.plan.requests),
                                           mean_rate_per_s=self.plan.rate_per_s)
            write_manifest(run_dir, self.manifest)
            patterns = [("trace", [p.offset_s for p in self.plan.requests])]
            if self.settings.steady:
                patterns.append(("steady", self.plan.steady_offsets()))
            if on_start is not None:
                on_start(len(self.plan.requests) * len(patterns))
            for phase, (pattern, offsets) in enumerate(patterns):
                await self._phase(phase, pattern, offsets)
        finally:
            await self.client.close()

    async def _probe(self, http: httpx2.AsyncClient) -> tuple[TokenCounter | None, int | None, str | None]:
        """The endpoint's tokenizer (llama.cpp's /tokenize) and context per request (its /props), where it
        has them; `max_prompt_tokens` stands in for an unknown context."""
        root = self.connection.base_url.removesuffix("/v1")
        counter: TokenCounter | None = TokenCounter(self.connection.tokenize_url or f"{root}/tokenize", http)
        try:
            await counter.count("the", with_bos=False)
        except (httpx2.HTTPError, ValueError, KeyError, TypeError) as exc:  # no such route, or another shape
            log.debug("%s has no llama.cpp /tokenize (%s): prompt lengths are estimated", root, exc)
            counter = None
        try:
            response = await http.get(f"{root}/props")
            response.raise_for_status()
            context = int(response.json()["default_generation_settings"]["n_ctx"])
            return counter, context, "/props"
        except (httpx2.HTTPError, ValueError, KeyError, TypeError):
            return counter, None, None

    async def _served_model(self, http: httpx2.AsyncClient) -> str:
        try:
            response = await http.get(f"{self.connection.base_url}/models")
            response.raise_for_status()
            models = [model["id"] for model in response.json()["data"]]
        except (httpx2.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise EndpointError(f"{self.connection.host}: cannot list its models ({describe_error(exc)}); "
                                "name one with --model") from None
        if not models:
            raise EndpointError(f"{self.connection.host}: /models lists no model; name one with --model")
        return models[0]

    async def _phase(self, phase: int, pattern: str, offsets: list[float]) -> None:
        assert self.plan is not None
        config_id = f"replay-{pattern}-x{self.settings.speed:g}"
        bound, duration = self.settings.max_in_flight, self.settings.duration_s
        entry = {"phase": phase, "config_id": config_id, "pattern": pattern, "concurrency": bound,
                 "planned": len(offsets), "started_at": dt.datetime.now(dt.UTC).isoformat()}
        self.phases.append(entry)
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(bound)
        tasks: list[asyncio.Task] = []
        origin, origin_at = loop.time() + START_S, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=START_S)
        pacer = Pacer()
        try:
            for planned, offset in zip(self.plan.requests, offsets):
                request_id = request_id_for(config_id, planned.dataset, planned.item_id, 0)
                request = self._request(planned, request_id)  # the prompt is built while waiting
                await asyncio.sleep(max(0.0, origin + offset - AHEAD_S - loop.time()))
                await slots.acquire()  # the wait for a free slot is part of send_lag_s
                if duration is not None and loop.time() - origin >= duration:
                    slots.release()
                    self.stop_reason = (f"duration_s={duration:g} of sending ran out after {len(tasks)} of the "
                                        f"{pattern} phase's {len(offsets)} requests")
                    break
                await pacer.quiet()  # its build must not delay a request about to go out
                release = Release(request_id, self._sequence, Due(origin + offset,
                                                                  origin_at + dt.timedelta(seconds=offset)))
                self._sequence += 1
                pacer.add(release)
                tasks.append(asyncio.create_task(self._one(phase, config_id, planned, request, release, pacer)))
                tasks[-1].add_done_callback(lambda _: slots.release())
                await release.built.wait()  # one build at a time
            sent = [release for release in await asyncio.gather(*tasks) if release.sent_s is not None]
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        finally:
            entry.update(ended_at=dt.datetime.now(dt.UTC).isoformat(), sent=len(tasks))
        lags = [r.sent_s - r.due.monotonic_s for r in sent]
        achieved = achieved_rate([r.sent_s for r in sent], origin)
        # the shape of the collector's open-loop phases, which 03_latency's arrival table reads
        entry["arrival"] = {"target_rate_per_s": self.plan.rate_per_s, "achieved_rate_per_s": achieved,
                            "requests": len(sent), "max_in_flight": bound, "max_send_lag_s": max(lags, default=None)}
        if achieved is not None and self.plan.rate_per_s and achieved < 0.98 * self.plan.rate_per_s:
            log.warning("replay phase %d (%s) sent %.3g requests/s of the trace's %.3g (largest send lag %.3g s): "
                        "the client or max_in_flight=%d held requests back",
                        phase, pattern, achieved, self.plan.rate_per_s, max(lags), bound)

    def _request(self, planned: Planned, request_id: str) -> Request:
        assert self.text is not None and self.model is not None
        kind = _WholeOutputRequest if self.settings.ignore_eos else Request
        # the prompt's words are seeded by request_id, which differs between phases: the steady
        # phase cannot take the trace phase's prompts from the server's cache
        return kind("completions", self.model, self.text.text(request_id, planned.prompt_tokens),
                    planned.max_tokens, 0.0)

    async def _one(self, phase: int, config_id: str, planned: Planned, request: Request, release: Release,
                   pacer: Pacer) -> Release:
        hold(release)
        outcome: Answer | Failure
        try:
            result = await stream_request(self.client, request, timeout_s=self.settings.timeout_s,
                                          request_id=release.request_id)
            # where the server sends no usage: the prompt's intended size, the content chunks received
            outcome = stream_answer(result, prompt_tokens=planned.prompt_tokens,
                                    completion_tokens=len(result.tbt_s) + (result.ttft_s is not None))
        except (*RETRYABLE, openai.APIError) as exc:
            kind, status = error_kind(exc)
            outcome = Failure(kind, status, self.connection.redact(describe_error(exc)))
        except asyncio.CancelledError:
            if release.sent_s is not None:  # sent, and cut off: kept; one still held was never sent
                self._journal(phase, config_id, planned, release, INTERRUPTED)
            raise
        finally:
            release.settle()
        if release.sent_s is None:  # failed before the hook sent it
            release.send_now()
        try:
            await pacer.quiet()  # the journal write waits while a request is about to go out
        finally:  # an interrupt meanwhile must not lose the answer
            self._journal(phase, config_id, planned, release, outcome)
        if isinstance(outcome, Failure) and outcome.error_type == "auth":
            raise EndpointError(f"{self.connection.host} refused the key (HTTP {outcome.http_status}): "
                                f"{outcome.error_message}")
        return release

    def _journal(self, phase: int, config_id: str, planned: Planned, sent: Release,
                 outcome: Answer | Failure) -> None:
        assert self.plan is not None and sent.sent_s is not None and sent.started_at is not None
        self.sent += 1
        record = RequestRecord(
            run_id=self.run_id, request_id=sent.request_id, config_id=config_id, model=self.model or "",
            prompt_variant="synthetic", max_tokens=planned.max_tokens, temperature=0.0, dataset=planned.dataset,
            item_id=planned.item_id, repeat=0, endpoint=self.connection.host, started_at=sent.started_at,
            attempts=1, concurrency=self.settings.max_in_flight, sequence=sent.sequence, phase=phase,
            scheduled_at=sent.due.at, send_lag_s=sent.sent_s - sent.due.monotonic_s,
            arrival_rate_per_s=self.plan.rate_per_s, endpoint_name=self.connection.name, stop_sequences=False,
            logprobs=False, response_cache=False, **outcome_columns(outcome))
        self.journal.append(record)
        self.errors += record.status != "ok"
        if self.on_record is not None:
            self.on_record(record)

    def _prompt_manifest(self, context: int | None, context_from: str | None) -> dict:
        assert self.text is not None and self.plan is not None
        return {"counted_by": self.text.counted_by, "tokens_per_word": self.text.tokens_per_word,
                "special_tokens": self.text.special_tokens, "context_tokens": context, "context_from": context_from,
                "max_prompt_tokens": self.settings.max_prompt_tokens, "capped_requests": self.plan.capped}

    def _notes(self, context: int | None) -> list[str]:
        assert self.text is not None and self.plan is not None
        settings = self.settings
        notes = [
            f"Arrivals: the trace's offsets from its first request divided by speed={settings.speed:g}, sent open "
            f"loop with at most {settings.max_in_flight} in flight; send_lag_s is how late each went out.",
            f"Sizes: the trace's input and output lengths times token_scale={settings.token_scale:g} (at least 1 "
            "token each); max_tokens is the output length" + (
                ", and ignore_eos asks the server to generate all of it." if settings.ignore_eos else "."),
            "Prompts are synthetic: common English words from a stream seeded per request and phase, so no two "
            "requests share a prefix. The trace's prefix structure (shared prefixes, Mooncake's prefix_hashes) "
            "is ignored for now: the replay gets none of the prefix-cache reuse the real traffic would.",
            (f"Prompt lengths were set with the endpoint's tokenizer: {self.text.tokens_per_word:.3f} tokens per "
             f"word, measured once on a sample, plus {self.text.special_tokens} token(s) the server adds."
             if self.text.counted_by == "tokenizer" else
             "The endpoint has no tokenizer this client can use (llama.cpp's /tokenize): prompt lengths are "
             "estimated at one token per common word; prompt_tokens is the server's count where it sends usage."),
            "Each request is sent once, without retries (a retry would add load the trace did not have); "
            "a failure is a row with status error, and a request cut off by an interrupt has error_type "
            "interrupted.",
        ]
        if self.plan.capped:
            limits = [f"the endpoint's context of {context} tokens ({CONTEXT_MARGIN:.0%} kept free, the output "
                      f"keeping at most half)"] if context is not None else []
            if settings.max_prompt_tokens is not None:
                limits.append(f"max_prompt_tokens={settings.max_prompt_tokens}")
            notes.append(f"{self.plan.capped} of {len(self.plan.requests)} requests were cut to fit "
                         + " and ".join(limits) + ".")
        if settings.steady:
            notes.append("Phase 1 (steady) sends the same sizes again, evenly spaced at the trace's mean rate over "
                         "the same span, with fresh prompt words: compare it with phase 0 (trace).")
        return notes


def replay(source: str | os.PathLike, settings: ReplaySettings = ReplaySettings(), *, base_url: str | None = None,
           embedded: bool = False, model: str | None = None, api_key_env: str | None = None,
           out_dir: str | os.PathLike | None = None, runs_root: Path = Path("data/runs"),
           on_start: Callable[[int], None] | None = None,
           on_record: Callable[[RequestRecord], None] | None = None) -> ReplaySummary:
    """Replay the trace at `source` against `base_url` (or the embedded server) into a new run dir."""
    if embedded == (base_url is not None):
        raise ParameterError("replay: give exactly one of base_url (your own endpoint) and embedded=True")
    trace = load_trace(source)
    started = time.monotonic()
    run_dir = Path(out_dir) if out_dir is not None else (
        Path(runs_root) / f"replay-{trace.table['dataset'].iloc[0] if len(trace.table) else 'empty'}-"
                          f"{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}")
    with contextlib.ExitStack() as stack:
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise RunDirError(f"{run_dir}: already exists; replay writes a new run directory") from None
        except OSError as exc:
            raise RunDirError(f"{run_dir}: cannot create the run directory: {exc}") from exc
        stack.callback(_remove_if_empty, run_dir)  # a failure before the manifest leaves no empty dir
        stack.enter_context(RunLock(run_dir))
        manifest: dict = {"run_id": run_dir.name, "source": "replay", "toolkit_version": __version__,
                          "machine": {"platform": platform.platform(), "python": platform.python_version(),
                                      "cpus": os.cpu_count()},
                          "replay": {"trace": str(trace.path), "trace_kind": trace.kind,
                                     "trace_requests": len(trace.table), **dataclasses.asdict(settings)}}
        if embedded:
            server = stack.enter_context(EmbeddedServer(log_path=run_dir / "server.log",
                                                        slots=min(settings.max_in_flight, EMBEDDED_SLOTS)))
            manifest["embedded_server"] = [server.settings()]
            model, base_url = model or server.model, server.base_url
        endpoint = EndpointConfig("embedded" if embedded else "replay", "embedded" if embedded else "openai",
                                  api_key_env=api_key_env)
        connection = connect(endpoint, base_url=base_url)
        manifest["endpoint"] = {"host": connection.host, "embedded": embedded, "api_key_env": api_key_env}
        manifest.update(started_at=dt.datetime.now(dt.UTC).isoformat(), status="running")
        write_manifest(run_dir, manifest)
        status = "failed"
        replayer = None
        try:
            with Journal(run_dir) as journal:
                replayer = Replayer(trace, settings, connection, journal, run_id=run_dir.name, model=model,
                                    manifest=manifest, on_record=on_record)
                run_stoppably(replayer.run(run_dir, on_start))
            status = "stopped" if replayer.stop_reason else "complete"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            table = finalize(run_dir) if (run_dir / JOURNAL).exists() else None
            manifest.update(ended_at=dt.datetime.now(dt.UTC).isoformat(), status=status,
                            phases=replayer.phases if replayer else [],
                            stop_reason=replayer.stop_reason if replayer else None)
            if table is not None:
                manifest.update(requests=len(table), errors=int((table["status"] != "ok").sum()))
            write_manifest(run_dir, manifest)
    return ReplaySummary(run_dir, len(replayer.plan.requests) if replayer.plan else 0, replayer.sent,
                         replayer.errors, replayer.phases, replayer.stop_reason, time.monotonic() - started)


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: the run has a manifest (or a server log to read)
        directory.rmdir()
