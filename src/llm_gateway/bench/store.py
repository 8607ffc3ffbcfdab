"""Benchmark runs on disk: one folder per run, written as the run goes, and an index of them.

```
<benchmarks dir>/
  index.json                one entry per run (index.py), for listing and retention
  <UTC time>-<short id>/
    benchmark_results.csv   one row per request, written in batches as requests finish
    status.json             status, progress and a heartbeat, so any worker can answer for it
    manifest.json           what was run, against what, with which versions (never the key)
    summary.json            the statistics, once the run ends (also for interrupted runs)
    report.html             the self-contained report
    cancel                  present once someone asked to stop the run (from any process)
```

The folder is the source of truth; nothing about a run lives only in one process's memory.
A run whose heartbeat has stopped for `stale_after` seconds (GATEWAY_BENCH_STALE_AFTER) while
it claimed to be queued or running was interrupted (its process died): it is reported as such
rather than as forever "running". Asking to stop a run leaves a `cancel` file in its folder;
whichever process runs it (any worker or replica sharing the folder) sees it within
`CANCEL_POLL_S` and stops it (bench/jobs.py). When a run is created, older
finished runs are removed to keep within the retention limits (retention.py).

Everything here but `RunDir.add` is blocking file I/O: async code calls it through
`asyncio.to_thread`, never on the event loop.
"""

from __future__ import annotations

import csv
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from llm_gateway.bench import retention
from llm_gateway.bench.csvcells import allow_long_fields
from llm_gateway.bench.documents import (
    ACTIVE,
    Document,
    Manifest,
    Progress,
    RunEntry,
    RunState,
    RunStatus,
    Summary,
)
from llm_gateway.bench.index import RunIndex
from llm_gateway.bench.records import RequestRecord

RESULTS_CSV = "benchmark_results.csv"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"
STATUS = "status.json"
REPORT = "report.html"
CANCEL = "cancel"

RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
_STAMP = "%Y%m%dT%H%M%SZ"
HEARTBEAT_S = 0.5  # status.json is rewritten at most this often (progress + liveness)
STALE_AFTER_S = 30.0

D = TypeVar("D", bound=Document)


