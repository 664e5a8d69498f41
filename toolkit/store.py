"""Run directories: a manifest, an append-only journal while running, and the requests table.

A finished request is appended to `journal.jsonl` at once (one JSON object per line, flushed), so a
killed run loses nothing; `finalize` folds the journal into `requests.parquet`.  Reading always
merges both and keeps the last record per `request_id`, so a crash between the two steps is safe.
A run collected by several writers at once (shards) holds one journal and one Parquet part per
writer (`journal-<part>.jsonl`, `requests-<part>.parquet`); reading merges every file of the run
dir and keeps, per `request_id`, the record with the highest `sequence` (the latest attempt).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from toolkit import warehouse
from toolkit.errors import DataFileError, RunDirError
from toolkit.machine_time import MACHINE_INPUTS, machine_seconds
from toolkit.schema import (ARROW_SCHEMA, LABEL_COLUMNS, LATER_COLUMNS, REQUEST_COLUMNS, RequestRecord, coerce_requests,
                            from_arrow, to_arrow)

MANIFEST = "manifest.json"
JOURNAL = "journal.jsonl"
REQUESTS = "requests.parquet"
LOCK = "collect.lock"
PARTS = "requests*.parquet"
JOURNALS = "journal*.jsonl"
_JOURNAL_PARSING = pa_json.ParseOptions(explicit_schema=ARROW_SCHEMA, unexpected_field_behavior="ignore")
_JOURNAL_ENCODER = json.JSONEncoder(ensure_ascii=False)  # one encoder: json.dumps builds one per call


class Journal:
    """Append-only JSONL journal of finished requests; owns its open file."""

    def __init__(self, run_dir: Path, name: str = JOURNAL) -> None:
        self.path = Path(run_dir) / name
        self._file: IO[bytes] | None = None
        self._size = 0  # bytes of whole lines on disk

    def __enter__(self) -> "Journal":
        try:
            _drop_cut_last_line(self.path)
            self._file = self.path.open("ab")
            self._size = self._file.seek(0, os.SEEK_END)
        except OSError as exc:
            raise RunDirError(f"{self.path}: cannot open the journal for writing: {exc}") from exc
        return self

    def append(self, record: RequestRecord) -> None:
        if self._file is None:
            raise RunDirError(f"{self.path}: the journal is not open (a failed write closes it)")
        line = (_JOURNAL_ENCODER.encode(record.to_json_dict()) + "\n").encode("utf-8")
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            self._abandon()
            raise RunDirError(f"{self.path}: cannot append request {record.request_id}: {exc}") from exc
        self._size += len(line)

    def _abandon(self) -> None:
        # A failed write (disk full) can leave part of a line on disk and the rest in the buffer;
        # an append by another request still in flight would then make it a corrupt middle line.
        # Cut back to the last whole line and close, so the journal stays readable.
        file, self._file = self._file, None
        with contextlib.suppress(OSError):
            file.close()
        with contextlib.suppress(OSError):
            os.truncate(self.path, self._size)

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _drop_cut_last_line(path: Path, block: int = 1 << 16) -> None:
    """Truncate a last line that a kill left without its newline.

    Appending after it would glue the next record onto the fragment and turn a harmless cut last
    line (ignored by `read_journal`) into a corrupt middle line that makes the journal unreadable.
    """
    if not path.exists():
        return
    with path.open("rb+") as file:
        end = file.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            start = max(position - block, 0)
            file.seek(start)
            chunk = file.read(position - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                cut = start + newline + 1
                break
            position = start
        else:
            cut = 0
        if cut < end:
            file.truncate(cut)


def read_journal(path: Path) -> list[dict]:
    """Records of a journal; a last line cut short by a kill is ignored, any other bad line is an error."""
    if not path.exists():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):  # no trailing newline: the write was interrupted
                break
            raise DataFileError(path, f"not valid JSON ({exc.msg})", line=number) from exc
    return rows


def journal_table(path: Path) -> pa.Table | None:
    """A journal's records as an Arrow table with the schema's types; None for no journal or no records."""
    # pyarrow's JSON reader takes a third of the memory and a quarter of the time of a dict per
    # record (100,000 records: 0.3 instead of 0.8 GB peak); on anything it cannot read, the slow
    # path names the bad line or column.
    if not path.exists():
        return None
    data = path.read_bytes()
    whole_lines = pa.py_buffer(data).slice(0, data.rfind(b"\n") + 1)  # a cut last line is ignored
    try:
        table = pa_json.read_json(pa.BufferReader(whole_lines), parse_options=_JOURNAL_PARSING)
    except pa.ArrowInvalid:
        rows = read_journal(path)
        return to_arrow(pd.DataFrame(rows), source=str(path)) if rows else None
    return table.select(list(REQUEST_COLUMNS)) if table.num_rows else None


DERIVED_COLUMNS = ("machine_s", "machine_rule")  # added by load_run, never stored


def columns_but(*names: str) -> list[str]:
    """Every column `load_run` gives but `names`: what a notebook reads when it needs neither the
    token-gap lists (`tbt_s`) nor the texts, say (the heavy columns of a large table)."""
    unknown = [name for name in names if name not in REQUEST_COLUMNS and name not in DERIVED_COLUMNS]
    if unknown:
        raise RunDirError(f"unknown column(s) {', '.join(unknown)}")
    return [name for name in (*REQUEST_COLUMNS, *DERIVED_COLUMNS) if name not in names]


def part_names(part: str) -> tuple[str, str]:
    """The journal and Parquet file names of one writer's part of a run dir (`shard-01`)."""
    return f"journal-{part}.jsonl", f"requests-{part}.parquet"


