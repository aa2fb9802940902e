"""A time limit on every call to a server, kept with one timer for all the calls in flight.

``asyncio.timeout`` arms a timer per call and runs an async context manager around it, a
large share of the Python an enqueue to Redis takes (``docs/redis.md``, "Lost
connections", has the figures). Calls to a server almost never reach their limit, so one
timer, due at the earliest limit of the calls in flight and re-armed when it fires, does the
same work for far less.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class Deadlines:
    """Runs awaitables with a time limit, on one event loop at a time.

    A call over the limit is cancelled and raises ``TimeoutError``, as under
    ``asyncio.timeout``; a cancel from elsewhere stays a ``CancelledError``. The first call
    on another loop (a broker used by one test loop, then the next) forgets the calls of the
    loop before, whose tasks cannot run any more anyway.
    """

    __slots__ = ("_calls", "_due", "_last", "_loop", "_timer", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        # call number -> (its limit on the loop's clock, its task, set when it was cancelled)
        self._calls: dict[int, tuple[float, asyncio.Task[Any], list[bool]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0  # when the timer fires, exactly: uvloop's TimerHandle.when() is in ms
        self._last = 0

    async def run(self, call: Awaitable[T], seconds: float | None = None) -> T:
        """Await ``call``; raise ``TimeoutError`` once it has run for ``seconds`` (by
        default the object's)."""
        task = asyncio.current_task()
        if task is None:  # not in a task: there is nothing to cancel
            return await call
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._calls, self._timer = loop, {}, None
        self._last = number = self._last + 1
        seconds = self.seconds if seconds is None else seconds
        limit = loop.time() + seconds
        expired: list[bool] = []
        self._calls[number] = (limit, task, expired)
        if self._timer is None or limit < self._due:
            self._arm(loop, limit)
        cancelling = task.cancelling()
        try:
            return await call
        except asyncio.CancelledError as exc:
            # Ours unless another cancel came meanwhile: that one must stay a cancel.
            if expired and task.uncancel() <= cancelling:
                raise TimeoutError(f"no answer in {seconds:g}s") from exc
            raise
        finally:
            self._calls.pop(number, None)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:  # armed on a loop this object has since left
            return
        self._timer = None
        # The loop runs a timer when its clock says it is due, which may be a little before
        # the limit by this clock (uvloop counts in ms): the limits it was armed for are up.
        now = max(loop.time(), self._due)
        for number, (limit, task, expired) in list(self._calls.items()):
            if limit <= now:
                del self._calls[number]
                expired.append(True)
                task.cancel()
        if self._calls:
            self._arm(loop, min(c[0] for c in self._calls.values()))

    def _arm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._due = loop.call_at(due, self._check, loop), due