def _write_json(path: Path, document: BaseModel) -> None:
    """Write atomically, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(document.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)


def _read_json(path: Path, kind: type[D]) -> D | None:
    """The document in `path`, or None when it is missing or not a JSON object at all."""
    try:
        return kind.model_validate(orjson.loads(path.read_bytes()))
    except (FileNotFoundError, orjson.JSONDecodeError, ValidationError):
        return None


def _created_at(run_id: str) -> str:
    """When a run was created, from its id."""
    moment = datetime.strptime(run_id[:16], _STAMP).replace(tzinfo=UTC)
    return moment.isoformat(timespec="seconds")


class RunDir:
    """One run's folder. Rows are queued by `add` (no I/O: it is called on the event loop) and
    written by `checkpoint` and `close` (from a thread); one thread at a time writes files."""

    def __init__(
        self, path: Path, index: RunIndex | None = None, *, stale_after: float = STALE_AFTER_S
    ) -> None:
        self.path = path
        self.id = path.name
        self._index = index
        self.stale_after = stale_after
        self._rows: list[RequestRecord] = []
        self._rows_lock = threading.Lock()  # held to swap the queue, never during I/O
        self._io_lock = threading.Lock()
        self._csv: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None
        self._status_written = 0.0
        self._ended = False

    def file(self, name: str) -> Path:
        return self.path / name

    def add(self, record: RequestRecord) -> None:
        """Queue one request's row for the next `checkpoint` or `close`."""
        with self._rows_lock:
            self._rows.append(record)

    def _flush(self) -> None:
        """Write the queued rows and flush the file, so an interrupted run keeps them."""
        with self._rows_lock:
            rows, self._rows = self._rows, []
        if not rows:
            return
        if self._writer is None:
            self._csv = self.file(RESULTS_CSV).open("a", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._csv, fieldnames=RequestRecord.columns())
            if self._csv.tell() == 0:
                self._writer.writeheader()
        self._writer.writerows(record.row() for record in rows)
        assert self._csv is not None
        self._csv.flush()

    def close(self) -> None:
        """Write what is queued and close the CSV."""
        with self._io_lock:
            self._flush()
            if self._csv is not None:
                self._csv.close()
                self._csv, self._writer = None, None

    def checkpoint(self, done: int, total: int) -> None:
        """Write the queued rows, and refresh status.json when its heartbeat is due."""
        with self._io_lock:
            self._flush()
            if time.monotonic() - self._status_written >= HEARTBEAT_S:
                self._write_status("running", done, total, None)

    def records(self) -> list[RequestRecord]:
        allow_long_fields()
        try:
            with self.file(RESULTS_CSV).open(newline="", encoding="utf-8") as handle:
                return [RequestRecord.from_row(row) for row in csv.DictReader(handle)]
        except FileNotFoundError:
            return []

    def write_status(
        self, status: RunState, *, done: int, total: int, error: str | None = None
    ) -> None:
        with self._io_lock:
            self._write_status(status, done, total, error)

    def _write_status(self, status: RunState, done: int, total: int, error: str | None) -> None:
        if self._ended:
            return  # how the run ended is its last word; a late heartbeat must not undo it
        self._ended = status not in ACTIVE
        progress = Progress(done=done, total=total)
        document = RunStatus(
            id=self.id, status=status, progress=progress, error=error, updated_at=time.time()
        )
        _write_json(self.file(STATUS), document)
        self._status_written = time.monotonic()

    def end(self, status: RunState, *, done: int, total: int, summary: Summary) -> None:
        """Write the final status, and the run's final entry in the index."""
        self.write_status(status, done=done, total=total)
        if self._index is not None:
            self._index.put(self.describe(summary))

    def status(self) -> RunStatus:
        """The run's status; a silent "running" run is reported as interrupted."""
        status = _read_json(self.file(STATUS), RunStatus)
        if status is None:
            done = self.file(SUMMARY).exists()
            return RunStatus(id=self.id, status="done" if done else "unknown")
        if status.status in ACTIVE and time.time() - status.updated_at > self.stale_after:
            return status.model_copy(update={"status": "interrupted"})
        return status

    def request_cancel(self) -> None:
        """Ask whichever process runs this run to stop it."""
        self.file(CANCEL).touch()

    def cancel_requested(self) -> bool:
        return self.file(CANCEL).exists()

    def write_manifest(self, manifest: Manifest) -> None:
        _write_json(self.file(MANIFEST), manifest)

    def manifest(self) -> Manifest:
        return _read_json(self.file(MANIFEST), Manifest) or Manifest(id=self.id)

    def write_summary(self, summary: Summary) -> None:
        _write_json(self.file(SUMMARY), summary)

    def summary(self) -> Summary | None:
        return _read_json(self.file(SUMMARY), Summary)

    def write_report(self, html: str) -> None:
        tmp = self.file(REPORT + ".tmp")
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, self.file(REPORT))

    def size(self) -> int:
        """Bytes of the files in the folder."""
        try:
            with os.scandir(self.path) as files:
                return sum(f.stat().st_size for f in files if f.is_file())
        except FileNotFoundError:
            return 0

    def describe(self, summary: Summary | None = None) -> RunEntry:
        """The run's entry in the index, from its files (and `summary`, when given)."""
        status = self.status()
        ended = status.status not in ACTIVE
        if ended and summary is None:
            summary = self.summary()
        return RunEntry(
            id=self.id,
            status=status.status,
            progress=status.progress,
            created_at=_created_at(self.id),
            models=self.manifest().models,
            requests=summary.requests if summary else None,
            ok=summary.ok if summary else None,
            failed=summary.failed if summary else None,
            bytes=self.size() if ended else None,
        )