def run_files(run_dir: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """A run dir's Parquet parts and journals, each sorted by name."""
    run_dir = Path(run_dir)
    return sorted(run_dir.glob(PARTS)), sorted(run_dir.glob(JOURNALS))


def has_records(run_dir: str | os.PathLike) -> bool:
    return any(files for files in run_files(run_dir))


def load_run(run_dir: warehouse.RunDirs, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The requests table of a run dir (finished or interrupted, one part or several), or of several run
    dirs (a list, or glob patterns) as one table, with DESIGN dtypes, plus the derived `machine_s` and
    `machine_rule` columns of `machine_time.machine_seconds` (never stored).

    `columns` (schema or derived column names, or `warehouse.GAP_COLUMNS`: each request's sum and number
    of token gaps, summed in DuckDB) reads only those: a notebook that needs no token-gap lists (`tbt_s`)
    or texts holds a fraction of the table.  The text columns of `schema.LABEL_COLUMNS` (run, config,
    model, dataset, status...) come as categoricals of their sorted values.  Read through
    `warehouse.requests`."""
    wanted = list(REQUEST_COLUMNS) + list(DERIVED_COLUMNS) if columns is None else list(dict.fromkeys(columns))
    stored = [name for name in wanted if name not in DERIVED_COLUMNS]
    derived = [name for name in wanted if name in DERIVED_COLUMNS]
    # each request's share of its phase's machine time, over the whole run: a subset (one dataset,
    # the ok rows) keeps the shares it had, where computing them on the subset would not
    read = list(dict.fromkeys([*stored, *(MACHINE_INPUTS if derived else ())]))
    frame = _fetch(run_dir, read)
    if derived:
        frame = pd.concat([frame[stored], machine_seconds(frame)[derived]], axis=1)
    return frame


def open_run(run_dir: warehouse.RunDirs) -> duckdb.DuckDBPyRelation:
    """The requests table of a run dir (or several, as `load_run` takes them) as a DuckDB relation over
    its files where they lie: nothing is read until an analysis asks, and then only the columns it
    uses, aggregated in DuckDB (`toolkit.analysis.accuracy` takes it as it takes a DataFrame), so the
    table may be far larger than memory.  `load_run`'s derived columns are not in it."""
    relation = warehouse.requests(warehouse.connect(), run_dir)
    try:
        relation.limit(1).fetchall()
    except duckdb.Error as exc:
        raise _damaged_part(run_dir, exc) from exc
    return relation


def load_sample(run_dir: warehouse.RunDirs, columns: Sequence[str], *, by: Sequence[str], rows_per_group: int,
                seed: int = 0) -> pd.DataFrame:
    """At most `rows_per_group` requests of each group of `by` (a seeded random choice made in DuckDB,
    the same on every read), with `columns` and the keys, in the files' order: what a robust fit needs
    of a table too large to hold.  Derived columns are shares of a whole run, so they are not offered."""
    derived = [name for name in columns if name in DERIVED_COLUMNS]
    if derived:
        raise RunDirError(f"load_sample: {', '.join(derived)} are shares of the whole run; use load_run")
    sample = warehouse.Sample(tuple(by), rows_per_group, seed)
    return _fetch(run_dir, list(dict.fromkeys([*columns, *by])), sample=sample)


def frame_of(relation: duckdb.DuckDBPyRelation) -> pd.DataFrame:
    """The rows of `relation` (e.g. of `open_run`, narrowed to what an analysis holds) as pandas, with the
    schema's columns in its dtypes and `schema.LABEL_COLUMNS` as categoricals of their sorted values."""
    try:
        table = warehouse.with_labels_as_enums(relation).to_arrow_table()
    except duckdb.Error as exc:
        raise RunDirError(f"reading the requests failed: {exc}") from exc
    return _pandas(table)


def _fetch(run_dir: warehouse.RunDirs, columns: list[str], sample: warehouse.Sample | None = None) -> pd.DataFrame:
    with warehouse.connect() as connection:
        relation = warehouse.requests(connection, run_dir, columns, order=True, sample=sample)
        # a sample is drawn once: reading its labels, then its rows, would draw it twice
        held = warehouse.materialized(relation) if sample is not None else contextlib.nullcontext(relation)
        try:
            with held as rows:
                table = warehouse.with_labels_as_enums(rows).to_arrow_table()
        except duckdb.Error as exc:
            raise _damaged_part(run_dir, exc) from exc
    return _pandas(table)


def _pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow table of requests columns (and others) as pandas, converted column by column as it is freed."""
    labels = [name for name in table.column_names if name in LABEL_COLUMNS]
    table = table.cast(pa.schema([pa.field(name, warehouse.GAP_COLUMNS[name][1]) if name in warehouse.GAP_COLUMNS
                                  else pa.field(name, table.schema.field(name).type)
                                  if name in labels or name not in REQUEST_COLUMNS
                                  else ARROW_SCHEMA.field(name) for name in table.column_names]))
    frame = from_arrow(table, consume=True)
    del table
    pa.default_memory_pool().release_unused()  # what the conversion freed goes back to the system
    for name in labels:  # a column without values stays text in DuckDB
        if not isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(pd.CategoricalDtype(pd.Index([], dtype="str")))
    return frame


def _damaged_part(run_dir: warehouse.RunDirs, exc: duckdb.Error) -> RunDirError:
    """The error naming the part DuckDB could not read (each part is read whole until one fails)."""
    for directory in warehouse.expand_run_dirs(run_dir):
        for path in run_files(directory)[0]:
            try:
                pq.read_table(path)
            except (pa.ArrowException, OSError) as part_exc:
                return damaged(path, part_exc)
    return RunDirError(f"{run_dir}: the requests table cannot be read: {exc}")


def damaged(path: Path, exc: Exception) -> RunDirError:
    detail = " ".join(str(exc).replace(f"'{path}'", "the file").split())  # Arrow's are multi-line
    return RunDirError(
        f"{path}: the requests table is damaged and cannot be read ({detail}). Restore it from a backup, "
        f"or move it aside and collect again with `frontier collect CONFIG --resume {path.parent}`, "
        "which sends every request that has no record")


def parquet_frame(path: Path) -> pd.DataFrame:
    """One Parquet part with the schema's columns and dtypes, for a part whose types differ from the schema."""
    try:
        stored = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:  # a damaged file: bad footer, failed decompression
        raise damaged(path, exc) from exc
    missing = [name for name in REQUEST_COLUMNS if name not in stored.column_names]
    required = [name for name in missing if name not in LATER_COLUMNS]
    if required:
        raise RunDirError(f"{path}: requests table is missing column(s) {', '.join(required)}")
    for name in missing:  # a run written before these columns existed: they are unknown, not wrong
        stored = stored.append_column(ARROW_SCHEMA.field(name), pa.nulls(stored.num_rows, ARROW_SCHEMA.field(name).type))
    try:
        return from_arrow(stored.select(list(REQUEST_COLUMNS)).cast(ARROW_SCHEMA))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return coerce_requests(stored.to_pandas(), source=str(path))


def write_requests(run_dir: Path, frame: pd.DataFrame, name: str = REQUESTS) -> Path:
    """Write the requests table (or one part of it) atomically (temp file, then rename)."""
    path = Path(run_dir) / name
    tmp = path.with_suffix(".parquet.tmp")
    table = to_arrow(frame, source=str(path))
    if frame["request_id"].notna().all() and frame["request_id"].is_unique:  # readers then skip their search
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), warehouse.UNIQUE_REQUESTS: b"true"})
    pq.write_table(table, tmp, compression="zstd", row_group_size=warehouse.ROW_GROUP_ROWS)
    os.replace(tmp, path)
    return path


