"""Stored runs: the index (paging, rebuilding) and retention, on real folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_gateway.bench.documents import Manifest, RunState, Summary
from llm_gateway.bench.index import INDEX
from llm_gateway.bench.store import RUN_ID, STATUS, RunDir, RunStore
from llm_gateway.errors import InsufficientStorage


def fake_runs(root: Path, count: int) -> list[str]:
    """`count` finished runs, written the way an older version did (no index), oldest first."""
    root.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(count):
        run_id = f"20260101T{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}Z-{i:06x}"
        run = RunDir(root / run_id)
        run.path.mkdir()
        run.write_manifest(Manifest(id=run_id, status="done", models=["m/a"]))
        run.write_summary(Summary(requests=i, ok=i))
        run.write_status("done", done=i, total=i)
        ids.append(run_id)
    return ids


def _finish(run: RunDir, *, size: int = 0, status: RunState = "done") -> None:
    run.file("padding.bin").write_bytes(b"x" * size)
    run.end(status, done=1, total=1, summary=Summary(requests=1, ok=1))


def _ids(store: RunStore) -> list[str]:
    return [entry.id for entry in store.page(limit=500)[0]]


def test_pages_are_newest_first_and_cover_every_run_once(tmp_path: Path) -> None:
    ids = fake_runs(tmp_path, 120)
    store = RunStore(tmp_path)
    seen, before, pages = [], None, 0
    while True:
        entries, before = store.page(limit=50, before=before)
        seen += [e.id for e in entries]
        pages += 1
        if before is None:
            break
    assert pages == 3 and seen == ids[::-1]
    newest = store.page(limit=1)[0][0]
    assert (newest.status, newest.requests, newest.models) == ("done", 119, ["m/a"])
    assert newest.created_at == "2026-01-01T00:01:59+00:00" and newest.bytes
    entries, after = store.page(limit=5, before=ids[2])
    assert ([e.id for e in entries], after) == ([ids[1], ids[0]], None)


def test_a_missing_or_corrupt_index_is_rebuilt_from_the_folders(tmp_path: Path) -> None:
    ids = fake_runs(tmp_path, 5)
    store = RunStore(tmp_path)
    assert _ids(store) == ids[::-1]  # no index yet: built from the folders
    assert (tmp_path / INDEX).exists()
    for damage in (b'{"runs": [', b'{"runs": [1, 2]}', b"[]"):
        (tmp_path / INDEX).write_bytes(damage)
        assert _ids(RunStore(tmp_path)) == ids[::-1]


def test_created_and_finished_runs_are_indexed(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    first = store.create(status="queued", models=["m/a", "m/b"], total=4)
    second = store.create(status="running", models=["m/a"], total=2)
    assert RUN_ID.match(first.id) and first.id < second.id  # ids sort in creation order
    entries = store.page(limit=10)[0]
    assert [(e.id, e.status, e.models) for e in entries] == [
        (second.id, "running", ["m/a"]),
        (first.id, "queued", ["m/a", "m/b"]),
    ]
    _finish(second, size=100)
    done = store.page(limit=1)[0][0]
    assert (done.status, done.requests, done.ok) == ("done", 1, 1)
    assert done.bytes is not None and done.bytes >= 100


def test_retention_removes_the_oldest_finished_runs_first(tmp_path: Path) -> None:
    store = RunStore(tmp_path, keep_runs=3, max_bytes=10_000)
    runs = [store.create(status="running", models=["m"], total=1) for _ in range(3)]
    _finish(runs[0])
    _finish(runs[2])
    fourth = store.create(status="running", models=["m"], total=1)
    # The oldest finished run made room; the oldest of all is still running, so it stays.
    assert _ids(store) == [fourth.id, runs[2].id, runs[1].id]
    assert not runs[0].path.exists() and runs[1].path.exists()


def test_retention_keeps_stored_runs_under_the_byte_limit(tmp_path: Path) -> None:
    store = RunStore(tmp_path, keep_runs=100, max_bytes=10_000)
    runs = [store.create(status="running", models=["m"], total=1) for _ in range(3)]
    for run, size in zip(runs, (4_000, 4_000, 1_000), strict=True):
        _finish(run, size=size)
    fourth = store.create(status="running", models=["m"], total=1)
    assert len(_ids(store)) == 4  # about 9,500 bytes: under the limit
    _finish(fourth, size=2_000)
    fifth = store.create(status="running", models=["m"], total=1)
    # Over 10,000 bytes: the oldest goes, and that is enough.
    assert _ids(store) == [fifth.id, fourth.id, runs[2].id, runs[1].id]


def test_running_runs_are_never_removed_and_a_run_that_cannot_fit_is_refused(
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path, keep_runs=2, max_bytes=5_000)
    done = store.create(status="running", models=["m"], total=1)
    _finish(done)
    busy = store.create(status="running", models=["m"], total=1)
    busy.file("padding.bin").write_bytes(b"x" * 6_000)  # it grew past the limit meanwhile
    with pytest.raises(InsufficientStorage, match="GATEWAY_BENCH_MAX_BYTES") as info:
        store.create(status="running", models=["m"], total=1)
    assert info.value.status == 507
    assert _ids(store) == [busy.id, done.id]  # refused without removing anything
    busy.file("padding.bin").unlink()
    other = store.create(status="queued", models=["m"], total=1)  # done made room
    assert _ids(store) == [other.id, busy.id]
    with pytest.raises(InsufficientStorage, match="GATEWAY_BENCH_KEEP_RUNS"):
        store.create(status="running", models=["m"], total=1)


def test_a_run_whose_process_died_counts_as_finished(tmp_path: Path) -> None:
    store = RunStore(tmp_path, keep_runs=1, max_bytes=10_000)
    dead = store.create(status="running", models=["m"], total=1)
    # Its heartbeat stopped long ago: the listing says interrupted, and retention may remove it.
    dead.file(STATUS).write_text('{"status": "running", "updated_at": 0}')
    assert store.page(limit=1)[0][0].status == "interrupted"
    replacement = store.create(status="running", models=["m"], total=1)
    assert _ids(store) == [replacement.id]
