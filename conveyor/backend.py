"""What a task and a job handle need of their app: the seam between them and ``Conveyor``.

``Task`` and ``Job`` do their I/O through the app that made them. They see it through this
small Protocol, not through the ``Conveyor`` class, so that the core's modules import each
other in one direction only (``app`` -> ``task`` -> ``handle`` -> ``backend``).
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from conveyor.brokers.base import Broker
from conveyor.job import JobRecord

T = TypeVar("T")


class Backend(Protocol):
    """The app as its tasks and job handles use it (``Conveyor`` is one)."""

    @property
    def max_payload(self) -> int:
        """The largest encoded arguments a job may carry, in bytes."""
        ...

    def submit(self, records: Sequence[JobRecord], connection: object | None) -> list[JobRecord]:
        """Enqueue ``records`` from sync code (in the caller's transaction when
        ``connection`` is given); return them as stored."""
        ...

    async def submit_async(
        self, records: Sequence[JobRecord], connection: object | None
    ) -> list[JobRecord]:
        """Async twin of :meth:`submit`."""
        ...

    async def broker_here(self) -> Broker:
        """The app's broker for the running event loop, connected."""
        ...

    def run_blocking(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` to its end from sync code, and return what it returns."""
        ...
