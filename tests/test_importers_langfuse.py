"""A Langfuse observations export built in the documented format (langfuse.py says where each
field's meaning comes from): the API's JSON page `{"data": [...], "meta": {...}}` and JSON lines."""
import json

import pandas as pd
import pytest

from toolkit.errors import DataFileError
from toolkit.importers import IMPORTERS
from toolkit.importers.langfuse import import_langfuse
from toolkit.schema import REQUEST_COLUMNS

MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Capital of France?"}]


def generation(id_, **fields):
    record = {"id": id_, "traceId": "t-" + id_, "type": "GENERATION", "name": "ChatOpenAI",
              "startTime": "2025-03-04T10:00:00.000Z", "endTime": "2025-03-04T10:00:01.530Z",
              "completionStartTime": "2025-03-04T10:00:00.412Z", "model": "gpt-4o-mini",
              "modelParameters": {"temperature": 0, "max_tokens": 256}, "input": MESSAGES,
              "level": "DEFAULT", "statusMessage": None, "parentObservationId": None,
              # the OpenAI integration's keys: cached tokens taken out of "input", so the parts add up
              "usageDetails": {"input": 176, "input_cached_tokens": 1024, "output": 85, "total": 1285},
              # Langfuse's price for it: 176 x 0.15 + 1024 x 0.075 + 85 x 0.6 USD per million
              "costDetails": {"input": 0.0000264, "input_cached_tokens": 0.0000768, "output": 0.000051,
                              "total": 0.0001542}}
    return {**record, **fields}


ANTHROPIC = generation(
    "g2", model="claude-3-5-sonnet-20241022", startTime="2025-03-04T10:00:05Z", endTime="2025-03-04T10:00:09.250Z",
    completionStartTime=None, modelParameters={"max_tokens": "Infinity"},
    usageDetails={"input": 20, "cache_read_input_tokens": 2000, "cache_creation_input_tokens": 500, "output": 300},
    costDetails=None, calculatedTotalCost=0.007035)  # includes the 1.25x cache-write price
FAILED = generation("g3", level="ERROR", statusMessage="Error code: 429 - Rate limit reached",
                    startTime="2025-03-04T10:00:10Z", endTime="2025-03-04T10:00:10.200Z",
                    completionStartTime=None, usageDetails={}, costDetails={})
IMAGES = generation("g4", model="my-finetune", startTime="2025-03-04T10:00:12Z", endTime="2025-03-04T10:00:13Z",
                    completionStartTime=None, usageDetails={"input": 5, "output": 3, "image_units": 2},
                    costDetails={"total": 0.01})
SPAN = {"id": "s1", "type": "SPAN", "name": "retrieve", "startTime": "2025-03-04T09:59:59Z",
        "endTime": "2025-03-04T10:00:00Z"}
EVENT = {"id": "e1", "type": "EVENT", "name": "feedback", "startTime": "2025-03-04T10:00:02Z"}


def api_page(tmp_path, *records, name="observations.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"data": list(records), "meta": {"page": 1, "limit": 50,
                                                                "totalItems": len(records), "totalPages": 1}}))
    return path


@pytest.fixture()
def imported(tmp_path):
    return import_langfuse(api_page(tmp_path, SPAN, generation("g1"), ANTHROPIC, FAILED, EVENT, IMAGES))


def test_an_openai_generation(imported):
    table, _ = imported
    assert list(table.columns) == list(REQUEST_COLUMNS) and "langfuse" in IMPORTERS
    row = table.set_index("request_id").loc["g1"]
    assert row["started_at"] == pd.Timestamp("2025-03-04T10:00:00Z")
    assert row["ttft_s"] == pytest.approx(0.412) and row["e2e_s"] == pytest.approx(1.53)
    # the cached part is put back into prompt_tokens (the requests table's convention)
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (1200, 1024, 85)
    assert pd.isna(row["reasoning_tokens"])
    assert (row["max_tokens"], row["temperature"], row["usage_source"]) == (256, 0.0, "server")
    assert row["reported_cost_usd"] == pytest.approx(0.0001542) and row["status"] == "ok"
    assert len(row["prompt_hash"]) == 16 and pd.isna(row["score"])


def test_anthropic_cache_reads_and_writes_are_input(imported):
    table, _ = imported
    row = table.set_index("request_id").loc["g2"]
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (2520, 2000, 300)
    assert pd.isna(row["ttft_s"]) and row["e2e_s"] == pytest.approx(4.25)
    assert pd.isna(row["max_tokens"])  # "Infinity" is not a limit
    assert row["reported_cost_usd"] == pytest.approx(0.007035)


def test_an_error_level_generation_is_an_error_row(imported):
    table, _ = imported
    row = table.set_index("request_id").loc["g3"]
    assert (row["status"], row["error_type"]) == ("error", "reported_error")
    assert row["error_message"] == "Error code: 429 - Rate limit reached"
    assert pd.isna(row["prompt_tokens"]) and pd.isna(row["usage_source"]) and pd.isna(row["reported_cost_usd"])


