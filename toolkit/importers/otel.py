"""Import OpenTelemetry GenAI client spans from the OTLP/JSON file the Collector's file exporter writes.

File format (OpenTelemetry specification, "OTLP File Exporter", opentelemetry.io/docs/specs/otel/
protocol/file-exporter/): JSON lines, each line one `TracesData` object, `{"resourceSpans": [{
"resource": {"attributes": [...]}, "scopeSpans": [{"scope": {...}, "spans": [...]}]}]}`, in the
OTLP JSON encoding (opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): lowerCamelCase
names, hex trace and span ids, 64-bit integers (`startTimeUnixNano`, `intValue`) as decimal strings
(numbers accepted too), enums (`status.code`: 0 unset, 1 ok, 2 error) as integers, and each
attribute `{"key": k, "value": {"stringValue" | "intValue" | "doubleValue" | "boolValue" |
"arrayValue" | "kvlistValue" | "bytesValue": v}}`.  One pretty-printed TracesData document (an
OTLP/HTTP JSON body) reads the same way.

Attributes follow the GenAI semantic conventions (open-telemetry/semantic-conventions-genai,
docs/gen-ai/gen-ai-spans.md and docs/registry/attributes/gen-ai.md):
- an inference span has `gen_ai.operation.name` `chat`, `text_completion` or `generate_content`;
  other operations (`embeddings`, `execute_tool`, `invoke_agent`, ...) and spans with no `gen_ai.*`
  attribute are not LLM calls and are skipped and counted in the manifest.  Conventions before
  `gen_ai.operation.name` existed (v1.26) marked a model call by `gen_ai.request.model` alone, so
  a span with that and no operation name is a call too.
- `gen_ai.request.model` (the model asked for; the config) and `gen_ai.response.model` (the model
  that answered; priced), `gen_ai.request.max_tokens`, `gen_ai.request.temperature`;
- `gen_ai.usage.input_tokens` "SHOULD include all types of input tokens, including cached tokens",
  `gen_ai.usage.output_tokens`, `gen_ai.usage.cache_read.input_tokens` ("SHOULD be included in
  gen_ai.usage.input_tokens"), `gen_ai.usage.reasoning.output_tokens`;
- `gen_ai.response.time_to_first_chunk`: seconds "from when the client issues the generation
  request to when the first chunk is received";
- `server.address`, `server.port`, `error.type` (set "if the operation ended in an error").
Older names still emitted by default (the conventions' transition plan keeps v1.36.0 the default):
`gen_ai.usage.prompt_tokens` / `gen_ai.usage.completion_tokens` (renamed to input/output_tokens) and
`gen_ai.system` (renamed `gen_ai.provider.name`).  `gen_ai.usage.cache_read_input_tokens` is the
name OpenLLMetry emitted before the conventions had one (listed as deprecated in Sentry's
conventions).  A span carrying both a current and an older name uses the current one.

The span covers the whole logical operation, retries included (gen-ai-spans.md), so `e2e_s` =
end - start and `attempts` stays null (retries are not visible).  The prompt (`gen_ai.input.messages`,
opt-in) is hashed into `prompt_hash` when present, never stored.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pandas as pd

from toolkit.errors import DataFileError
from toolkit.importers._common import build_manifest
from toolkit.importers._traffic import (Where, count, non_negative, prompt_hash, read_records, require_object,
                                        traffic_table)

KIND = "otel"
VERSION = "1"
INFERENCE_OPERATIONS = {"chat", "text_completion", "generate_content"}
STATUS_ERROR = {2, "2", "STATUS_CODE_ERROR"}  # the enum as an integer (OTLP JSON) or by name (protojson)
# requests-table column -> attribute names, current first (see the module docstring)
ATTRIBUTES = {
    "prompt_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
    "completion_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
    "cached_tokens": ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"),
    "reasoning_tokens": ("gen_ai.usage.reasoning.output_tokens",),
}
VALUE_TYPES = ("stringValue", "intValue", "doubleValue", "boolValue", "arrayValue", "kvlistValue", "bytesValue")


def import_otel(path: str | os.PathLike, *, run_id: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Read an OTLP/JSON traces file (Collector file exporter) into a requests table, one row per
    GenAI inference span; other spans are skipped and counted in `manifest["skipped_spans"]`."""
    path = Path(path)
    rows: list[dict] = []
    skipped: Counter[str] = Counter()
    for where, document in read_records(path, list_keys=()):
        document = require_object(document, where)
        if "resourceSpans" not in document:
            raise where.error("resourceSpans", "is missing: not an OTLP traces file")
        for r, resource_spans in enumerate(_list(document, "resourceSpans", where)):
            resource = _attributes(resource_spans.get("resource", {}).get("attributes", []),
                                   where.inside(f"resourceSpans[{r}].resource"))
            for s, scope_spans in enumerate(_list(resource_spans, "scopeSpans", where.inside(f"resourceSpans[{r}]"))):
                at = f"resourceSpans[{r}].scopeSpans[{s}]"
                for i, span in enumerate(_list(scope_spans, "spans", where.inside(at))):
                    span_where = where.inside(f"{at}.spans[{i}]")
                    span = require_object(span, span_where)
                    attributes = _attributes(span.get("attributes", []), span_where)
                    reason = _not_a_call(attributes)
                    if reason:
                        skipped[reason] += 1
                        continue
                    rows.append(_row(span, attributes, resource, span_where))
    if not rows:
        raise DataFileError(path, f"no GenAI inference spans in this file (skipped: {dict(skipped) or 'none'})")
    run_id = run_id or f"{KIND}-{path.stem}"
    table = traffic_table(rows, run_id, path)
    notes = [
        "One row per GenAI inference span (gen_ai.operation.name chat, text_completion or generate_content, "
        "or gen_ai.request.model without an operation name); other spans are skipped and counted.",
        "model = gen_ai.response.model (the model that answered, which is priced) else gen_ai.request.model; "
        "config_id = gen_ai.request.model else gen_ai.response.model.",
        "prompt_tokens = gen_ai.usage.input_tokens, which includes cached tokens by the conventions; "
        "cached_tokens = gen_ai.usage.cache_read.input_tokens.",
        "ttft_s = gen_ai.response.time_to_first_chunk where present: the first chunk, which may carry no "
        "content yet (a role-only chunk), so it can be earlier than the first content token the toolkit times; "
        "e2e_s = span end - start (the span covers retries, which are not visible: attempts is null).",
        "status error where the span status code is ERROR or error.type is set.",
    ]
    manifest = build_manifest(kind=KIND, version=VERSION, run_id=run_id, sources=[path], table=table,
                              notes=notes, skipped_spans=dict(skipped))
    return table, manifest


