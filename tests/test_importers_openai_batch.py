import json

import pandas as pd
import pytest

from toolkit.errors import DataFileError
from toolkit.importers.openai_batch import import_openai_batch, parse_batch_output

CHAT = {
    "id": "batch_req_1", "custom_id": "capitals/q1/r0/mini",
    "response": {"status_code": 200, "request_id": "req_a", "body": {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1711652795, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Paris"},
                     "logprobs": {"content": [{"token": "Par", "logprob": -0.1},
                                              {"token": "is", "logprob": -0.3}]}}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280,
                  "prompt_tokens_details": {"cached_tokens": 1024},
                  "completion_tokens_details": {"reasoning_tokens": 64}}}},
    "error": None,
}
BAD_REQUEST = {
    "id": "batch_req_2", "custom_id": "capitals/q2/r0/mini",
    "response": {"status_code": 400, "request_id": "req_b", "body": {"error": {
        "message": "bad", "type": "invalid_request_error", "param": None, "code": None}}},
    "error": None,
}
EXPIRED = {"id": "batch_req_3", "custom_id": "capitals/q3/r1/mini", "response": None,
           "error": {"code": "batch_expired", "message": "This request could not be executed before the "
                                                         "completion window expired."}}
PATTERN = r"(?P<dataset>[^/]+)/(?P<item_id>[^/]+)/r(?P<repeat>\d+)/(?P<config_id>.+)"


def lines(*objects):
    return [json.dumps(o) for o in objects]


def test_chat_completion_usage_and_logprobs():
    table = parse_batch_output(lines(CHAT, BAD_REQUEST, EXPIRED))
    ok = table.iloc[0]
    assert (ok["request_id"], ok["status"], ok["http_status"], ok["batch"]) == (
        "capitals/q1/r0/mini", "ok", 200, True)
    assert (ok["prompt_tokens"], ok["cached_tokens"], ok["completion_tokens"], ok["reasoning_tokens"]) == (
        1200, 1024, 80, 64)
    assert ok["usage_source"] == "server" and ok["output_text"] == "Paris"
    assert ok["logprob_mean"] == pytest.approx(-0.2)
    assert ok["started_at"] == pd.Timestamp(1711652795, unit="s", tz="UTC")
    assert pd.isna(ok["ttft_s"]) and pd.isna(ok["e2e_s"]) and ok["tbt_s"] is None
    assert (ok["endpoint"], ok["config_id"]) == ("api.openai.com", "gpt-4o-mini")


def test_failed_lines_are_errors_with_the_batch_model():
    table = parse_batch_output(lines(CHAT, BAD_REQUEST, EXPIRED))
    assert table["status"].tolist() == ["ok", "error", "error"]
    assert table["error_type"].tolist()[1:] == ["invalid_request_error", "batch_expired"]
    assert table["http_status"].iloc[1] == 400 and pd.isna(table["http_status"].iloc[2])
    assert (table["model"] == "gpt-4o-mini").all()
    assert table["prompt_tokens"].iloc[1:].isna().all() and table["usage_source"].iloc[1:].isna().all()


def test_id_pattern_fills_item_identity():
    table = parse_batch_output(lines(CHAT, EXPIRED), id_pattern=PATTERN)
    assert table[["dataset", "item_id", "repeat", "config_id"]].values.tolist() == [
        ["capitals", "q1", 0, "mini"], ["capitals", "q3", 1, "mini"]]
    with pytest.raises(DataFileError, match=r"batch output line 1: field \"custom_id\": 'x' does not match"):
        parse_batch_output(lines({**CHAT, "custom_id": "x"}), id_pattern=PATTERN)


def test_completions_and_responses_bodies():
    legacy = {**CHAT, "response": {"status_code": 200, "body": {
        "object": "text_completion", "created": 1, "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": " Rome", "logprobs": {"token_logprobs": [-1.0, -2.0]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2}}}}
    responses = {**CHAT, "custom_id": "r2", "response": {"status_code": 200, "body": {
        "object": "response", "created_at": 2, "model": "gpt-4.1",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "Oslo"}]}],
        "usage": {"input_tokens": 7, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens_details": {"reasoning_tokens": 1}}}}}
    table = parse_batch_output(lines(legacy, responses))
    assert table["output_text"].tolist() == [" Rome", "Oslo"]
    assert table["logprob_mean"].iloc[0] == -1.5 and pd.isna(table["logprob_mean"].iloc[1])
    assert table[["prompt_tokens", "completion_tokens"]].values.tolist() == [[5, 2], [7, 3]]
    assert table["reasoning_tokens"].iloc[1] == 1


def test_import_file_sets_run_and_manifest(tmp_path):
    path = tmp_path / "batch_abc_output.jsonl"
    path.write_text("\n".join(lines(CHAT, EXPIRED)) + "\n\n")
    table, manifest = import_openai_batch(path, config_id="mini-batch")
    assert (table["run_id"] == "openai_batch-batch_abc_output").all()
    assert (table["config_id"] == "mini-batch").all()
    assert manifest["importer"] == {"kind": "openai_batch", "version": "1"} and manifest["n_requests"] == 2


def test_bad_lines(tmp_path):
    with pytest.raises(DataFileError) as caught:
        parse_batch_output([json.dumps(CHAT), "{not json"], source="out.jsonl")
    assert caught.value.line == 2 and str(caught.value).startswith("out.jsonl line 2: not valid JSON")
    missing = {k: v for k, v in CHAT.items() if k != "custom_id"}
    with pytest.raises(DataFileError, match='out.jsonl line 1: field "custom_id": is missing'):
        parse_batch_output(lines(missing), source="out.jsonl")
    bad_usage = json.loads(json.dumps(CHAT))
    bad_usage["response"]["body"]["usage"]["completion_tokens"] = "eighty"
    with pytest.raises(DataFileError, match=r"\"usage.completion_tokens\": not an integer \('eighty'\)"):
        parse_batch_output(lines(bad_usage))
    with pytest.raises(DataFileError, match="duplicate request id 'capitals/q1/r0/mini'"):
        parse_batch_output(lines(CHAT, CHAT))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataFileError, match="the file is empty"):
        import_openai_batch(empty)


def test_output_and_error_files_import_together_and_a_request_in_both_is_named(tmp_path):
    output, errors = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    output.write_text("\n".join(lines(CHAT, BAD_REQUEST)) + "\n")
    errors.write_text("\n".join(lines(EXPIRED)) + "\n")
    table, manifest = import_openai_batch(output, errors=errors)
    assert table["request_id"].tolist() == [CHAT["custom_id"], BAD_REQUEST["custom_id"], EXPIRED["custom_id"]]
    assert table["status"].tolist() == ["ok", "error", "error"] and (table["model"] == "gpt-4o-mini").all()
    assert [source["path"] for source in manifest["source_files"]] == [str(output), str(errors)]
    errors.write_text("\n".join(lines(EXPIRED, {**EXPIRED, "custom_id": CHAT["custom_id"]})) + "\n")
    with pytest.raises(DataFileError) as caught:
        import_openai_batch(output, errors=errors)
    assert str(caught.value).startswith(f"{errors} line 2: field \"custom_id\": duplicate request id "
                                        f"'{CHAT['custom_id']}' (first at {output} line 1)")
