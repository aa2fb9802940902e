"""Middleware: one onion around every execution, outermost first, seeing the Context."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import conveyor
from conveyor.middleware import CallNext
from tests.worker.support import WAIT, running


async def test_middleware_order_and_context(app_url: str) -> None:
    """The first middleware is outermost; each sees the job, the task and the worker id."""
    events: list[str] = []
    contexts: list[conveyor.Context] = []

    def tracer(name: str) -> conveyor.Middleware:
        async def middleware(ctx: conveyor.Context, call_next: CallNext) -> Any:
            events.append(f"{name} in")
            contexts.append(ctx)
            result = await call_next()
            events.append(f"{name} out")
            return result

        return middleware

    app = conveyor.Conveyor(app_url, middleware=[tracer("outer"), tracer("inner")])
    try:

        @app.task
        async def work(x: int) -> int:
            events.append("task")
            return x + 1

        job = await work.enqueue_async(1)
        async with running(app, name="mw-worker"):
            assert await job.result_async(timeout=WAIT) == 2
    finally:
        await app.close_async()
    assert events == ["outer in", "inner in", "task", "inner out", "outer out"]
    for ctx in contexts:
        assert (ctx.job.id, ctx.job.args, ctx.job.attempts) == (job.id, [1], 1)
        assert ctx.task is work
        assert ctx.worker == "mw-worker"


async def test_middleware_wraps_sync_tasks_and_can_change_the_result(
    app: conveyor.Conveyor,
) -> None:
    """Middleware runs around sync tasks too, and what it returns is the recorded result."""

    async def doubler(ctx: conveyor.Context, call_next: CallNext) -> Any:
        return 2 * await call_next()

    app.middleware.append(doubler)

    @app.task
    def seven() -> int:
        return 7

    job = seven.enqueue()
    async with running(app):
        assert await job.result_async(timeout=WAIT) == 14


async def test_middleware_sees_failures_and_timeouts(app: conveyor.Conveyor) -> None:
    """An exception (a TaskTimeout included) passes through the middleware on its way out."""
    seen: list[str] = []

    async def watcher(ctx: conveyor.Context, call_next: CallNext) -> Any:
        try:
            return await call_next()
        except Exception as exc:
            seen.append(type(exc).__name__)
            raise

    app.middleware.append(watcher)

    @app.task
    async def broken() -> None:
        raise ValueError("nope")

    @app.task(timeout=0.05)
    async def hang() -> None:
        await asyncio.Event().wait()

    jobs = [broken.enqueue(), hang.enqueue()]
    async with running(app):
        for job in jobs:
            with pytest.raises(conveyor.JobFailed):
                await job.result_async(timeout=WAIT)
    assert sorted(seen) == ["TaskTimeout", "ValueError"]


async def test_middleware_error_fails_the_job(app: conveyor.Conveyor) -> None:
    """A middleware that raises fails the job by the usual rules; the task never runs."""
    calls: list[int] = []

    async def gatekeeper(ctx: conveyor.Context, call_next: CallNext) -> Any:
        raise PermissionError(f"{ctx.task.name} is not allowed")

    app.middleware.append(gatekeeper)

    @app.task
    def guarded() -> None:
        calls.append(1)

    job = guarded.enqueue()
    async with running(app):
        with pytest.raises(conveyor.JobFailed) as info:
            await job.result_async(timeout=WAIT)
    assert info.value.error_type == "PermissionError"
    assert calls == []