class RunStore:
    """The benchmarks folder: makes run folders (keeping within the retention limits, when
    given), finds them again by id, and lists them a page at a time from the index."""

    def __init__(
        self,
        root: Path,
        *,
        keep_runs: int | None = None,
        max_bytes: int | None = None,
        stale_after: float = STALE_AFTER_S,
    ) -> None:
        self.root = root
        self.keep_runs = keep_runs
        self.max_bytes = max_bytes
        self.stale_after = stale_after
        self.index = RunIndex(root, self._scan)

    def create(self, *, status: RunState, models: Sequence[str], total: int) -> RunDir:
        """A new run, with its first status, in the index; older finished runs are removed
        first when the retention limits say so (InsufficientStorage when that is not enough)."""
        with self.index.editing() as entries:
            for entry in list(entries.values()):
                if entry.status in ACTIVE:  # its process may have died: then it has ended
                    entries[entry.id] = self._current(entry)
            for old in self._removals(list(entries.values())):
                shutil.rmtree(self.root / old.id, ignore_errors=True)
                del entries[old.id]
            path = self._new_folder()
            run = RunDir(path, self.index, stale_after=self.stale_after)
            run.write_status(status, done=0, total=total)
            entries[run.id] = RunEntry(
                id=run.id,
                status=status,
                progress=Progress(done=0, total=total),
                created_at=_created_at(run.id),
                models=list(models),
            )
        return run

    def _new_folder(self) -> Path:
        """A new run folder. Its id is the UTC time to the second, then the microseconds (5 hex
        digits) and a random hex digit: ids sort in creation order (newest first in listings,
        oldest first for retention), and runs made at the same moment elsewhere still differ
        (a clash is retried)."""
        while True:
            now = datetime.now(UTC)
            suffix = f"{now.microsecond:05x}{secrets.randbelow(16):x}"
            path = self.root / f"{now.strftime(_STAMP)}-{suffix}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return path

    def _removals(self, entries: list[RunEntry]) -> list[RunEntry]:
        if self.keep_runs is None or self.max_bytes is None:
            return []
        sized = [  # runs still going have no size in the index: measure them now
            e
            if e.bytes is not None
            else e.model_copy(update={"bytes": RunDir(self.root / e.id).size()})
            for e in entries
        ]
        return retention.removals(sized, keep_runs=self.keep_runs, max_bytes=self.max_bytes)

    def _current(self, entry: RunEntry) -> RunEntry:
        """An index entry of a run that was still going, brought up to date from its folder."""
        run = RunDir(self.root / entry.id, stale_after=self.stale_after)
        status = run.status()
        if status.status in ACTIVE:
            return entry.model_copy(update={"status": status.status, "progress": status.progress})
        ended = run.describe()  # a queued run that never started has no manifest, no models
        return ended if ended.models else ended.model_copy(update={"models": entry.models})

    def get(self, run_id: str) -> RunDir | None:
        """The run with this id, or None. Ids are validated, so no path can escape the root."""
        if not RUN_ID.match(run_id):
            return None
        path = self.root / run_id
        return RunDir(path, self.index, stale_after=self.stale_after) if path.is_dir() else None

    def page(self, *, limit: int, before: str | None = None) -> tuple[list[RunEntry], str | None]:
        """Up to `limit` runs older than the run `before` (all runs when None), newest first,
        and the id to ask for the next page with (None on the last page)."""
        entries = self.index.read() if self.root.is_dir() else {}
        ids = sorted((i for i in entries if before is None or i < before), reverse=True)
        page = ids[:limit]
        current = [
            self._current(entries[i]) if entries[i].status in ACTIVE else entries[i] for i in page
        ]
        return current, page[-1] if len(ids) > limit else None

    def _scan(self) -> Iterator[RunEntry]:
        """Every run folder described from its files: what rebuilds the index."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and RUN_ID.match(path.name):
                yield RunDir(path, stale_after=self.stale_after).describe()
