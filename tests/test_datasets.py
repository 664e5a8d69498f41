import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from toolkit.datasets import Item, load_dataset
from toolkit.errors import DataFileError

EVALS = Path(__file__).resolve().parents[1] / "data" / "evals"
DATASETS = ("capitals", "sentiment", "dates", "arithmetic")


def write(tmp_path: Path, text: str | bytes, name: str = "toy.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def row(**fields: object) -> str:
    return json.dumps({"id": "toy-1", "input": "France", "expected": "Paris", **fields})


def error_of(path: Path) -> DataFileError:
    with pytest.raises(DataFileError) as err:
        load_dataset(path)
    return err.value


def test_loads_items_extra_fields_name_and_hash(tmp_path):
    text = row(kind="country") + "\n\n" + json.dumps({"id": "toy-2", "input": "Peru", "expected": "Lima"}) + "\n"
    path = write(tmp_path, text)
    dataset = load_dataset(path)
    assert dataset.name == "toy" and dataset.path == path
    assert dataset.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert dataset.items == (Item("toy-1", "France", "Paris", {"kind": "country"}),
                           Item("toy-2", "Peru", "Lima", {}))
    with pytest.raises(TypeError):
        dataset.items[0].fields["kind"] = "city"  # read-only, like the frozen dataclass around it


def test_malformed_json_names_line_and_column(tmp_path):
    path = write(tmp_path, row() + '\n{"id": "toy-2", \n')
    assert str(error_of(path)) == (f"{path} line 2: not valid JSON: Expecting property name "
                                   f"enclosed in double quotes (column 17)")


def test_row_not_an_object(tmp_path):
    path = write(tmp_path, '["toy-1", "France", "Paris"]\n')
    err = error_of(path)
    assert str(err) == f"{path} line 1: row must be a JSON object, got list"
    assert (err.line, err.field) == (1, None)


@pytest.mark.parametrize("field", ["id", "input", "expected"])
def test_missing_field(tmp_path, field):
    data = json.loads(row())
    del data[field]
    path = write(tmp_path, row().replace("toy-1", "toy-0") + "\n" + json.dumps(data) + "\n")
    err = error_of(path)
    assert str(err) == f'{path} line 2: field "{field}": missing'
    assert (err.line, err.field) == (2, field)


@pytest.mark.parametrize("field", ["id", "input", "expected"])
@pytest.mark.parametrize("value", ["", "  \t"])
def test_empty_field(tmp_path, field, value):
    path = write(tmp_path, json.dumps({**json.loads(row()), field: value}) + "\n")
    assert str(error_of(path)) == f'{path} line 1: field "{field}": empty'


@pytest.mark.parametrize("field,value,kind", [("id", 7, "int"), ("expected", None, "NoneType"),
                                              ("input", ["a"], "list"), ("kind", 1.5, "float")])
def test_non_string_field(tmp_path, field, value, kind):
    path = write(tmp_path, json.dumps({**json.loads(row()), field: value}) + "\n")
    assert str(error_of(path)) == f'{path} line 1: field "{field}": must be a string, got {kind}'


def test_duplicate_id_names_both_lines(tmp_path):
    other = json.dumps({"id": "toy-2", "input": "Peru", "expected": "Lima"})
    path = write(tmp_path, "\n".join([row(), other, "", row(input="Chile")]) + "\n")
    err = error_of(path)
    assert str(err) == f"{path} line 4: field \"id\": duplicate id 'toy-1' (first on line 1)"
    assert err.line == 4


@pytest.mark.parametrize("text", ["", "\n  \n\n"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path, text)
    assert str(error_of(path)) == f"{path}: no items (the file is empty)"


def test_non_utf8_names_the_line(tmp_path):
    path = write(tmp_path, row().encode() + b'\n{"id": "toy-2", "input": "caf\xe9", "expected": "x"}\n')
    err = error_of(path)
    assert str(err) == f"{path} line 2: not valid UTF-8 (byte 0xe9 at column 30)"
    assert err.line == 2


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    assert str(error_of(path)) == f"{path}: file not found"


@pytest.mark.parametrize("name", DATASETS)
def test_shipped_datasets_are_valid_and_large_enough(name):
    dataset = load_dataset(EVALS / f"{name}.jsonl")
    assert dataset.name == name
    assert len(dataset.items) >= 150
    assert all(item.item_id.startswith(f"{name}-") for item in dataset.items)
    assert len({item.input for item in dataset.items}) == len(dataset.items)


def test_shipped_answers_are_right_where_they_can_be_recomputed():
    for item in load_dataset(EVALS / "arithmetic.jsonl").items:
        a, op, b = item.input.split()
        assert int(item.expected) == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0
        assert 1 <= int(a) <= 99 and 1 <= int(b) <= 99
    labels = [item.expected for item in load_dataset(EVALS / "sentiment.jsonl").items]
    assert labels.count("positive") == labels.count("negative")
    for item in load_dataset(EVALS / "dates.jsonl").items:
        year, month, day = item.expected.split("-")
        assert year in item.input and str(int(day)) in item.input


def test_generator_is_deterministic_and_shipped_files_are_current(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("generate", EVALS / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    monkeypatch.setattr(generate, "OUT_DIR", tmp_path)
    generate.main()
    for name in DATASETS:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (EVALS / f"{name}.jsonl").read_bytes()


def test_a_byte_order_mark_is_skipped(tmp_path):
    """Editors (Notepad, Excel's CSV UTF-8) start files with a BOM: it is not part of the first row."""
    data = b"\xef\xbb\xbf" + (row() + "\n" + row(id="toy-2") + "\n").encode("utf-8")
    dataset = load_dataset(write(tmp_path, data))
    assert [item.item_id for item in dataset.items] == ["toy-1", "toy-2"]
    assert dataset.sha256 == hashlib.sha256(data).hexdigest()  # the hash is of the file as it is
    # only at the start: a BOM inside the file is still a character of that line, and not JSON
    assert str(error_of(write(tmp_path, row() + "\n\ufeff" + row(id="toy-2") + "\n"))).startswith(
        f"{tmp_path / 'toy.jsonl'} line 2: not valid JSON")
