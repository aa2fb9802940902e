"""The consumer session of a broker that keeps no state between a worker's calls.

The memory and SQLite brokers apply each of a worker's steps in one atomic operation of the
store and remember nothing in between: their :class:`~conveyor.brokers.base.Consumer` is
:class:`StatelessConsumer`, a binding of the worker's id, queues and lease to the store's
steps. Brokers whose sessions keep state (Redis, PostgreSQL) have consumers of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from conveyor.brokers.base import HeartbeatReply, Lease, Outcome, WorkerInfo
from conveyor.job import JobRecord


class Steps(Protocol):
    """The atomic steps of a worker that a stateless store applies, one call each."""

    async def claim_for(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float
    ) -> list[JobRecord]:
        """See :meth:`Consumer.claim <conveyor.brokers.base.Consumer.claim>`."""
        ...

    async def wait_for(self, queues: Sequence[str], timeout: float) -> None:
        """See :meth:`Consumer.wait <conveyor.brokers.base.Consumer.wait>`."""
        ...

    async def extend(
        self, worker: WorkerInfo, leases: Sequence[Lease], lease: float, now: float
    ) -> HeartbeatReply:
        """See :meth:`Consumer.heartbeat <conveyor.brokers.base.Consumer.heartbeat>`."""
        ...

    async def record(self, outcomes: Sequence[Outcome]) -> list[str]:
        """See :meth:`Consumer.finish <conveyor.brokers.base.Consumer.finish>`."""
        ...

    async def hand_back(self, leases: Sequence[Lease], now: float) -> None:
        """See :meth:`Consumer.release <conveyor.brokers.base.Consumer.release>`."""
        ...


class StatelessConsumer:
    """A worker's session on a store that keeps nothing between calls: each method is one
    atomic step of the store, and :meth:`close` has nothing to settle."""

    __slots__ = ("_steps", "lease", "queues", "worker")

    def __init__(self, steps: Steps, worker: str, queues: Sequence[str], lease: float) -> None:
        self._steps = steps
        self.worker = worker
        self.queues = list(dict.fromkeys(queues))
        self.lease = lease

    async def claim(self, limit: int, now: float) -> list[JobRecord]:
        """Take up to ``limit`` due jobs of the session's queues."""
        return await self._steps.claim_for(self.queues, self.worker, limit, self.lease, now)

    async def wait(self, timeout: float) -> None:
        """Return when work may be due, or after ``timeout`` seconds."""
        await self._steps.wait_for(self.queues, timeout)

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[Lease], now: float
    ) -> HeartbeatReply:
        """Extend the leases still held; record the worker as alive."""
        return await self._steps.extend(worker, leases, self.lease, now)

    async def finish(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Apply outcomes with a current token; return the refused ids."""
        return await self._steps.record(outcomes)

    async def release(self, leases: Sequence[Lease], now: float) -> None:
        """Hand running jobs back, due now, without counting the attempt."""
        await self._steps.hand_back(leases, now)

    async def close(self) -> None:
        """Nothing to settle: the store kept nothing for this session."""
