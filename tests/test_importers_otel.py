"""OpenTelemetry GenAI spans in the Collector file exporter's OTLP/JSON lines (format in otel.py).

The file below is built the way the exporter writes it: one TracesData object per line, 64-bit
integers as decimal strings, status codes as integers.  Its spans follow the GenAI conventions:
a chat span in the current names, one in the older names (gen_ai.system, usage.prompt_tokens),
a failed call, and spans that are not LLM calls (an embeddings call, an agent, an HTTP server span).
"""
import json

import pandas as pd
import pytest

from toolkit.errors import DataFileError
from toolkit.importers import IMPORTERS
from toolkit.importers.otel import import_otel
from toolkit.schema import REQUEST_COLUMNS

T0 = 1_731_776_223_000_000_000  # 2024-11-16T17:57:03Z in ns


def attr(key, value):
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # int64 as a decimal string
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    if isinstance(value, list):
        return {"key": key, "value": {"arrayValue": {"values": [attr("", v)["value"] for v in value]}}}
    return {"key": key, "value": {"stringValue": value}}


def span(span_id, start_ms, end_ms, attributes, *, status=None, name="chat"):
    return {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": span_id, "parentSpanId": "", "name": name,
            "kind": 3, "startTimeUnixNano": str(T0 + start_ms * 1_000_000),
            "endTimeUnixNano": str(T0 + end_ms * 1_000_000),
            "attributes": [attr(k, v) for k, v in attributes.items()], "status": status or {}}


MESSAGES = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]}])
CHAT = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.request.max_tokens": 256, "gen_ai.request.temperature": 0.0,
        "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.cache_read.input_tokens": 1024,
        "gen_ai.usage.output_tokens": 85, "gen_ai.response.time_to_first_chunk": 0.35,
        "gen_ai.response.finish_reasons": ["stop"], "gen_ai.input.messages": MESSAGES,
        "server.address": "api.openai.com", "server.port": 443}
OLD_NAMES = {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-3.5-turbo",
             "gen_ai.usage.prompt_tokens": 40, "gen_ai.usage.completion_tokens": 12}
FAILED = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "error.type": "RateLimitError",
          "http.response.status_code": 429, "server.address": "api.openai.com"}
EMBEDDINGS = {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3-small",
              "gen_ai.usage.input_tokens": 9}
AGENT = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Math Tutor", "gen_ai.request.model": "gpt-4o"}
HTTP = {"http.request.method": "POST", "url.path": "/ask"}


def traces_data(*spans, service="support-bot"):
    return {"resourceSpans": [{"resource": {"attributes": [attr("service.name", service)]},
                               "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2"},
                                               "spans": list(spans)}]}]}


