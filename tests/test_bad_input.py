"""Bad input, kind by kind: each fails with a message naming the file, line or field, and none of
them loses what a run already collected.

Most tests here start a small run, then break one input and resume it, so they check both halves:
the message and that the table already collected is still there, row for row.

| # | kind of bad input                                | tested in                                                  |
|---|--------------------------------------------------|------------------------------------------------------------|
| 1 | malformed JSONL row in a dataset                 | here: test_malformed_dataset_row                           |
| 2 | missing field in a dataset row                   | here: test_missing_dataset_field                           |
| 3 | duplicate item ids                               | here: test_duplicate_item_ids                              |
| 4 | empty dataset                                    | here: test_empty_dataset                                   |
| 5 | dataset that is not UTF-8                        | here: test_non_utf8_dataset                                |
| 6 | unknown config key                               | test_config.py::test_bad_values_name_the_key               |
| 7 | config value of the wrong type                   | test_config.py::test_bad_values_name_the_key               |
| 8 | API key written in the config file               | test_config.py::test_api_key_in_config_is_refused          |
| 9 | config file missing (CLI)                        | here: test_cli_reports_a_missing_config_without_traceback  |
|10 | unknown dataset                                  | here: test_unknown_dataset                                 |
|11 | unknown grader                                   | here: test_unknown_grader                                  |
|12 | unknown prompt template variable                 | here: test_unknown_template_variable                       |
|13 | item without a field its template uses           | here: test_item_missing_a_template_field                   |
|14 | unknown prompt variant                           | here: test_unknown_prompt_variant                          |
|15 | unknown model price                              | test_pricing.py::test_unknown_model_error_says_how_to_price_it |
|16 | unreachable endpoint (connection refused)        | here: test_unreachable_endpoint_stops_at_the_error_rate    |
|17 | wrong key (401)                                  | here: test_wrong_key; test_faults.py (401 mid-run)         |
|18 | missing key variable                             | here: test_missing_key_variable                            |
|19 | max_tokens above the context (HTTP 400)          | here: test_http_400_is_recorded_not_retried                |
|20 | unknown run dir (collect --resume, CLI)          | here: test_cli_resume_of_an_unknown_run_dir; test_store.py, test_params.py (load_run, notebooks) |
|21 | resume of a dir that is not a run                | here: test_resume_of_a_dir_that_is_not_a_run               |
|22 | manifest that is not JSON                        | here: test_corrupt_manifest                                |
|23 | requests table missing a column                  | test_store.py::test_missing_run_dir_and_missing_columns    |
|24 | requests table column of the wrong type          | test_store.py::test_wrong_type_in_a_column_names_it        |
|25 | journal cut at its last line / in the middle     | test_store.py::test_cut_last_line_is_ignored_but_a_bad_middle_line_is_an_error; test_crash_resume.py |
|26 | notebook parameter of the wrong type             | test_params.py::test_wrong_types_name_the_parameter_the_type_and_the_value |
|27 | run dir that cannot be created or written        | here: test_runs_root_under_a_file, test_read_only_run_dir  |
|28 | disk full while journaling                       | here: test_disk_full_mid_line_then_resume                  |
|29 | two collect processes on one run dir             | here: test_second_collect_on_a_run_dir_fails_at_once       |
|30 | the same grid value listed twice                 | test_config.py::test_duplicate_grid_values_are_refused_with_their_key |
|31 | damaged requests.parquet (collect, runs)         | here: test_damaged_requests_table                          |
|32 | collect stopped on a limit / every request failed| here: test_cli_exit_status_says_how_collect_ended, test_unreachable_endpoint_stops_at_the_error_rate |
|33 | --concurrency / --limit 0 or negative            | here: test_cli_refuses_non_positive_overrides, test_non_positive_overrides_leave_no_run_dir |
|34 | negative temperature                             | test_config.py::test_bad_values_name_the_key               |
|35 | base_url with a query string (config, --base-url)| test_config.py::test_base_url_with_a_key_in_it_is_refused; here: test_base_url_override_with_a_query_string |
|36 | report parameter only some notebooks use         | test_report.py::test_every_notebook_checks_its_parameters_before_any_runs |
|37 | Ctrl-C during a report                           | test_report.py::test_a_stopped_report_leaves_the_previous_one |
|38 | UTF-8 byte order mark in a dataset               | test_datasets.py::test_a_byte_order_mark_is_skipped        |
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from scripted_runs import REPO, write_config
from toolkit import cli
from toolkit.collect import collect
from toolkit.config_file import load_config
from toolkit.errors import ConfigError, DataFileError, EndpointError, ParameterError, RunDirError
from toolkit.runner import plan
from toolkit.store import JOURNAL, LOCK, MANIFEST, REQUESTS, Journal, load_run, read_manifest
from toolkit.testing import Behaviour, Script, ScriptedServer

DATASET = "capitals"
ITEMS = 12
DONE = 6  # requests the first session collects before each test breaks something


@pytest.fixture(scope="module")
def server():
    with ScriptedServer(Script(Behaviour(tokens=3, text="Paris"))) as srv:
        yield srv


@dataclass
class Started:
    data: Path
    config: Path
    run_dir: Path
    table: pd.DataFrame

    @property
    def dataset_file(self) -> Path:
        return self.data / "evals" / f"{DATASET}.jsonl"

    @property
    def prompts(self) -> Path:
        return self.data / "prompts" / DATASET

    def rewrite_config(self, base_url: str | None, **changes) -> Path:
        return write_config(self.config.parent, base_url, **{**self.config_args, **changes})

    @property
    def config_args(self) -> dict:
        return {"datasets": [DATASET], "items": ITEMS, "variants": ["zero_shot", "chat"], "concurrency": 2,
                "evals_dir": str(self.data / "evals"), "prompts_dir": str(self.data / "prompts")}

    def assert_nothing_lost(self) -> None:
        """Every row collected before the bad input is still in the run dir, unchanged."""
        now = load_run(self.run_dir).set_index("request_id").loc[self.table["request_id"]].reset_index()
        # a label column's categories are the values the run holds now
        pd.testing.assert_frame_equal(now[self.table.columns], self.table, check_categorical=False)


@pytest.fixture
def started(tmp_path, server) -> Started:
    """A run that collected DONE requests from a private copy of the capitals data."""
    data = tmp_path / "data"
    (data / "evals").mkdir(parents=True)
    lines = (REPO / "data" / "evals" / f"{DATASET}.jsonl").read_text(encoding="utf-8").splitlines()[:ITEMS]
    (data / "evals" / f"{DATASET}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copytree(REPO / "data" / "prompts" / DATASET, data / "prompts" / DATASET)
    run = Started(data, tmp_path / "configs" / "scripted.yaml", tmp_path / "runs" / "first", pd.DataFrame())
    config = run.rewrite_config(server.base_url, limits={"max_requests": DONE})
    collect(config, runs_root=tmp_path / "runs", run_id="first")
    run.table = load_run(run.run_dir)
    assert len(run.table) == DONE and (run.table["status"] == "ok").all()
    run.config = run.rewrite_config(server.base_url)  # the rest of the grid, for the resume
    return run


def resume_fails(run: Started, error: type[Exception], pattern: str, config: Path | None = None) -> Exception:
    with pytest.raises(error, match=pattern) as caught:
        collect(config or run.config, resume=run.run_dir)
    run.assert_nothing_lost()
    return caught.value


def edit_line(path: Path, number: int, new: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[number - 1] = new
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- datasets -------------------------------------------------------------------------------------

def test_malformed_dataset_row(started):
    edit_line(started.dataset_file, 4, '{"id": "capitals-0004", "input": "Andorra", "expected": "Andorra la Vella"')
    resume_fails(started, DataFileError, r"capitals.jsonl line 4: not valid JSON")


def test_missing_dataset_field(started):
    edit_line(started.dataset_file, 9, '{"id": "capitals-0009", "input": "Argentina"}')
    resume_fails(started, DataFileError, r'capitals.jsonl line 9: field "expected": missing')


def test_duplicate_item_ids(started):
    edit_line(started.dataset_file, 7, started.dataset_file.read_text(encoding="utf-8").splitlines()[1])
    resume_fails(started, DataFileError, r"capitals.jsonl line 7: field \"id\": duplicate id 'capitals-0002' "
                                         r"\(first on line 2\)")


def test_empty_dataset(started):
    started.dataset_file.write_text("\n\n", encoding="utf-8")
    resume_fails(started, DataFileError, r"capitals.jsonl: no items \(the file is empty\)")


def test_non_utf8_dataset(started):
    data = started.dataset_file.read_bytes().replace("Kabul".encode(), "K\xe4bul".encode("latin-1"))
    started.dataset_file.write_bytes(data)
    resume_fails(started, DataFileError, r"capitals.jsonl line 1: not valid UTF-8 \(byte 0xe4 at column \d+\)")


# -- graders and prompts --------------------------------------------------------------------------

def test_unknown_dataset(started, server):
    config = started.rewrite_config(server.base_url, datasets=["capital"])
    resume_fails(started, ConfigError,
                 r"prompts/capital/dataset.yaml: no such dataset 'capital' \(available: capitals\)", config)


def test_unknown_grader(started):
    (started.prompts / "dataset.yaml").write_text('grader: {name: fuzzy}\nstop: ["\\n"]\n', encoding="utf-8")
    resume_fails(started, ConfigError, r"capitals/dataset.yaml: .*unknown grader 'fuzzy' \(valid: exact, label")


def test_unknown_template_variable(started):
    (started.prompts / "zero_shot.txt").write_text("Q: capital of {{ inptu }}?\nA:", encoding="utf-8")
    resume_fails(started, ConfigError, r"capitals/zero_shot.txt: unknown template variable 'inptu' "
                                       r"\(available: input")


def test_item_missing_a_template_field(started, server):
    (started.prompts / "dataset.yaml").write_text('grader: {name: normalized}\nstop: ["\\n"]\nfields: [kind]\n',
                                              encoding="utf-8")
    (started.prompts / "zero_shot.txt").write_text("Q: capital of the {{ kind }} {{ input }}?\nA:",
                                                  encoding="utf-8")
    edit_line(started.dataset_file, 11, '{"id": "capitals-0011", "input": "Australia", "expected": "Canberra"}')
    sent = len(server.log)
    resume_fails(started, ConfigError, r"capitals/zero_shot.txt: item 'capitals-0011': 'kind' is undefined")
    assert len(server.log) == sent  # found before the first request, not when item 11's turn comes


def test_unknown_prompt_variant(started, server):
    config = started.rewrite_config(server.base_url, variants=["zero_shot", "few_shot_2"])
    resume_fails(started, ConfigError, r"prompts/capitals: unknown prompt variant 'few_shot_2' "
                                       r"\(available: chat, few_shot_1, few_shot_3, few_shot_5, zero_shot\)", config)


# -- endpoints ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_stops_at_the_error_rate(started, capsys):
    config = started.rewrite_config(f"http://127.0.0.1:{free_port()}/v1", concurrency=1,
                                    retry={"max_attempts": 2},
                                    limits={"max_error_rate": 0.5, "min_requests_for_error_rate": 8})
    assert cli.main(["collect", str(config), "--resume", str(started.run_dir)]) == cli.EXIT_ALL_FAILED == 4
    out = capsys.readouterr().out
    assert "sent 8 requests" in out and "8 errors" in out
    assert f"stopped early: error rate 8/8 passed max_error_rate=0.5; continue with --resume {started.run_dir}" in out
    assert out.endswith("every request sent failed (connection: 8); the run's error_type and error_message "
                        "columns say why\nexit status 4 (see frontier collect --help)\n")
    table = load_run(started.run_dir)
    failed = table[table["status"] == "error"]
    assert len(failed) == 8 and (failed["error_type"] == "connection").all() and (failed["attempts"] == 2).all()
    assert failed["http_status"].isna().all() and failed["error_message"].str.contains("Connection error").all()
    started.assert_nothing_lost()
    assert read_manifest(started.run_dir)["status"] == "stopped"


def test_wrong_key(started, monkeypatch):
    with ScriptedServer(Script(Behaviour(tokens=2)), api_key="sk-right-0123456789") as keyed:
        monkeypatch.setenv("FRONTIER_TEST_KEY", "sk-wrong-0123456789")
        config = started.rewrite_config(keyed.base_url, api_key_env="FRONTIER_TEST_KEY")
        error = resume_fails(started, EndpointError, r"endpoint 'scripted' refused the key \(HTTP 401\)", config)
    assert "sk-wrong" not in str(error)
    assert read_manifest(started.run_dir)["status"] == "interrupted"


def test_missing_key_variable(started, server, monkeypatch):
    monkeypatch.delenv("FRONTIER_TEST_UNSET_KEY", raising=False)
    config = started.rewrite_config(server.base_url, api_key_env="FRONTIER_TEST_UNSET_KEY")
    resume_fails(started, EndpointError, r"endpoint 'scripted': environment variable FRONTIER_TEST_UNSET_KEY "
                                         r"is not set", config)


def test_http_400_is_recorded_not_retried(started):
    """A request the server refuses (as llama.cpp does for max_tokens beyond the context) is a row."""
    keys = [p.request_id for p in plan(load_config(started.config))]
    refused = [k for k in keys if k not in set(started.table["request_id"])][:3]
    with ScriptedServer(Script(Behaviour(tokens=2), rules={k: [Behaviour(fault="400")] for k in refused})) as srv:
        summary = collect(started.rewrite_config(srv.base_url), resume=started.run_dir)
    table = load_run(summary.run_dir).set_index("request_id")
    rows = table.loc[refused]
    assert (rows["status"] == "error").all() and (rows["http_status"] == 400).all()
    assert (rows["error_type"] == "bad_request").all() and (rows["attempts"] == 1).all()
    assert rows["error_message"].str.contains("Error code: 400 .*scripted fault 400").all()
    assert summary.errors == 3 and len(table) == len(keys)
    started.assert_nothing_lost()


# -- run directories ------------------------------------------------------------------------------

def test_cli_resume_of_an_unknown_run_dir(started, capsys):
    missing = started.run_dir.parent / "no-such-run"
    assert cli.main(["collect", str(started.config), "--resume", str(missing)]) == 2
    assert capsys.readouterr().err == f"frontier: error: {missing}: no such run directory\n"


def test_cli_reports_a_missing_config_without_traceback(started, capsys):
    missing = started.config.parent / "nope.yaml"
    assert cli.main(["collect", str(missing), "--resume", str(started.run_dir)]) == 2
    assert capsys.readouterr().err == f"frontier: error: {missing}: config file not found\n"
    started.assert_nothing_lost()


def test_resume_of_a_dir_that_is_not_a_run(started):
    other = started.run_dir.parent / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(RunDirError, match=f"{other}: not a run directory \\(no {MANIFEST}\\)"):
        collect(started.config, resume=other)
    assert [p.name for p in other.iterdir()] == ["cat.jpg"]


def test_corrupt_manifest(started):
    manifest = started.run_dir / MANIFEST
    manifest.write_text(manifest.read_text(encoding="utf-8").replace('"run_id": "first",', '"run_id": "first"'),
                        encoding="utf-8")
    resume_fails(started, DataFileError, r"manifest.json line \d+: not valid JSON \(Expecting ',' delimiter\)")


def test_runs_root_under_a_file(tmp_path, started):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match=f"{blocker}/runs/new: cannot create the run directory: .*Not a directory"):
        collect(started.config, runs_root=blocker / "runs", run_id="new")


def writable(directory: Path) -> bool:
    probe = directory / ".probe"
    try:
        probe.touch()
        probe.unlink()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def read_only(directory: Path, monkeypatch: pytest.MonkeyPatch):
    """Make `directory` unwritable: chmod stops a regular user; root (as in CI) needs the immutable
    attribute; where root lacks CAP_LINUX_IMMUTABLE, writes below it are refused in-process."""
    directory.chmod(0o555)
    immutable = False
    if writable(directory):
        with contextlib.suppress(OSError):
            immutable = subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0
    if writable(directory):
        real_write_text = Path.write_text

        def refuse(path: Path, *args, **kwargs):
            if directory in path.parents:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_write_text(path, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", refuse)
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True, capture_output=True)
        directory.chmod(0o755)


def test_read_only_run_dir(started, monkeypatch):
    with read_only(started.run_dir, monkeypatch):
        # the lock file is the first write; where only Path.write_text can be refused, the manifest is
        resume_fails(started, RunDirError, f"{started.run_dir}/({LOCK}: cannot create the lock file of the run "
                                           f"directory|{MANIFEST}: cannot write the manifest): ")


def test_disk_full_mid_line_then_resume(started, server, monkeypatch):
    """ENOSPC on the 4th journal write, after half the line reached the disk; resumed once space is back."""
    real_enter = Journal.__enter__

    class FillingFile:
        def __init__(self, file) -> None:
            self.file, self.lines = file, 0

        def write(self, text: str) -> int:
            self.lines += 1
            if self.lines == 4:
                self.file.write(text[: len(text) // 2])
                self.file.flush()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.file.write(text)

        def __getattr__(self, name: str):
            return getattr(self.file, name)

    def enter(journal: Journal) -> Journal:
        real_enter(journal)
        journal._file = FillingFile(journal._file)
        return journal

    monkeypatch.setattr(Journal, "__enter__", enter)
    with pytest.raises(RunDirError, match=f"{started.run_dir / JOURNAL}: cannot append request [0-9a-f]{{16}}: "
                                          r"\[Errno 28\] No space left on device"):
        collect(started.config, resume=started.run_dir)
    started.assert_nothing_lost()
    assert len(load_run(started.run_dir)) == DONE + 3  # the three whole lines written before the disk filled
    monkeypatch.undo()
    summary = collect(started.config, resume=started.run_dir)
    assert summary.already_done == DONE + 3 and len(load_run(started.run_dir)) == 2 * ITEMS
    started.assert_nothing_lost()


def test_second_collect_on_a_run_dir_fails_at_once(started, capsys):
    """A second `collect --resume` while one runs sends nothing and names the process; the lock dies with
    its process, so after a kill -9 the next resume goes ahead."""
    with ScriptedServer(Script(Behaviour(tokens=3, text="Paris", ttft_s=0.3))) as slow:
        config = started.rewrite_config(slow.base_url)
        first = subprocess.Popen([sys.executable, "-m", "toolkit.cli", "collect", str(config),
                                  "--resume", str(started.run_dir)], cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not slow.log and time.monotonic() < deadline:  # it holds the lock once it sends
                time.sleep(0.05)
            assert slow.log, "the first collect never sent a request"
            began = time.monotonic()
            assert cli.main(["collect", str(config), "--resume", str(started.run_dir)]) == 2
            assert time.monotonic() - began < 5  # at once, not after the first one finishes
            error = capsys.readouterr().err
            assert re.fullmatch(
                rf"frontier: error: {re.escape(str(started.run_dir))}: another process is collecting into this run "
                rf"directory \(pid {first.pid} on {re.escape(socket.gethostname())}, since "
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\); wait for it to finish or stop it, then resume\n", error)
            assert first.poll() is None  # the first one was not disturbed
            assert (started.run_dir / JOURNAL).exists()
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        assert (started.run_dir / LOCK).exists()  # a killed owner leaves the file, not the lock
        summary = collect(config, resume=started.run_dir)
    assert summary.stop_reason is None and summary.already_done >= DONE
    table = load_run(started.run_dir)
    assert len(table) == 2 * ITEMS and (table["status"] == "ok").all()
    assert read_manifest(started.run_dir)["status"] == "complete" and not (started.run_dir / LOCK).exists()
    started.assert_nothing_lost()


@pytest.mark.parametrize("damage", ["cut", "scrambled"])
def test_damaged_requests_table(started, capsys, damage):
    """A damaged table is named with what to do about it; `frontier runs` lists the other runs anyway."""
    root = started.run_dir.parent
    shutil.copytree(started.run_dir, root / "healthy")
    path = started.run_dir / REQUESTS
    data = path.read_bytes()
    # cut: no footer (ArrowInvalid); scrambled: the first page header is garbage (OSError from thrift)
    path.write_bytes(data[: len(data) // 2] if damage == "cut" else data[:4] + bytes(b ^ 0xFF for b in data[4:68])
                     + data[68:])
    message = (rf"{re.escape(str(path))}: the requests table is damaged and cannot be read \(.+\)\. Restore it "
               rf"from a backup, or move it aside and collect again with `frontier collect CONFIG --resume "
               rf"{re.escape(str(started.run_dir))}`, which sends every request that has no record")
    with pytest.raises(RunDirError, match=message):
        collect(started.config, resume=started.run_dir)
    assert path.read_bytes() != data and not (started.run_dir / JOURNAL).exists()  # left for the user to save
    assert cli.main(["runs", "--runs-root", str(root)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["run", "size", "configs", "requests", "errors", "status", "started", "(UTC)"]
    assert lines[1].split()[0] == "first" and lines[1].split()[3:7] == ["?", "?", "?", "unreadable"]
    assert lines[2].split()[0] == "healthy" and lines[2].split()[3:7] == ["2", str(DONE), "0", "stopped"]
    assert re.fullmatch(f"frontier: unreadable run: {message}\n", err)


def test_cli_exit_status_says_how_collect_ended(started, capsys):
    args = ["collect", str(started.config), "--resume", str(started.run_dir)]
    assert cli.main([*args, "--max-requests", "4"]) == cli.EXIT_STOPPED == 3
    out = capsys.readouterr().out
    assert out.endswith(f"stopped early: reached max_requests=4; continue with --resume {started.run_dir}\n"
                        "exit status 3 (see frontier collect --help)\n")
    assert cli.main(args) == cli.EXIT_COMPLETE == 0
    out = capsys.readouterr().out
    assert f"sent {2 * ITEMS - DONE - 4} requests" in out and "exit status" not in out
    assert read_manifest(started.run_dir)["status"] == "complete"
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["collect"].format_help()
    for status in ("0", "2", "3", "4", "130"):
        assert re.search(rf"^  {status} +\S", help_text, flags=re.MULTILINE), status


@pytest.mark.parametrize("option, value", [("--concurrency", "0"), ("--concurrency", "-2"), ("--limit", "0"),
                                           ("--limit", "-1"), ("--max-requests", "0"), ("--max-cost", "-1"),
                                           ("--max-cost", "nan"), ("--limit", "two")])
def test_cli_refuses_non_positive_overrides(started, capsys, option, value):
    with pytest.raises(SystemExit) as caught:
        cli.main(["collect", str(started.config), "--run-id", "new", "--runs-root", str(started.run_dir.parent),
                  option, value])
    assert caught.value.code == 2
    kind = "a number" if option == "--max-cost" else "an integer"
    assert capsys.readouterr().err.endswith(f"error: argument {option}: must be {kind} > 0, got {value!r}\n")
    assert [p.name for p in started.run_dir.parent.iterdir()] == ["first"]


@pytest.mark.parametrize("override", [{"concurrency": 0}, {"items_per_dataset": -1}, {"max_requests": 0},
                                      {"max_cost_usd": float("inf")}, {"concurrency": 2.5}, {"concurrency": True}])
def test_non_positive_overrides_leave_no_run_dir(started, override):
    (name, value), = override.items()
    pattern = rf"^{name}: must be an? (integer|number) > 0, got {re.escape(repr(value))}$"
    with pytest.raises(ParameterError, match=pattern):
        collect(started.config, runs_root=started.run_dir.parent, run_id="new", **override)
    assert [p.name for p in started.run_dir.parent.iterdir()] == ["first"]


def test_base_url_override_with_a_query_string(started, server, capsys):
    url = f"{server.base_url}?api-key=sk-secret-0123456789"
    sent = len(server.log)
    assert cli.main(["collect", str(started.config), "--run-id", "new", "--runs-root", str(started.run_dir.parent),
                     "--base-url", url]) == 2
    error = capsys.readouterr().err
    assert error == (f"frontier: error: endpoint 'scripted': base_url must be a plain URL ({server.base_url}) without "
                     "a query string, fragment or user:password: an API key goes in an environment variable named "
                     "by the endpoint's api_key_env and is sent as the Authorization header\n")
    assert len(server.log) == sent and [p.name for p in started.run_dir.parent.iterdir()] == ["first"]
