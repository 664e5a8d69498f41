"""pyproject.toml and environment.yml must list the same dependencies (conda and pip users get one set), and
the package data has one copy."""
import os
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from toolkit import resources

REPO = Path(__file__).resolve().parents[1]


def _normalized(specs: list[str]) -> set[str]:
    return {str(Requirement(spec)).lower().replace("_", "-") for spec in specs}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared.extend(extra)
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    conda_pip = [spec for spec in pip_section if not spec.startswith("-e")]
    assert _normalized(conda_pip) == _normalized(declared)


def test_console_script_points_at_the_cli():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["frontier"] == "toolkit.cli:main"
    from toolkit.cli import main
    assert callable(main)


def test_shipped_files_live_once_at_the_top_level():
    """toolkit/data and toolkit/notebooks link to the repository's data/ and notebooks/ (never copies), and
    the package finds its files through them (the wheel's contents: tests/test_installed.py)."""
    for name in ("data", "notebooks"):
        link = REPO / "toolkit" / name
        assert link.is_symlink() and os.readlink(link) == f"../{name}"
    assert resources.data_dir() == REPO / "data" and resources.notebooks_dir() == REPO / "notebooks"
    assert resources.prices_file().is_file() and (resources.sample_run() / "manifest.json").is_file()
