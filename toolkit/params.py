"""Checks for notebook and report parameters, so a wrong value fails at once with its name.

papermill injects parameters as Python literals (from YAML on the command line), so a typo such as
`value_usd="abc"` would otherwise surface cells later as an obscure pandas error.  Each notebook
calls `check` once per parameter right after its `parameters` cell, and `resolve_run_dir` for
its run directory.
"""
from __future__ import annotations

import ast
import glob
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path

from toolkit import resources
from toolkit.errors import ParameterError, RunDirError

_NAMES = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}
_PLURALS = {float: "numbers", int: "integers", str: "strings", bool: "booleans"}


class ModelPrices:
    """A `check` kind: a list of "MODEL=IN,OUT" or "MODEL=IN,OUT,CACHED" strings (USD per million
    input, output and cached input tokens), returned as {MODEL: pricing.Price} for
    `load_price_table(overrides=...)`.  A list of strings is what papermill and `-p` pass cleanly;
    one string is taken as a list of one."""


def check(name: str, value: object, kind: object, *, min: float | None = None, max: float | None = None,
          choices: Sequence[object] | None = None) -> typing.Any:
    """Return `value` checked against `kind`, or raise `ParameterError` naming the parameter.

    `kind` is float, int, str, bool, `X | None` (None allowed) or `list[X]` (a non-empty list of X;
    `min`/`max` then bound each item).  An int is accepted as a float and returned as one; bool
    is never a number.  `min`/`max` are inclusive bounds; `choices` lists the allowed values.
    """
    optional, inner = _split_optional(kind)
    if value is None:
        if optional:
            return None
        raise _error(name, inner, value)
    if typing.get_origin(inner) is list:
        (item_kind,) = typing.get_args(inner)
        if not isinstance(value, (list, tuple)) or not value:
            raise _error(name, inner, value)
        return [check(f"{name}[{i}]", item, item_kind, min=min, max=max, choices=choices)
                for i, item in enumerate(value)]
    converted = _convert(name, value, inner)
    if min is not None and converted < min:
        raise ParameterError(f"parameter {name}: must be >= {min}, got {value!r}")
    if max is not None and converted > max:
        raise ParameterError(f"parameter {name}: must be <= {max}, got {value!r}")
    if choices is not None and converted not in choices:
        raise ParameterError(f"parameter {name}: must be one of {', '.join(map(repr, choices))}, "
                             f"got {value!r}")
    return converted


# What the `check(...)` calls of a notebook may name besides its parameters.
_CHECK_NAMES = {"check": check, "ModelPrices": ModelPrices, "None": None, "float": float, "int": int, "str": str,
                "bool": bool, "list": list}


def run_checks(source: str, values: Mapping[str, object]) -> dict[str, object]:
    """Run the `name = check("name", name, ...)` statements of a notebook's code cell on `values`.

    This is how a report validates every parameter of every notebook before the first one starts:
    the notebook's own checks, with its bounds, run in this process.  A statement naming anything
    but `values`, earlier checked names and `check`, `None`, `float`, `int`, `str`, `bool`, `list`
    (a default that is not a literal, a helper) is left to the notebook.  Returns the checked
    values; raises `ParameterError` like the notebook would.
    """
    namespace = dict(values)
    for statement in ast.parse(source).body:
        if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name) and isinstance(statement.value, ast.Call)
                and isinstance(statement.value.func, ast.Name) and statement.value.func.id == "check"):
            continue
        names = {node.id for node in ast.walk(statement.value) if isinstance(node, ast.Name)}
        if not names <= set(namespace) | set(_CHECK_NAMES):
            continue
        code = compile(ast.Expression(statement.value), "<parameter checks>", "eval")
        namespace[statement.targets[0].id] = eval(code, {"__builtins__": {}, **_CHECK_NAMES}, namespace)
    return namespace


