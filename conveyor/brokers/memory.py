"""The in-process broker: the reference implementation of the contract, for tests and examples.

All state sits behind one lock, so every operation is atomic, and the broker may be used from
any thread and any event loop at once (``copy()`` returns the same object).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import threading
import time
from collections.abc import Sequence

import msgspec

from conveyor.brokers.base import (
    Broker,
    Consumer,
    Counts,
    HeartbeatReply,
    JobFilter,
    Lease,
    Outcome,
    Retention,
    WorkerInfo,
    decode_json,
)
from conveyor.brokers.common import Waiters, lease_expired_error, poison_pill_error
from conveyor.brokers.session import StoreConsumer
from conveyor.job import FINISHED, MAX_LOSSES, PENDING, JobRecord, Status


class MemoryBroker:
    """Keeps jobs in this process's memory. Nothing survives the process."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._keys: dict[str, str] = {}  # key -> id of the unfinished job holding it
        # Per queue: due-ordered heap of scheduled jobs and priority-ordered heap of ready ones.
        # Entries are checked against the job's status when popped (lazy deletion).
        self._scheduled: dict[str, list[tuple[float, str]]] = {}
        self._ready: dict[str, list[tuple[int, float, str]]] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._paused: set[str] = set()
        self._waiters = Waiters()

    @property
    def location(self) -> str:
        """``memory``: this process's memory."""
        return "memory"

    def copy(self) -> Broker:
        """The same object: it serves every loop and thread."""
        return self

    def consumer(self, worker: str, queues: Sequence[str], lease: float) -> Consumer:
        """A worker's session: each of its calls is one atomic step of this store."""
        return StoreConsumer(self, worker, queues, lease)

    async def connect(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to release; the jobs stay for as long as the object lives."""

    # -- internal helpers (called with the lock held) ------------------------------------

    def _push(self, job: JobRecord, now: float) -> None:
        if job.eta > now:
            job.status = Status.SCHEDULED
            heapq.heappush(self._scheduled.setdefault(job.queue, []), (job.eta, job.id))
        else:
            job.status = Status.QUEUED
            heapq.heappush(self._ready.setdefault(job.queue, []), (-job.priority, job.eta, job.id))

    def _promote(self, queue: str, now: float) -> None:
        heap = self._scheduled.get(queue)
        while heap and heap[0][0] <= now:
            eta, job_id = heapq.heappop(heap)
            job = self._jobs.get(job_id)
            if job is not None and job.status is Status.SCHEDULED and job.eta == eta:
                self._push(job, now)

    def _end(self, job: JobRecord, status: Status, now: float) -> None:
        job.status = status
        job.finished_at = now
        job.lease_until = None
        job.cancel_requested = False
        if job.key is not None and self._keys.get(job.key) == job.id:
            del self._keys[job.key]

    @staticmethod
    def _snapshot(job: JobRecord) -> JobRecord:
        return msgspec.structs.replace(job, args=list(job.args), kwargs=dict(job.kwargs))

    # -- the contract -------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        """Insert a batch; a job whose key is held by an unfinished job returns that job."""
        now = time.time()
        stored: list[JobRecord] = []
        with self._lock:
            for new in jobs:
                if new.key is not None and new.key in self._keys:
                    stored.append(self._snapshot(self._jobs[self._keys[new.key]]))
                    continue
                job = self._snapshot(new)
                self._jobs[job.id] = job
                if job.key is not None:
                    self._keys[job.key] = job.id
                self._push(job, now)
                stored.append(self._snapshot(job))
            self._waiters.notify({j.queue for j in stored})
        return stored

    async def claim_for(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float
    ) -> list[JobRecord]:
        """Take up to ``limit`` due jobs, highest priority then oldest eta first."""
        claimed: list[JobRecord] = []
        with self._lock:
            queues = [q for q in queues if q not in self._paused]
            for queue in queues:
                self._promote(queue, now)
            heads: list[tuple[int, float, str, str]] = []
            while len(claimed) < limit:
                heads = [(*h[0], q) for q in queues if (h := self._ready.get(q))]
                if not heads:
                    break
                queue = min(heads)[3]
                _, _, job_id = heapq.heappop(self._ready[queue])
                job = self._jobs.get(job_id)
                if job is None or job.status is not Status.QUEUED:
                    continue
                job.status = Status.RUNNING
                job.attempts += 1
                job.token += 1
                job.worker = worker
                job.started_at = now
                job.lease_until = now + lease
                claimed.append(self._snapshot(job))
        return claimed

    async def wait_for(self, queues: Sequence[str], timeout: float) -> None:
        """Return on an enqueue into ``queues``, when a scheduled job falls due, or on timeout."""
        with self._waiters.waiting(queues) as waiter:
            now = time.time()
            with self._lock:
                active = [q for q in queues if q not in self._paused]
                for q in active:
                    self._promote(q, now)
                if any(self._ready.get(q) for q in active):
                    return
                etas = [h[0][0] for q in active if (h := self._scheduled.get(q))]
            if etas:
                timeout = max(0.0, min(timeout, min(etas) - now))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiter.event.wait()

    async def extend(
        self, worker: WorkerInfo, leases: Sequence[Lease], lease: float, now: float
    ) -> HeartbeatReply:
        """Extend the leases still held; report lost ones and cancel requests."""
        lost: list[str] = []
        cancel: list[str] = []
        with self._lock:
            self._workers[worker.id] = worker
            for held in leases:
                job = self._jobs.get(held.id)
                if job is None or job.status is not Status.RUNNING or job.token != held.token:
                    lost.append(held.id)
                    continue
                job.lease_until = now + lease
                if job.cancel_requested:
                    cancel.append(held.id)
        return HeartbeatReply(lost=lost, cancel=cancel)

    async def record(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Apply outcomes whose token is current; return the refused ids."""
        refused: list[str] = []
        woken: set[str] = set()
        with self._lock:
            for out in outcomes:
                job = self._jobs.get(out.id)
                if job is None or job.status is not Status.RUNNING or job.token != out.token:
                    refused.append(out.id)
                    continue
                job.error = out.error
                job.worker = None
                if out.status in (Status.SCHEDULED, Status.QUEUED):
                    job.eta = out.eta if out.eta is not None else out.finished_at
                    job.lease_until = None
                    job.cancel_requested = False
                    self._push(job, out.finished_at)
                    woken.add(job.queue)
                else:
                    job.result = decode_json(out.result)
                    self._end(job, out.status, out.finished_at)
            if woken:
                self._waiters.notify(woken)
        return refused

    async def hand_back(self, leases: Sequence[Lease], now: float, delay: float = 0.0) -> None:
        """Hand running jobs back, due after ``delay``; the attempt does not count."""
        with self._lock:
            woken: set[str] = set()
            for held in leases:
                job = self._jobs.get(held.id)
                if job is None or job.status is not Status.RUNNING or job.token != held.token:
                    continue
                job.attempts = max(job.attempts - 1, 0)
                job.worker = None
                if job.cancel_requested:  # asked to stop anyway: do not run it again
                    self._end(job, Status.CANCELLED, now)
                    continue
                job.lease_until = None
                job.eta = now + delay
                self._push(job, now)
                if delay <= 0:
                    woken.add(job.queue)
            self._waiters.notify(woken)

    async def recover(self, now: float) -> list[str]:
        """Expired leases go back to queued without spending the attempt (a loss, counted);
        the loss after :data:`MAX_LOSSES` fails the job as a poison pill; a job asked to
        cancel ends cancelled."""
        recovered: list[str] = []
        with self._lock:
            woken: set[str] = set()
            for job in self._jobs.values():
                if job.status is not Status.RUNNING or (job.lease_until or 0) > now:
                    continue
                recovered.append(job.id)
                job.losses += 1
                poisoned = job.losses > MAX_LOSSES and not job.cancel_requested
                job.error = (
                    poison_pill_error(job.worker, job.losses)
                    if poisoned
                    else lease_expired_error(job.worker, job.attempts)
                )
                job.attempts = max(job.attempts - 1, 0)
                job.worker = None
                if job.cancel_requested:
                    self._end(job, Status.CANCELLED, now)
                elif poisoned:
                    self._end(job, Status.FAILED, now)
                else:
                    job.lease_until = None
                    job.eta = now
                    self._push(job, now)
                    woken.add(job.queue)
            self._waiters.notify(woken)
        return recovered

    async def get(self, job_id: str) -> JobRecord | None:
        """One job, or None."""
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else self._snapshot(job)

    async def counts(self) -> Counts:
        """Jobs per queue and status."""
        result: dict[str, dict[Status, int]] = {}
        with self._lock:
            now = time.time()
            for q in list(self._scheduled):
                self._promote(q, now)
            for job in self._jobs.values():
                per = result.setdefault(job.queue, {})
                per[job.status] = per.get(job.status, 0) + 1
        return result

    async def workers(self, now: float, ttl: float) -> list[WorkerInfo]:
        """Workers seen within ``ttl`` seconds."""
        with self._lock:
            return [w for w in self._workers.values() if w.seen_at > now - ttl]

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue."""
        with self._lock:
            if paused:
                self._paused.add(queue)
            else:
                self._paused.discard(queue)
                self._waiters.notify({queue})

    async def paused(self) -> list[str]:
        """The paused queues, sorted."""
        with self._lock:
            return sorted(self._paused)

    async def cancel(self, job_id: str, now: float) -> JobRecord | None:
        """Cancel a pending job at once; flag a running one for its worker."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.status in PENDING:
                self._end(job, Status.CANCELLED, now)
            elif job.status is Status.RUNNING:
                job.cancel_requested = True
            return self._snapshot(job)

    async def retry_failed(self, ids: Sequence[str] | None, queue: str | None, now: float) -> int:
        """Redrive failed jobs to queued with attempts reset; a job whose key is taken stays."""
        moved = 0
        with self._lock:
            chosen = (
                [self._jobs[i] for i in ids if i in self._jobs]
                if ids is not None
                else list(self._jobs.values())
            )
            woken: set[str] = set()
            for job in chosen:
                if job.status is not Status.FAILED or (queue is not None and job.queue != queue):
                    continue
                if job.key is not None:
                    if job.key in self._keys:
                        continue
                    self._keys[job.key] = job.id
                job.attempts = 0
                job.losses = 0
                job.finished_at = None
                job.eta = now
                self._push(job, now)
                woken.add(job.queue)
                moved += 1
            self._waiters.notify(woken)
        return moved

    async def purge(self, status: Status, queue: str | None, ids: Sequence[str] | None) -> int:
        """Delete finished jobs in ``status``."""
        if status not in FINISHED:
            raise ValueError(f"purge takes a finished status, not {status.value!r}")
        with self._lock:
            chosen = list(dict.fromkeys(ids)) if ids is not None else list(self._jobs)
            doomed = [
                i
                for i in chosen
                if (job := self._jobs.get(i)) is not None
                and job.status is status
                and (queue is None or job.queue == queue)
            ]
            for i in doomed:
                del self._jobs[i]
            return len(doomed)

    async def prune(self, retention: Retention, now: float, limit: int) -> int:
        """Delete up to ``limit`` finished jobs older than their retention."""
        with self._lock:
            doomed = [
                job.id
                for job in self._jobs.values()
                if job.status in FINISHED
                and (job.finished_at or 0) < now - retention.for_status(job.status)
            ][:limit]
            for i in doomed:
                del self._jobs[i]
            return len(doomed)

    async def list(self, where: JobFilter) -> list[JobRecord]:
        """A page of jobs, newest first."""
        with self._lock:
            ids = sorted(self._jobs, reverse=True)
            out: list[JobRecord] = []
            for job_id in ids:
                if where.before is not None and job_id >= where.before:
                    continue
                job = self._jobs[job_id]
                if where.status is not None and job.status is not where.status:
                    continue
                if where.queue is not None and job.queue != where.queue:
                    continue
                if where.task is not None and job.task != where.task:
                    continue
                if len(out) >= where.limit:
                    break
                out.append(self._snapshot(job))
            return out


__all__ = ["MemoryBroker"]
