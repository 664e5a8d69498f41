"""The package installed from its wheel, not used from a checkout: it finds its notebooks, prices, eval
sets, prompts, configs and sample run from any directory.

One fixture builds the wheel from a copy of the sources (offline: no build isolation, no index),
installs it without dependencies into a fresh venv that sees this environment's site-packages
through a .pth file (so nothing is downloaded), and the tests run that venv's `frontier` from a
folder outside the repository.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from toolkit.testing.scripted_server import Behaviour, Script, ScriptedServer

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "toolkit", "notebooks", "data")
# what pyproject.toml ships as package data, under toolkit/ (toolkit/data and toolkit/notebooks link to these)
SHIPPED = ("notebooks/*.ipynb", "data/prices.yaml", "data/model_aliases.yaml", "data/evals/*.jsonl",
           "data/evals/SOURCE.md", "data/prompts/*/*", "data/configs/*.yaml", "data/runs/sample/*")
# files a working tree may hold that must not reach the wheel; planted in the copy the wheel is built from
JUNK = ("data/runs/demo-20260101-000000/requests.parquet", "data/prompts/capitals/__pycache__/x.cpython-311.pyc",
        "data/runs/sample/__pycache__/x.pyc", "toolkit/__pycache__/cli.cpython-311.pyc",
        "notebooks/.ipynb_checkpoints/01_accuracy-checkpoint.ipynb", ".venv/bin/python")


@dataclass(frozen=True)
class Installed:
    src: Path  # the sources the wheel was built from
    wheel: Path
    venv: Path
    expected_data: frozenset[str]
    modules: frozenset[str]
    cwd: Path  # a folder outside the repository and the venv

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        # the dependencies' data files (nbconvert's templates) sit under the prefix they were installed in,
        # which the .pth does not bring along
        env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")
        return subprocess.run([str(self.venv / "bin" / args[0]), *args[1:]], cwd=cwd or self.cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)


def _copy_sources(target: Path) -> None:
    # a build inside the checkout would leave build/ behind, and a stale build/lib can leak into the wheel
    target.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, symlinks=True)  # toolkit/data stays a link to ../data
        else:
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    src, wheels, venv, cwd = root / "src", root / "wheels", root / "venv", root / "elsewhere"
    _copy_sources(src)
    expected = frozenset(f"toolkit/{p.relative_to(src).as_posix()}" for pattern in SHIPPED
                         for p in src.glob(pattern) if p.is_file())
    modules = frozenset(f"{Path(folder).relative_to(src).as_posix()}/{name}"
                        for folder, _, names in os.walk(src / "toolkit") for name in names if name.endswith(".py"))
    for junk in JUNK:
        (src / junk).parent.mkdir(parents=True, exist_ok=True)
        (src / junk).write_bytes(b"junk")
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(wheels)], cwd=src, check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("frontier_toolkit-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # installed before the .pth exists, so this pip sees no other frontier-toolkit to replace
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "frontier_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    cwd.mkdir()
    return Installed(src, wheel, venv, expected, modules, cwd)


def test_the_wheel_holds_the_package_its_data_and_nothing_else(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    metadata = {n for n in names if n.split("/")[0].endswith(".dist-info")}
    assert installed.modules and installed.modules <= names  # every module, toolkit/resources.py among them
    assert "toolkit/resources.py" in names
    assert names - metadata - installed.modules == installed.expected_data
    assert {"toolkit/data/prices.yaml", "toolkit/data/model_aliases.yaml", "toolkit/data/evals/capitals.jsonl",
            "toolkit/data/evals/SOURCE.md", "toolkit/data/prompts/capitals/dataset.yaml",
            "toolkit/data/configs/sample.yaml", "toolkit/data/runs/sample/requests.parquet",
            "toolkit/data/runs/sample/manifest.json", "toolkit/notebooks/01_accuracy.ipynb"} <= names
    unwanted = [n for n in names if "demo-" in n or "__pycache__" in n or n.endswith(".pyc") or ".venv" in n
                or "/public/" in n or "checkpoint" in n or n.endswith("generate.py")]
    assert unwanted == []


def test_the_installed_package_is_the_one_imported(installed):
    done = installed.run("python", "-c", "import toolkit.resources as r; print(r.__file__); print(r.sample_run())")
    module, sample = done.stdout.split()
    assert Path(module).is_relative_to(installed.venv) and Path(sample).is_relative_to(installed.venv)
    assert (Path(sample) / "requests.parquet").is_file()


def test_notebooks_command_copies_the_notebooks_and_refuses_to_overwrite(installed):
    done = installed.run("frontier", "notebooks", "mine")
    assert done.returncode == 0, done.stderr
    sources = installed.src / "notebooks"
    shipped = sorted(p.name for p in sources.glob("*.ipynb"))
    assert sorted(p.name for p in (installed.cwd / "mine").iterdir()) == shipped and len(shipped) >= 6
    for name in shipped:
        assert (installed.cwd / "mine" / name).read_bytes() == (sources / name).read_bytes()
    (installed.cwd / "mine" / shipped[0]).write_text("my edits")
    again = installed.run("frontier", "notebooks", "mine")
    assert again.returncode == 2 and "already exist; pass --force to overwrite" in again.stderr
    assert (installed.cwd / "mine" / shipped[0]).read_text() == "my edits"
    forced = installed.run("frontier", "notebooks", "mine", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (installed.cwd / "mine" / shipped[0]).read_bytes() == (sources / shipped[0]).read_bytes()


def test_report_on_the_shipped_sample_from_any_folder(installed):
    sample = installed.src / "data" / "runs" / "sample"
    requests = len(pd.read_parquet(sample / "requests.parquet"))
    done = installed.run("frontier", "report", "data/runs/sample", "--out", "out", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    index = installed.cwd / done.stdout.strip().splitlines()[-1]  # --out is relative to the cwd
    run_id = json.loads((sample / "manifest.json").read_text())["run_id"]
    assert index == installed.cwd / "out" / run_id / "index.html"
    page = index.read_text()
    assert f"{requests} requests" in page
    notebooks = sorted(p.stem for p in (installed.src / "notebooks").glob("[0-9]*.ipynb"))
    assert len(notebooks) >= 6
    for name in notebooks:
        html = (index.parent / f"{name}.html").read_text()
        assert f'href="{name}.html"' in page and f"{requests} requests" in html, name
        assert "Traceback" not in html, name


def test_collect_with_a_config_outside_the_repository(installed):
    project = installed.cwd.parent / "project"
    (project / "evals").mkdir(parents=True)
    lines = (REPO / "data" / "evals" / "capitals.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    (project / "evals" / "capitals.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with ScriptedServer(Script(default=Behaviour(tokens=3))) as server:
        raw = {"name": "mine", "datasets": ["capitals"], "evals_dir": "evals",  # prompts: the shipped ones
               "endpoints": [{"name": "scripted", "base_url": server.base_url, "models": ["scripted"]}],
               "grid": {"prompt_variants": ["zero_shot"], "max_tokens": [8]}}
        (project / "mine.yaml").write_text(yaml.safe_dump(raw))
        done = installed.run("frontier", "collect", "../project/mine.yaml", "--run-id", "r", "--runs-root", "runs")
        assert done.returncode == 0, done.stderr[-3000:]
        sent = len(server.log)
    run_dir = installed.cwd / "runs" / "r"
    table = pd.read_parquet(run_dir / "requests.parquet")
    assert len(table) == sent == 3 and (table["status"] == "ok").all()
    (dataset,) = json.loads((run_dir / "manifest.json").read_text())["datasets"]
    assert dataset["path"] == str(project / "evals" / "capitals.jsonl")
    shipped_prompt = installed.venv.glob("lib/python*/site-packages/toolkit/data/prompts/capitals/zero_shot.txt")
    assert next(shipped_prompt).is_file() and "zero_shot.txt" in dataset["prompt_files"]
    missing = installed.run("frontier", "collect", "../project/none.yaml")
    assert missing.returncode == 2 and "../project/none.yaml: config file not found" in missing.stderr
