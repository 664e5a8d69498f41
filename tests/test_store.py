import dataclasses
import datetime as dt
import json

import pandas as pd
import pytest

from toolkit.errors import DataFileError, RunDirError
from toolkit.schema import REQUEST_COLUMNS, RequestRecord
from toolkit.store import (DERIVED_COLUMNS, JOURNAL, REQUESTS, Journal, finalize, load_run, part_names, read_journal,
                           read_manifest, save_run)


def record(i: int, status: str = "ok") -> RequestRecord:
    return RequestRecord(
        run_id="r", request_id=f"id{i}", config_id="c", model="m", prompt_variant="v", max_tokens=8,
        temperature=0.0, dataset="d", item_id=f"item{i}", repeat=0, endpoint="127.0.0.1:1",
        started_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), status=status, attempts=1, concurrency=1,
        sequence=i, ttft_s=0.1 * i, e2e_s=0.2 * i, tbt_s=[0.01, 0.02], prompt_tokens=10, completion_tokens=3,
        output_text="x", correct=status == "ok", score=1.0 if status == "ok" else None)


def test_journal_round_trip_keeps_dtypes(tmp_path):
    with Journal(tmp_path) as journal:
        for i in range(3):
            journal.append(record(i))
    table = load_run(tmp_path)
    assert list(table.columns) == [*REQUEST_COLUMNS, *DERIVED_COLUMNS]
    assert table["tbt_s"].iloc[1].tolist() == [0.01, 0.02]
    assert str(table["max_tokens"].dtype) == "Int64" and str(table["correct"].dtype) == "boolean"
    assert isinstance(table["started_at"].dtype, pd.DatetimeTZDtype)


def test_cut_last_line_is_ignored_but_a_bad_middle_line_is_an_error(tmp_path):
    with Journal(tmp_path) as journal:
        journal.append(record(0))
        journal.append(record(1))
    path = tmp_path / JOURNAL
    text = path.read_text()
    path.write_text(text + text.splitlines()[0][:40])  # a kill in the middle of a write
    assert [row["request_id"] for row in read_journal(path)] == ["id0", "id1"]
    lines = text.splitlines()
    path.write_text(lines[0] + "\n{broken\n" + lines[1] + "\n")
    with pytest.raises(DataFileError, match=r"journal.jsonl line 2: not valid JSON"):
        read_journal(path)


def test_finalize_merges_and_last_record_wins(tmp_path):
    with Journal(tmp_path) as journal:
        journal.append(record(0, "error"))
        journal.append(record(1))
    finalize(tmp_path)
    assert not (tmp_path / JOURNAL).exists() and (tmp_path / REQUESTS).exists()
    with Journal(tmp_path) as journal:  # a resumed session redoes the error
        journal.append(record(0))
    table = load_run(tmp_path)
    assert len(table) == 2 and set(table["status"]) == {"ok"}


def test_parts_of_several_writers_read_as_one_table_and_the_latest_attempt_wins(tmp_path):
    first, second = part_names("shard-00"), part_names("shard-01")
    with Journal(tmp_path, first[0]) as journal:
        journal.append(record(0, "error"))
        journal.append(record(2))
    with Journal(tmp_path, second[0]) as journal:
        journal.append(record(1))
    finalize(tmp_path, "shard-01")  # one writer done: its part is Parquet, the other's still a journal
    assert (tmp_path / second[1]).exists() and not (tmp_path / second[0]).exists()
    retried = dataclasses.replace(record(0), sequence=7)  # a later session redid id0 in the other shard
    with Journal(tmp_path, second[0]) as journal:
        journal.append(retried)
    table = load_run(tmp_path)
    assert sorted(table["request_id"]) == ["id0", "id1", "id2"]
    assert table.set_index("request_id").loc["id0", ["status", "sequence"]].tolist() == ["ok", 7]
    finalize(tmp_path, "shard-00")
    finalize(tmp_path, "shard-01")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first[1], second[1]])
    assert load_run(tmp_path).set_index("request_id").loc["id0", "status"] == "ok"


def test_missing_run_dir_and_missing_columns(tmp_path):
    with pytest.raises(RunDirError, match="no such run directory"):
        load_run(tmp_path / "nope")
    with pytest.raises(RunDirError, match="not a run directory"):
        load_run(tmp_path)
    frame = pd.DataFrame([record(0).to_json_dict()]).drop(columns=["ttft_s", "status"])
    frame.to_parquet(tmp_path / REQUESTS)
    with pytest.raises(RunDirError, match="missing column.*ttft_s, .*status"):
        load_run(tmp_path)


