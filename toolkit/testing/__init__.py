"""Test doubles that ship with the package: a scripted OpenAI-compatible server for tests and benchmarks."""
from __future__ import annotations

import importlib

__all__ = ["STREAM_FAULTS", "Attempt", "Behaviour", "Script", "ScriptedProcess", "ScriptedServer"]


def __getattr__(name: str) -> object:
    # Imported on first use, so `python -m toolkit.testing.scripted_server` runs the module once.
    if name in __all__:
        return getattr(importlib.import_module("toolkit.testing.scripted_server"), name)
    raise AttributeError(f"module 'toolkit.testing' has no attribute {name!r}")
