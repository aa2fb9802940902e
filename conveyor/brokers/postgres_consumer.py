"""A worker's session on the PostgreSQL broker: claims, waits, heartbeats, outcomes and
releases, each one SQL statement on the broker's pool.

The session keeps what one worker learns between its calls (see :class:`PostgresConsumer`);
the broker object keeps what every session on it shares (see
:class:`~conveyor.brokers.postgres.PostgresBroker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import msgspec

from conveyor.brokers.base import HeartbeatReply, Lease, Outcome, WorkerInfo
from conveyor.brokers.common import first_outcomes, heartbeat_reply, refused_ids
from conveyor.brokers.postgres_connection import Listener
from conveyor.brokers.postgres_rows import claimed, encode
from conveyor.errors import BrokerUnavailable
from conveyor.job import PENDING, ErrorInfo, JobRecord, Status


class Statements(Protocol):
    """What a session needs of its broker object (``PostgresBroker`` is one): its named
    statements on the shared pool, and the shared listener."""

    @property
    def listener(self) -> Listener:
        """The broker object's one LISTEN connection, shared by its sessions."""
        ...

    async def rows(self, name: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of the named statement (none for one that returns nothing)."""
        ...

    async def count(self, name: str, params: Mapping[str, Any]) -> int:
        """The number of rows the named statement changed."""
        ...

    async def listen(self) -> None:
        """Return once the listener listens."""
        ...


log = logging.getLogger("conveyor.brokers.postgres")

_encode = msgspec.json.Encoder().encode


class _CachedProbe(NamedTuple):
    """An answer to the question a waiting session asks (is a job due in its queues, and
    when is the next scheduled eta?), with the listener's :meth:`mark
    <conveyor.brokers.postgres_connection.Listener.mark>` of when it was true.

    It holds until the listener hears of one of the session's queues or listens anew: a
    job made due later is notified at its commit. ``next_eta`` is None when unknown.
    """

    listens: int
    heard: int
    next_eta: float | None


class _OutcomeRow(msgspec.Struct):
    """One outcome as the ``finish`` statement reads it."""

    id: str
    token: int
    status: Status
    finished_at: float
    result: msgspec.Raw | None
    error: ErrorInfo | None
    eta: float | None


def _outcome_rows(outcomes: Sequence[Outcome]) -> list[_OutcomeRow]:
    rows: list[_OutcomeRow] = []
    for out in outcomes:
        status, result, eta = out.status, None, None
        if out.status in PENDING:  # a retry: scheduled until its eta, queued once it has come
            eta = out.finished_at if out.eta is None else out.eta
            status = Status.SCHEDULED if eta > out.finished_at else Status.QUEUED
        elif out.result is not None:
            result = msgspec.Raw(out.result)
        rows.append(_OutcomeRow(out.id, out.token, status, out.finished_at, result, out.error, eta))
    return rows


class PostgresConsumer:
    """A worker's session on a :class:`~conveyor.brokers.postgres.PostgresBroker`.

    Each call is one statement on the broker's pool. What the session keeps between calls:

    - ``_claim_answer``: "nothing is due", as known from its last claim when that claim took
      less than it asked for while the listener listened. Until a notification for one of
      its queues, :meth:`wait` need not ask again.
    - ``_probe_answer``: the answer of its last probe query (is a job due, the next eta),
      reused by :meth:`wait` under the same condition, and while that eta has not come.
    - ``_lost_claims``: the receipts (worker, time) of its claims whose answer never came
      (the connection was lost, or the caller was cancelled while the statement ran). Such
      a claim may have committed; its jobs go back, the attempt uncounted, at the next
      claim or at :meth:`close`, rather than waiting for their lease to expire. A receipt
      also names the damaged jobs the claim found, if any: those are failed instead.

    These are the session's own: one worker's claim says nothing about what another
    worker's queues hold. The listener and its counts, which every session reads, belong
    to the broker object.
    """

    __slots__ = (
        "_claim_answer",
        "_lost_claims",
        "_probe_answer",
        "_queue_set",
        "_store",
        "lease",
        "queues",
        "worker",
    )

    def __init__(self, store: Statements, worker: str, queues: Sequence[str], lease: float) -> None:
        self._store = store
        self.worker = worker
        self.queues = list(dict.fromkeys(queues))
        self.lease = lease
        self._queue_set = frozenset(self.queues)
        self._claim_answer: _CachedProbe | None = None
        self._probe_answer: _CachedProbe | None = None
        self._lost_claims: list[dict[str, Any]] = []

    async def claim(self, limit: int, now: float) -> list[JobRecord]:
        """Take up to ``limit`` due jobs of the unpaused queues in one statement, highest
        priority then oldest eta first (after undoing the claims whose answer was lost)."""
        if not self.queues or limit <= 0:
            return []
        store = self._store
        if self._lost_claims:
            await self._undo_lost_claims()
        params = {
            "queues": self.queues,
            "worker": self.worker,
            "limit": limit,
            "now": now,
            "lease_until": now + self.lease,
        }
        mark = store.listener.mark()
        self._claim_answer = None
        receipt: dict[str, Any] = {"worker": self.worker, "started_at": now}
        try:
            [(text,)] = await store.rows("claim", params)
            # Decoded here, so that jobs this call does not return are undone with the rest.
            jobs, damaged = claimed(text)
            if damaged:
                # Should this answer be lost too, the receipt's undo fails these rather than
                # putting them back, to be claimed and found damaged again and again.
                receipt["damaged"] = damaged
                await store.rows("fail_damaged", {"damaged": encode(damaged), "now": now})
        except BaseException:
            # The claim may have committed with its answer lost. On a cancel, psycopg has
            # waited for the statement to end (or be cancelled), so the receipt is not
            # undone before the claim it stands for.
            self._lost_claims.append(receipt)
            raise
        if mark is not None and len(jobs) + len(damaged) < limit:
            self._claim_answer = _CachedProbe(*mark, None)
        return jobs

    async def _undo_lost_claims(self) -> None:
        lost, self._lost_claims = self._lost_claims, []
        damaged = [job for claim in lost for job in claim.get("damaged", ())]
        try:
            if damaged:  # failed first, so that the unclaim finds them no longer running
                now = max(claim["started_at"] for claim in lost)
                await self._store.rows("fail_damaged", {"damaged": encode(damaged), "now": now})
            await self._store.count("unclaim", {"claims": encode(lost)})
        except BaseException:
            self._lost_claims[:0] = lost
            raise

    async def wait(self, timeout: float) -> None:
        """Return when a job may be due in the unpaused queues, or after ``timeout``.

        Wakes on a NOTIFY from any producer or worker, at the eta of the next scheduled job,
        and at once when a job is due already. While the server is unreachable it just
        sleeps ``timeout``: the caller's next claim reports the outage.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        listener = self._store.listener
        # Registered before the look at the queues, so no notification after it is missed.
        waiter = listener.waiter(self._queue_set)
        try:
            try:
                await self._store.listen()
                ready, next_eta = await self._due_and_next_eta()
            except BrokerUnavailable:
                ready, next_eta = False, None
            if ready or waiter.event.is_set():
                return
            if next_eta is not None:
                deadline = min(deadline, loop.time() + next_eta - time.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(max(deadline, loop.time())):
                    await waiter.event.wait()
        finally:
            listener.discard(waiter)

    async def _due_and_next_eta(self) -> tuple[bool, float | None]:
        """Whether a job is due in the queues, and the next eta of their scheduled jobs.

        A probe query, unless a cached answer still holds (see the class docstring): after
        a claim that found nothing left, a notification since means work came, and none
        means nothing is due.
        """
        listener, queues = self._store.listener, self._queue_set
        claimed, heard = self._claim_answer, None
        if claimed is not None:
            heard = listener.heard_since(claimed.listens, claimed.heard, queues)
        if heard:
            return True, None
        probed = self._probe_answer
        if heard is False and probed is not None:
            fresh = listener.heard_since(probed.listens, probed.heard, queues) is False
            if fresh and (probed.next_eta is None or probed.next_eta > time.time()):
                return False, probed.next_eta
        mark = listener.mark()
        [(ready, next_eta)] = await self._store.rows("probe", {"queues": self.queues})
        if mark is not None:
            self._probe_answer = _CachedProbe(*mark, next_eta)
        return bool(ready), next_eta

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[Lease], now: float
    ) -> HeartbeatReply:
        """Record the worker and extend its leases still held, in one statement; report the
        lost ones and those asked to cancel."""
        params = {
            "id": worker.id,
            "info": _encode(worker).decode(),
            "seen_at": worker.seen_at,
            "leases": _encode(leases).decode(),
            "lease_until": now + self.lease,
        }
        rows = await self._store.rows("heartbeat", params)
        return heartbeat_reply(leases, {(job_id, token): cancel for job_id, token, cancel in rows})

    async def finish(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Apply a batch of outcomes in one statement, each only with a current token;
        return the refused ids."""
        if not outcomes:
            return []
        batch = _encode(_outcome_rows(first_outcomes(outcomes))).decode()
        applied = await self._store.rows("finish", {"outcomes": batch})
        return refused_ids(outcomes, applied)

    async def release(self, leases: Sequence[Lease], now: float, delay: float = 0.0) -> None:
        """Hand running jobs back, due after ``delay``; the attempt does not count."""
        if leases:
            params = {"leases": _encode(leases).decode(), "now": now, "eta": now + delay}
            await self._store.rows("release", params)

    async def close(self) -> None:
        """Undo the claims whose answer was lost, if the server can be reached (otherwise
        their jobs come back when their lease expires), and forget the cached answers."""
        self._claim_answer = self._probe_answer = None
        if not self._lost_claims:
            return
        try:
            await self._undo_lost_claims()
        except Exception as exc:
            log.warning(
                "worker %s: could not hand back the jobs of %d claim(s) whose answer was "
                "lost (%s: %s); they go back when their lease expires",
                self.worker, len(self._lost_claims), type(exc).__name__, exc,
            )  # fmt: skip
            self._lost_claims.clear()
