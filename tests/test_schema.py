"""The requests table's contract: record fields, Arrow schema and README agree; old tables still load."""
import dataclasses
import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest

from toolkit.errors import RunDirError
from toolkit.schema import ARROW_SCHEMA, REQUEST_COLUMNS, RequestRecord, coerce_requests, from_arrow, to_arrow

REPO = Path(__file__).resolve().parents[1]
SERVER_COLUMNS = ("server_prefill_s", "server_decode_s", "server_cached_tokens")


def record(**fields) -> RequestRecord:
    return RequestRecord(run_id="r", request_id="q1", config_id="c", model="m", prompt_variant="zero_shot",
                         max_tokens=8, temperature=0.0, dataset="capitals", item_id="1", repeat=0,
                         endpoint="127.0.0.1:8080", started_at=dt.datetime(2025, 1, 2, tzinfo=dt.UTC),
                         status="ok", attempts=1, concurrency=4, sequence=0, **fields)


def test_record_fields_are_the_table_columns():
    fields = [f.name for f in dataclasses.fields(RequestRecord)]
    assert sorted(fields) == sorted(REQUEST_COLUMNS) and len(fields) == len(REQUEST_COLUMNS)
    assert set(SERVER_COLUMNS) <= set(REQUEST_COLUMNS)


def test_server_timings_round_trip_with_their_dtypes():
    row = record(server_prefill_s=0.125, server_decode_s=0.25, server_cached_tokens=37, server_s=0.375)
    table = from_arrow(to_arrow(pd.DataFrame([row.to_json_dict()])))
    assert table.loc[0, "server_prefill_s"] == 0.125 and table.loc[0, "server_decode_s"] == 0.25
    assert table.loc[0, "server_cached_tokens"] == 37 and str(table["server_cached_tokens"].dtype) == "Int64"
    assert to_arrow(table).schema.equals(ARROW_SCHEMA)


def test_a_table_from_before_the_server_columns_gets_nulls():
    old = pd.DataFrame([record().to_json_dict()]).drop(columns=list(SERVER_COLUMNS))
    table = coerce_requests(old)
    assert list(table.columns) == list(REQUEST_COLUMNS)
    assert table[list(SERVER_COLUMNS)].isna().all().all()


def test_a_bad_value_names_its_column():
    bad = pd.DataFrame([record().to_json_dict()]).assign(server_cached_tokens="many")
    with pytest.raises(RunDirError, match=r"imported\.csv: column 'server_cached_tokens' cannot be read as int64"):
        coerce_requests(bad, source="imported.csv")


def test_readme_documents_every_column():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### The requests table"):]
    documented = set(re.findall(r"`([a-z_0-9]+)`", section))
    assert set(REQUEST_COLUMNS) - documented == set()