def write(tmp_path, *documents, name="traces.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(d) + "\n" for d in documents))
    return path


def collector_file(tmp_path):
    first = traces_data(span("a1", 0, 2400, CHAT), span("a0", -100, 2500, AGENT, name="invoke_agent"),
                        span("h0", -200, 2600, HTTP, name="POST /ask"))
    second = traces_data(span("b1", 3000, 3900, OLD_NAMES, name="openai.chat"),
                         span("b2", 5000, 5150, FAILED, status={"code": 2, "message": "Rate limit reached"}),
                         span("b3", 6000, 6020, EMBEDDINGS, name="embeddings"))
    return write(tmp_path, first, second)


@pytest.fixture()
def imported(tmp_path):
    return import_otel(collector_file(tmp_path))


def test_a_chat_span_in_current_names(imported):
    table, _ = imported
    assert list(table.columns) == list(REQUEST_COLUMNS) and "otel" in IMPORTERS
    row = table.set_index("request_id").loc["a1"]
    assert row["started_at"] == pd.Timestamp(T0, unit="ns", tz="UTC")
    assert row["e2e_s"] == pytest.approx(2.4) and row["ttft_s"] == pytest.approx(0.35)
    # input_tokens already includes the cache reads: nothing is added or subtracted
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (1200, 1024, 85)
    assert (row["model"], row["config_id"]) == ("gpt-4o-mini-2024-07-18", "gpt-4o-mini")
    assert (row["endpoint"], row["dataset"], row["usage_source"]) == ("api.openai.com:443", "support-bot", "server")
    assert (row["max_tokens"], row["temperature"], row["status"]) == (256, 0.0, "ok")
    assert row["prompt_hash"] is not pd.NA and len(row["prompt_hash"]) == 16
    assert pd.isna(row["score"]) and pd.isna(row["attempts"])


def test_older_attribute_names_are_read(imported):
    table, _ = imported
    row = table.set_index("request_id").loc["b1"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (40, 12)
    assert row["model"] == "gpt-3.5-turbo" and pd.isna(row["ttft_s"]) and row["endpoint"] == "unknown"


def test_a_failed_call_is_an_error_row(imported):
    table, _ = imported
    row = table.set_index("request_id").loc["b2"]
    assert (row["status"], row["error_type"], row["http_status"]) == ("error", "RateLimitError", 429)
    assert row["error_message"] == "Rate limit reached" and row["e2e_s"] == pytest.approx(0.15)
    assert pd.isna(row["prompt_tokens"]) and pd.isna(row["usage_source"])


def test_spans_that_are_not_llm_calls_are_skipped_and_counted(imported):
    table, manifest = imported
    assert sorted(table["request_id"]) == ["a1", "b1", "b2"]
    assert manifest["skipped_spans"] == {"gen_ai.operation.name invoke_agent": 1, "no gen_ai attributes": 1,
                                         "gen_ai.operation.name embeddings": 1}
    assert table.set_index("request_id")["sequence"].to_dict() == {"a1": 0, "b1": 1, "b2": 2}


def test_one_pretty_printed_document_reads_like_a_line(tmp_path):
    path = tmp_path / "body.json"
    path.write_text(json.dumps(traces_data(span("c1", 0, 1000, CHAT)), indent=2))
    table, _ = import_otel(path)
    assert table["request_id"].tolist() == ["c1"] and table["e2e_s"].iloc[0] == pytest.approx(1.0)


def test_equal_prompts_hash_alike_and_differ_from_others(tmp_path):
    other = {**CHAT, "gen_ai.input.messages": MESSAGES.replace("France", "Spain")}
    path = write(tmp_path, traces_data(span("d1", 0, 900, CHAT), span("d2", 1000, 1900, CHAT),
                                       span("d3", 2000, 2900, other)))
    hashes = import_otel(path)[0].set_index("request_id")["prompt_hash"]
    assert hashes["d1"] == hashes["d2"] != hashes["d3"]


def broken(tmp_path, bad_span):
    return write(tmp_path, traces_data(span("ok", 0, 1000, CHAT)), traces_data(span("ok2", 0, 1000, CHAT), bad_span))


WHERE = "in resourceSpans[0].scopeSpans[0].spans[1]"


@pytest.mark.parametrize("bad, field, message", [
    ({**span("x", 0, 1000, CHAT), "endTimeUnixNano": None}, "endTimeUnixNano", "is missing"),
    (span("x", 500, 100, CHAT), "endTimeUnixNano", "is 0.4 s before startTimeUnixNano"),
    (span("x", 0, 1000, {**CHAT, "gen_ai.usage.output_tokens": -3}), "gen_ai.usage.output_tokens", "is negative (-3)"),
    (span("x", 0, 1000, {**CHAT, "gen_ai.usage.input_tokens": 12.5}), "gen_ai.usage.input_tokens",
     "expected an intValue token count, got 12.5"),
    (span("x", 0, 100, CHAT), "gen_ai.response.time_to_first_chunk", "0.35 s is longer than the span (0.1 s)"),
    (span("x", 0, 1000, {**CHAT, "gen_ai.usage.cache_read.input_tokens": 5000}),
     "gen_ai.usage.cache_read.input_tokens", "5000 cached tokens exceed 1200 input tokens"),
    ({**span("x", 0, 1000, CHAT), "attributes": [{"key": "gen_ai.request.model", "value": {"fooValue": 1}}]},
     "gen_ai.request.model", "unknown attribute type 'fooValue' (expected one of stringValue, intValue, "
                             "doubleValue, boolValue, arrayValue, kvlistValue, bytesValue)"),
    ({**span("x", 0, 1000, CHAT), "spanId": ""}, "spanId", "is missing"),
])
def test_broken_spans_name_file_line_and_field(tmp_path, bad, field, message):
    path = broken(tmp_path, bad)
    with pytest.raises(DataFileError) as caught:
        import_otel(path)
    assert (caught.value.line, caught.value.field) == (2, field)
    assert str(caught.value) == f'{path} line 2: field "{field}": {message} {WHERE}'


def test_unusable_files(tmp_path):
    with pytest.raises(DataFileError, match="no GenAI inference spans in this file .*'no gen_ai attributes': 1"):
        import_otel(write(tmp_path, traces_data(span("h", 0, 1, HTTP))))
    with pytest.raises(DataFileError, match='line 1: field "resourceSpans": is missing: not an OTLP traces file'):
        import_otel(write(tmp_path, {"resourceMetrics": []}, name="metrics.jsonl"))
    path = tmp_path / "cut.jsonl"
    path.write_text(json.dumps(traces_data(span("c", 0, 1000, CHAT))) + "\n" + '{"resourceSpans": [\n')
    with pytest.raises(DataFileError, match="line 2: not valid JSON"):
        import_otel(path)
    with pytest.raises(DataFileError, match="duplicate request id 'a1'"):
        import_otel(write(tmp_path, traces_data(span("a1", 0, 1000, CHAT)), traces_data(span("a1", 0, 1000, CHAT)),
                          name="twice.jsonl"))
