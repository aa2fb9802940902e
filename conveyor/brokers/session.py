"""The consumer session of a store that applies each of a worker's steps in one call.

The memory and SQLite brokers apply each step (claim, wait, heartbeat, finish, release) in one
atomic operation of the store. Their :class:`~conveyor.brokers.base.Consumer` is
:class:`StoreConsumer`: the worker's id, queues and lease bound to the store's steps, plus the
one piece of state such a session needs, the claims whose reply its caller gave up on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from typing import Protocol

from conveyor.brokers.base import HeartbeatReply, Lease, Outcome, WorkerInfo
from conveyor.errors import BrokerUnavailable
from conveyor.job import JobRecord


class Steps(Protocol):
    """The atomic steps of a worker that a store applies, one call each."""

    def claim_for(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float
    ) -> Awaitable[list[JobRecord]]:
        """See :meth:`Consumer.claim <conveyor.brokers.base.Consumer.claim>`.

        A coroutine when the claim runs on the caller's loop, so that cancelling the caller
        cancels the claim (the memory broker's cannot even be interrupted); a future when it
        runs elsewhere (SQLite's thread), where it goes on after its caller is cancelled.
        """
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

    async def hand_back(self, leases: Sequence[Lease], now: float, delay: float = 0.0) -> None:
        """See :meth:`Consumer.release <conveyor.brokers.base.Consumer.release>`."""
        ...


class StoreConsumer:
    """A worker's session on a store whose steps are each one call (memory, SQLite).

    State kept between calls, all of it about claims whose caller was cancelled while the
    store ran them (the claim commits, and its reply would otherwise be lost, leaving its jobs
    running under this worker until their lease expired):

    - ``_in_flight``: the futures of such claims, still running in the store;
    - ``_held``: the jobs they took that no caller has received yet.

    The next :meth:`claim` returns those jobs first (dropping any whose lease has passed: the
    store recovers them); :meth:`close` hands them back to their queues.
    """

    __slots__ = ("_held", "_in_flight", "_steps", "lease", "queues", "worker")

    def __init__(self, steps: Steps, worker: str, queues: Sequence[str], lease: float) -> None:
        self._steps = steps
        self.worker = worker
        self.queues = list(dict.fromkeys(queues))
        self.lease = lease
        self._in_flight: list[asyncio.Future[list[JobRecord]]] = []
        self._held: list[JobRecord] = []

    async def claim(self, limit: int, now: float) -> list[JobRecord]:
        """Take up to ``limit`` due jobs of the session's queues, those of an abandoned claim
        first."""
        jobs = await self._take_held(limit, now) if self._in_flight or self._held else []
        if len(jobs) >= limit:
            return jobs
        claiming = self._steps.claim_for(
            self.queues, self.worker, limit - len(jobs), self.lease, now
        )
        if not asyncio.isfuture(claiming):
            return jobs + await claiming
        try:
            taken: list[JobRecord] = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            self._held[:0] = jobs
            self._in_flight.append(claiming)
            raise
        return jobs + taken

    async def _take_held(self, limit: int, now: float) -> list[JobRecord]:
        if self._in_flight:
            # They end soon (a store's thread runs one operation at a time): wait rather than
            # claim past them, so that their jobs come back with this claim.
            await asyncio.wait(self._in_flight)
            self._adopt()
        self._held = [j for j in self._held if (j.lease_until or 0.0) > now]
        jobs, self._held = self._held[:limit], self._held[limit:]
        return jobs

    def _adopt(self) -> None:
        """Move the jobs of the abandoned claims that have ended into ``_held``."""
        ended = [f for f in self._in_flight if f.done()]
        self._in_flight = [f for f in self._in_flight if not f.done()]
        for claiming in ended:
            if not claiming.cancelled() and claiming.exception() is None:
                self._held.extend(claiming.result())

    async def wait(self, timeout: float) -> None:
        """Return when work may be due, or after ``timeout`` seconds (at once when jobs of an
        abandoned claim wait for the next claim)."""
        if self._held:
            return
        await self._steps.wait_for(self.queues, timeout)

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[Lease], now: float
    ) -> HeartbeatReply:
        """Extend the leases still held; record the worker as alive."""
        return await self._steps.extend(worker, leases, self.lease, now)

    async def finish(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Apply outcomes with a current token; return the refused ids."""
        return await self._steps.record(outcomes)

    async def release(self, leases: Sequence[Lease], now: float, delay: float = 0.0) -> None:
        """Hand running jobs back, due after ``delay``, without counting the attempt."""
        await self._steps.hand_back(leases, now, delay)

    async def close(self) -> None:
        """Hand back the jobs of abandoned claims that no caller received; best effort when
        the store is unavailable (their leases then expire)."""
        if self._in_flight:
            await asyncio.wait(self._in_flight)
            self._adopt()
        held, self._held = self._held, []
        if held:
            with contextlib.suppress(BrokerUnavailable):
                await self._steps.hand_back([Lease(j.id, j.token) for j in held], time.time())


__all__ = ["Steps", "StoreConsumer"]
