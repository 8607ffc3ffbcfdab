"""How many stored runs, and how many bytes of them, a benchmarks folder keeps.

When a run is created, the oldest finished runs are removed first, until the new run makes at
most GATEWAY_BENCH_KEEP_RUNS runs and the runs kept use less than GATEWAY_BENCH_MAX_BYTES. A
queued or running run is never removed. If removing every finished run would still not be
enough, nothing is removed and the new run is refused (InsufficientStorage, 507), naming the
setting to raise. Sizes are checked when a run is created: a run in progress may grow past the
byte limit, and the next run then makes room.
"""

from __future__ import annotations

from collections.abc import Sequence

from llm_gateway.bench.documents import ACTIVE, RunEntry
from llm_gateway.errors import InsufficientStorage


def removals(entries: Sequence[RunEntry], *, keep_runs: int, max_bytes: int) -> list[RunEntry]:
    """The runs to remove, oldest first, to make room for one more (every entry's `bytes`
    measured), or InsufficientStorage."""
    finished = sorted((e for e in entries if e.status not in ACTIVE), key=lambda e: e.id)
    count = len(entries) + 1  # with the new run
    used = sum(e.bytes or 0 for e in entries)
    remove: list[RunEntry] = []
    for entry in finished:
        if count <= keep_runs and used < max_bytes:
            break
        remove.append(entry)
        count -= 1
        used -= entry.bytes or 0
    if count > keep_runs:
        raise InsufficientStorage(
            f"{count - 1} benchmark runs are queued or running, and only {keep_runs} runs are "
            "kept (GATEWAY_BENCH_KEEP_RUNS): raise it, or wait for a run to finish"
        )
    if used >= max_bytes:
        raise InsufficientStorage(
            f"benchmark runs still queued or running use {used} bytes, and stored runs may use "
            f"{max_bytes} (GATEWAY_BENCH_MAX_BYTES): raise it, or wait for a run to finish"
        )
    return remove
