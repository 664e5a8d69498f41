import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from public_data import PUBLIC
from toolkit.errors import DataFileError
from toolkit.importers.llmperf import import_llmperf
from toolkit.schema import REQUEST_COLUMNS

LLMPERF = PUBLIC / "llmperf"  # upstream's raw_data/ layout: individual/ and summary/
INDIVIDUAL = LLMPERF / "individual"


@pytest.fixture(scope="module")
def everything():
    return import_llmperf(LLMPERF)


def records(name):
    return json.loads((INDIVIDUAL / name).read_text())


def rows_of(table, stem):
    return table[table["request_id"].str.startswith(stem + "-")].reset_index(drop=True)


def test_a_real_record_is_converted_not_copied(everything):
    table, _ = everything
    first = records("anyscale_7b.json")[0]
    row = rows_of(table, "anyscale_7b").iloc[0]
    assert list(table.columns) == list(REQUEST_COLUMNS)
    assert row["ttft_s"] == first["ttft_s"] and row["e2e_s"] == first["end_to_end_latency_s"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (550, 151)
    assert row["config_id"] == "anyscale/meta-llama/Llama-2-7b-chat-hf"
    assert row["endpoint"] == "console.endpoints.anyscale.com"
    assert (row["concurrency"], row["max_tokens"], row["usage_source"]) == (5, 150, "estimated")
    # llmperf's inter-token latency (e2e / tokens) must not land in tbt_s, and no gaps are invented
    assert table["tbt_s"].isna().all()
    assert table["started_at"].isna().all() and table["sequence"].isna().all()


def test_ok_rows_reproduce_llmperf_summary_percentiles(everything):
    table, manifest = everything
    for described in manifest["files"]:
        summary = json.loads(Path(described["summary"]).read_text())
        rows = table[(table["config_id"] == described["config_id"]) & (table["status"] == "ok")]
        rows = rows[~rows["request_id"].isin(described["short_output_request_ids"])]
        assert np.median(rows["ttft_s"]) == summary["results_ttft_s_quantiles_p50"]
        assert np.percentile(rows["e2e_s"], 95) == pytest.approx(
            summary["results_end_to_end_latency_s_quantiles_p95"], rel=1e-12)
        assert len(rows) == summary["results_num_completed_requests"]


def test_rate_limited_zeros_become_errors_without_timings(everything):
    table, _ = everything
    lepton = rows_of(table, "lepton_7b")
    failed = lepton[lepton["status"] == "error"]
    assert len(failed) == 130 and (lepton["status"] == "ok").sum() == 20
    assert set(failed["http_status"]) == {429} and set(failed["error_type"]) == {"rate_limited"}
    assert failed["ttft_s"].isna().all() and failed["e2e_s"].isna().all()
    assert failed["completion_tokens"].isna().all()
    assert lepton["endpoint"].iloc[0] == "llama2-7b.lepton.run"


def test_client_error_has_no_http_status(everything):
    table, _ = everything
    together = rows_of(table, "together_13b")
    failed = together[together["status"] == "error"]
    assert len(failed) == 1
    assert failed["error_type"].iloc[0] == "client_error" and pd.isna(failed["http_status"].iloc[0])


def test_bedrock_short_outputs_keep_real_timings_as_ok(everything):
    table, manifest = everything
    raw = records("bedrock_13b.json")
    short = [i for i, r in enumerate(raw) if r["error_code"] == -100]
    bedrock = rows_of(table, "bedrock_13b")
    assert len(short) == 97 and (bedrock["status"] == "ok").all()
    assert bedrock["error_type"].isna().all()
    i = short[0]
    assert bedrock.loc[i, "ttft_s"] == raw[i]["ttft_s"] > 0
    assert bedrock.loc[i, "completion_tokens"] == raw[i]["number_output_tokens"] == 39
    assert bedrock.loc[i, "output_text"] == raw[i]["GEN_TEXT"]
    described = next(f for f in manifest["files"] if f["file"].endswith("bedrock_13b.json"))
    assert described["short_output_request_ids"] == [f"bedrock_13b-{i:04d}" for i in short]


def test_request_ids_are_unique_and_stable(everything):
    table, _ = everything
    again, _ = import_llmperf(INDIVIDUAL)
    assert table["request_id"].is_unique and len(table) == 14 * 150
    assert table["request_id"].tolist() == again["request_id"].tolist()


def test_the_raw_data_folder_reads_like_its_individual_folder(everything):
    table, manifest = everything
    direct, direct_manifest = import_llmperf(INDIVIDUAL, run_id=table["run_id"].iloc[0])
    pd.testing.assert_frame_equal(table, direct)
    assert manifest["files"] == direct_manifest["files"]
    assert manifest["files"][0]["summary"] == str(LLMPERF / "summary" / "anyscale_13b.json")
    assert len(manifest["source_files"]) == 14


def test_a_cloned_leaderboard_layout(tmp_path):
    raw_data = tmp_path / "llmperf-leaderboard" / "raw_data"
    for sub in ("individual", "summary"):
        (raw_data / sub).mkdir(parents=True)
        shutil.copy(LLMPERF / sub / "fireworks_7b.json", raw_data / sub)
    table, manifest = import_llmperf(raw_data)
    assert len(table) == 150 and manifest["run_id"] == "llmperf-raw_data"
    assert (table["max_tokens"].iloc[0], table["endpoint"].iloc[0]) == (150, "api.fireworks.ai")
    assert manifest["files"][0]["summary"] == str(raw_data / "summary" / "fireworks_7b.json")
    (raw_data / "individual" / "fireworks_7b.json").unlink()
    with pytest.raises(DataFileError) as caught:
        import_llmperf(raw_data)
    assert str(caught.value) == f"{raw_data / 'individual'}: no *.json files in this folder"


def test_without_summary_model_comes_from_the_mapping_and_concurrency_defaults(tmp_path):
    shutil.copy(INDIVIDUAL / "together_13b.json", tmp_path / "together_13b.json")
    table, manifest = import_llmperf(tmp_path / "together_13b.json", run_id="r1")
    assert table["model"].iloc[0] == "together_ai/togethercomputer/llama-2-13b-chat"
    assert (table["endpoint"].iloc[0], table["concurrency"].iloc[0]) == ("together", 5)
    assert table["max_tokens"].isna().all() and (table["run_id"] == "r1").all()
    assert manifest["files"][0]["concurrency_from"] == "default (leaderboard setting)"
    table, _ = import_llmperf(tmp_path / "together_13b.json", concurrency=2,
                              models={"together_13b": "llama-13b"})
    assert (table["concurrency"].iloc[0], table["config_id"].iloc[0]) == (2, "together/llama-13b")


def write(tmp_path, content, name="acme_7b.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


GOOD = {"error_code": None, "error_msg": "", "ttft_s": 0.2, "end_to_end_latency_s": 1.0,
        "number_input_tokens": 10, "number_output_tokens": 5}


def test_non_numeric_ttft_names_file_record_and_field(tmp_path):
    path = write(tmp_path, [GOOD, GOOD, {**GOOD, "ttft_s": "fast"}])
    with pytest.raises(DataFileError) as caught:
        import_llmperf(path)
    assert str(caught.value) == f"{path}: field \"ttft_s\": not a number ('fast') in record 2"
    assert caught.value.field == "ttft_s"


def test_missing_field_on_a_completed_request(tmp_path):
    broken = {k: v for k, v in GOOD.items() if k != "end_to_end_latency_s"}
    path = write(tmp_path, [GOOD, broken])
    with pytest.raises(DataFileError, match=r'field "end_to_end_latency_s": is missing in record 1$'):
        import_llmperf(path)
    # a failed request may lack its timings
    table, _ = import_llmperf(write(tmp_path, [GOOD, {**broken, "error_code": 429}], "b_7b.json"))
    assert table["status"].tolist() == ["ok", "error"]


def test_missing_error_code_key(tmp_path):
    path = write(tmp_path, [GOOD, {k: v for k, v in GOOD.items() if k != "error_code"}])
    with pytest.raises(DataFileError, match=r'field "error_code": is missing in record 1$'):
        import_llmperf(path)


@pytest.mark.parametrize("content, message", [
    ("", "the file is empty"),
    ("[]", "the array holds no requests"),
    ('{"ttft_s": 1}', "must be a JSON array"),
    ("[1, 2]", "is not a JSON object in record 0"),
])
def test_unusable_files(tmp_path, content, message):
    with pytest.raises(DataFileError, match=message):
        import_llmperf(write(tmp_path, content))


def test_non_json_file_names_the_line(tmp_path):
    path = write(tmp_path, '[\n{"ttft_s": 0.1,\n oops}]')
    with pytest.raises(DataFileError) as caught:
        import_llmperf(path)
    assert caught.value.line == 3 and str(caught.value).startswith(f"{path} line 3: not valid JSON")


def test_empty_folder(tmp_path):
    with pytest.raises(DataFileError, match="no \\*.json files"):
        import_llmperf(tmp_path)