def finalize(run_dir: Path, part: str | None = None) -> pd.DataFrame:
    """Fold one writer's journal into its Parquet part and remove the journal (`part` None: `journal.jsonl`
    into `requests.parquet`); returns the whole run's table."""
    run_dir = Path(run_dir)
    journal_name, parquet_name = (JOURNAL, REQUESTS) if part is None else part_names(part)
    parquet_path, journal_path = run_dir / parquet_name, run_dir / journal_name
    own_files = ([parquet_path] if parquet_path.exists() else [], [journal_path] if journal_path.exists() else [])
    with warehouse.connect() as connection:
        own = warehouse.records(connection, [own_files], order=True).to_arrow_table()
    if own.num_rows:
        write_requests(run_dir, from_arrow(own.cast(ARROW_SCHEMA)), name=parquet_name)
    journal_path.unlink(missing_ok=True)
    return load_run(run_dir)


def read_manifest(run_dir: warehouse.RunDirs) -> dict:
    """A run dir's manifest; for several run dirs (a list or glob patterns, as `load_run` takes) one
    manifest: the first run's entries, `run_id` the ids joined by " + ", `phases` and the configs of
    every run one after the other, and each run's own manifest under `runs`."""
    dirs = warehouse.expand_run_dirs(run_dir)
    if len(dirs) == 1:
        return _read_one_manifest(dirs[0])
    manifests = [_read_one_manifest(directory) for directory in dirs]
    configs = [entry for manifest in manifests for entry in (manifest.get("config") or {}).get("configs") or []]
    return manifests[0] | {
        "run_id": " + ".join(str(manifest.get("run_id") or directory.name)
                             for manifest, directory in zip(manifests, dirs)),
        "phases": [phase for manifest in manifests for phase in manifest.get("phases") or []],
        "config": (manifests[0].get("config") or {}) | {"configs": configs}, "runs": manifests}


