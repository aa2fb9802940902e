"""A worker's heartbeat, off the event loop: leases are renewed even while a task blocks it.

An async task that blocks the event loop (``time.sleep``, CPU-bound work, a blocking client)
stops everything on that loop. Were the heartbeat on the loop too, the job's lease would
expire, another worker would run it again, and the outcome of this attempt, once it ends,
would be refused. So the heartbeat runs in a thread of its own, with its own event loop and
its own connection to the broker; it reads what the worker holds at each beat, and hands the
broker's reply (leases lost, cancels asked) back to the worker's loop. It also watches the
worker's loop, and reports a blocked one while it is blocked, naming the task that blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from conveyor.brokers.base import Broker, Consumer, HeartbeatReply, Lease, WorkerInfo
from conveyor.job import JobRecord
from conveyor.task import Task

log = logging.getLogger("conveyor.worker")

Snapshot = Callable[[float], tuple[WorkerInfo, list[Lease]]]
"""What the worker holds at a time: its report and the leases to renew (called in the
heartbeat's thread, so it may only copy the worker's state, never change it)."""

TICK = 0.1
"""Seconds between two signs of life of the worker's loop."""


class Heartbeat:
    """Renews a worker's leases every third of the lease, from a thread of its own.

    Args:
        broker: a broker object for this thread alone (``copy()`` of the worker's).
        worker: the worker id; ``queues`` and ``lease`` as the worker's.
        snapshot: what to report and renew at each beat.
        on_reply: called on the worker's loop with each reply of the broker.
        tasks: the worker's tasks, to recognise the one whose code blocks the loop.
        running: the jobs the worker runs now (called in the heartbeat's thread).
        report_after: seconds of a blocked loop before it is reported.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        worker: str,
        queues: list[str],
        lease: float,
        snapshot: Snapshot,
        on_reply: Callable[[HeartbeatReply], None],
        tasks: Mapping[str, Task[..., Any]],
        running: Callable[[], list[JobRecord]],
        report_after: float,
    ) -> None:
        self._broker = broker
        self._worker, self._queues, self._lease = worker, queues, lease
        self._snapshot = snapshot
        self._on_reply = on_reply
        # The async tasks by their code: the one found on the blocked loop's stack is named.
        self._task_of = {
            code: name
            for name, task in tasks.items()
            if task.is_async and (code := getattr(task.fn, "__code__", None)) is not None
        }
        self._running = running
        self._report_after = report_after
        self._main: asyncio.AbstractEventLoop | None = None
        self._main_thread = 0
        self._alive_at = time.monotonic()  # the worker's loop's last sign of life
        self._tick: asyncio.TimerHandle | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # the thread's own
        self._wake = asyncio.Event()  # set on the thread's loop by stop()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start beating, watching the running loop (the worker's)."""
        self._main = asyncio.get_running_loop()
        self._main_thread = threading.get_ident()
        self._alive()
        self._thread = threading.Thread(target=self._run, name="conveyor-heartbeat", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop beating and wait for the thread to end (without blocking the loop)."""
        if self._tick is not None:
            self._tick.cancel()
        self._stopping.set()
        beating = self._loop
        if beating is not None:
            with contextlib.suppress(RuntimeError):  # its loop has closed: it has ended
                beating.call_soon_threadsafe(self._wake.set)
        thread = self._thread
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)

    def _alive(self) -> None:
        self._alive_at = time.monotonic()
        assert self._main is not None
        self._tick = self._main.call_later(TICK, self._alive)

    def _run(self) -> None:
        asyncio.run(self._beat())

    async def _beat(self) -> None:
        self._loop = asyncio.get_running_loop()
        session = self._broker.consumer(self._worker, self._queues, self._lease)
        every = self._lease / 3
        check = min(self._report_after / 2, every)
        next_beat = 0.0
        blocked_since: float | None = None
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    next_beat = now + every
                    await self._once(session)
                blocked_since = self._watch(blocked_since)
                pause = max(0.0, min(check, next_beat - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), pause)
        finally:
            await session.close()
            await self._broker.close()

    async def _once(self, session: Consumer) -> None:
        now = time.time()
        info, leases = self._snapshot(now)
        try:
            reply = await session.heartbeat(info, leases, now)
        except Exception as exc:
            log.error("heartbeat failed (%s: %s)", type(exc).__name__, exc)
            return
        if (reply.lost or reply.cancel) and self._main is not None:
            with contextlib.suppress(RuntimeError):  # the worker's loop is closed: no one to tell
                self._main.call_soon_threadsafe(self._on_reply, reply)

    def _watch(self, blocked_since: float | None) -> float | None:
        """Report the worker's loop once when it has been blocked past the threshold, and
        again when it runs again; returns when the blocking began (None if it runs)."""
        stalled = time.monotonic() - self._alive_at - TICK
        if stalled < self._report_after:
            if blocked_since is not None:
                log.warning(
                    "the worker's event loop ran again after being blocked for %.1f s",
                    time.monotonic() - blocked_since,
                )
            return None
        if blocked_since is None:
            blocked_since = self._alive_at + TICK
            log.error(
                "the worker's event loop has been blocked for %.1f s by %s: an async task must "
                "not block (make it a sync task, or await the blocking call in a thread with "
                "asyncio.to_thread); its lease is kept meanwhile",
                stalled, self._blocker(),
            )  # fmt: skip
        return blocked_since

    def _blocker(self) -> str:
        """The task on the worker thread's stack now, with its running jobs, if one is."""
        frame = sys._current_frames().get(self._main_thread)
        while frame is not None:
            name = self._task_of.get(frame.f_code)
            if name is not None:
                ids = [job.id for job in self._running() if job.task == name]
                return f"job {ids[0]} ({name})" if len(ids) == 1 else f"{name} (jobs {ids})"
            frame = frame.f_back
        return "code outside any task (a callback, or middleware)"
