"""The runs index: one small file that lists every run of a benchmarks folder, so listing runs
and applying retention never read thousands of run folders.

`<benchmarks dir>/index.json` holds one entry per run (id, status, creation time, models, and
once the run has ended its counts and size on disk). A run is added when it is created and
updated when it ends; status and progress of a run still going are read from its own folder.
Each change rewrites the file atomically (temporary file, then rename) while holding an
exclusive lock on `.index.lock` (flock), so threads and worker processes sharing the folder
never lose one another's changes; readers need no lock. A missing or unreadable index is
rebuilt from the run folders.

Blocking file I/O: async code calls this through `asyncio.to_thread`.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from pydantic import BaseModel, ValidationError

from llm_gateway.bench.documents import RunEntry

INDEX = "index.json"
LOCK = ".index.lock"


class _IndexFile(BaseModel):
    """Strict, unlike the run documents: an index that does not validate is rebuilt."""

    runs: list[RunEntry]


class RunIndex:
    """The index of the runs under `root`; `scan` describes every run folder, for a rebuild."""

    def __init__(self, root: Path, scan: Callable[[], Iterable[RunEntry]]) -> None:
        self.root = root
        self._scan = scan

    @property
    def path(self) -> Path:
        return self.root / INDEX

    def read(self) -> dict[str, RunEntry]:
        """Every run, by id (rebuilding the index first if it is missing or unreadable)."""
        entries = self._load()
        if entries is None:
            with self.editing() as entries:
                pass  # editing() rebuilt it, and writes it back
        return entries

    def put(self, entry: RunEntry) -> None:
        with self.editing() as entries:
            entries[entry.id] = entry

    @contextmanager
    def editing(self) -> Iterator[dict[str, RunEntry]]:
        """The entries to change in place, under the lock; written back when the block ends
        without an exception."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / LOCK).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            entries = self._load()
            if entries is None:
                entries = {entry.id: entry for entry in self._scan()}
            yield entries
            self._write(entries)

    def _load(self) -> dict[str, RunEntry] | None:
        try:
            index = _IndexFile.model_validate_json(self.path.read_bytes())
        except (FileNotFoundError, ValidationError):
            return None
        return {entry.id: entry for entry in index.runs}

    def _write(self, entries: dict[str, RunEntry]) -> None:
        runs = [entries[run_id].model_dump(mode="json") for run_id in sorted(entries)]
        tmp = self.path.with_name(INDEX + ".tmp")
        tmp.write_bytes(orjson.dumps({"runs": runs}))
        os.replace(tmp, self.path)