def resolve_run_dir(run_dir: object, *, name: str = "run_dir") -> Path | list[Path]:
    """The run directory `run_dir` names: absolute, else relative to the cwd, else (a path under
    `data/`) in the package's shipped data (`resources.candidates`).  A list of such paths, or a
    glob pattern (`data/runs/grid-2026-*`), names several run dirs analysed as one table: the
    result is then a list (a pattern's matches sorted).

    The shipped fallback is what lets the notebooks' one default (`data/runs/sample`) work from any
    folder, in JupyterLab and under papermill, installed or in a checkout.  A missing directory, or a
    pattern matching none, is a `RunDirError` naming the parameter and every place tried.
    """
    if isinstance(run_dir, (list, tuple)):
        if not run_dir:
            raise _error(name, list[str], run_dir)
        return [path for i, item in enumerate(run_dir)
                for path in _as_list(resolve_run_dir(item, name=f"{name}[{i}]"))]
    if not isinstance(run_dir, (str, os.PathLike)) or not str(run_dir):
        raise _error(name, str, run_dir)
    tried = resources.candidates(run_dir)
    if glob.has_magic(str(run_dir)):
        for candidate in tried:
            matches = sorted(Path(match).resolve() for match in glob.glob(str(candidate)) if Path(match).is_dir())
            if matches:
                return matches
        raise RunDirError(f"parameter {name}: the pattern {str(run_dir)!r} matches no run directory "
                          f"(tried {', '.join(map(str, tried))})")
    for candidate in tried:
        if candidate.is_dir():
            return candidate.resolve()
    raise RunDirError(f"parameter {name}: run directory {str(run_dir)!r} not found ({not_found(tried)})")


def _as_list(paths: Path | list[Path]) -> list[Path]:
    return paths if isinstance(paths, list) else [paths]


def not_found(tried: Sequence[Path]) -> str:
    """The places a path was looked for, as an error message says them: "A nor B exists", "A does not exist"."""
    if len(tried) == 1:
        return f"{tried[0]} does not exist"
    return f"{' nor '.join(map(str, tried))} exists"


def _split_optional(kind: object) -> tuple[bool, object]:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        members = [k for k in typing.get_args(kind) if k is not type(None)]
        if len(members) != len(typing.get_args(kind)) - 1 or len(members) != 1:
            raise TypeError(f"check: kind must be X or X | None, got {kind!r}")
        return True, members[0]
    return False, kind


def _convert(name: str, value: object, kind: object) -> object:
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise _error(name, kind, value)
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _error(name, kind, value)
        return value
    if kind in (str, bool):
        if not isinstance(value, kind):  # type: ignore[arg-type]
            raise _error(name, kind, value)
        return value
    if kind is ModelPrices:
        return _model_prices(name, value)
    raise TypeError(f"check: unsupported kind {kind!r}")


def _model_prices(name: str, value: object) -> dict:
    from toolkit.errors import PriceError
    from toolkit.pricing import user_prices  # imported here: pricing loads pandas, the CLI imports params

    if isinstance(value, str):  # `-p model_prices=gpt-4o=2.5,10` reads as one string
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ParameterError(f"parameter {name}: expected a list of \"MODEL=IN,OUT\" strings (USD per million "
                             f"input and output tokens), e.g. [\"gpt-4o=2.5,10\"], got {value!r}")
    try:
        return user_prices(value)
    except PriceError as exc:
        raise ParameterError(f"parameter {name}: {exc}") from exc


def _describe(kind: object) -> str:
    if typing.get_origin(kind) is list:
        return f"a non-empty list of {_PLURALS[typing.get_args(kind)[0]]}"
    return _NAMES.get(kind, getattr(kind, "__name__", str(kind)))  # type: ignore[call-overload]


def _error(name: str, kind: object, value: object) -> ParameterError:
    return ParameterError(f"parameter {name}: expected {_describe(kind)}, "
                          f"got {value!r} ({type(value).__name__})")