def _read_one_manifest(run_dir: Path) -> dict:
    path = Path(run_dir) / MANIFEST
    if not Path(run_dir).is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    if not path.exists():
        raise RunDirError(f"{run_dir}: not a run directory (no {MANIFEST})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFileError(path, f"not valid JSON ({exc.msg})", line=exc.lineno) from exc


def write_manifest(run_dir: Path, manifest: dict) -> None:
    path = Path(run_dir) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only or full disk: name the run dir, not a bare OSError
        raise RunDirError(f"{path}: cannot write the manifest: {exc}") from exc


def save_run(run_dir: str | os.PathLike, frame: pd.DataFrame, manifest: dict) -> Path:
    """Write a complete run dir from a DataFrame (importers, batch ingest, synthetic samples)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(run_dir, manifest)
    write_requests(run_dir, frame)
    return run_dir


class RunLock:
    """Exclusive use of a run directory by one writing process (`collect`, `collect --resume`).

    `fcntl.flock` on `collect.lock` in the run dir: the kernel drops the lock when its process dies,
    so a killed run never leaves a stale lock behind.  The file holds the owner's pid, host and start
    time, so a second process fails at once and says who is writing.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise RunDirError(f"{self.path}: cannot create the lock file of the run directory: {exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(fd)
                os.close(fd)
                raise RunDirError(f"{self.run_dir}: another process is collecting into this run directory "
                                  f"({holder}); wait for it to finish or stop it, then resume") from None
            # The previous owner unlinks the file before it lets go: a lock won on an unlinked file
            # guards nothing, so take the one now at the path instead.
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode("utf-8"), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)  # closing the last descriptor releases the lock
        self._fd = None


def _lock_holder(fd: int) -> str:
    """Who holds a lock file, as the owner wrote it ("pid 123 on host, since ...")."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"pid {owner['pid']} on {owner['host']}, since {owner['started_at']}"
    except (OSError, ValueError, KeyError, TypeError):  # the owner has not written it yet
        return "its pid is not written yet"


def list_runs(root: str | os.PathLike) -> Iterable[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / MANIFEST).exists())
