"""The benchmark's tasks: `conveyor worker benchmarks.bench_tasks:app`."""

from __future__ import annotations

import conveyor

app = conveyor.Conveyor()  # $CONVEYOR_URL, set by the benchmark


@app.task
async def noop() -> None:
    """Does nothing: the drain measures the queue, not the work."""


@app.task
def noop_sync() -> None:
    """Does nothing, in the worker's thread pool."""
