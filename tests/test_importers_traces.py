"""Public traces shipped in data/public/traces: real rows, whole-file facts from SOURCE.md, broken rows."""
import json
import math

import pandas as pd
import pytest

from public_data import PUBLIC
from toolkit.errors import DataFileError, ParameterError
from toolkit.importers import import_to_run_dir
from toolkit.importers.traces import import_azure2023, import_mooncake
from toolkit.schema import REQUEST_COLUMNS
from toolkit.store import load_run, read_manifest

AZURE = PUBLIC / "traces" / "azure2023"
AZURE_CSV = AZURE / "AzureLLMInferenceTrace_code.csv"
MOONCAKE = PUBLIC / "traces" / "mooncake"
MOONCAKE_JSONL = MOONCAKE / "conversation_trace.jsonl"


@pytest.fixture(scope="module")
def azure():
    return import_azure2023(AZURE)


@pytest.fixture(scope="module")
def mooncake():
    return import_mooncake(MOONCAKE)


def test_the_shipped_traces_carry_their_licence_and_provenance():
    for folder in (AZURE, MOONCAKE):
        source = (folder / "SOURCE.md").read_text()
        assert "Shipped in this repository as `data/public/traces/" in source
        assert (folder / "LICENSE").stat().st_size > 10_000


def test_azure_first_rows_are_the_file_rows(azure):
    table, manifest = azure
    lines = AZURE_CSV.read_text().splitlines()
    assert lines[1] == "2023-11-16 18:17:03.9799600,4808,10"
    assert lines[2] == "2023-11-16 18:17:04.0319600,3180,8"
    assert list(table.columns) == list(REQUEST_COLUMNS)
    first, second = table.iloc[0], table.iloc[1]
    assert first["started_at"] == pd.Timestamp("2023-11-16 18:17:03.979960", tz="UTC")
    assert (first["prompt_tokens"], first["completion_tokens"]) == (4808, 10)
    assert (second["prompt_tokens"], second["completion_tokens"]) == (3180, 8)
    assert (second["started_at"] - first["started_at"]).total_seconds() == pytest.approx(0.052)
    assert (first["request_id"], first["dataset"], first["usage_source"]) == (
        "azure2023-code-00000", "azure2023-code", "server")
    # no latency and no model upstream: nothing is invented
    assert table["ttft_s"].isna().all() and table["e2e_s"].isna().all() and table["model"].isna().all()
    assert table["score"].isna().all() and table["grader"].isna().all()
    assert manifest["importer"]["kind"] == "azure2023" and manifest["service"] == "code"


def test_azure_whole_file_matches_its_source_note(azure):
    table, manifest = azure
    # SOURCE.md: 8,819 requests over 3,435.9 s; ContextTokens max 7,437; GeneratedTokens max 1,899
    assert len(table) == 8819 and table["request_id"].is_unique
    assert manifest["span_s"] == pytest.approx(3435.9, abs=0.05)
    assert table["prompt_tokens"].max() == 7437 and table["completion_tokens"].max() == 1899
    assert table["started_at"].is_monotonic_increasing
    assert table["sequence"].tolist() == list(range(8819))


def test_azure_model_can_be_named_for_pricing():
    table, manifest = import_azure2023(AZURE_CSV, model="gpt-4o-mini", run_id="az")
    assert set(table["model"]) == {"gpt-4o-mini"} and set(table["config_id"]) == {"gpt-4o-mini"}
    assert (table["run_id"] == "az").all() and any("gpt-4o-mini" in note for note in manifest["notes"])


def test_mooncake_first_rows_are_the_file_lines(mooncake):
    table, manifest = mooncake
    lines = MOONCAKE_JSONL.read_text().splitlines()
    for index in (0, 1, 5000):
        record = json.loads(lines[index])
        row = table.iloc[index]
        assert row["request_id"] == f"conversation_trace-{index + 1:05d}"
        assert row["started_at"] == pd.Timestamp("1970-01-01", tz="UTC") + pd.Timedelta(
            milliseconds=record["timestamp"])
        assert (row["prompt_tokens"], row["completion_tokens"]) == (record["input_length"], record["output_length"])
        assert list(row["prefix_hashes"]) == record["hash_ids"]
    assert list(table.iloc[1]["prefix_hashes"][:3]) == [0, 14, 15]
    assert manifest["prefix_block_tokens"] == 512


def test_mooncake_whole_file_matches_its_source_note(mooncake):
    table, manifest = mooncake
    # SOURCE.md: 12,031 requests, 0 to 3,536,999 ms, every request starts with block 0,
    # len(hash_ids) == ceil(input_length / 512), and lines 7728 and 7733 are the same record
    assert len(table) == 12031 and table["request_id"].is_unique
    assert manifest["span_s"] == pytest.approx(3536.999)
    assert all(hashes[0] == 0 for hashes in table["prefix_hashes"])
    blocks = table["prefix_hashes"].map(len)
    assert (blocks == table["prompt_tokens"].map(lambda n: math.ceil(n / 512))).all()
    twins = table.iloc[[7727, 7732]]
    assert twins["prompt_tokens"].tolist() == [901, 901] and twins["request_id"].nunique() == 2
    assert [list(h) for h in twins["prefix_hashes"]] == [[0, 124577], [0, 124577]]


