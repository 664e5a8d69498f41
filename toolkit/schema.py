"""The requests table: one row per request, the single contract between collection and analysis.

Columns and meanings are agreed in shared/DESIGN.md; units are in the column names.  Every
producer (collector, importers, batch ingest) builds rows with `RequestRecord` or a DataFrame
passed through `coerce_requests`, and every consumer may rely on these dtypes.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from toolkit.errors import RunDirError

ARROW_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("request_id", pa.string()),
    ("config_id", pa.string()),
    ("model", pa.string()),
    ("prompt_variant", pa.string()),
    ("max_tokens", pa.int64()),
    ("temperature", pa.float64()),
    ("dataset", pa.string()),
    ("item_id", pa.string()),
    ("repeat", pa.int64()),
    ("endpoint", pa.string()),
    ("batch", pa.bool_()),
    ("cache_hit", pa.bool_()),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("ttft_s", pa.float64()),
    ("e2e_s", pa.float64()),
    ("tbt_s", pa.list_(pa.float64())),
    ("server_s", pa.float64()),
    ("prompt_tokens", pa.int64()),
    ("cached_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("reasoning_tokens", pa.int64()),
    ("usage_source", pa.string()),
    ("output_text", pa.string()),
    ("expected", pa.string()),
    ("score", pa.float64()),
    ("correct", pa.bool_()),
    ("grader", pa.string()),
    ("status", pa.string()),
    ("error_type", pa.string()),
    ("http_status", pa.int64()),
    ("attempts", pa.int64()),
    ("concurrency", pa.int64()),
    ("sequence", pa.int64()),
    ("phase", pa.int64()),  # which collection phase (one concurrency level of one session) sent it
    ("logprob_mean", pa.float64()),
    ("server_prefill_s", pa.float64()),
    ("server_decode_s", pa.float64()),
    ("server_cached_tokens", pa.int64()),
    ("error_message", pa.string()),  # beyond DESIGN: why an error row failed, keys redacted
    ("scheduled_at", pa.timestamp("us", tz="UTC")),  # open-loop runs: when the request was due
    ("send_lag_s", pa.float64()),  # open-loop runs: started_at - scheduled_at, on the monotonic clock
    # imported traffic: prefix-block hashes, each covering its block and every block before it
    # (Mooncake's hash_ids), so two requests sharing the first k hashes share k blocks of KV cache
    ("prefix_hashes", pa.list_(pa.int64())),
    ("prompt_hash", pa.string()),  # imported traffic: a hash of the prompt, equal for equal prompts
    ("reported_cost_usd", pa.float64()),  # the cost a foreign tool stored, kept beside ours to compare
    # the grid's own settings that config_id encodes, each a column (null where a source has no grid)
    ("endpoint_name", pa.string()),  # the config's endpoint name (`endpoint` is its host)
    ("stop_sequences", pa.bool_()),  # the dataset's stop sequences were sent
    ("logprobs", pa.bool_()),  # token log-probabilities were requested
    ("response_cache", pa.bool_()),  # exact repeats may be answered from the response cache
    ("arrival_rate_per_s", pa.float64()),  # open loop: the arrival rate the config was sent at
])
REQUEST_COLUMNS: tuple[str, ...] = tuple(ARROW_SCHEMA.names)
# Settings a run dir written before they were columns gets back from its manifest's configs.
SETTING_COLUMNS = ("endpoint_name", "stop_sequences", "logprobs", "response_cache", "arrival_rate_per_s")
# Columns added after the first release: a run dir written before them reads them as null.
LATER_COLUMNS = frozenset({"phase", "server_prefill_s", "server_decode_s", "server_cached_tokens",
                           "scheduled_at", "send_lag_s", "prefix_hashes", "prompt_hash",
                           "reported_cost_usd", *SETTING_COLUMNS})
TIMESTAMP_COLUMNS = ("started_at", "scheduled_at")
# Text columns with a few distinct values (names of runs, configs, models, outcomes): analyses read
# them as pandas categoricals, a small integer per row instead of its text
LABEL_COLUMNS = ("run_id", "config_id", "model", "prompt_variant", "dataset", "endpoint", "usage_source", "grader",
                 "status", "error_type", "endpoint_name")

_PANDAS_DTYPES: dict[pa.DataType, object] = {
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype(),
}


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One finished (or finally failed) request, as the journal stores it."""

    run_id: str
    request_id: str
    config_id: str
    model: str
    prompt_variant: str
    max_tokens: int
    temperature: float
    dataset: str
    item_id: str
    repeat: int
    endpoint: str
    started_at: dt.datetime
    status: str
    attempts: int
    concurrency: int
    sequence: int
    batch: bool = False
    cache_hit: bool = False
    ttft_s: float | None = None
    e2e_s: float | None = None
    tbt_s: list[float] = field(default_factory=list)
    server_s: float | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    usage_source: str | None = None
    output_text: str | None = None
    expected: str | None = None
    score: float | None = None
    correct: bool | None = None
    grader: str | None = None
    error_type: str | None = None
    http_status: int | None = None
    logprob_mean: float | None = None
    phase: int | None = None
    server_prefill_s: float | None = None
    server_decode_s: float | None = None
    server_cached_tokens: int | None = None
    error_message: str | None = None
    scheduled_at: dt.datetime | None = None
    send_lag_s: float | None = None
    prefix_hashes: list[int] | None = None
    prompt_hash: str | None = None
    reported_cost_usd: float | None = None
    endpoint_name: str | None = None
    stop_sequences: bool | None = None
    logprobs: bool | None = None
    response_cache: bool | None = None
    arrival_rate_per_s: float | None = None

    def to_json_dict(self) -> dict:
        """The record as a journal line's JSON object: timestamps as ISO 8601 strings.  A shallow copy
        (`dataclasses.asdict` deep-copies every list, which cost more than the rest of a request's
        bookkeeping); its lists are the record's own, to be serialised, not changed."""
        row = {name: getattr(self, name) for name in _RECORD_FIELDS}
        row["started_at"] = self.started_at.isoformat()
        row["scheduled_at"] = None if self.scheduled_at is None else self.scheduled_at.isoformat()
        return row


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(RequestRecord))


