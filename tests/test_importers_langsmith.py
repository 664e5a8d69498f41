"""A LangSmith runs export built in the documented run format (langsmith.py says where each
field's meaning comes from): JSON lines of runs, and the runs query page `{"runs": [...]}`."""
import json

import pandas as pd
import pytest

from toolkit.errors import DataFileError
from toolkit.importers import IMPORTERS
from toolkit.importers.langsmith import import_langsmith
from toolkit.schema import REQUEST_COLUMNS

MESSAGES = [[{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"],
              "kwargs": {"content": "Capital of France?"}}]]


def llm_run(id_, **fields):
    run = {"id": id_, "name": "ChatOpenAI", "run_type": "llm", "trace_id": "tr-" + id_,
           "dotted_order": "20250304T100000000000Z" + id_, "session_name": "support-bot",
           "start_time": "2025-03-04T10:00:00.000000", "end_time": "2025-03-04T10:00:02.250000",
           "first_token_time": "2025-03-04T10:00:00.610000", "status": "success", "error": None,
           "inputs": {"messages": MESSAGES}, "outputs": {"generations": []},
           "extra": {"invocation_params": {"model": "gpt-4o-mini", "model_name": "gpt-4o-mini",
                                           "temperature": 0.2, "max_tokens": 512, "stream": True},
                     "metadata": {"ls_provider": "openai", "ls_model_name": "gpt-4o-mini",
                                  "ls_model_type": "chat", "ls_temperature": 0.2, "ls_max_tokens": 512}},
           "prompt_tokens": 2048, "completion_tokens": 120, "total_tokens": 2168,
           "prompt_token_details": {"cache_read": 1536}, "completion_token_details": {"reasoning": 0},
           # LangSmith's price: (512 x 0.15 + 1536 x 0.075 + 120 x 0.6) / 1e6, as decimal strings
           "prompt_cost": "0.0001920", "completion_cost": "0.0000720", "total_cost": "0.0002640"}
    return {**run, **fields}


CHAIN = {"id": "c1", "name": "RunnableSequence", "run_type": "chain", "start_time": "2025-03-04T09:59:59",
         "end_time": "2025-03-04T10:00:03", "status": "success"}
TOOL = {"id": "t1", "name": "search", "run_type": "tool", "start_time": "2025-03-04T10:00:03",
        "end_time": "2025-03-04T10:00:04", "status": "success"}
