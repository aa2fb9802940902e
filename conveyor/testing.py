"""Helpers for testing code that uses Conveyor: run a worker until the work is done."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from conveyor.app import Conveyor
from conveyor.errors import ResultTimeout
from conveyor.job import UNFINISHED
from conveyor.worker import Worker


def app_queues(app: Conveyor) -> list[str]:
    """Every queue the app's tasks use, plus ``default``."""
    return sorted({"default", *(t.settings.queue for t in app.tasks.values())})


async def drain_async(
    app: Conveyor,
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 10,
    timeout: float = 30.0,
) -> dict[str, int]:
    """Run a worker until no job in ``queues`` is scheduled, queued or running.

    Retries that wait for their backoff are waited for too, so keep backoffs short in
    tests. Returns the worker's counts (succeeded, failed, retried, cancelled).

    Raises:
        ResultTimeout: work was still left after ``timeout`` seconds.
    """
    names = list(queues or app_queues(app))
    worker = Worker(app, queues=names, concurrency=concurrency, poll=0.05, lease=5.0)
    runner = asyncio.create_task(worker.run())
    deadline = time.monotonic() + timeout
    pause = 0.001
    try:
        while True:
            counts = await worker.broker.counts() if runner.done() is False else {}
            left = sum(counts.get(q, {}).get(s, 0) for q in names for s in UNFINISHED)
            if left == 0 or runner.done():
                break
            if time.monotonic() > deadline:
                raise ResultTimeout(f"{left} jobs still unfinished after {timeout}s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
    finally:
        worker.stop()
        await runner
    return dict(worker.stats)


def drain(
    app: Conveyor,
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 10,
    timeout: float = 30.0,
) -> dict[str, int]:
    """Sync twin of :func:`drain_async` (runs its own event loop)."""
    return asyncio.run(drain_async(app, queues=queues, concurrency=concurrency, timeout=timeout))