def coerce_requests(frame: pd.DataFrame, *, source: str = "requests table") -> pd.DataFrame:
    """Return `frame` with exactly the DESIGN columns in order and their dtypes.

    Columns an importer cannot fill may be absent and become null; a column whose values
    cannot be converted raises `RunDirError` naming it.
    """
    table = to_arrow(frame, source=source)
    return from_arrow(table)


def to_arrow(frame: pd.DataFrame, *, source: str = "requests table") -> pa.Table:
    arrays = []
    for name in REQUEST_COLUMNS:
        kind = ARROW_SCHEMA.field(name).type
        if name not in frame.columns:
            arrays.append(pa.nulls(len(frame), type=kind))
            continue
        values = frame[name]
        if name in TIMESTAMP_COLUMNS:
            values = pd.to_datetime(values, utc=True, format="ISO8601") if not isinstance(
                values.dtype, pd.DatetimeTZDtype) else values
        try:
            arrays.append(pa.array(_plain(values), type=kind, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise RunDirError(f"{source}: column {name!r} cannot be read as {kind}: {exc}") from exc
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def _plain(values: pd.Series) -> object:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values
    if values.dtype == object or isinstance(values.dtype, (pd.StringDtype, pd.BooleanDtype, pd.Int64Dtype)):
        return values.astype(object).where(values.notna(), None).tolist()
    return values


def from_arrow(table: pa.Table, *, consume: bool = False) -> pd.DataFrame:
    """`table` as pandas with the schema's dtypes; `consume` frees each column of `table` once converted
    (the table is unusable after), so that a large table is not held twice."""
    return table.to_pandas(types_mapper=_PANDAS_DTYPES.get, self_destruct=consume, split_blocks=consume)


def empty_requests() -> pd.DataFrame:
    return from_arrow(ARROW_SCHEMA.empty_table())