PENDING = llm_run("p1", status="pending", end_time=None, first_token_time=None)
FAILED = llm_run("f1", status="error", start_time="2025-03-04T10:00:05", end_time="2025-03-04T10:00:05.400",
                 first_token_time=None, prompt_tokens=None, completion_tokens=None, total_tokens=None,
                 prompt_token_details=None, completion_token_details=None, prompt_cost=None,
                 completion_cost=None, total_cost=None,
                 error="Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                       "openai.RateLimitError: Error code: 429 - Rate limit reached\n")
OLDER = llm_run("o1", start_time="2025-03-04T10:00:07+00:00", end_time="2025-03-04T10:00:08+00:00",
                first_token_time=None, extra={"invocation_params": {"model_name": "gpt-3.5-turbo"}},
                prompt_token_details=None, completion_token_details=None, total_cost=None,
                prompt_cost=0.00002, completion_cost=0.000015, prompt_tokens=40, completion_tokens=10)


def jsonl(tmp_path, *runs, name="runs.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    return path


@pytest.fixture()
def imported(tmp_path):
    return import_langsmith(jsonl(tmp_path, CHAIN, llm_run("r1"), TOOL, PENDING, FAILED, OLDER))


def test_an_llm_run(imported):
    table, _ = imported
    assert list(table.columns) == list(REQUEST_COLUMNS) and "langsmith" in IMPORTERS
    row = table.set_index("request_id").loc["r1"]
    assert row["started_at"] == pd.Timestamp("2025-03-04T10:00:00Z")
    assert row["ttft_s"] == pytest.approx(0.61) and row["e2e_s"] == pytest.approx(2.25)
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"], row["reasoning_tokens"]) == (
        2048, 1536, 120, 0)
    assert (row["model"], row["endpoint"], row["dataset"]) == ("gpt-4o-mini", "openai", "support-bot")
    assert (row["max_tokens"], row["temperature"], row["usage_source"], row["status"]) == (512, 0.2, "server", "ok")
    assert row["reported_cost_usd"] == pytest.approx(0.000264) and len(row["prompt_hash"]) == 16


def test_a_failed_run_keeps_the_exception_line(imported):
    table, _ = imported
    row = table.set_index("request_id").loc["f1"]
    assert (row["status"], row["error_type"]) == ("error", "reported_error")
    assert row["error_message"] == "openai.RateLimitError: Error code: 429 - Rate limit reached"
    assert row["e2e_s"] == pytest.approx(0.4) and pd.isna(row["prompt_tokens"]) and pd.isna(row["usage_source"])


def test_model_from_invocation_params_and_cost_from_its_parts(imported):
    table, _ = imported
    row = table.set_index("request_id").loc["o1"]
    assert (row["model"], row["endpoint"]) == ("gpt-3.5-turbo", "unknown")
    assert pd.isna(row["cached_tokens"]) and row["reported_cost_usd"] == pytest.approx(0.000035)


def test_other_runs_and_pending_ones_are_skipped_and_counted(imported):
    table, manifest = imported
    assert sorted(table["request_id"]) == ["f1", "o1", "r1"]
    assert manifest["skipped_runs"] == {"run_type chain": 1, "run_type tool": 1, "status pending (not finished)": 1}
    assert table.set_index("request_id")["sequence"].to_dict() == {"r1": 0, "f1": 1, "o1": 2}


def test_the_reported_cost_is_compared_with_ours(imported):
    _, manifest = imported
    compared = {entry["model"]: entry for entry in manifest["reported_cost"]}
    assert compared["gpt-4o-mini"]["priced_usd"] == pytest.approx((512 * 0.15 + 1536 * 0.075 + 120 * 0.6) / 1e6)
    assert compared["gpt-4o-mini"]["reported_over_priced"] == pytest.approx(1.0)
    assert set(compared) == {"gpt-4o-mini", "gpt-3.5-turbo"}


def test_the_runs_query_page_reads_like_json_lines(tmp_path, imported):
    path = tmp_path / "query.json"
    path.write_text(json.dumps({"runs": [llm_run("r1"), CHAIN], "cursors": {"next": None}}))
    table, _ = import_langsmith(path)
    expected = imported[0].set_index("request_id").loc[["r1"]].reset_index()
    pd.testing.assert_frame_equal(table.drop(columns="run_id"), expected.drop(columns="run_id"))


@pytest.mark.parametrize("change, field, message", [
    ({"end_time": None}, "end_time", "is missing"),
    ({"start_time": 1741082400}, "start_time", "not an ISO 8601 time (1741082400)"),
    ({"end_time": "2025-03-04T09:59:58"}, "end_time", "is 2 s before the start"),
    ({"first_token_time": "2025-03-04T10:00:09"}, "first_token_time", "is outside the request's start and end"),
    ({"prompt_tokens": -1}, "prompt_tokens", "is negative (-1)"),
    ({"completion_tokens": "lots"}, "completion_tokens", "not a number ('lots')"),
    ({"prompt_token_details": {"cache_read": 4096}}, "prompt_token_details.cache_read",
     "4096 cached tokens exceed 2048 prompt tokens"),
    ({"total_cost": "-0.1"}, "total_cost", "is negative ('-0.1')"),
    ({"id": ""}, "id", "is missing"),
])
def test_broken_runs_name_file_line_and_field(tmp_path, change, field, message):
    path = jsonl(tmp_path, llm_run("ok"), llm_run("bad", **change))
    with pytest.raises(DataFileError) as caught:
        import_langsmith(path)
    assert (caught.value.line, caught.value.field) == (2, field)
    assert str(caught.value).startswith(f'{path} line 2: field "{field}": {message}')


def test_unusable_files(tmp_path):
    with pytest.raises(DataFileError, match=r'line 1: field "run_type": is missing'):
        import_langsmith(jsonl(tmp_path, {"id": "x"}))
    with pytest.raises(DataFileError, match=r"no finished llm runs in this file \(skipped: \{'run_type chain': 1\}\)"):
        import_langsmith(jsonl(tmp_path, CHAIN, name="chains.jsonl"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataFileError, match="the file is empty"):
        import_langsmith(empty)
