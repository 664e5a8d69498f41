"""Collection configs aimed at the scripted server, and the ground truth a fault script implies.

Shared by the reliability tests (faults, crash/resume, bad input, secrets, measure): each writes
a config into a tmp dir that reads the repo's datasets and prompts and talks to one endpoint
`{name: scripted, base_url: <server>, models: [scripted]}`.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from toolkit.testing import Script

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("capitals", "sentiment", "dates", "arithmetic")
VARIANTS = ("zero_shot", "few_shot_1", "few_shot_3", "few_shot_5", "chat")
# Faults after which the attempt fails and the collector retries; no_usage and empty_choices
# still deliver an answer (a stall fails only when it outlasts the client's timeout).
FAILING = ("429", "500", "502", "503", "reset", "reset_mid", "stall", "malformed", "truncated")
ERROR_TYPE = {"429": "rate_limited", "500": "server_error", "502": "server_error",
              "503": "server_error", "reset": "connection", "reset_mid": "connection",
              "stall": "timeout", "malformed": "malformed_stream", "truncated": "dropped_stream"}


def write_config(directory: Path, base_url: str | None, *, datasets=DATASETS, items: int = 5,
                 variants=VARIANTS, repeats: int = 1, concurrency: int | list[int] | None = 4,
                 arrival: dict | None = None, max_tokens: int = 8,
                 retry: dict | None = None, limits: dict | None = None, api_key_env: str | None = None,
                 name: str = "scripted", **extra) -> Path:
    """Write a config YAML into `directory` and return its path (`grid.arrival` when `arrival` is given, no
    `grid.concurrency` when `concurrency` is None)."""
    endpoint = {"name": "scripted", "base_url": base_url, "models": ["scripted"]}
    if api_key_env:
        endpoint["api_key_env"] = api_key_env
    raw = {
        "name": name, "datasets": list(datasets), "items_per_dataset": items, "seed": 7,
        "evals_dir": str(REPO / "data" / "evals"), "prompts_dir": str(REPO / "data" / "prompts"),
        "endpoints": [endpoint],
        "grid": {"prompt_variants": list(variants), "max_tokens": [max_tokens], "repeats": repeats},
        "retry": {"max_attempts": 4, "timeout_s": 5.0, "backoff_base_s": 0.01, "backoff_max_s": 0.05,
                  **(retry or {})},
        "limits": {"max_error_rate": 1.0, **(limits or {})},
        **extra,
    }
    if concurrency is not None:
        raw["grid"]["concurrency"] = concurrency if isinstance(concurrency, list) else [concurrency]
    if arrival is not None:
        raw["grid"]["arrival"] = arrival
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def expected_outcome(script: Script, key: str, max_attempts: int,
                     failing: tuple[str, ...] = FAILING) -> tuple[str, int, str | None]:
    """(status, attempts, fault of the last attempt) the collector should record for `key`."""
    for attempt in range(1, max_attempts + 1):
        fault = script.behaviour(key, attempt).fault
        if fault not in failing:
            return "ok", attempt, fault
    return "error", max_attempts, fault


def arrival_config(tmp_path, base_url: str, arrival: dict, *, concurrency: list[int] | None = None,
                   **settings) -> Path:
    """A scripted-server config with `grid.arrival` and, unless given, no `grid.concurrency`."""
    return write_config(tmp_path, base_url, arrival=arrival, concurrency=concurrency, **settings)


def open_loop_config(tmp_path, base_url: str, **arrival) -> Path:
    """200 requests: 4 datasets x 25 items x 2 prompt variants."""
    return arrival_config(tmp_path, base_url, arrival, items=25, variants=["zero_shot", "chat"])
