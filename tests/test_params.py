from pathlib import Path

import pytest

from toolkit.errors import ParameterError, RunDirError
from toolkit import resources
from toolkit.params import check, resolve_run_dir, run_checks


def test_numbers_accept_ints_and_return_floats():
    assert check("value_usd", 2, float) == 2.0
    assert isinstance(check("value_usd", 2, float), float)
    assert check("n", 3, int) == 3


@pytest.mark.parametrize(("value", "message"), [
    ("abc", "parameter value_usd: expected a number, got 'abc' (str)"),
    (True, "parameter value_usd: expected a number, got True (bool)"),
    (None, "parameter value_usd: expected a number, got None (NoneType)"),
    (float("nan"), "parameter value_usd: expected a number, got nan (float)"),
])
def test_wrong_types_name_the_parameter_the_type_and_the_value(value, message):
    with pytest.raises(ParameterError) as info:
        check("value_usd", value, float)
    assert str(info.value) == message


def test_integers_reject_floats_and_bools():
    with pytest.raises(ParameterError, match=r"parameter n: expected an integer, got 2.5 \(float\)"):
        check("n", 2.5, int)
    with pytest.raises(ParameterError, match="expected an integer"):
        check("n", False, int)


def test_bounds_are_inclusive_and_named():
    assert check("confidence", 0.5, float, min=0.5, max=0.999) == 0.5
    with pytest.raises(ParameterError, match=r"^parameter confidence: must be <= 0.999, got 1.5$"):
        check("confidence", 1.5, float, min=0.5, max=0.999)
    with pytest.raises(ParameterError, match=r"^parameter value_usd: must be >= 0, got -1$"):
        check("value_usd", -1, float, min=0)


def test_optional_kinds_allow_none_only_when_declared():
    assert check("dataset", None, str | None) is None
    assert check("dataset", "capitals", str | None) == "capitals"
    with pytest.raises(ParameterError, match=r"parameter dataset: expected a string, got 3 \(int\)"):
        check("dataset", 3, str | None)


def test_lists_check_every_item_and_name_its_position():
    assert check("what_if_output_tokens", [100, 1000], list[int], min=1) == [100, 1000]
    assert check("what_if_output_tokens", (100, 1000), list[int]) == [100, 1000]
    with pytest.raises(ParameterError, match=r"^parameter what_if_output_tokens\[1\]: expected an integer, "
                                             r"got 'x' \(str\)$"):
        check("what_if_output_tokens", [100, "x"], list[int])
    with pytest.raises(ParameterError, match=r"parameter what_if_output_tokens\[0\]: must be >= 1, got 0"):
        check("what_if_output_tokens", [0], list[int], min=1)
    with pytest.raises(ParameterError, match="expected a non-empty list of integers, got 100 "):
        check("what_if_output_tokens", 100, list[int])
    with pytest.raises(ParameterError, match=r"expected a non-empty list of integers, got \[\]"):
        check("what_if_output_tokens", [], list[int])


def test_choices():
    assert check("adjust", "holm", str, choices=("holm", "none")) == "holm"
    with pytest.raises(ParameterError, match="parameter adjust: must be one of 'holm', 'none', got 'bh'"):
        check("adjust", "bh", str, choices=("holm", "none"))


def test_unsupported_kind_is_a_programming_error():
    with pytest.raises(TypeError, match="unsupported kind"):
        check("x", 1, dict)


def test_run_dir_absolute(tmp_path: Path):
    assert resolve_run_dir(str(tmp_path)) == tmp_path.resolve()
    assert resolve_run_dir(tmp_path) == tmp_path.resolve()


def test_run_dir_relative_to_cwd_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "toolkit").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_run_dir("toolkit") == (tmp_path / "toolkit").resolve()


def test_run_dir_under_data_falls_back_to_the_shipped_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # the notebooks' default works from any folder (a copy made by `frontier notebooks`, an installed package)
    monkeypatch.chdir(tmp_path)
    assert resolve_run_dir("data/runs/sample") == resources.sample_run()
    assert (resources.sample_run() / "requests.parquet").is_file()
    with pytest.raises(RunDirError) as info:  # only paths under data/ fall back
        resolve_run_dir("toolkit/analysis")
    assert str(info.value).endswith(f"({tmp_path / 'toolkit/analysis'} does not exist)")


def test_missing_run_dir_names_the_parameter_and_every_place_tried(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunDirError) as info:
        resolve_run_dir("data/runs/nope")
    assert str(info.value) == (f"parameter run_dir: run directory 'data/runs/nope' not found "
                               f"({tmp_path / 'data/runs/nope'} nor {resources.data_dir() / 'runs/nope'} exists)")