def test_mooncake_origin_moves_the_relative_times():
    table, manifest = import_mooncake(MOONCAKE_JSONL, origin="2025-02-21T08:00:00+08:00")
    assert table["started_at"].iloc[0] == pd.Timestamp("2025-02-21T00:00:00", tz="UTC")
    assert manifest["origin"] == "2025-02-21T00:00:00+00:00"
    with pytest.raises(ParameterError, match="origin 'yesterday'"):
        import_mooncake(MOONCAKE_JSONL, origin="yesterday")


def test_imported_trace_round_trips_through_a_run_dir(tmp_path):
    run_dir = import_to_run_dir("mooncake", MOONCAKE, tmp_path / "mc")
    table = load_run(run_dir)
    assert len(table) == 12031 and read_manifest(run_dir)["run_id"] == "mc"
    assert list(table["prefix_hashes"].iloc[0]) == list(range(14))


AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
GOOD_AZURE = "2023-11-16 18:17:03.9799600,4808,10\r\n"


@pytest.mark.parametrize("bad_row, field, message", [
    ("2023-11-16 18:17:04.0319600,-5,8\r\n", "ContextTokens", "is negative ('-5')"),
    ("2023-11-16 18:17:04.0319600,3180,\r\n", "GeneratedTokens", "is missing"),
    ("2023-11-16 18:17:04.0319600,3180,8.5\r\n", "GeneratedTokens", "not a whole number ('8.5')"),
    (",3180,8\r\n", "TIMESTAMP", "is missing"),
    ("16/11/2023 18:17,3180,8\r\n", "TIMESTAMP", "not a time like"),
])
def test_azure_broken_rows_name_file_line_and_field(tmp_path, bad_row, field, message):
    path = tmp_path / "AzureLLMInferenceTrace_code.csv"
    path.write_text(AZURE_HEADER + GOOD_AZURE + bad_row, newline="")
    with pytest.raises(DataFileError) as caught:
        import_azure2023(path)
    assert caught.value.line == 3 and caught.value.field == field
    assert str(caught.value).startswith(f'{path} line 3: field "{field}": {message}')


def test_azure_missing_column_and_ambiguous_folder(tmp_path):
    path = tmp_path / "AzureLLMInferenceTrace_conv.csv"
    path.write_text("TIMESTAMP,ContextTokens\n2023-11-16 18:17:03.9799600,4808\n")
    with pytest.raises(DataFileError, match="required column\\(s\\) missing: GeneratedTokens"):
        import_azure2023(path)
    (tmp_path / "AzureLLMInferenceTrace_code.csv").write_text(AZURE_HEADER + GOOD_AZURE)
    with pytest.raises(DataFileError, match="expected one file matching .* found AzureLLMInferenceTrace_code.csv, "
                                           "AzureLLMInferenceTrace_conv.csv"):
        import_azure2023(tmp_path)


GOOD_MOONCAKE = {"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}


@pytest.mark.parametrize("change, field, message", [
    ({"input_length": -1}, "input_length", "is negative (-1)"),
    ({"timestamp": None}, "timestamp", "is missing"),
    ({"output_length": "many"}, "output_length", "not a number ('many')"),
    ({"hash_ids": [0]}, "hash_ids", "has 1 block hashes, but input_length 600 makes 2 blocks of 512 tokens"),
    ({"hash_ids": [0, "x"]}, "hash_ids", "element 1 is not a non-negative integer ('x')"),
    ({"hash_ids": []}, "hash_ids", "expected a non-empty list"),
])
def test_mooncake_broken_lines_name_file_line_and_field(tmp_path, change, field, message):
    path = tmp_path / "conversation_trace.jsonl"
    lines = [json.dumps(GOOD_MOONCAKE), json.dumps({**GOOD_MOONCAKE, **change})]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError) as caught:
        import_mooncake(path)
    assert caught.value.line == 2 and caught.value.field == field
    assert str(caught.value).startswith(f'{path} line 2: field "{field}": {message}')


def test_mooncake_missing_key_and_bad_json(tmp_path):
    path = tmp_path / "toolagent_trace.jsonl"
    path.write_text(json.dumps(GOOD_MOONCAKE) + "\n" + json.dumps({"timestamp": 3}) + "\n")
    with pytest.raises(DataFileError, match=r'line 2: field "input_length": is missing'):
        import_mooncake(path)
    path.write_text(json.dumps(GOOD_MOONCAKE) + "\n{oops\n")
    with pytest.raises(DataFileError, match="line 2: not valid JSON"):
        import_mooncake(path)