def test_save_run_fills_absent_columns_with_nulls(tmp_path):
    frame = pd.DataFrame({"request_id": ["a", "b"], "model": ["m", "m"], "e2e_s": [1.0, 2.0], "status": "ok"})
    save_run(tmp_path / "run", frame, {"run_id": "run"})
    table = load_run(tmp_path / "run")
    assert table["ttft_s"].isna().all() and table["e2e_s"].tolist() == [1.0, 2.0]
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["run_id"] == "run"


def test_wrong_type_in_a_column_names_it(tmp_path):
    frame = pd.DataFrame({"request_id": ["a"], "e2e_s": ["fast"]})
    with pytest.raises(RunDirError, match="column 'e2e_s'"):
        save_run(tmp_path / "run", frame, {})


def test_a_table_written_before_the_later_columns_reads_them_as_null(tmp_path):
    import pyarrow.parquet as pq

    from toolkit.schema import LATER_COLUMNS, to_arrow

    old = to_arrow(pd.DataFrame([record(0).to_json_dict()]))
    pq.write_table(old.drop_columns(sorted(LATER_COLUMNS)), tmp_path / REQUESTS)
    table = load_run(tmp_path)
    assert table[sorted(LATER_COLUMNS)].isna().all().all()
    assert table.loc[0, "machine_rule"] == "e2e"  # no phase recorded: the stated fallback


def test_a_table_missing_a_first_release_column_is_an_error_naming_it(tmp_path):
    import pyarrow.parquet as pq

    from toolkit.schema import to_arrow

    pq.write_table(to_arrow(pd.DataFrame([record(0).to_json_dict()])).drop_columns(["e2e_s"]), tmp_path / REQUESTS)
    with pytest.raises(RunDirError, match="missing column.*e2e_s"):
        load_run(tmp_path)


def test_several_run_dirs_read_as_one_table_each_keeping_its_own_requests(tmp_path):
    # the same grid on two days: the same request ids, each run's records kept
    for day, e2e in (("day1", 1.0), ("day2", 2.0)):
        frame = pd.DataFrame([record(i).to_json_dict() for i in range(3)]).assign(e2e_s=e2e, run_id=day)
        save_run(tmp_path / day, frame, {"run_id": day, "phases": [{"phase": day}]})
    table = load_run(str(tmp_path / "day*"), columns=["run_id", "request_id", "e2e_s", "machine_s"])
    assert list(table.columns) == ["run_id", "request_id", "e2e_s", "machine_s"]
    assert table["run_id"].tolist() == ["day1"] * 3 + ["day2"] * 3
    assert table["e2e_s"].tolist() == [1.0] * 3 + [2.0] * 3
    assert table.equals(load_run([tmp_path / "day1", tmp_path / "day2"], columns=list(table.columns)))
    manifest = read_manifest([tmp_path / "day1", tmp_path / "day2"])
    assert manifest["run_id"] == "day1 + day2" and [p["phase"] for p in manifest["phases"]] == ["day1", "day2"]
    with pytest.raises(RunDirError, match="matches no run directory"):
        load_run(str(tmp_path / "week*"))
    with pytest.raises(RunDirError, match="unknown column.*e2e"):
        load_run(tmp_path / "day1", columns=["e2e"])


def test_token_gap_statistics_are_summed_without_reading_the_lists(tmp_path):
    frame = pd.DataFrame([record(i).to_json_dict() for i in range(3)])
    frame.at[1, "tbt_s"] = []
    frame.at[2, "tbt_s"] = None
    save_run(tmp_path / "run", frame, {"run_id": "r"})
    table = load_run(tmp_path / "run", columns=["request_id", "tbt_sum_s", "tbt_count"])
    assert list(table.columns) == ["request_id", "tbt_sum_s", "tbt_count"]
    assert table["tbt_sum_s"].tolist() == pytest.approx([0.03, 0.0, 0.0]) and table["tbt_count"].tolist() == [2, 0, 0]


def test_a_large_requests_file_is_written_in_row_groups_duckdb_scans_in_parallel(tmp_path):
    import pyarrow.parquet as pq

    from toolkit import warehouse
    from toolkit.testing.synthetic import synthetic_requests

    rows = warehouse.ROW_GROUP_ROWS + 10  # DuckDB gives each thread a row group: one group is one thread
    save_run(tmp_path, synthetic_requests(rows), {"run_id": "r"})
    metadata = pq.ParquetFile(tmp_path / REQUESTS).metadata
    assert metadata.num_row_groups == 2 and metadata.num_rows == rows
    assert len(load_run(tmp_path, columns=["request_id"])) == rows
