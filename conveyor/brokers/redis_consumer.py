"""A worker's session with the Redis broker: its claims, its wait in BLPOP, and the jobs
producers hand it while it waits.

A worker of one queue that is about to block offers the slots its last claim left free; an
enqueue that finds the offer claims the new job for it and pushes it to its inbox, which
its BLPOP watches beside the queue's signal list (``docs/redis.md``, "Hand-offs"). What
that takes between calls is this session's, never the store's: two sessions on one broker
object never see each other's hand-offs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from conveyor.brokers.base import HeartbeatReply, Lease, Outcome, WorkerInfo
from conveyor.brokers.common import ForkGuard
from conveyor.brokers.redis_wire import (
    REDIS_ERRORS,
    ClaimedRow,
    Damaged,
    claimed_jobs,
    guarded,
    handed_jobs,
    outage,
)
from conveyor.errors import BrokerUnavailable
from conveyor.job import JobRecord, Status

log = logging.getLogger("conveyor.redis")


class Store(Protocol):
    """What a session needs of its broker object (``RedisBroker`` is one): its connections,
    the scripts of a worker's steps, BLPOP, and the cache of each job's queue. The names are
    private to the two modules: the store's own API is the ``Broker`` contract, and a worker
    reaches these steps only through its session."""

    _server: str  # "Redis at host:port", for BrokerUnavailable
    _cluster: bool
    _fork: ForkGuard
    _generation: int  # one more each time a forked child left its parent's connections
    _queue_of: dict[str, str]  # job id -> its queue

    def _tag(self, queue: str) -> str: ...
    async def _conn(self) -> object: ...
    def _make_room(self, n: int) -> None: ...
    def _claim_script(
        self, tags: Sequence[str], argv: list[Any]
    ) -> Awaitable[tuple[list[ClaimedRow], int]]: ...
    async def _peek(self, queue: str, now: float, limit: int) -> list[bytes]: ...
    async def _held(self, tags: Sequence[str], worker: str, receipts: list[str]) -> list[Lease]: ...
    async def _probe(
        self, tags: Sequence[str], now: float, offer: Sequence[Any] = ()
    ) -> list[tuple[int, float | None]]: ...
    async def _withdraw(self, tag: str, worker: str) -> list[Lease]: ...
    async def _blpop(
        self, keys: list[str], seconds: float, limit: float
    ) -> tuple[str, bytes] | None: ...
    async def _blpop_any(self, groups: list[list[str]], seconds: float, limit: float) -> None: ...
    async def _extend(
        self, worker: WorkerInfo, leases: Sequence[Lease], lease: float, now: float
    ) -> HeartbeatReply: ...
    async def _record(self, outcomes: Sequence[Outcome]) -> list[str]: ...
    async def _fail_claimed(
        self, tags: Sequence[str], worker: str, receipt: str, damaged: list[Damaged], now: float
    ) -> list[str]: ...
    async def _release(self, leases: Sequence[Lease], now: float, delay: float = 0.0) -> None: ...


_RECEIPTS_KEPT = 8  # receipts of lost claim replies a session keeps per set of queues


class RedisConsumer:
    """A worker's session on a :class:`~conveyor.brokers.redis.RedisBroker`: claims,
    waits, heartbeats, outcomes and releases under one worker id, on the broker's
    connections (so it is used on the broker's loop and closed before the broker).

    What it keeps between calls, all of it this worker's:

    - **free slots** (``_free_slots``): what its last claim left free, when it claims from
      one queue; its next wait offers them to producers (probe.lua), who may hand it that
      many jobs. None when there is nothing to offer or withdraw.
    - **handed jobs** (``_handed``): jobs an enqueue claimed for it and its wait popped from
      its inbox; its next claim returns them first, with no round trip.
    - **offered** (``_offered``): whether Redis may hold an offer of its slots or jobs in
      its inbox; only then does a claim look there (a few Redis commands saved otherwise).
    - **receipts** (``_receipts``): per set of queues, the receipts of its claims whose
      reply was lost; its next claim of those queues hands their jobs over again.

    :meth:`close` withdraws its offer and hands back the jobs handed to it and never
    claimed, and those of its lost replies still running under its worker (found by the
    receipts; their release is fenced by token). A forked child drops all of it: it is the
    parent's.
    """

    __slots__ = (
        "_free_slots",
        "_generation",
        "_handed",
        "_inbox",
        "_offered",
        "_receipts",
        "_server",
        "_store",
        "_tags",
        "lease",
        "queues",
        "worker",
    )

    def __init__(self, store: Store, worker: str, queues: Sequence[str], lease: float) -> None:
        self._store = store
        self.worker = worker
        self.queues = list(dict.fromkeys(queues))
        self.lease = lease
        self._server = store._server  # names Redis in BrokerUnavailable (see guarded)
        self._tags = tuple(store._tag(q) for q in self.queues)
        self._inbox = f"{self._tags[0]}:in:{worker}" if len(self._tags) == 1 else ""
        self._generation = store._generation
        self._free_slots: int | None = None
        self._handed: list[JobRecord] = []
        self._offered = False
        self._receipts: dict[tuple[str, ...], list[str]] = {}

    def _drop_if_forked(self) -> None:
        """In a forked child (the store left its parent's sockets), forget the parent's
        hand-offs: its jobs, offers and receipts are not this process's to run or settle."""
        if self._generation != self._store._generation:
            self._generation = self._store._generation
            self._forget()

    def _forget(self) -> None:
        self._free_slots, self._handed, self._offered = None, [], False
        self._receipts = {}

    @guarded
    async def claim(self, limit: int, now: float) -> list[JobRecord]:
        """Take up to ``limit`` due jobs, highest priority then oldest eta first, after making
        the due scheduled jobs queued; paused queues are skipped.

        First come the jobs handed to this session during its last wait, with no round trip.
        Claims may run concurrently (a worker splits a big one); the slots offered at the
        next wait are those the last claim to end left free, which never over-counts.
        """
        queues = self.queues
        if not queues or limit <= 0:
            return []
        store = self._store
        if self._generation != store._generation:
            self._drop_if_forked()
        if self._handed:  # already claimed for this worker: no round trip
            jobs, self._handed = self._handed[:limit], self._handed[limit:]
            self._free_slots = limit - len(jobs)
            return self._claimed(jobs, now)
        await store._conn()
        if self._generation != store._generation:
            self._drop_if_forked()
        args: list[Any] = [now, now + self.lease, self.worker]
        if not store._cluster or len(queues) == 1:
            jobs = await self._claim_from(self._tags, [*args, limit])
        else:
            jobs = await self._claim_across_slots(args, limit, now)
        # A worker of one queue with slots left may be handed jobs while it waits.
        if len(queues) == 1:
            self._free_slots = limit - len(jobs)
        return self._claimed(jobs, now)

    async def _claim_across_slots(self, args: list[Any], limit: int, now: float) -> list[JobRecord]:
        """One script cannot reach several slots: look at each queue's best candidates, then
        claim from each queue its share of the best ``limit``."""
        store = self._store
        peeks = await asyncio.gather(*(store._peek(q, now, limit) for q in self.queues))
        best = sorted(
            (float(flat[i]), float(flat[i + 1]), flat[i + 2], tag)
            for tag, flat in zip(self._tags, peeks, strict=True)
            for i in range(0, len(flat), 3)
        )[:limit]
        shares = Counter(tag for *_, tag in best)
        parts = await asyncio.gather(
            *(self._claim_from((tag,), [*args, n]) for tag, n in shares.items())
        )
        return sorted((j for p in parts for j in p), key=lambda j: (-j.priority, j.eta, j.id))

    def _claimed(self, jobs: list[JobRecord], now: float) -> list[JobRecord]:
        store = self._store
        store._make_room(len(jobs))
        queue_of, worker, until = store._queue_of, self.worker, now + self.lease
        for job in jobs:
            job.status, job.worker = Status.RUNNING, worker
            job.started_at, job.lease_until = now, until
            queue_of[job.id] = job.queue
        return jobs

    async def _claim_from(self, tags: tuple[str, ...], args: list[Any]) -> list[JobRecord]:
        receipt, lost = os.urandom(8).hex(), self._receipts.pop(tags, [])
        # Only a session of one queue offers slots, so its claims are all of that queue.
        look = self._offered
        if look:
            self._offered = False  # unless jobs are left in the inbox (see below)
        argv = [*args, receipt, "1" if look else "", *lost]
        held: list[Lease] = []
        try:
            if lost:  # rare: after a lost reply. claim.lua hands over only up to the limit
                held = await self._store._held(tags, self.worker, lost)
            rows, left = await self._store._claim_script(tags, argv)
            # Decoded under the receipt: should this fail, the next claim hands the jobs over.
            jobs, damaged = claimed_jobs(rows)
            if damaged:  # rare: fail those alone (token-checked), the others go out
                await self._fail_damaged(tags, receipt, damaged, args[0])
        except BaseException:
            # The claim may have run with its reply lost: the next claim hands its jobs over.
            # The other half of a split claim may have lost its reply too: keep both.
            kept = self._receipts.get(tags, [])
            self._receipts[tags] = [*kept, *lost, receipt][-_RECEIPTS_KEPT:]
            if look:
                self._offered = True
            raise
        if left:
            self._offered = True
        if held:
            await self._hand_back_beyond(held, jobs, args[0])
        return jobs

    async def _fail_damaged(
        self, tags: tuple[str, ...], receipt: str, damaged: list[Damaged], now: float
    ) -> None:
        """Fail the claimed jobs that do not decode, each alone, with its decode error."""
        ids = await self._store._fail_claimed(tags, self.worker, receipt, damaged, now)
        for job_id, (_, error) in zip(ids, damaged, strict=False):
            log.error("job %s cannot be decoded, failed alone: %s", job_id, error.message)

    async def _hand_back_beyond(self, held: list[Lease], jobs: list[JobRecord], now: float) -> None:
        """Release the jobs of lost claims that the claim did not hand over again (beyond its
        limit): their receipts are gone, and their worker never saw them."""
        returned = {j.id for j in jobs}
        beyond = [lease for lease in held if lease.id not in returned]
        try:
            await self._store._release(beyond, now)
        except (*REDIS_ERRORS, BrokerUnavailable) as exc:  # the jobs claimed must still go out
            log.warning("could not hand back %d jobs of a lost claim: %s", len(beyond), exc)

    async def wait(self, timeout: float) -> None:
        """Return when a job may be due in :attr:`queues` (an enqueue, a retry, a resume, a
        scheduled job's eta), or after ``timeout`` seconds; a worker of one queue offers its
        free slots meanwhile. May return early; on a lost connection it returns after a
        short pause (the next claim reports the outage)."""
        started = time.monotonic()
        if not self.queues:
            await asyncio.sleep(timeout)
            return
        store = self._store
        try:
            await store._conn()
            self._drop_if_forked()
            tags, slots, now = self._tags, self._free_slots, time.time()
            if not slots:
                answers = await store._probe(tags, now)
                sigs = [f"{t}:sig" for t in tags]
                groups = [[k] for k in sigs] if store._cluster else [sigs]
            else:
                # The slots it offers outlast this wait a little: its end claims anyway.
                self._offered = True
                offer = (self.worker, slots, self.lease, now + timeout + 1.0)
                answers = await store._probe(tags, now, offer)
                groups = [[self._inbox, f"{tags[0]}:sig"]]  # one slot: a cluster takes it as one
            if any(due for due, _ in answers):
                return
            etas = [eta for _, eta in answers if eta is not None]
            until_eta = min(etas) - now if etas else float("inf")
            try:
                await self._block(groups, min(timeout, until_eta), until_eta)
            except asyncio.CancelledError:
                await self._withdraw()  # it stops waiting: no more jobs may be handed to it
                raise
        except REDIS_ERRORS as exc:
            if not outage(exc):
                raise
            await asyncio.sleep(max(0.0, min(timeout, 0.5) - (time.monotonic() - started)))

    async def _block(self, groups: list[list[str]], seconds: float, until_eta: float) -> None:
        """BLPOP on each group of keys (of one slot) for ``seconds``; jobs popped from the
        inbox (in the only group, if any) are kept for the next claim. Ends here exactly at an
        eta (which drops the connection); Redis ends the plain timeouts, keeping it."""
        if seconds <= 0:
            return
        exact = until_eta <= seconds
        server = seconds + 1.0 if exact else seconds
        local = seconds if exact else seconds + 5.0
        if len(groups) > 1:
            await self._store._blpop_any(groups, server, local)
            return
        try:  # in this task: a task of its own would cost a turn of the loop
            popped = await self._store._blpop(groups[0], server, local)
        except TimeoutError:
            return
        if popped is not None and popped[0] == self._inbox:
            self._handed += handed_jobs(popped[1])

    @guarded
    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[Lease], now: float
    ) -> HeartbeatReply:
        """Record the worker and extend its leases still held; report the lost ones and
        those asked to cancel."""
        return await self._store._extend(worker, leases, self.lease, now)

    @guarded
    async def finish(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Apply a batch of outcomes, each only with a current token; return the refused
        ids."""
        return await self._store._record(outcomes)

    @guarded
    async def release(self, leases: Sequence[Lease], now: float, delay: float = 0.0) -> None:
        """Hand running jobs back, due after ``delay``; the attempt does not count."""
        await self._store._release(leases, now, delay)

    async def close(self) -> None:
        """Withdraw the offer of free slots and hand back the jobs handed to this session
        and not claimed, and those of its claims whose reply was lost. Best effort: if Redis
        cannot be reached, their leases expire and they are recovered."""
        if self._store._fork.forked or self._generation != self._store._generation:
            self._forget()  # forked: the parent's offer and jobs are not ours to settle
            return
        await self._withdraw(receipts=True)

    async def _withdraw(self, *, receipts: bool = False) -> None:
        """Stop being handed jobs, and hand back those handed over but not claimed (and,
        with ``receipts``, those of claims whose reply was lost)."""
        slots, handed, lost = self._free_slots, self._handed, self._receipts if receipts else {}
        self._free_slots, self._handed = None, []
        if receipts:
            self._receipts = {}
        if slots is None and not handed and not lost:
            return
        store, leases = self._store, [Lease(j.id, j.token) for j in handed]
        try:
            if slots is not None:
                leases += await store._withdraw(self._tags[0], self.worker)
                self._offered = False
            for tags, kept in lost.items():
                leases += await store._held(tags, self.worker, kept)
            await store._release(leases, time.time())
        except (*REDIS_ERRORS, BrokerUnavailable) as exc:
            log.warning("could not hand back %d jobs held by this worker: %s", len(leases), exc)
