import pandas as pd
import pytest

from toolkit.errors import DataFileError, ParameterError
from toolkit.importers.generic import import_generic

MAPPING = {"model_name": "model", "first_ms": "ttft_s", "total_ms": "e2e_s", "gaps_ms": "tbt_s",
           "out": "completion_tokens", "ok": "correct", "sent": "started_at", "q": "item_id"}
MS = ["first_ms", "total_ms", "gaps_ms"]


def csv(tmp_path, text, name="log.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = ("model_name,first_ms,total_ms,gaps_ms,out,ok,sent,q\n"
        'gpt-x,250,1250,"[10, 20.5]",3,yes,2024-05-01T12:00:00Z,"item\nwith newline"\n'
        "gpt-x,300,,,2,0,2024-05-01T12:00:01+02:00,b\n")


def test_mapping_units_and_constants(tmp_path):
    table, manifest = import_generic(csv(tmp_path, GOOD), mapping=MAPPING, milliseconds=MS,
                                     endpoint="llm.internal", dataset="support")
    assert table["ttft_s"].tolist() == [0.25, 0.3]
    assert table["e2e_s"].iloc[0] == 1.25 and pd.isna(table["e2e_s"].iloc[1])
    assert table["tbt_s"].iloc[0] == pytest.approx([0.01, 0.0205]) and table["tbt_s"].iloc[1] is None
    assert table["correct"].tolist() == [True, False] and table["completion_tokens"].tolist() == [3, 2]
    assert table["started_at"].iloc[1] == pd.Timestamp("2024-05-01T10:00:01Z")
    assert table["item_id"].iloc[0] == "item\nwith newline"
    assert (table["config_id"] == "gpt-x").all() and (table["endpoint"] == "llm.internal").all()
    assert table["request_id"].tolist() == ["log-000000", "log-000001"]
    assert (table["status"] == "ok").all() and (table["run_id"] == "generic-log").all()
    assert manifest["mapping"] == MAPPING


def test_parquet_source(tmp_path):
    path = tmp_path / "runs.parquet"
    pd.DataFrame({"m": ["a", "b"], "lat": [1.5, 2.0], "rid": ["r1", "r2"]}).to_parquet(path)
    table, _ = import_generic(path, mapping={"m": "model", "lat": "e2e_s", "rid": "request_id"})
    assert table["e2e_s"].tolist() == [1.5, 2.0] and table["request_id"].tolist() == ["r1", "r2"]
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"m": ["a", "b"], "lat": ["1.5", "slow"]}).to_parquet(bad)
    with pytest.raises(DataFileError) as caught:
        import_generic(bad, mapping={"m": "model", "lat": "e2e_s"})
    assert str(caught.value) == f"{bad}: field \"lat\": not a number ('slow') in row 1"


def test_unknown_targets_are_named():
    with pytest.raises(ParameterError, match="unknown requests-table column.s.: latency, prompt_len"):
        import_generic("x.csv", mapping={"a": "latency", "b": "model"}, prompt_len=3)
    with pytest.raises(ParameterError, match="milliseconds names unmapped column.s.: t"):
        import_generic("x.csv", mapping={"a": "model"}, milliseconds=["t"])
    with pytest.raises(ParameterError, match="set more than once: model"):
        import_generic("x.csv", mapping={"a": "model"}, model="m")


def test_model_is_required(tmp_path):
    path = csv(tmp_path, "lat\n1\n")
    with pytest.raises(ParameterError, match="map a column to 'model'"):
        import_generic(path, mapping={"lat": "e2e_s"})
    path = csv(tmp_path, "m,lat\na,1\n,2\n")
    with pytest.raises(DataFileError, match=r'line 3: field "m": is missing'):
        import_generic(path, mapping={"m": "model", "lat": "e2e_s"})


def test_bad_cells_name_the_physical_line(tmp_path):
    # the quoted newline in row 1 pushes row 2 to line 4
    path = csv(tmp_path, GOOD.replace("gpt-x,300,", "gpt-x,soon,"))
    with pytest.raises(DataFileError) as caught:
        import_generic(path, mapping=MAPPING, milliseconds=MS)
    assert str(caught.value) == f"{path} line 4: field \"first_ms\": not a number ('soon')"
    assert (caught.value.line, caught.value.field) == (4, "first_ms")


@pytest.mark.parametrize("old, new, message", [
    (",yes,", ",maybe,", "line 2: field \"ok\": not a boolean \\('maybe'\\)"),
    (",3,yes", ",1.5,yes", "line 2: field \"out\": not an integer \\('1.5'\\)"),
    ("2024-05-01T12:00:00Z", "yesterday", "line 2: field \"sent\": not an ISO 8601 time"),
    ('"[10, 20.5]"', '"[10,"', "line 2: field \"gaps_ms\": not a JSON list of numbers"),
])
def test_type_errors(tmp_path, old, new, message):
    with pytest.raises(DataFileError, match=message):
        import_generic(csv(tmp_path, GOOD.replace(old, new, 1)), mapping=MAPPING, milliseconds=MS)


def test_missing_source_column_and_unreadable_files(tmp_path):
    with pytest.raises(DataFileError, match="required column.s. missing: total_ms"):
        import_generic(csv(tmp_path, "model_name\nx\n"), mapping={"model_name": "model", "total_ms": "e2e_s"})
    with pytest.raises(DataFileError, match="the file is empty"):
        import_generic(csv(tmp_path, ""), mapping={"m": "model"})
    with pytest.raises(DataFileError, match="not a readable Parquet file"):
        import_generic(csv(tmp_path, "m\nx\n", "fake.parquet"), mapping={"m": "model"})
