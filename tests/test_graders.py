import pytest

from toolkit.errors import ConfigError
from toolkit.graders import (GRADERS, Exact, Grade, Label, Normalized, Numeric, Regex, first_line,
                             first_number, make_grader, normalize)


def test_exact_trims_surrounding_whitespace_only():
    assert Exact()(" Paris\n", "Paris") == Grade(1.0, True)
    assert Exact()("paris", "Paris") == Grade(0.0, False)
    assert Exact()("Paris.", "Paris") == Grade(0.0, False)


@pytest.mark.parametrize("output", [" Paris", "paris.", "\n\n  PARIS  \nLyon", '"Paris"', "Paris!"])
def test_normalized_accepts_case_whitespace_punctuation_and_first_line(output):
    assert Normalized()(output, "Paris").correct


@pytest.mark.parametrize("output", ["The capital is Paris", "Lyon\nParis", "Par is", ""])
def test_normalized_rejects_other_answers(output):
    assert Normalized()(output, "Paris") == Grade(0.0, False)


def test_normalize_folds_accents_and_keeps_inner_punctuation():
    assert normalize("  Bogotá ") == "bogota"
    assert normalize("N'Djamena.") == "n'djamena"
    assert normalize("Port-au-Prince\t") == "port-au-prince"
    assert Normalized()(" Yaoundé", "Yaounde").correct


def test_first_line_skips_blank_lines():
    assert first_line("\n  \nKabul\nmore") == "Kabul"
    assert first_line("   \n") == ""


@pytest.mark.parametrize("text,number", [(" 73", 73.0), ("The answer is -5.", -5.0),
                                         ("about 1,234.5 dollars", 1234.5), ("x=.5", 0.5),
                                         ("2e3 and 7", 2000.0), ("none", None)])
def test_first_number(text, number):
    assert first_number(text) == number


def test_numeric_exact_by_default():
    grader = Numeric()
    assert grader(" 73\n", "73").correct
    assert grader("73.0", "73").correct
    assert not grader("74", "73").correct
    assert not grader("no idea", "73").correct
    assert grader.name == "numeric(abs_tol=0.0, rel_tol=0.0)"


def test_numeric_tolerances_are_inclusive_bounds():
    absolute = Numeric(abs_tol=0.5)
    assert absolute("73.5", "73").correct and not absolute("73.6", "73").correct
    relative = Numeric(rel_tol=0.01)
    assert relative("101", "100").correct and not relative("102", "100").correct
    assert relative.name == "numeric(abs_tol=0.0, rel_tol=0.01)"


@pytest.mark.parametrize("bad", [-1, "0.1", True, float("nan")])
def test_numeric_rejects_impossible_tolerance(bad):
    with pytest.raises(ConfigError) as err:
        Numeric(abs_tol=bad)
    assert str(err.value) == f"grader: numeric abs_tol must be a number >= 0, got {bad!r}"


def test_label_takes_the_first_choice_in_the_first_line():
    grader = Label(choices=("positive", "negative"))
    assert grader(" Positive", "positive") == Grade(1.0, True)
    assert grader("negative, not positive", "negative").correct
    assert not grader("negative, not positive", "positive").correct
    assert grader.predict("\n\nIt is NEGATIVE.\npositive") == "negative"
    assert grader.predict("positively great") is None  # whole words only
    assert grader.predict("neutral\npositive") is None  # only the first non-empty line counts
    assert not grader("", "positive").correct
    assert grader.name == "label(choices=('positive', 'negative'))"


@pytest.mark.parametrize("bad", [[], "positive", ["positive", ""], [1, 2]])
def test_label_rejects_bad_choices(bad):
    with pytest.raises(ConfigError) as err:
        Label(choices=bad)
    assert str(err.value) == f"grader: label choices must be a non-empty list of words, got {bad!r}"


def test_regex_substitutes_escaped_expected():
    grader = Regex(pattern=r"^\s*{expected}\b")
    assert grader(" 3.5 apples", "3.5").correct
    assert not grader(" 3x5 apples", "3.5").correct  # "." is escaped, not a wildcard
    assert not grader("about 3.5", "3.5").correct
    assert Regex(pattern=r"\d{4}-\d{2}-\d{2}")("on 2021-03-05", "unused").correct
    assert Regex(pattern="paris", ignore_case=True)("PARIS", "x").correct
    assert not Regex(pattern="paris")("PARIS", "x").correct
    assert grader.name == r"regex(pattern='^\\s*{expected}\\b', ignore_case=False)"


def test_regex_rejects_a_pattern_that_does_not_compile():
    with pytest.raises(ConfigError) as err:
        Regex(pattern="(unclosed")
    assert str(err.value) == ("grader: regex pattern '(unclosed' does not compile: "
                              "missing ), unterminated subpattern at position 0")


def test_make_grader_builds_each_kind_with_params():
    assert make_grader("exact") == Exact()
    assert make_grader("normalized").name == "normalized"
    assert make_grader("numeric", abs_tol=0.01) == Numeric(abs_tol=0.01)
    assert make_grader("numeric", abs_tol=0.01).name == "numeric(abs_tol=0.01, rel_tol=0.0)"
    assert make_grader("label", choices=["yes", "no"]) == Label(choices=("yes", "no"))
    assert make_grader("regex", pattern="x").name == "regex(pattern='x', ignore_case=False)"
    assert sorted(GRADERS) == ["exact", "label", "normalized", "numeric", "regex"]


def test_make_grader_unknown_name():
    with pytest.raises(ConfigError) as err:
        make_grader("fuzzy")
    assert str(err.value) == "grader: unknown grader 'fuzzy' (valid: exact, label, normalized, numeric, regex)"


def test_make_grader_unknown_param():
    with pytest.raises(ConfigError) as err:
        make_grader("numeric", tolerance=0.1)
    assert str(err.value) == "grader: numeric has no parameter 'tolerance' (valid: abs_tol, rel_tol)"
    with pytest.raises(ConfigError) as err:
        make_grader("exact", strip=True)
    assert str(err.value) == "grader: exact has no parameter 'strip' (valid: none)"


def test_make_grader_missing_required_param():
    with pytest.raises(ConfigError) as err:
        make_grader("label")
    assert str(err.value) == "grader: label needs parameter 'choices'"


def test_scores_are_in_unit_interval_and_match_correct():
    graders = [Exact(), Normalized(), Numeric(), Label(("a", "b")), Regex("a")]
    for grader in graders:
        for output in ["a", "b", "1", "", "A\nb"]:
            grade = grader(output, "a")
            assert 0.0 <= grade.score <= 1.0
            assert grade.correct == (grade.score == 1.0)
