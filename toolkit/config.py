"""Collection configs as data: a `CollectConfig` (one YAML file: datasets, endpoints and a grid of
models x prompt variants x max_tokens x temperature x concurrency, repeated, with rate limits,
budgets and retry settings) expands into `Config`s, one per combination of settings, each named by
its `config_id`.

`toolkit.config_file` reads and checks the YAML file.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from toolkit.errors import ParameterError


@dataclass(frozen=True)
class EndpointConfig:
    name: str
    kind: str = "openai"  # "openai": any OpenAI-compatible base_url; "embedded": started by the toolkit
    base_url: str | None = None
    api_key_env: str | None = None
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenCap:
    tokens: int
    stop: bool = True  # use the dataset's stop sequences


@dataclass(frozen=True)
class Limits:
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_requests: int | None = None
    max_cost_usd: float | None = None
    max_error_rate: float = 0.5
    min_requests_for_error_rate: int = 20


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    timeout_s: float = 60.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass(frozen=True)
class Config:
    """One combination of the grid's settings: everything that produced a request except the dataset,
    item and repeat."""

    config_id: str
    endpoint: EndpointConfig
    model: str
    prompt_variant: str
    max_tokens: int
    stop: bool
    temperature: float
    concurrency: int
    logprobs: bool
    cache: bool = False  # answer exact repeats from the response cache
    repeats: int = 1
    items_per_dataset: int | None = None  # None: the collect config's items_per_dataset
    arrival_rate_per_s: float | None = None  # open loop: the grid's arrival rate; None: closed loop

    def columns(self) -> dict[str, object]:
        """The requests-table columns that say which configuration sent a request: every setting
        that can tell two configurations apart has a column, so analysis never parses `config_id`."""
        return {"config_id": self.config_id, "endpoint_name": self.endpoint.name, "model": self.model,
                "prompt_variant": self.prompt_variant, "max_tokens": self.max_tokens,
                "stop_sequences": self.stop, "temperature": self.temperature, "concurrency": self.concurrency,
                "logprobs": self.logprobs, "response_cache": self.cache,
                "arrival_rate_per_s": self.arrival_rate_per_s}


@dataclass(frozen=True)
class Arrival:
    """Open-loop load (`grid.arrival`): requests fall due at the times of a seeded Poisson process and
    are sent when due, whether or not earlier ones have finished.

    `duration_s` sends about rate_per_s x duration_s requests per phase (None: every planned one).
    `max_in_flight` bounds the requests out at once: a rate the server cannot keep up with would
    otherwise open connections without end; a request held back by it is sent late, and
    `send_lag_s` says by how much.  It is the configs' `concurrency` (what is in flight by design),
    so it is also the embedded server's number of slots, each with its own context: hence 32 by
    default rather than hundreds.
    """

    rate_per_s: float
    duration_s: float | None = None
    max_in_flight: int = 32


@dataclass(frozen=True)
class Grid:
    prompt_variants: tuple[str, ...]
    max_tokens: tuple[TokenCap, ...]
    temperature: tuple[float, ...] = (0.0,)
    concurrency: tuple[int, ...] = (1,)
    repeats: int = 1
    logprobs: bool = False
    cache: tuple[str, ...] = ("off",)
    arrival: Arrival | None = None  # None: closed loop, `concurrency` requests in flight at every moment
    items_per_dataset: int | None = None  # a subgrid's own item count; None: the collect config's


@dataclass(frozen=True)
class CacheSettings:
    path: Path | None = None  # None: responses.sqlite inside the run directory
    ttl_s: float | None = None


@dataclass(frozen=True)
class CollectConfig:
    """A whole collect config file: the datasets, the endpoints and the grid (and subgrids) of settings."""

    name: str
    path: Path
    datasets: tuple[str, ...]
    endpoints: tuple[EndpointConfig, ...]
    grid: Grid
    evals_dir: Path
    prompts_dir: Path
    items_per_dataset: int | None = None
    seed: int = 0
    order: str = "shuffled"
    description: str = ""
    limits: Limits = field(default_factory=Limits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cache: CacheSettings = field(default_factory=CacheSettings)
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    # more configs beside the grid's, each subgrid the grid with some keys changed (e.g. a load sweep on a few items)
    subgrids: tuple[Grid, ...] = ()

    def configs(self) -> list[Config]:
        """The grid and then each subgrid expanded, in a stable order; a config that an earlier grid
        already has is not repeated (a `--concurrency` override can make two grids meet)."""
        found: dict[str, Config] = {}
        for grid in (self.grid, *self.subgrids):
            for config in self.grid_configs(grid):
                found.setdefault(config.config_id, config)
        return list(found.values())

    @property
    def max_concurrency(self) -> int:
        """The most requests any config keeps in flight (what the embedded server needs slots for)."""
        return max(config.concurrency for config in self.configs())

    def grid_configs(self, grid: Grid) -> list[Config]:
        """Every combination of `grid` (the grid or one subgrid) on every endpoint, duplicates kept."""
        configs = []
        for endpoint in self.endpoints:
            for model, variant, cap, temperature, concurrency, cache in itertools.product(
                    endpoint.models, grid.prompt_variants, grid.max_tokens,
                    grid.temperature, grid.concurrency, grid.cache):
                # an open-loop config's load is its arrival rate; concurrency only bounds it
                rate = "" if grid.arrival is None else f"/r{grid.arrival.rate_per_s:g}"
                name = (f"{model}/{variant}/mt{cap.tokens}{'' if cap.stop else '-nostop'}"
                        f"/T{temperature:g}{rate}/c{concurrency}{'/cache' if cache == 'response' else ''}")
                if len(self.endpoints) > 1:
                    name = f"{endpoint.name}:{name}"
                configs.append(Config(name, endpoint, model, variant, cap.tokens, cap.stop,
                                      temperature, concurrency, grid.logprobs, cache == "response",
                                      grid.repeats, grid.items_per_dataset,
                                      None if grid.arrival is None else grid.arrival.rate_per_s))
        return configs


def base_url_problem(url: str) -> str | None:
    """What is wrong with an endpoint's base_url, or None.

    The client appends `/chat/completions` to base_url, so a query string (`?api-key=...`) ends up
    in the middle of every request's path and each one fails with a bare 404.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http:// or https:// URL such as http://127.0.0.1:8000/v1"
    if parts.query or parts.fragment or "@" in parts.netloc:
        bare = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        return (f"must be a plain URL ({bare}) without a query string, fragment or user:password: "
                "an API key goes in an environment variable named by the endpoint's api_key_env "
                "and is sent as the Authorization header")
    return None


