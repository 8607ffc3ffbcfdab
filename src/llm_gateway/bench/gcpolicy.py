"""No full garbage collection inside a measurement.

A full (oldest-generation) collection walks every tracked object in the process and holds the
event loop for tens of milliseconds (42-111 ms measured in a benchmark client): any request in
flight then gets that pause added to its times. So while a benchmark measures:

- after set-up (the client, the warm-ups), one full collection runs and everything that
  survives is frozen (`gc.freeze()`): later collections never walk it again;
- automatic collection is limited to the young generations, whose collections take well under
  a millisecond (they only walk objects made since the last one: the current requests');
- full collections run only where nothing is measured: between sweep steps (`between()`) and
  after the run (`measuring()` exits: everything is unfrozen, collected once, and what
  survives frozen again, which is also what the gateway does with its heap at start-up).

Cyclic garbage that outlives the young generations waits for one of those points, so a long
single step holds a little more memory than it would otherwise; reference counting frees
everything else at once as usual.

The policy is process-wide (the collector is): the gateway may run two benchmarks at once, so
it is counted, and the first to start and the last to finish apply and undo it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Never reached: the oldest generation is only collected at our points.
_NO_FULL = 1 << 30

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def measuring() -> Iterator[None]:
    """Collect and freeze now; no automatic full collection until the block ends."""
    global _active, _saved
    with _lock:
        _active += 1
        if _active == 1:
            gc.collect()
            gc.freeze()
            _saved = gc.get_threshold()
            gc.set_threshold(_saved[0], _saved[1], _NO_FULL)
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
                # What the measurement left is collected, and what lives on is frozen again,
                # as the gateway does at start-up (app.py): its heap stays out of later
                # full collections.
                gc.unfreeze()
                gc.collect()
                gc.freeze()


def between() -> None:
    """A full collection at a point where nothing is measured, keeping what survives frozen
    (skipped while another benchmark of this process is measuring)."""
    with _lock:
        if _active > 1:
            return
        gc.collect()
        gc.freeze()
