"""Middleware: one onion of async wrappers around every task execution."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

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


Middleware = Callable[[Context, CallNext], Awaitable[Any]]
"""``async def mw(ctx, call_next): ...; return await call_next()``"""


def compose(middleware: Sequence[Middleware], ctx: Context, call: CallNext) -> CallNext:
    """Wrap ``call`` in ``middleware``, the first one outermost."""
    for mw in reversed(middleware):

        def bound(mw: Middleware = mw, inner: CallNext = call) -> Awaitable[Any]:
            return mw(ctx, inner)

        call = bound
    return call