def _list(parent: dict, key: str, where: Where) -> list:
    value = parent.get(key, [])
    if not isinstance(value, list):
        raise where.error(key, f"expected a list, got {type(value).__name__}")
    return value


def _attributes(raw: object, where: Where) -> dict[str, object]:
    """OTLP key/value attributes as a plain dict; an unknown value type is an error naming the key."""
    if not isinstance(raw, list):
        raise where.error("attributes", f"expected a list, got {type(raw).__name__}")
    decoded = {}
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise where.error("attributes", f"an attribute is not a {{key, value}} object: {entry!r:.80}")
        decoded[entry["key"]] = _value(entry.get("value", {}), where, entry["key"])
    return decoded


def _value(value: object, where: Where, key: str) -> object:
    if not isinstance(value, dict) or len(value) > 1:
        raise where.error(key, f"an attribute value must be an object with one of {', '.join(VALUE_TYPES)}: "
                               f"{value!r:.80}")
    if not value:
        return None  # an empty AnyValue: the attribute is present without a value
    kind, inner = next(iter(value.items()))
    if kind == "arrayValue":
        return [_value(item, where, key) for item in (inner or {}).get("values", [])]
    if kind == "kvlistValue":
        return {str(item.get("key")): _value(item.get("value", {}), where, key)
                for item in (inner or {}).get("values", []) if isinstance(item, dict)}
    if kind == "intValue":
        try:
            return int(inner)  # a decimal string in OTLP JSON
        except (TypeError, ValueError):
            raise where.error(key, f"intValue is not an integer ({inner!r})") from None
    if kind in ("stringValue", "doubleValue", "boolValue", "bytesValue"):
        return inner
    raise where.error(key, f"unknown attribute type {kind!r} (expected one of {', '.join(VALUE_TYPES)})")


def _not_a_call(attributes: dict[str, object]) -> str | None:
    """Why a span is not an LLM call, or None if it is one."""
    if not any(key.startswith("gen_ai.") for key in attributes):
        return "no gen_ai attributes"
    operation = attributes.get("gen_ai.operation.name")
    if operation is None:
        return None if "gen_ai.request.model" in attributes else "gen_ai attributes but no operation or model"
    return None if operation in INFERENCE_OPERATIONS else f"gen_ai.operation.name {operation}"


