"""The files the package ships: notebooks, prices, datasets, prompt templates, configs, the sample run.

Their single copy is the repository's top-level `notebooks/` and `data/`; `toolkit/notebooks` and
`toolkit/data` are symlinks to them.  A checkout (or editable install) reads them through the links,
and a wheel holds the files pyproject.toml lists as package data (the build copies what the links
reach), so one code path finds them by `importlib.resources` from any working directory.  pip always
installs a wheel as files, so every function returns a real `Path` that papermill, shutil and pyarrow
can open.  Paths are resolved: in a checkout they name the top-level folders, as a user sees them.
"""
from __future__ import annotations

import os
import shutil
from importlib.resources import files
from pathlib import Path

from toolkit.errors import FrontierError

NOTEBOOK_GLOB = "*.ipynb"


def _shipped(*parts: str) -> Path:
    return Path(str(files(__package__))).joinpath(*parts).resolve()


def notebooks_dir() -> Path:
    """The analysis notebooks (`notebooks/*.ipynb` in the repository)."""
    return _shipped("notebooks")


def data_dir() -> Path:
    """The shipped `data/` folder: prices, datasets, prompts, configs and `runs/sample`."""
    return _shipped("data")


def prices_file() -> Path:
    return data_dir() / "prices.yaml"


def aliases_file() -> Path:
    return data_dir() / "model_aliases.yaml"


def evals_dir() -> Path:
    return data_dir() / "evals"


def prompts_dir() -> Path:
    return data_dir() / "prompts"


def configs_dir() -> Path:
    return data_dir() / "configs"


def sample_run() -> Path:
    """The small real run shipped with the package (`data/runs/sample`), the notebooks' default."""
    return data_dir() / "runs" / "sample"


def candidates(path: str | os.PathLike) -> list[Path]:
    """Where a path a user gave is looked for, in order: itself when absolute, else the current
    directory, then, for a relative path under `data/`, the package's shipped data.

    The second place is what lets the notebooks' default `run_dir = "data/runs/sample"` and
    `frontier report data/runs/sample` work from any directory, installed or in a checkout,
    while a `data/runs/sample` of the user's own in the current directory wins.
    """
    given = Path(path).expanduser()
    if given.is_absolute():
        return [given]
    tried = [Path.cwd() / given]
    if given.parts[:1] == ("data",):
        tried.append(data_dir().joinpath(*given.parts[1:]))
    return tried


def copy_notebooks(target: str | os.PathLike, *, force: bool = False) -> list[Path]:
    """Copy the shipped notebooks into `target` (created if missing) and return the copies.

    Refuses, before copying anything, when a notebook of the same name is already there (it may
    hold a user's edits), unless `force`.
    """
    target = Path(target).expanduser()
    if target.exists() and not target.is_dir():
        raise FrontierError(f"{target}: not a directory")
    sources = sorted(notebooks_dir().glob(NOTEBOOK_GLOB))
    if not sources:
        raise FrontierError(f"{notebooks_dir()}: no notebooks found: the package was installed without them")
    existing = [target / source.name for source in sources if (target / source.name).exists()]
    if existing and not force:
        raise FrontierError(f"{', '.join(map(str, existing))}: already exist{'s' if len(existing) == 1 else ''}; "
                            "pass --force to overwrite")
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(source, target / source.name)) for source in sources]
