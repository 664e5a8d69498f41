"""Graders turn a model's raw output and the expected answer into a score in [0, 1].

A grader is a small frozen dataclass: its parameters are its fields, `name` spells them out (that
string goes into the requests table's `grader` column), and calling it grades one answer.
`make_grader` builds one from a dataset's dataset.yaml (`grader: {name: numeric, abs_tol: 0.5}`).
"""
from __future__ import annotations

import dataclasses
import math
import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Protocol

from toolkit.errors import ConfigError


@dataclass(frozen=True)
class Grade:
    score: float
    correct: bool


class Grader(Protocol):
    @property
    def name(self) -> str: ...

    def __call__(self, output: str, expected: str) -> Grade: ...


def _grade(ok: bool) -> Grade:
    return Grade(1.0 if ok else 0.0, ok)


def first_line(text: str) -> str:
    """The first line of `text` that is not blank (models often pad with newlines), else ""."""
    return next((line for line in text.splitlines() if line.strip()), "")


def normalize(text: str) -> str:
    """Casefold, drop accents, collapse whitespace and strip surrounding punctuation.

    Accents are dropped because the datasets spell answers in ASCII ("Bogota") while a model may
    answer "Bogotá"; both name the same city.
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return " ".join(text.split()).strip(string.punctuation + " ")


def _params(grader: object) -> str:
    return ", ".join(f"{f.name}={getattr(grader, f.name)!r}" for f in dataclasses.fields(grader))


@dataclass(frozen=True)
class Exact:
    """Correct when the output equals the expected answer after trimming surrounding whitespace."""

    @property
    def name(self) -> str:
        return "exact"

    def __call__(self, output: str, expected: str) -> Grade:
        return _grade(output.strip() == expected.strip())


@dataclass(frozen=True)
class Normalized:
    """Correct when the first non-empty line equals the expected answer after `normalize`."""

    @property
    def name(self) -> str:
        return "normalized"

    def __call__(self, output: str, expected: str) -> Grade:
        return _grade(normalize(first_line(output)) == normalize(expected))


_NUMBER = re.compile(r"[-+]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def first_number(text: str) -> float | None:
    """The first number written in `text` (thousands commas allowed), or None."""
    match = _NUMBER.search(text)
    return float(match.group().replace(",", "")) if match else None


@dataclass(frozen=True)
class Numeric:
    """Correct when the first number in the output is within `abs_tol` or `rel_tol` of expected."""

    abs_tol: float = 0.0
    rel_tol: float = 0.0

    def __post_init__(self) -> None:
        for field in ("abs_tol", "rel_tol"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError("grader", f"numeric {field} must be a number >= 0, got {value!r}")
        object.__setattr__(self, "abs_tol", float(self.abs_tol))
        object.__setattr__(self, "rel_tol", float(self.rel_tol))

    @property
    def name(self) -> str:
        return f"numeric({_params(self)})"

    def __call__(self, output: str, expected: str) -> Grade:
        got, want = first_number(output), first_number(expected)
        if got is None or want is None:
            return _grade(False)
        return _grade(math.isclose(got, want, rel_tol=self.rel_tol, abs_tol=self.abs_tol))


@dataclass(frozen=True)
class Label:
    """Classification: the first of `choices` to appear (as a word) in the first line is the answer.

    Picking the earliest choice, not any choice, keeps "positive, not negative" from counting for
    both labels.
    """

    choices: tuple[str, ...]

    def __post_init__(self) -> None:
        choices = self.choices
        if (isinstance(choices, str) or not isinstance(choices, list | tuple) or not choices
                or not all(isinstance(c, str) and normalize(c) for c in choices)):
            raise ConfigError("grader", f"label choices must be a non-empty list of words, "
                                        f"got {choices!r}")
        object.__setattr__(self, "choices", tuple(choices))

    @property
    def name(self) -> str:
        return f"label({_params(self)})"

    def predict(self, output: str) -> str | None:
        """The choice the output names first, or None when it names none."""
        line = normalize(first_line(output))
        found = [(m.start(), choice) for choice in self.choices
                 if (m := re.search(rf"\b{re.escape(normalize(choice))}\b", line))]
        return min(found)[1] if found else None

    def __call__(self, output: str, expected: str) -> Grade:
        predicted = self.predict(output)
        return _grade(predicted is not None and normalize(predicted) == normalize(expected))


@dataclass(frozen=True)
class Regex:
    """Correct when `pattern` matches anywhere in the output (re.search).

    `{expected}` in the pattern stands for the expected answer, regex-escaped, so one pattern such
    as `^\\s*{expected}\\b` serves every item.
    """

    pattern: str
    ignore_case: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ConfigError("grader", f"regex pattern must be a non-empty string, got {self.pattern!r}")
        if not isinstance(self.ignore_case, bool):
            raise ConfigError("grader", f"regex ignore_case must be true or false, got {self.ignore_case!r}")
        try:
            re.compile(self.pattern.replace("{expected}", "x"))
        except re.error as exc:
            raise ConfigError("grader", f"regex pattern {self.pattern!r} does not compile: {exc}") from exc

    @property
    def name(self) -> str:
        return f"regex({_params(self)})"

    def __call__(self, output: str, expected: str) -> Grade:
        pattern = self.pattern.replace("{expected}", re.escape(expected))
        return _grade(re.search(pattern, output, re.IGNORECASE if self.ignore_case else 0) is not None)


GRADERS: dict[str, type] = {"exact": Exact, "label": Label, "normalized": Normalized,
                            "numeric": Numeric, "regex": Regex}


def make_grader(name: str, **params: object) -> Grader:
    """Build the grader called `name` with `params` (as written in a dataset's dataset.yaml).

    Raises ConfigError naming the unknown grader or parameter and listing the valid ones, or the
    parameter with an impossible value.
    """
    cls = GRADERS.get(name)
    if cls is None:
        raise ConfigError("grader", f"unknown grader {name!r} (valid: {', '.join(GRADERS)})")
    valid = [f.name for f in dataclasses.fields(cls)]
    for param in params:
        if param not in valid:
            raise ConfigError("grader", f"{name} has no parameter {param!r} "
                                        f"(valid: {', '.join(valid) or 'none'})")
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in params and f.default is dataclasses.MISSING]
    if missing:
        raise ConfigError("grader", f"{name} needs parameter {missing[0]!r}")
    return cls(**params)