def _row(span: dict, attributes: dict[str, object], resource: dict[str, object], where: Where) -> dict:
    start = _unix_nano(span, "startTimeUnixNano", where)
    end = _unix_nano(span, "endTimeUnixNano", where)
    if end < start:
        raise where.error("endTimeUnixNano", f"is {(start - end) / 1e9:g} s before startTimeUnixNano")
    tokens = {column: _first(attributes, names, where) for column, names in ATTRIBUTES.items()}
    if tokens["cached_tokens"] is not None and tokens["prompt_tokens"] is not None \
            and tokens["cached_tokens"] > tokens["prompt_tokens"]:
        raise where.error(ATTRIBUTES["cached_tokens"][0], f"{tokens['cached_tokens']} cached tokens exceed "
                                                          f"{tokens['prompt_tokens']} input tokens")
    e2e = (end - start) / 1e9
    ttft = _double(attributes, "gen_ai.response.time_to_first_chunk", where)
    if ttft is not None and ttft > e2e:
        raise where.error("gen_ai.response.time_to_first_chunk", f"{ttft:g} s is longer than the span ({e2e:g} s)")
    requested, answered = _text(attributes, "gen_ai.request.model", where), _text(attributes, "gen_ai.response.model", where)
    status = span.get("status") or {}
    if not isinstance(status, dict):
        raise where.error("status", f"expected an object with code and message, got {status!r:.60}")
    error_type = attributes.get("error.type")
    failed = status.get("code") in STATUS_ERROR or error_type is not None
    http_status = attributes.get("http.response.status_code")
    return {
        "request_id": _span_id(span, where),
        "config_id": requested or answered,
        "model": answered or requested,
        "dataset": resource.get("service.name") or KIND,
        "endpoint": _endpoint(attributes),
        "batch": False,
        "cache_hit": False,
        "started_at": pd.Timestamp(start, unit="ns", tz="UTC"),
        "ttft_s": ttft,
        "e2e_s": e2e,
        **tokens,
        "usage_source": "server" if tokens["prompt_tokens"] is not None or tokens["completion_tokens"] is not None
        else None,
        "max_tokens": count(attributes.get("gen_ai.request.max_tokens"), where, "gen_ai.request.max_tokens"),
        "temperature": _double(attributes, "gen_ai.request.temperature", where),
        "status": "error" if failed else "ok",
        "error_type": (str(error_type) if error_type is not None else "span_status_error") if failed else None,
        "error_message": (status.get("message") or None) if failed else None,
        "http_status": count(http_status, where, "http.response.status_code") if failed else None,
        "prompt_hash": prompt_hash(attributes.get("gen_ai.input.messages")),
    }


def _unix_nano(span: dict, field: str, where: Where) -> int:
    value = span.get(field)
    if value in (None, "", "0", 0):  # 0 is the proto default: the time was never set
        raise where.error(field, "is missing")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise where.error(field, f"not an integer count of nanoseconds ({value!r})") from None


def _first(attributes: dict[str, object], names: tuple[str, ...], where: Where) -> int | None:
    for name in names:
        if name in attributes:
            value = attributes[name]
            if isinstance(value, float) or isinstance(value, str):
                raise where.error(name, f"expected an intValue token count, got {value!r}")
            return count(value, where, name)
    return None


def _double(attributes: dict[str, object], name: str, where: Where) -> float | None:
    value = attributes.get(name)
    if value is not None and (isinstance(value, (str, bool)) or not isinstance(value, (int, float))):
        raise where.error(name, f"expected a doubleValue, got {value!r}")
    return non_negative(value, where, name)


def _text(attributes: dict[str, object], name: str, where: Where) -> str | None:
    value = attributes.get(name)
    if value is not None and not isinstance(value, str):
        raise where.error(name, f"expected a stringValue, got {value!r}")
    return value or None


def _span_id(span: dict, where: Where) -> str:
    span_id = span.get("spanId")
    if not isinstance(span_id, str) or not span_id:
        raise where.error("spanId", "is missing")
    return span_id


def _endpoint(attributes: dict[str, object]) -> str:
    host = attributes.get("server.address")
    if not host:
        return "unknown"
    port = attributes.get("server.port")
    return f"{host}:{port}" if port is not None else str(host)
