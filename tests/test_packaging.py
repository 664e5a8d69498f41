"""pyproject.toml and environment.yml must list the same dependencies (conda and pip users get one set)."""
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

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
