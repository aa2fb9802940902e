"""The broker contract: the atomic, batched operations of the job lifecycle.

Every broker (memory, SQLite, Redis, PostgreSQL) implements :class:`Broker`. Each method is
one atomic step in the broker itself (one transaction, one Lua script): never a read in
Python followed by a write. The memory broker is the executable specification and
``tests/brokers/`` the definition of done.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from conveyor.job import ErrorInfo, JobRecord, Status


class Lease(msgspec.Struct, frozen=True):
    """A claim on a running job: the job's id and the fencing token its claim was given."""

    id: str
    token: int


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """A decided end of one attempt, applied by :meth:`Broker.finish` only with a live token.

    ``status`` is ``succeeded`` (with ``result``), ``scheduled`` (a retry at ``eta``, with the
    ``error`` that caused it), ``failed`` (with ``error``) or ``cancelled``.
    ``result`` is the JSON-encoded return value.
    """

    id: str
    token: int
    status: Status
    finished_at: float
    result: bytes | None = None
    error: ErrorInfo | None = None
    eta: float | None = None


class HeartbeatReply(msgspec.Struct, frozen=True):
    """Which of the leases a heartbeat named are lost, and which jobs were asked to cancel."""

    lost: list[str] = msgspec.field(default_factory=list)
    cancel: list[str] = msgspec.field(default_factory=list)


BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
"""Upper bounds in seconds of the run-time and wait-time histogram buckets (then +Inf)."""


def _no_observations() -> list[int]:
    return [0] * (len(BUCKETS) + 1)