def with_overrides(config: CollectConfig, *, items_per_dataset: int | None = None, concurrency: int | None = None,
                   max_cost_usd: float | None = None, max_requests: int | None = None) -> CollectConfig:
    """`config` with command-line overrides (None: keep the config's value), each checked like the key
    it replaces, so `--concurrency 0` fails before a run directory exists."""
    for name, value, kind in (("items_per_dataset", items_per_dataset, int), ("concurrency", concurrency, int),
                              ("max_cost_usd", max_cost_usd, float), ("max_requests", max_requests, int)):
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (kind is int and not isinstance(value, int)) or not math.isfinite(value) or value <= 0:
            raise ParameterError(f"{name}: must be {'an integer' if kind is int else 'a number'} > 0, "
                                 f"got {value!r}")
    if items_per_dataset is not None:
        config = dataclasses.replace(config, items_per_dataset=items_per_dataset)
    if concurrency is not None:
        arrival = config.grid.arrival  # open loop: --concurrency is the bound on requests in flight
        if arrival is not None:
            arrival = dataclasses.replace(arrival, max_in_flight=concurrency)
        config = dataclasses.replace(config, grid=dataclasses.replace(config.grid, concurrency=(concurrency,),
                                                                      arrival=arrival),
                                     subgrids=tuple(dataclasses.replace(g, concurrency=(concurrency,))
                                                    for g in config.subgrids))
    if max_cost_usd is not None:
        config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, max_cost_usd=max_cost_usd))
    if max_requests is not None:
        config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, max_requests=max_requests))
    return config
