"""The one builder of request rows: configuration columns, the item, the outcome and the grade."""
import datetime as dt

import pytest

from scripted_runs import write_config
from toolkit.config_file import load_config
from toolkit.records import Answer, Failure, outcome_columns, request_record
from toolkit.runner import plan
from toolkit.schema import REQUEST_COLUMNS

WHEN = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.fixture
def planned(tmp_path):
    path = write_config(tmp_path, "http://127.0.0.1:9/v1", datasets=["capitals"], items=1, variants=["chat"],
                        max_tokens=16, concurrency=3)
    (only,) = plan(load_config(path))
    return only


def test_an_answer_is_graded_by_the_datasets_grader_and_carries_its_configuration(planned):
    text = f"{planned.item.expected}\nmore"
    right = request_record(planned, Answer(text, completion_tokens=3, usage_source="server", tbt_s=[0.1, 0.2]),
                           run_id="r", sequence=7, endpoint="127.0.0.1:9", started_at=WHEN, attempts=2)
    assert (right.status, right.score, right.correct, right.grader) == ("ok", 1.0, True, planned.dataset.grader.name)
    assert (right.output_text, right.completion_tokens, right.tbt_s) == (text, 3, [0.1, 0.2])
    assert (right.run_id, right.request_id, right.sequence, right.attempts, right.batch) == (
        "r", planned.request_id, 7, 2, False)
    assert (right.dataset, right.item_id, right.repeat, right.expected) == (
        "capitals", planned.item.item_id, 0, planned.item.expected)
    for column, value in planned.config.columns().items():
        assert getattr(right, column) == value, column
    assert (right.endpoint_name, right.max_tokens, right.concurrency, right.model) == ("scripted", 16, 3, "scripted")
    wrong = request_record(planned, Answer("Atlantis"), run_id="r", sequence=0, endpoint="h", started_at=WHEN)
    assert (wrong.score, wrong.correct) == (0.0, False)
    empty = request_record(planned, Answer(None), run_id="r", sequence=0, endpoint="h", started_at=WHEN)
    assert (empty.output_text, empty.correct) == (None, False)  # a body without text is graded as ""


def test_a_failure_is_not_graded_and_a_batch_row_has_no_timings(planned):
    failed = request_record(planned, Failure("rate_limited", 429, "slow down"), run_id="r", sequence=1,
                            endpoint="h", started_at=WHEN, attempts=5)
    assert (failed.status, failed.error_type, failed.http_status, failed.error_message) == (
        "error", "rate_limited", 429, "slow down")
    assert failed.score is None and failed.correct is None and failed.grader is None and failed.tbt_s == []
    assert failed.config_id == planned.config.config_id and failed.expected == planned.item.expected
    for outcome in (Failure("batch_expired"), Answer("Paris", tbt_s=[0.5])):
        row = request_record(planned, outcome, run_id="r", sequence=1, endpoint="h", started_at=None, batch=True)
        assert row.batch and row.tbt_s is None


def test_outcome_columns_are_requests_table_columns():
    for outcome in (Answer("x", prompt_tokens=1), Failure("timeout")):
        columns = outcome_columns(outcome)
        assert set(columns) <= set(REQUEST_COLUMNS), set(columns) - set(REQUEST_COLUMNS)
    assert outcome_columns(Answer("x"))["status"] == "ok" and outcome_columns(Failure("x"))["status"] == "error"