class TaskStats(msgspec.Struct, kw_only=True):
    """What one worker did for one task in one queue since it started: the raw material of
    ``/metrics``, summed over workers by whoever reads :attr:`WorkerInfo.stats`.

    ``run`` (how long attempts ran) and ``wait`` (claim time minus eta: how long a due job
    waited for a worker) count observations per bucket of :data:`BUCKETS`, not cumulatively;
    the last entry counts those above the largest bound.
    """

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    run: list[int] = msgspec.field(default_factory=_no_observations)
    run_sum: float = 0.0
    wait: list[int] = msgspec.field(default_factory=_no_observations)
    wait_sum: float = 0.0

    def observe_run(self, seconds: float) -> None:
        """Count one attempt that ran for ``seconds``."""
        self.run[bisect_left(BUCKETS, seconds)] += 1
        self.run_sum += seconds

    def observe_wait(self, seconds: float) -> None:
        """Count one job that started ``seconds`` after it was due."""
        self.wait[bisect_left(BUCKETS, seconds)] += 1
        self.wait_sum += seconds

    def snapshot(self) -> TaskStats:
        """A copy that later observations leave unchanged."""
        return msgspec.structs.replace(self, run=list(self.run), wait=list(self.wait))


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker reports about itself with each heartbeat.

    Brokers store it whole, as opaque JSON. ``lease`` tells readers how long to consider the
    worker alive after ``seen_at`` (0: unknown). ``stats`` holds, per queue then per task, the
    worker's cumulative counters and histograms (:class:`TaskStats`).
    """

    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: float
    seen_at: float
    running: list[str] = msgspec.field(default_factory=list)
    lease: float = 0.0
    tasks: list[str] = msgspec.field(default_factory=list)
    stats: dict[str, dict[str, TaskStats]] = msgspec.field(default_factory=dict)


class JobFilter(msgspec.Struct, frozen=True, kw_only=True):
    """A page of jobs: newest first, ids strictly below ``before`` (the cursor)."""

    status: Status | None = None
    queue: str | None = None
    task: str | None = None
    before: str | None = None
    limit: int = 50


class Retention(msgspec.Struct, frozen=True, kw_only=True):
    """How long finished jobs (and their results) are kept, in seconds, per final status."""

    succeeded: float = 86_400.0
    failed: float = 7 * 86_400.0
    cancelled: float = 86_400.0

    def for_status(self, status: Status) -> float:
        """The retention of jobs that ended in ``status``."""
        return {
            Status.SUCCEEDED: self.succeeded,
            Status.FAILED: self.failed,
            Status.CANCELLED: self.cancelled,
        }[status]


Counts = Mapping[str, Mapping[Status, int]]
"""Number of jobs per queue, then per status (statuses with no job may be absent)."""


@runtime_checkable
class Consumer(Protocol):
    """A worker's session with a broker: the side of the contract that may keep state.

    A worker opens one with :meth:`Broker.consumer` and uses it from one event loop. Every
    piece of state a broker keeps between a worker's calls lives in its consumer and is
    named in that consumer's class docstring (Redis: the slots it offered producers and the
    jobs they handed it; PostgreSQL: its cached looks at the queues; both: the receipts of
    claims whose reply was lost; SQLite: the claims its caller gave up on while the store's
    thread ran them). :meth:`close` settles all of it: nothing a consumer held
    is left running in the broker under its worker's name after it closes, except jobs whose
    lease the caller still holds.
    """

    @property
    def worker(self) -> str:
        """The worker id claims and heartbeats are made under."""
        ...

    @property
    def queues(self) -> Sequence[str]:
        """The queues it claims from, without repeats."""
        ...

    @property
    def lease(self) -> float:
        """Seconds a claim or a heartbeat holds a job without another heartbeat."""
        ...

    async def claim(self, limit: int, now: float) -> list[JobRecord]:
        """Take up to ``limit`` due jobs of :attr:`queues`.

        Due means status scheduled or queued with ``eta <= now``; paused queues are
        skipped. Order: highest priority first, then oldest eta. Each claimed job becomes
        running with ``attempts + 1``, a fresh ``token`` (greater than any before for that
        job), ``worker``, ``started_at`` = now and ``lease_until = now + lease``. Returned
        in claim order. Jobs handed to this consumer while it waited come first.

        A job whose stored record cannot be decoded (args that are not a JSON array, kwargs
        not an object, malformed JSON) is not returned: it is failed alone, with an error of
        type ``conveyor.DecodeError`` naming the field, and the rest of the claim is.
        """
        ...

    async def wait(self, timeout: float) -> None:
        """Return when work may be due in :attr:`queues`, or after ``timeout`` seconds.

        Jobs in a paused queue never make it return early (a worker would spin); resuming a
        queue may wake it. May return early for no reason; never raises for an outage (the
        next claim reports it).
        """
        ...

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[Lease], now: float
    ) -> HeartbeatReply:
        """Extend to ``now + lease`` the leases still held; record ``worker`` as alive.

        Returns the ids whose lease is lost (token no longer current, or not running) and
        the ids among the held ones that were asked to cancel.
        """
        ...

    async def finish(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Apply a batch of outcomes, each only if its token is current and the job running.

        Returns the ids whose outcome was refused (lease lost to another worker).
        """
        ...

    async def release(self, leases: Sequence[Lease], now: float, delay: float = 0.0) -> None:
        """Hand running jobs back, due at ``now + delay`` (queued, or scheduled when
        ``delay`` is positive), without counting the attempt.

        A lease whose token is no longer current is ignored (fencing). A job that was asked
        to cancel becomes cancelled instead."""
        ...

    async def close(self) -> None:
        """End the session: hand back what it holds that its worker never ran (jobs handed
        to it while it waited), and forget its cached state. Best effort when the broker is
        unreachable: what is left behind is recovered when its lease expires."""
        ...