def test_skipped_types_unclassified_keys_and_send_order(imported):
    table, manifest = imported
    assert manifest["skipped_observations"] == {"type SPAN": 1, "type EVENT": 1}
    assert manifest["unclassified_usage_keys"] == {"image_units": 1}
    row = table.set_index("request_id").loc["g4"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (5, 3)
    assert table.set_index("request_id")["sequence"].to_dict() == {"g1": 0, "g2": 1, "g3": 2, "g4": 3}


def test_the_reported_cost_is_compared_with_ours(imported):
    _, manifest = imported
    compared = {entry["model"]: entry for entry in manifest["reported_cost"]}
    openai = compared["gpt-4o-mini"]
    assert openai["requests"] == 1 and openai["priced_usd"] == pytest.approx(0.0001542)
    assert openai["reported_over_priced"] == pytest.approx(1.0)
    # our table prices cache writes as plain input: Langfuse's 1.25x write price shows as a gap
    claude = compared["claude-3-5-sonnet-20241022"]
    assert claude["priced_usd"] == pytest.approx((520 * 3 + 2000 * 0.3 + 300 * 15) / 1e6)
    assert claude["reported_over_priced"] == pytest.approx(0.007035 / 0.00666)
    assert compared["my-finetune"]["priced_usd"] is None and "no price" in compared["my-finetune"]["why"]
    assert "gpt-4o-mini" in compared and len(compared) == 3  # the failed call has no reported cost


def test_json_lines_read_like_the_api_page(tmp_path, imported):
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (SPAN, generation("g1"), ANTHROPIC)) + "\n")
    table, _ = import_langfuse(path, run_id="lf")
    expected = imported[0].set_index("request_id").loc[["g1", "g2"]].reset_index()
    pd.testing.assert_frame_equal(table.drop(columns="run_id"), expected.drop(columns="run_id"))


@pytest.mark.parametrize("change, field, message", [
    ({"endTime": None}, "endTime", "is missing"),
    ({"startTime": "yesterday"}, "startTime", "not an ISO 8601 time ('yesterday')"),
    ({"endTime": "2025-03-04T09:59:59Z"}, "endTime", "is 1 s before the start"),
    ({"completionStartTime": "2025-03-04T10:00:02Z"}, "completionStartTime", "is outside the request's start and end"),
    ({"usageDetails": {"input": -4, "output": 1}}, "usageDetails.input", "is negative (-4)"),
    ({"usageDetails": {"input": 1.5}}, "usageDetails.input", "not a whole number (1.5)"),
    ({"usageDetails": [1, 2]}, "usageDetails", "expected an object of named counts"),
    ({"costDetails": {"total": "free"}}, "costDetails.total", "not a number ('free')"),
    ({"id": None}, "id", "is missing"),
])
def test_broken_generations_name_file_record_and_field(tmp_path, change, field, message):
    path = api_page(tmp_path, generation("ok"), generation("bad", **change))
    with pytest.raises(DataFileError) as caught:
        import_langfuse(path)
    assert caught.value.field == field
    assert str(caught.value).startswith(f'{path}: field "{field}": {message}')
    assert str(caught.value).endswith(" in record 1")


def test_broken_line_and_unusable_files(tmp_path):
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps(generation("ok")) + "\n" + json.dumps({"id": "x", "startTime": "2025-01-01"}) + "\n")
    with pytest.raises(DataFileError, match=r'line 2: field "type": is missing'):
        import_langfuse(path)
    with pytest.raises(DataFileError, match=r"no generations in this file \(skipped: \{'type SPAN': 1\}\)"):
        import_langfuse(api_page(tmp_path, SPAN, name="spans.json"))
    with pytest.raises(DataFileError, match="the file holds no records"):
        import_langfuse(api_page(tmp_path, name="empty.json"))
    with pytest.raises(DataFileError, match="duplicate request id 'g1'"):
        import_langfuse(api_page(tmp_path, generation("g1"), generation("g1"), name="twice.json"))


def test_a_run_dir_keeps_the_reported_cost_and_the_comparison(tmp_path):
    from toolkit.importers import import_to_run_dir
    from toolkit.store import load_run, read_manifest

    run_dir = import_to_run_dir("langfuse", api_page(tmp_path, generation("g1"), ANTHROPIC), tmp_path / "lf")
    table = load_run(run_dir).set_index("request_id")
    assert table.loc["g2", "reported_cost_usd"] == pytest.approx(0.007035)
    assert table.loc["g1", "prompt_hash"] == table.loc["g2", "prompt_hash"]  # the same messages
    assert [entry["model"] for entry in read_manifest(run_dir)["reported_cost"]] == [
        "claude-3-5-sonnet-20241022", "gpt-4o-mini"]
