"""Middleware: one onion of async wrappers around every task execution."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from conveyor.job import JobRecord

if TYPE_CHECKING:
    from conveyor.task import Task

CallNext = Callable[[], Awaitable[Any]]


class Context(msgspec.Struct, kw_only=True):
    """What a middleware sees of the job being executed."""

    job: JobRecord
    task: Task[Any, Any]
    worker: str


class Middleware(Protocol):
    """A wrapper around every task execution: ``async def mw(ctx, call_next)``.

    It sees the job in ``ctx`` and returns ``await call_next()`` (the task's result), or
    raises; the first middleware of an app is the outermost.
    """

    def __call__(self, ctx: Context, call_next: CallNext, /) -> Awaitable[Any]:
        """Run the rest of the chain (and the task) and return its result."""
        ...


def compose(middleware: Sequence[Middleware], ctx: Context, call: CallNext) -> CallNext:
    """Wrap ``call`` in ``middleware``, the first one outermost."""
    for mw in reversed(middleware):

        def bound(mw: Middleware = mw, inner: CallNext = call) -> Awaitable[Any]:
            return mw(ctx, inner)

        call = bound
    return call