@runtime_checkable
class Broker(Protocol):
    """The store: stores jobs and applies every change of the lifecycle atomically.

    Stateless between calls (beyond connections and caches of facts that never change, such
    as a job's queue): producers, the CLI and the web app use it directly; a worker opens a
    :class:`Consumer` on it for everything it does between calls. A broker object is used
    from one event loop at a time; :meth:`copy` gives another object on the same store for
    use on another loop (a worker's, say).
    """

    url: str

    @property
    def location(self) -> str:
        """Where the store is, for logs and messages: what a reader needs to tell two stores
        apart (an SQLite file's absolute path, a server's URL without its password)."""
        ...

    def copy(self) -> Broker:
        """A broker on the same store, for use on another event loop or thread."""
        ...

    def consumer(self, worker: str, queues: Sequence[str], lease: float) -> Consumer:
        """A worker's session on this broker (see :class:`Consumer`); it shares the broker's
        connections, so it is used on the broker's loop and closed before the broker."""
        ...

    async def connect(self) -> None:
        """Open connections and create what the store needs; raises BrokerUnavailable."""
        ...

    async def close(self) -> None:
        """Release connections; the object may be connected again."""
        ...

    async def enqueue(self, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        """Insert a batch atomically; return the stored jobs in the same order.

        A job whose ``key`` matches an unfinished job (scheduled, queued or running) is not
        inserted: the existing job is returned in its place. Keys are unique among
        unfinished jobs also under concurrent producers and within one batch.
        """
        ...

    async def recover(self, now: float) -> list[str]:
        """Put running jobs whose lease expired (their worker was lost) back to queued
        without spending the attempt (``attempts`` goes back down by one, as in
        :meth:`Consumer.release`) and count the loss (``losses + 1``); the loss after
        :data:`conveyor.job.MAX_LOSSES` ends the job failed as a poison pill
        (``conveyor.PoisonPill``), and a job asked to cancel ends cancelled. Returns their ids
        (read a job back to learn which way it went)."""
        ...

    async def get(self, job_id: str) -> JobRecord | None:
        """One job, or None. A stored field that does not decode is shown as a placeholder
        carrying its stored text, never raised: a damaged record stays readable."""
        ...

    async def counts(self) -> Counts:
        """Jobs per queue and status."""
        ...

    async def workers(self, now: float, ttl: float) -> list[WorkerInfo]:
        """Workers whose last heartbeat is under ``ttl`` seconds old."""
        ...

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume ``queue``: a paused queue's jobs wait; claim takes none of them.

        The pause is stored in the broker, so every worker honours it at its next claim.
        """
        ...

    async def paused(self) -> list[str]:
        """The names of the paused queues, sorted."""
        ...

    async def cancel(self, job_id: str, now: float) -> JobRecord | None:
        """Cancel a job: a pending one at once, a running one by flagging it for its worker.

        Returns the job after the change, or None when it does not exist. A finished job
        is left as it is.
        """
        ...

    async def retry_failed(self, ids: Sequence[str] | None, queue: str | None, now: float) -> int:
        """Redrive failed jobs (the given ones, or all of ``queue``, or all) to queued with
        their attempts reset. A job whose key an unfinished job now holds stays failed.
        Returns how many moved."""
        ...

    async def purge(self, status: Status, queue: str | None, ids: Sequence[str] | None) -> int:
        """Delete jobs in a finished ``status`` (optionally of one queue, or by id)."""
        ...

    async def prune(self, retention: Retention, now: float, limit: int) -> int:
        """Delete up to ``limit`` finished jobs older than their retention."""
        ...

    # Last in the class: a method named ``list`` would shadow the builtin in the
    # annotations that follow it.
    async def list(self, where: JobFilter) -> list[JobRecord]:
        """A page of jobs matching ``where``, newest (highest id) first; a damaged record is
        listed as :meth:`get` shows it."""
        ...


@runtime_checkable
class TransactionalBroker(Protocol):
    """A broker that can also enqueue inside the caller's own database transaction."""

    def enqueue_in(self, connection: object, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        """Enqueue on the caller's ``connection``, in its current transaction, uncommitted."""
        ...

    async def enqueue_in_async(
        self, connection: object, jobs: Sequence[JobRecord]
    ) -> list[JobRecord]:
        """Async twin of :meth:`enqueue_in`, on the caller's async connection."""
        ...


def decode_json(data: bytes | str | None) -> Any:
    """Decode a stored JSON value; None stays None."""
    if data is None:
        return None
    return msgspec.json.decode(data)
