"""Reading a collect config file: the YAML checked key by key into a `CollectConfig`.

Every key is checked: an unknown key or a value of the wrong type is a `ConfigError` that names the
file and the key path (`grid.max_tokens[1].tokens`), before any request is sent.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from toolkit import resources
from toolkit.config import (Arrival, CacheSettings, CollectConfig, EndpointConfig, Grid, Limits, RetryPolicy,
                            TokenCap, base_url_problem)
from toolkit.errors import ConfigError

# Keys renamed when "task" and "eval set" became "dataset"; a file that still uses one is told the new name.
_RENAMED_KEYS = {"tasks": "datasets", "items_per_task": "items_per_dataset"}

_NUMBER = (int, float)


class _Reader:
    """Pops keys from a mapping with type checks; leftover keys are unknown and reported."""

    def __init__(self, path: Path, mapping: Any, where: str) -> None:
        if not isinstance(mapping, dict):
            raise ConfigError(path, f"must be a mapping, got {type(mapping).__name__}", field=where or None)
        self.path, self.mapping, self.where = path, dict(mapping), where

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def take(self, name: str, kinds: type | tuple[type, ...], default: Any = ..., *,
             nullable: bool = False) -> Any:
        if name not in self.mapping:
            if default is ...:
                raise ConfigError(self.path, "is required", field=self.key(name))
            return default
        value = self.mapping.pop(name)
        if value is None and nullable:
            return None
        if not _is_instance(value, kinds):
            raise ConfigError(self.path, f"must be {_kind_names(kinds)}, got {value!r}", field=self.key(name))
        return value

    def take_list(self, name: str, kinds: type | tuple[type, ...], default: Any = ...) -> tuple:
        if name not in self.mapping and default is not ...:
            return tuple(default)
        value = self.take(name, (list, *(kinds if isinstance(kinds, tuple) else (kinds,))), default)
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ConfigError(self.path, "must not be empty", field=self.key(name))
        for index, element in enumerate(values):
            if not _is_instance(element, kinds):
                raise ConfigError(self.path, f"must be {_kind_names(kinds)}, got {element!r}",
                                  field=f"{self.key(name)}[{index}]")
        return tuple(values)

    def done(self) -> None:
        if self.mapping:
            unknown = ", ".join(self.key(k) for k in self.mapping)
            raise ConfigError(self.path, f"unknown key(s): {unknown}")


def _kind_names(kinds: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))


def _is_instance(value: Any, kinds: type | tuple[type, ...]) -> bool:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # YAML `yes` must not pass as a number
    return isinstance(value, kinds)


def _positive(path: Path, key: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise ConfigError(path, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}", field=key)


def _no_duplicates(path: Path, key: str, values: Sequence[Any], shown: Sequence[Any] | None = None) -> None:
    """Reject a value listed twice: each config would be collected (and paid for) twice under one id."""
    first: dict[Any, int] = {}
    for index, value in enumerate(values):
        if value in first:
            raise ConfigError(path, f"{(shown or values)[index]!r} is listed twice (also {key}[{first[value]}]); "
                                    "every request of that configuration would be sent twice: remove one",
                              field=f"{key}[{index}]")
        first[value] = index


def _renamed_keys(path: Path, mapping: Any, where: str) -> None:
    """Name the new key for an old one (`tasks:`), instead of calling it unknown."""
    if isinstance(mapping, dict):
        for old, new in _RENAMED_KEYS.items():
            if old in mapping:
                raise ConfigError(path, f"this key was renamed to {new!r}: write {new}: instead of {old}:",
                                  field=f"{where}.{old}" if where else old)


def _dataclass_section(path: Path, raw: Any, cls: type, where: str) -> Any:
    reader = _Reader(path, raw or {}, where)
    values = {}
    for spec in fields(cls):
        default = spec.default
        kinds = (int,) if spec.type in ("int", "int | None") else _NUMBER
        value = reader.take(spec.name, kinds, default, nullable=True)
        _positive(path, reader.key(spec.name), value, allow_zero=spec.name.startswith("max_error"))
        values[spec.name] = value
    reader.done()
    return cls(**values)


def _token_cap(path: Path, raw: Any, where: str) -> TokenCap:
    if _is_instance(raw, int):
        _positive(path, where, raw)
        return TokenCap(raw)
    reader = _Reader(path, raw, where)
    cap = TokenCap(reader.take("tokens", int), reader.take("stop", bool, True))
    reader.done()
    _positive(path, f"{where}.tokens", cap.tokens)
    return cap


def _arrival(path: Path, raw: Any, where: str) -> Arrival:
    reader = _Reader(path, raw, where)
    arrival = Arrival(rate_per_s=float(reader.take("rate_per_s", _NUMBER)),
                      duration_s=reader.take("duration_s", _NUMBER, None, nullable=True),
                      max_in_flight=reader.take("max_in_flight", int, Arrival.max_in_flight))
    reader.done()
    for name in ("rate_per_s", "duration_s", "max_in_flight"):
        value = getattr(arrival, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(path, f"must be a finite number > 0, got {value!r}", field=reader.key(name))
    return arrival


def _endpoint(path: Path, raw: Any, where: str) -> EndpointConfig:
    reader = _Reader(path, raw, where)
    name = reader.take("name", str)
    kind = reader.take("kind", str, "openai")
    if kind not in ("openai", "embedded"):
        raise ConfigError(path, f"must be 'openai' or 'embedded', got {kind!r}", field=reader.key("kind"))
    if "api_key" in reader.mapping:
        raise ConfigError(path, "API keys never go in a config file; name an environment variable "
                                "with api_key_env instead", field=reader.key("api_key"))
    base_url = reader.take("base_url", str, None, nullable=True)
    problem = base_url_problem(base_url) if base_url is not None else None
    if problem:
        raise ConfigError(path, problem, field=reader.key("base_url"))
    api_key_env = reader.take("api_key_env", str, None, nullable=True)
    default_models = ("gemma-3-270m-q4_k_m",) if kind == "embedded" else ...
    models = reader.take_list("models", str, default_models)
    _no_duplicates(path, reader.key("models"), models)
    reader.done()
    return EndpointConfig(name, kind, base_url, api_key_env, tuple(models))


def _grid(path: Path, raw: Any, where: str) -> Grid:
    """One grid (`grid`, or a subgrid merged over it) read and checked; errors name `where`."""
    _renamed_keys(path, raw, where)
    grid_reader = _Reader(path, raw, where)
    raw_arrival = grid_reader.take("arrival", dict, None, nullable=True)
    arrival = None if raw_arrival is None else _arrival(path, raw_arrival, f"{where}.arrival")
    if arrival is not None and "concurrency" in grid_reader.mapping:
        raise ConfigError(path, "open-loop grid.arrival sets the load by its rate, not by requests in flight: "
                                "remove grid.concurrency, or bound the requests in flight with "
                                "grid.arrival.max_in_flight", field=f"{where}.concurrency")
    grid = Grid(
        prompt_variants=grid_reader.take_list("prompt_variants", str),
        max_tokens=tuple(_token_cap(path, cap, f"{where}.max_tokens[{i}]")
                         for i, cap in enumerate(grid_reader.take_list("max_tokens", (int, dict)))),
        temperature=tuple(float(t) for t in grid_reader.take_list("temperature", _NUMBER, (0.0,))),
        concurrency=(arrival.max_in_flight,) if arrival else grid_reader.take_list("concurrency", int, (1,)),
        repeats=grid_reader.take("repeats", int, 1),
        logprobs=grid_reader.take("logprobs", bool, False),
        # YAML reads a bare `off` as false: accept booleans as off / response
        cache=tuple({False: "off", True: "response"}.get(mode, mode) if isinstance(mode, bool) else mode
                    for mode in grid_reader.take_list("cache", (str, bool), ("off",))),
        arrival=arrival,
    )
    grid_reader.done()
    for i, mode in enumerate(grid.cache):
        if mode not in ("off", "response"):
            raise ConfigError(path, f"must be 'off' or 'response', got {mode!r}", field=f"{where}.cache[{i}]")
    for i, level in enumerate(grid.concurrency):
        _positive(path, f"{where}.concurrency[{i}]", level)
    for i, temperature in enumerate(grid.temperature):
        _positive(path, f"{where}.temperature[{i}]", temperature, allow_zero=True)
    _positive(path, f"{where}.repeats", grid.repeats)
    _no_duplicates(path, f"{where}.prompt_variants", grid.prompt_variants)
    # compared as what is sent: `8` and `{tokens: 8}` are one cap, `0` and `0.0` one temperature
    _no_duplicates(path, f"{where}.max_tokens", grid.max_tokens,
                   shown=[c.tokens if c.stop else {"tokens": c.tokens, "stop": False} for c in grid.max_tokens])
    _no_duplicates(path, f"{where}.temperature", grid.temperature)
    _no_duplicates(path, f"{where}.concurrency", grid.concurrency)
    _no_duplicates(path, f"{where}.cache", grid.cache)
    return grid


def _folder(reader: _Reader, path: Path, name: str, shipped: Path) -> Path:
    """A folder key: relative to the config file's folder (wherever the command runs), the package's
    shipped folder when absent; a folder that does not exist is an error saying where it was looked for."""
    given = reader.take(name, str, None, nullable=True)
    if given is None:
        return shipped
    folder = (path.parent / Path(given).expanduser()).resolve()
    if not folder.is_dir():
        raise ConfigError(path, f"folder {given!r} not found: looked for {folder} (a relative path is read "
                                f"from the config file's folder; leave {name} out for the shipped {shipped})",
                          field=name)
    return folder


def parse_config(raw: Any, path: Path) -> CollectConfig:
    """A checked `CollectConfig` from a config's YAML document `raw` read from `path`.

    Relative paths in it (evals_dir, prompts_dir, cache.path) are read from the config file's folder;
    without evals_dir or prompts_dir, the datasets and prompts shipped with the package are used.
    """
    _renamed_keys(path, raw, "")
    reader = _Reader(path, raw, "")
    name = reader.take("name", str)
    description = reader.take("description", str, "")
    datasets = reader.take_list("datasets", str)
    base = path.parent
    evals_dir = _folder(reader, path, "evals_dir", resources.evals_dir())
    prompts_dir = _folder(reader, path, "prompts_dir", resources.prompts_dir())
    items_per_dataset = reader.take("items_per_dataset", int, None, nullable=True)
    _positive(path, "items_per_dataset", items_per_dataset)
    seed = reader.take("seed", int, 0)
    order = reader.take("order", str, "shuffled")
    if order not in ("shuffled", "grouped"):
        raise ConfigError(path, f"must be 'shuffled' or 'grouped', got {order!r}", field="order")
    raw_endpoints = reader.take("endpoints", list)
    endpoints = tuple(_endpoint(path, item, f"endpoints[{i}]") for i, item in enumerate(raw_endpoints))
    if not endpoints:
        raise ConfigError(path, "must list at least one endpoint", field="endpoints")
    _no_duplicates(path, "datasets", datasets)
    _no_duplicates(path, "endpoints", [e.name for e in endpoints], shown=[f"name: {e.name}" for e in endpoints])
    raw_grid = reader.take("grid", dict)
    grid = _grid(path, raw_grid, "grid")
    raw_subgrids = reader.take("subgrids", list, None, nullable=True) or []
    subgrids = []
    for i, raw_subgrid in enumerate(raw_subgrids):
        where = f"subgrids[{i}]"
        if not isinstance(raw_subgrid, dict):
            raise ConfigError(path, "must be a mapping of grid keys to change", field=where)
        if "arrival" in raw_subgrid:
            raise ConfigError(path, "an open-loop arrival belongs to the grid itself", field=f"{where}.arrival")
        own = dict(raw_subgrid)
        items = own.pop("items_per_dataset", None)
        if items is not None and (not isinstance(items, int) or isinstance(items, bool) or items <= 0):
            raise ConfigError(path, f"must be an integer > 0, got {items!r}", field=f"{where}.items_per_dataset")
        subgrids.append(dataclasses.replace(_grid(path, {**raw_grid, **own}, where), items_per_dataset=items))
    limits = _dataclass_section(path, reader.take("limits", dict, None, nullable=True), Limits, "limits")
    retry = _dataclass_section(path, reader.take("retry", dict, None, nullable=True), RetryPolicy, "retry")
    cache_reader = _Reader(path, reader.take("cache", dict, None, nullable=True) or {}, "cache")
    cache_path = cache_reader.take("path", str, None, nullable=True)
    cache = CacheSettings(path=(base / Path(cache_path).expanduser()).resolve() if cache_path else None,
                          ttl_s=cache_reader.take("ttl_s", _NUMBER, None, nullable=True))
    cache_reader.done()
    _positive(path, "cache.ttl_s", cache.ttl_s)
    reader.done()
    config = CollectConfig(name=name, path=path, datasets=tuple(datasets), endpoints=endpoints, grid=grid,
                           evals_dir=evals_dir, prompts_dir=prompts_dir, items_per_dataset=items_per_dataset,
                           seed=seed, order=order, description=description, limits=limits, retry=retry,
                           cache=cache, raw=raw, subgrids=tuple(subgrids))
    seen: dict[str, str] = {}
    for where, one_grid in (("grid", grid), *((f"subgrids[{i}]", g) for i, g in enumerate(subgrids))):
        ids = [c.config_id for c in config.grid_configs(one_grid)]
        twice = [config_id for config_id, count in Counter(ids).items() if count > 1]
        if twice:  # temperatures that differ only past the 6 digits the id shows
            raise ConfigError(path, f"two configs share the config_id {twice[0]!r}; make their settings differ "
                                    "visibly (temperature is shown to 6 significant digits)", field=where)
        for config_id in ids:
            if config_id in seen:
                raise ConfigError(path, f"repeats the config {config_id!r} of {seen[config_id]}: every request would "
                                        "be planned twice; change a setting or drop it", field=where)
            seen[config_id] = where
    return config


def load_config(path: str | Path) -> CollectConfig:
    """Read and validate a collect config YAML file.

    A relative path is read from the cwd, else, under `data/`, from the package's shipped data
    (`resources.candidates`), so `data/configs/smoke.yaml` names the shipped config from any folder.
    """
    path = Path(path)
    if not path.exists():
        tried = resources.candidates(path)
        path = next((p for p in tried[1:] if p.is_file()), path)
    if not path.exists():
        where = "" if len(tried) == 1 else f" (looked for {' and '.join(map(str, tried))})"
        raise ConfigError(path, f"config file not found{where}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise ConfigError(path, f"not valid YAML: {exc}", line=None if line is None else line + 1) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not UTF-8 text: {exc}") from exc
    return parse_config(raw, path)