def test_run_dir_must_be_a_path():
    with pytest.raises(ParameterError, match=r"parameter run_dir: expected a string, got 3 \(int\)"):
        resolve_run_dir(3)
    with pytest.raises(ParameterError, match="parameter run_dir: expected a string, got ''"):
        resolve_run_dir("")


CHECK_CELL = """
from toolkit.params import check, resolve_run_dir

run_path = resolve_run_dir(run_dir)
prompt_tokens = check("prompt_tokens", prompt_tokens, float, min=0)
shared_prefix_tokens = check("shared_prefix_tokens", shared_prefix_tokens, float, min=0, max=prompt_tokens)
stages = check("stages", stages, list[str] | None)
signal = check("signal", signal, str, choices=("auto", "score"))
model = check("model", CostModel(prompt_tokens), str)
"""


def test_run_checks_runs_a_notebooks_own_checks_in_order():
    values = {"run_dir": "/nonexistent", "prompt_tokens": 100, "shared_prefix_tokens": 50, "stages": None,
              "signal": "auto"}
    checked = run_checks(CHECK_CELL, values)
    # converted like the notebook converts them; resolve_run_dir and the CostModel line are left to the notebook
    assert checked == {**values, "prompt_tokens": 100.0, "shared_prefix_tokens": 50.0}
    assert isinstance(checked["prompt_tokens"], float) and "run_path" not in checked and "model" not in checked
    with pytest.raises(ParameterError, match=r"^parameter shared_prefix_tokens: must be <= 100.0, got 1200$"):
        run_checks(CHECK_CELL, {**values, "shared_prefix_tokens": 1200})  # a bound that is another parameter
    with pytest.raises(ParameterError, match=r"^parameter stages\[1\]: expected a string, got 3 \(int\)$"):
        run_checks(CHECK_CELL, {**values, "stages": ["a", 3]})
    with pytest.raises(ParameterError, match="parameter signal: must be one of 'auto', 'score', got 'x'"):
        run_checks(CHECK_CELL, {**values, "signal": "x"})


def test_run_checks_leaves_parameters_without_a_known_value_to_the_notebook():
    # a default that is an expression is not among the values: the checks that read it are skipped
    assert run_checks(CHECK_CELL, {"prompt_tokens": 10, "signal": "score"}) == {"prompt_tokens": 10.0,
                                                                                "signal": "score"}


def test_model_prices_parse_into_prices_and_name_the_bad_entry():
    from toolkit.params import ModelPrices

    prices = check("model_prices", ["gpt-4o=2.5,10", "my-llm=0.2,0.4,0.1"], ModelPrices | None)
    assert {m: (p.input_usd_per_mtok, p.output_usd_per_mtok, p.cached_input_usd_per_mtok)
            for m, p in prices.items()} == {"gpt-4o": (2.5, 10.0, None), "my-llm": (0.2, 0.4, 0.1)}
    assert list(check("model_prices", "gpt-4o=2.5,10", ModelPrices)) == ["gpt-4o"]  # `-p model_prices=...`
    assert check("model_prices", None, ModelPrices | None) is None
    with pytest.raises(ParameterError) as caught:
        check("model_prices", ["gpt-4o=2.5,10", "my-llm=cheap,0.4"], ModelPrices | None)
    assert str(caught.value) == "parameter model_prices: price 'my-llm=cheap,0.4': 'cheap' is not a number >= 0"
    with pytest.raises(ParameterError, match=r'parameter model_prices: expected a list of "MODEL=IN,OUT" strings'):
        check("model_prices", {"gpt-4o": [2.5, 10]}, ModelPrices | None)
    # a report runs the same check before any notebook starts
    checked = run_checks('model_prices = check("model_prices", model_prices, ModelPrices | None)',
                         {"model_prices": ["a=1,2"]})
    assert checked["model_prices"]["a"].output_usd_per_mtok == 2.0


def test_run_dir_list_and_glob_name_several_run_dirs(tmp_path: Path):
    for name in ("grid-day1", "grid-day2", "other"):
        (tmp_path / name).mkdir()
    both = [(tmp_path / "grid-day1").resolve(), (tmp_path / "grid-day2").resolve()]
    assert resolve_run_dir(str(tmp_path / "grid-*")) == both
    assert resolve_run_dir([str(tmp_path / "grid-day1"), tmp_path / "grid-day2"]) == both
    with pytest.raises(RunDirError, match=r"parameter run_dir\[1\]: run directory .*nope"):
        resolve_run_dir([str(tmp_path / "other"), str(tmp_path / "nope")])
    with pytest.raises(RunDirError, match="pattern .* matches no run directory"):
        resolve_run_dir(str(tmp_path / "week-*"))
