"""Deadlines of one length for many calls at once, kept with one timer.

`asyncio.timeout(seconds)` schedules a loop timer on entry and cancels it on exit, and looks
up the running loop three times, each lookup a `getpid()` system call (its check for a fork).
The upstream client wraps every call in one (and every stream in two), and taking them out
made a proxied call ~5% cheaper in CPU. Here every block of one `Deadlines` waits the same
`seconds`, so deadlines fall due in the order the blocks were entered: the open blocks are
kept in entry order (a dict), one timer is armed for the oldest, and when it fires it cancels
the blocks that are overdue and is armed again for the next one. Entering and leaving a block
is a dict insert and delete. The client keeps one per kind of timeout: a whole call, the
first byte of a stream, the pre-flight's commit window, and each read of a stream (a block
a stream enters again for every read, instead of a timer of its own per open stream).
"""

from __future__ import annotations

import asyncio
from typing import Any


class Deadlines:
    """`with deadlines():` bounds the block to `seconds`: past them the block's task is
    cancelled and the block raises TimeoutError, as under `asyncio.timeout(seconds)` (a
    cancellation from elsewhere stays a CancelledError)."""

    __slots__ = ("_blocks", "_loop", "_timer", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._blocks: dict[Deadline, None] = {}  # open blocks, oldest first

    def __call__(self) -> Deadline:
        return Deadline(self)

    def _enter(self, block: Deadline) -> None:
        # With the loop given, `current_task` needs no lookup of the running loop.
        task = asyncio.current_task(self._loop) if self._loop is not None else None
        if task is None:
            loop = asyncio.get_running_loop()
            if loop is not self._loop:  # first use, or a client that outlived its loop
                self._loop, self._timer, self._blocks = loop, None, {}
            task = asyncio.current_task(loop)
            if task is None:
                raise RuntimeError("a deadline bounds code that runs in a task")
        assert self._loop is not None
        block.task = task
        block.expired = False  # a block may be entered again (a stream's every read)
        block.cancelling = task.cancelling()
        block.due = self._loop.time() + self.seconds
        self._blocks[block] = None
        if self._timer is None:
            self._timer = self._loop.call_at(block.due, self._fire)

    def _exit(self, block: Deadline) -> None:
        self._blocks.pop(block, None)

    def _fire(self) -> None:
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        while self._blocks:
            block = next(iter(self._blocks))
            if block.due > now:
                self._timer = self._loop.call_at(block.due, self._fire)
                return
            del self._blocks[block]
            block.expired = True
            block.task.cancel()


class Deadline:
    """One block under a `Deadlines`; it may be entered again once it has been left."""

    __slots__ = ("_deadlines", "cancelling", "due", "expired", "task")

    def __init__(self, deadlines: Deadlines) -> None:
        self._deadlines = deadlines
        self.expired = False
        self.task: asyncio.Task[Any]
        self.cancelling = 0
        self.due = 0.0

    def __enter__(self) -> None:
        self._deadlines._enter(self)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        self._deadlines._exit(self)
        # asyncio.timeout's rule: our cancellation, and no other one pending, is a timeout.
        if not self.expired:
            return
        if self.task.uncancel() <= self.cancelling and kind is asyncio.CancelledError:
            raise TimeoutError from exc
