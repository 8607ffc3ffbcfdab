"""Benchmark runs on disk: one folder per run, written as the run goes.

```
<benchmarks dir>/<UTC time>-<short id>/
  benchmark_results.csv   one row per request, appended (and flushed) as each one finishes
  status.json             status, progress and a heartbeat, so any worker can answer for it
  manifest.json           what was run, against what, with which versions (never the key)
  summary.json            the statistics, once the run ends (also for interrupted runs)
  report.html             the self-contained report
```

The folder is the source of truth; nothing about a run lives only in one process's memory.
A run whose heartbeat has stopped while it claimed to be running was interrupted (its process
died): it is reported as such rather than as forever "running".
"""

from __future__ import annotations

import csv
import os
import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from llm_gateway.bench.csvcells import allow_long_fields
from llm_gateway.bench.documents import (
    ACTIVE,
    Document,
    Manifest,
    Progress,
    RunState,
    RunStatus,
    Summary,
)
from llm_gateway.bench.records import RequestRecord

RESULTS_CSV = "benchmark_results.csv"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"
STATUS = "status.json"
REPORT = "report.html"

RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
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


class RunDir:
    """One run's folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.name
        self._csv: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None
        self._status_written = 0.0

    def file(self, name: str) -> Path:
        return self.path / name

    def append(self, record: RequestRecord) -> None:
        """Add one request's row and flush it, so an interrupted run keeps it."""
        if self._writer is None:
            self._csv = self.file(RESULTS_CSV).open("a", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._csv, fieldnames=RequestRecord.columns())
            if self._csv.tell() == 0:
                self._writer.writeheader()
        self._writer.writerow(record.row())
        assert self._csv is not None
        self._csv.flush()

    def close(self) -> None:
        if self._csv is not None:
            self._csv.close()
            self._csv, self._writer = None, None

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
        progress = Progress(done=done, total=total)
        document = RunStatus(
            id=self.id, status=status, progress=progress, error=error, updated_at=time.time()
        )
        _write_json(self.file(STATUS), document)
        self._status_written = time.monotonic()

    def heartbeat_due(self) -> bool:
        return time.monotonic() - self._status_written >= HEARTBEAT_S

    def status(self) -> RunStatus:
        """The run's status; a silent "running" run is reported as interrupted."""
        status = _read_json(self.file(STATUS), RunStatus)
        if status is None:
            done = self.file(SUMMARY).exists()
            return RunStatus(id=self.id, status="done" if done else "unknown")
        if status.status in ACTIVE and time.time() - status.updated_at > STALE_AFTER_S:
            return status.model_copy(update={"status": "interrupted"})
        return status

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


class RunStore:
    """The benchmarks folder: makes run folders and finds them again by id."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self) -> RunDir:
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = self.root / f"{stamp}-{secrets.token_hex(3)}"
        path.mkdir()
        return RunDir(path)

    def get(self, run_id: str) -> RunDir | None:
        """The run with this id, or None. Ids are validated, so no path can escape the root."""
        if not RUN_ID.match(run_id):
            return None
        path = self.root / run_id
        return RunDir(path) if path.is_dir() else None

    def runs(self) -> Iterator[RunDir]:
        """Every run, newest first."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.iterdir(), reverse=True):
            if path.is_dir() and RUN_ID.match(path.name):
                yield RunDir(path)
