"""One request's row of the requests table, built one way whichever path sent the request.

The collector (a streamed answer) and batch ingest (a Batch output line) both hand over the planned
request and what came back, an `Answer` or a `Failure`; `request_record` adds the configuration
(`Config.columns()`), the item and the grade from the dataset's grader, so an online row and a
batch row of the same item and configuration agree on everything but how the answer was sent.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from toolkit.schema import RequestRecord

if TYPE_CHECKING:  # the runner builds its rows here, so only the type comes from there
    from toolkit.measure import StreamResult
    from toolkit.runner import PlannedRequest


@dataclass(frozen=True)
class Answer:
    """What an endpoint answered: the text, its usage as counted (`usage_source` says by whom) and the
    timings where they were measured (a batch measures none)."""

    text: str | None  # None: the response held no text (a Batch body without content)
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    usage_source: str | None = None
    http_status: int | None = None
    logprob_mean: float | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    tbt_s: list[float] | None = None
    server_s: float | None = None
    server_prefill_s: float | None = None
    server_decode_s: float | None = None
    server_cached_tokens: int | None = None


def stream_answer(result: StreamResult, *, prompt_tokens: int | None, completion_tokens: int | None) -> Answer:
    """The Answer of a streamed request: usage as the server sent it, else the counts given
    (`usage_source` estimated); the server's time is its `openai-processing-ms` where it sends one, else
    its own prefill + decode time (llama.cpp's `timings`), which is its share of e2e just the same."""
    usage, timings = result.usage, result.timings
    server_s = result.server_s
    if server_s is None and timings is not None and timings.prefill_s is not None and timings.decode_s is not None:
        server_s = timings.prefill_s + timings.decode_s
    return Answer(
        text=result.text, prompt_tokens=usage.prompt_tokens if usage else prompt_tokens,
        cached_tokens=(usage.cached_tokens or 0) if usage else None,
        completion_tokens=usage.completion_tokens if usage else completion_tokens,
        reasoning_tokens=(usage.reasoning_tokens or 0) if usage else None,
        usage_source="server" if usage else "estimated", logprob_mean=result.logprob_mean,
        ttft_s=result.ttft_s, e2e_s=result.e2e_s, tbt_s=result.tbt_s, server_s=server_s,
        server_prefill_s=timings.prefill_s if timings else None,
        server_decode_s=timings.decode_s if timings else None,
        server_cached_tokens=timings.cached_tokens if timings else None)


@dataclass(frozen=True)
class Failure:
    """A request that finally failed: what went wrong, the HTTP status where there was one, and the
    (redacted) message."""

    error_type: str | None
    http_status: int | None = None
    error_message: str | None = None


# an answer's `text` is the requests table's `output_text`; every other field keeps its name
_ANSWER_COLUMNS = tuple(("output_text" if f.name == "text" else f.name, f.name) for f in dataclasses.fields(Answer))
_FAILURE_COLUMNS = tuple((f.name, f.name) for f in dataclasses.fields(Failure))


def outcome_columns(outcome: Answer | Failure) -> dict[str, object]:
    """The requests-table columns `outcome` fills: status, the answer or the error, usage, timings.

    Read field by field rather than with `dataclasses.asdict`, whose deep copy of every value was
    the largest item of the collector's profile; the values are immutable or never changed."""
    failed = isinstance(outcome, Failure)
    columns: dict[str, object] = {"status": "error" if failed else "ok"}
    for column, name in _FAILURE_COLUMNS if failed else _ANSWER_COLUMNS:
        columns[column] = getattr(outcome, name)
    return columns


def request_record(planned: PlannedRequest, outcome: Answer | Failure, *, run_id: str, sequence: int,
                   endpoint: str, started_at: dt.datetime | None, attempts: int = 1,
                   batch: bool = False, **sending: object) -> RequestRecord:
    """The row of `planned` (sent as number `sequence` of its run to the host `endpoint`), graded with
    its dataset's grader when it has an answer; `sending` are the columns of how the collector sent it
    (`phase`, `cache_hit`, an open-loop request's `scheduled_at` and `send_lag_s`).

    `started_at` is None only for a batch error line of a batch whose creation time is unknown.
    """
    config, item, grader = planned.config, planned.item, planned.dataset.grader
    columns = outcome_columns(outcome)
    if isinstance(outcome, Answer):
        grade = grader(outcome.text or "", item.expected)
        columns.update(score=grade.score, correct=grade.correct, grader=grader.name)
    if batch:  # a batch has no per-request timings: no list of gaps at all, not an empty one
        columns["tbt_s"] = None
    return RequestRecord(
        run_id=run_id, request_id=planned.request_id, **config.columns(), dataset=planned.dataset.name,
        item_id=item.item_id, repeat=planned.repeat, expected=item.expected, endpoint=endpoint,
        started_at=started_at, attempts=attempts, sequence=sequence, batch=batch, **columns, **sending)
