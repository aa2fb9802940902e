"""The Redis broker: many machines on one Redis (or Redis Cluster), the highest throughput.

Every change of a job is one Lua script (``lua/*.lua``, each run after the helpers of
``lua/lib.lua``), atomic in Redis. All the keys of a queue share the hash tag
``{prefix:queue}`` (the layout is at the top of ``lua/lib.lua``), so a script on one queue
runs on one cluster slot; on a cluster, an operation on several queues runs one script per
queue. This module is the store; a worker's session, with its wait in BLPOP and the jobs
handed to it there, is :class:`~conveyor.brokers.redis_consumer.RedisConsumer`.
``docs/redis.md`` tells the whole design: wake-ups, hand-offs, lost connections, memory.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import msgspec
import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

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
)
from conveyor.brokers.common import ForkGuard, redact
from conveyor.brokers.deadlines import Deadlines
from conveyor.brokers.redis_consumer import RedisConsumer
from conveyor.brokers.redis_wire import (
    DEFAULT_PREFIX,
    ClaimedRow,
    Damaged,
    command,
    decode_worker,
    encode,
    enqueued,
    eval_on,
    gather_all,
    guarded,
    outcome_row,
    pack,
    parse_url,
    script,
    stored_job,
    text,
)
from conveyor.job import FINISHED, MAX_LOSSES, JobRecord, Status

_STATUSES = [s.value for s in Status]
_BATCH = 1000  # jobs per call of the scripts that sweep (recover, purge)
_REMEMBERED = 100_000  # ids whose queue this object remembers
_COMMAND_TIMEOUT = 30.0  # seconds Redis has to answer a command before it counts as lost
# Direct connections for scripts: as many as a worker has calls in flight at once (the two
# halves of a split claim, and a batch of outcomes).
_DIRECT_CONNECTIONS = 3


class RedisBroker:
    """Keeps jobs in Redis (``redis://``, or ``rediss://`` for TLS), shared by any number
    of machines; runs unchanged on Redis Cluster.

    The URL is redis-py's: ``redis://[[user]:password@]host[:port][/db]``, with its options
    (``?socket_timeout=``, ``?ssl_cert_reqs=`` ...) and two of Conveyor's: ``?prefix=``, the
    start of every key name (default ``conveyor``), and ``?cluster=auto|yes|no`` (by default
    a cluster is detected on connect). Operations connect on first use.

    Between calls the object keeps its connections, one timer that bounds every call in
    flight, and a cache of the queue of each job it enqueued, claimed or looked up (a job
    never changes queue, so the cache is never stale; it forgets the oldest past a bound,
    and a forgotten job is searched for again). A worker's state between calls lives in
    its :class:`~conveyor.brokers.redis_consumer.RedisConsumer`.

    Raises:
        ConfigurationError: the URL is not a Redis URL, or has a bad option.
    """

    def __init__(self, url: str = "redis://localhost:6379/0") -> None:
        self.url = url
        self._client_url, self._prefix, self._cluster_setting = parse_url(url)
        parts = urlsplit(self._client_url)
        self._server = f"Redis at {parts.hostname}:{parts.port or 6379}"
        self._cluster = False
        self._client: Any = None
        self._blpop_client: Any = None  # for BLPOP only: a blocked wait holds no pooled link
        # On a single server, a few connections of each client are used directly, one call
        # at a time each, past redis-py's pool, retry and metrics layers (docs/redis.md,
        # "Connections", says what that saves).
        self._direct: list[Any] = []  # every direct connection made for scripts
        self._free_direct: list[Any] = []  # those not in use
        self._blpop_direct: list[Any] = []  # every direct connection made for BLPOP
        self._free_blpop: list[Any] = []  # those not in use (one per session waiting)
        self._deadlines = Deadlines(_COMMAND_TIMEOUT)  # bounds every call (a BLPOP: by its wait)
        self._lock: asyncio.Lock | None = None
        self._fork = ForkGuard()
        # One more each time a forked child leaves its parent's connections: a session made
        # in the parent then drops the parent's hand-offs (see RedisConsumer).
        self._generation = 0
        self._queue_of: dict[str, str] = {}  # job id -> its queue (see the class docstring)
        tag = "{" + self._prefix + "}"
        self._k_queues, self._k_keys = f"{tag}:queues", f"{tag}:keys"
        self._k_workers, self._k_seen = f"{tag}:workers", f"{tag}:seen"

    @property
    def location(self) -> str:
        """The URL without its password."""
        return redact(self.url)

    def copy(self) -> Broker:
        """A new broker on the same Redis, with connections of its own."""
        return RedisBroker(self.url)

    def consumer(self, worker: str, queues: Sequence[str], lease: float) -> Consumer:
        """A worker's session (see :class:`~conveyor.brokers.redis_consumer.RedisConsumer`);
        it shares this object's connections."""
        return RedisConsumer(self, worker, queues, lease)

    @guarded
    async def connect(self) -> None:
        """Connect (detecting a cluster) and check that Redis answers."""
        await self._deadlines.run((await self._conn()).ping())

    async def close(self) -> None:
        """Close the connections; a later operation connects again."""
        if self._fork.forked:
            self._leave_inherited()
            return
        clients = [self._client, self._blpop_client]
        direct = [*self._direct, *self._blpop_direct]
        self._client = self._blpop_client = None
        self._direct, self._free_direct, self._blpop_direct, self._free_blpop = [], [], [], []
        for conn in direct:
            await conn.disconnect()
        for client in clients:
            if client is not None:
                await client.aclose()

    # -- plumbing -----------------------------------------------------------------------

    def _make(self, *, blocking: bool) -> Any:
        options: dict[str, Any] = {
            "socket_connect_timeout": 5.0,
            # No socket timeout: redis-py would send every command from a task of its own
            # (asyncio.wait_for), a turn of the loop late. _deadlines bounds each call instead,
            # a blocked BLPOP with a limit of its own, past the wait's.
            "socket_timeout": None,
            "retry": Retry(NoBackoff(), 0)
            if blocking
            else Retry(ExponentialBackoff(cap=0.5, base=0.02), 3),
        }
        if self._cluster:
            return RedisCluster.from_url(self._client_url, **options)
        return aioredis.Redis.from_url(self._client_url, **options)

    def _leave_inherited(self) -> None:
        """In a forked child: the parent's sockets are not ours to use or close."""
        self._fork.abandon(self._client, self._blpop_client, *self._direct, *self._blpop_direct)
        self._client = self._blpop_client = self._lock = None
        self._direct, self._free_direct, self._blpop_direct, self._free_blpop = [], [], [], []
        self._generation += 1

    async def _conn(self) -> Any:
        if self._fork.forked:
            self._leave_inherited()
        if self._client is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._client is None:
                    if self._cluster_setting is None:
                        probe = aioredis.Redis.from_url(self._client_url, socket_timeout=10.0)
                        try:
                            info = await probe.info("cluster")
                        finally:
                            await probe.aclose()
                        self._cluster = bool(info.get("cluster_enabled"))
                    else:
                        self._cluster = self._cluster_setting
                    client = self._make(blocking=False)
                    if self._cluster:  # learn the slots once, before concurrent commands
                        await client.initialize()
                    self._client = client
        return self._client

    def _tag(self, queue: str) -> str:
        return "{" + self._prefix + ":" + queue + "}"

    def _keys_of(self, tag: str) -> str:
        """The hash of uniqueness keys: one per server, or one per queue on a cluster (where
        a script cannot reach another slot), so keys are unique per queue there."""
        return f"{tag}:keys" if self._cluster else self._k_keys

    async def _eval(self, name: str, keys: Sequence[str], args: Iterable[Any]) -> Any:
        code, client = script(name), await self._conn()
        argv = [*keys, *args]
        conn = self._take_direct(client)
        if conn is not None:
            try:
                return await self._deadlines.run(eval_on(conn, code, len(keys), argv))
            except rexc.ConnectionError:
                pass  # redis-py dropped the connection: the pool's retries take over below
            finally:
                if conn in self._direct:  # not closed meanwhile
                    self._free_direct.append(conn)
        try:
            return await self._deadlines.run(client.evalsha(code.sha, len(keys), *argv))
        except rexc.NoScriptError:  # a restarted server has no script cache
            return await self._deadlines.run(client.eval(code.text, len(keys), *argv))

    def _take_direct(self, client: Any) -> Any:
        """A free direct connection (made if fewer than _DIRECT_CONNECTIONS exist), or None:
        on a cluster, or when all are in use (the call then takes a pooled connection)."""
        if self._free_direct:
            return self._free_direct.pop()
        if self._cluster or len(self._direct) >= _DIRECT_CONNECTIONS:
            return None
        conn = client.connection_pool.make_connection()
        self._direct.append(conn)
        return conn

    async def _spread(
        self, name: str, tags: Sequence[str], args: Sequence[Any]
    ) -> list[tuple[list[str], Any]]:
        """Run a script over several queues: once over all of them on a single server, once
        per queue (concurrently) on a cluster, where a script reaches one slot only.
        Returns (the tags of a call, its answer) pairs."""
        groups = [[t] for t in tags] if self._cluster else ([list(tags)] if tags else [])
        answers = await gather_all([self._eval(name, g, args) for g in groups])
        return list(zip(groups, answers, strict=True))

    async def _queues(self) -> list[str]:
        """Every queue that has had a job (or a pause), sorted."""
        members = await self._deadlines.run((await self._conn()).smembers(self._k_queues))
        return sorted(text(m) for m in members)

    def _remember(self, job_id: str, queue: str) -> None:
        self._make_room(1)
        self._queue_of[job_id] = queue

    def _make_room(self, n: int) -> None:
        """Before remembering ``n`` more ids past the bound, forget the oldest half (or
        ``n``, if more)."""
        if len(self._queue_of) + n > _REMEMBERED:
            for old in list(self._queue_of)[: max(_REMEMBERED // 2, n)]:
                del self._queue_of[old]

    async def _locate(self, ids: Iterable[str]) -> dict[str, str]:
        """The queue of each of ``ids`` that exists (remembered, else searched for)."""
        found = {i: q for i in ids if (q := self._queue_of.get(i)) is not None}
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        if not missing:
            return found
        queue_of = {self._tag(q): q for q in await self._queues()}
        for tags, answer in await self._spread("read", list(queue_of), ["where", *missing]):
            for job_id, n in zip(missing, answer, strict=True):
                if n:
                    found.setdefault(job_id, queue_of[tags[n - 1]])
        for job_id in missing:
            if job_id in found:
                self._remember(job_id, found[job_id])
        return found

    async def _grouped(
        self, name: str, ids: Sequence[str], row: Callable[[int], Any], *head: Any
    ) -> tuple[list[Any], list[str]]:
        """Run script ``name`` once per queue of the jobs ``ids``, with ``head`` and then
        ``row(index)`` of each of its jobs, as one MessagePack array. Returns the answers and
        the unknown ids."""
        where = await self._locate(ids)
        groups: dict[str, list[Any]] = {}
        for i, job_id in enumerate(ids):
            if job_id in where:
                groups.setdefault(where[job_id], []).append(row(i))
        answers = await gather_all(
            [
                self._eval(name, [self._tag(q), self._keys_of(self._tag(q))], [*head, pack(rows)])
                for q, rows in groups.items()
            ]
        )
        return list(answers), [i for i in ids if i not in where]

    async def _by_ids(self, name: str, ids: Sequence[str], queue: str | None, *head: Any) -> int:
        """Run script ``name`` on the jobs ``ids`` (of ``queue`` only, if given); its answers
        are counts, summed."""
        where = await self._locate(ids)
        chosen = [i for i in ids if i in where and queue in (None, where[i])]
        answers, _ = await self._grouped(name, chosen, chosen.__getitem__, *head)
        return sum(answers)

    # -- producing ----------------------------------------------------------------------

    @guarded
    async def enqueue(self, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        """Insert a batch, one script per queue; a job whose key an unfinished job holds
        returns that job instead."""
        if not jobs:
            return []
        await self._conn()
        now = time.time()
        groups: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.queue, []).append(i)
        calls: list[Awaitable[Any]] = []
        for queue, indexes in groups.items():
            tag = self._tag(queue)
            keys = [tag, self._keys_of(tag)]
            if not self._cluster:
                keys.append(self._k_queues)  # registered by the same script
            batch = [enqueued(jobs[i]) for i in indexes]
            calls.append(self._eval("enqueue", keys, [now, queue, pack(batch)]))
        if self._cluster:
            calls.append(self._deadlines.run(self._client.sadd(self._k_queues, *groups)))
        answers = await gather_all(calls)
        stored: list[JobRecord] = list(jobs)
        for indexes, answer in zip(groups.values(), answers, strict=False):
            for i, raw in zip(indexes, answer, strict=True):
                if raw in (b"queued", b"scheduled", b"running"):  # running: handed off
                    stored[i] = msgspec.structs.replace(
                        jobs[i],
                        status=Status(raw.decode()),
                        args=list(jobs[i].args),
                        kwargs=dict(jobs[i].kwargs),
                    )
                else:
                    stored[i] = stored_job(raw, self._prefix)
                self._remember(stored[i].id, stored[i].queue)
        return stored

    # -- a worker's steps, for RedisConsumer (typed: the scripts' answers are checked here) --

    def _claim_script(
        self, tags: Sequence[str], argv: list[Any]
    ) -> Awaitable[tuple[list[ClaimedRow], int]]:
        """Run claim.lua over the queues ``tags`` (see its header for ``argv``): the rows of
        the jobs claimed, and 1 if jobs handed to the worker are left in its inbox. (The
        call itself, typed, not a coroutine around it: a frame less on the hot path.)"""
        return cast("Awaitable[tuple[list[ClaimedRow], int]]", self._eval("claim", tags, argv))

    async def _fail_claimed(
        self, tags: Sequence[str], worker: str, receipt: str, damaged: list[Damaged], now: float
    ) -> list[str]:
        """Fail alone the jobs that a claim (``receipt``) gave ``worker`` and that do not
        decode (damaged.lua); returns their ids."""
        rows = [(token, encode(error).decode()) for token, error in damaged]
        keys = [*tags, self._keys_of(tags[0])]
        return [
            text(i) for i in await self._eval("damaged", keys, [now, worker, receipt, pack(rows)])
        ]

    async def _peek(self, queue: str, now: float, limit: int) -> list[bytes]:
        """The best ``limit`` candidates of ``queue``, flat: -priority, eta, id for each."""
        return cast("list[bytes]", await self._eval("peek", [self._tag(queue)], [now, limit]))

    async def _probe(
        self, tags: Sequence[str], now: float, offer: Sequence[Any] = ()
    ) -> list[tuple[int, float | None]]:
        """Run probe.lua (see its header) over the queues ``tags`` (one only with an
        ``offer``): per call, 1 if a job is due, and the earliest eta of a scheduled one."""
        if offer:
            answers = [await self._eval("probe", tags, [now, *offer])]
        else:
            answers = [a for _, a in await self._spread("probe", tags, [now])]
        return [(int(a[0]), float(a[1]) if len(a) > 1 else None) for a in answers]

    async def _withdraw(self, tag: str, worker: str) -> list[Lease]:
        """Run withdraw.lua: ``worker`` offers no more slots in the queue of ``tag``; the
        leases of the jobs handed to it there and not read."""
        raw = await self._eval("withdraw", [tag], [worker])
        return [Lease(text(i), int(t)) for i, t in raw]

    async def _held(self, tags: Sequence[str], worker: str, receipts: list[str]) -> list[Lease]:
        """Run held.lua: the leases of the jobs that the claims of ``receipts`` (over the
        queues ``tags``) gave ``worker`` and that it still holds; nothing changes."""
        raw = await self._eval("held", tags, [worker, *receipts])
        return [Lease(text(i), int(t)) for i, t in raw]

    async def _blpop(
        self, keys: list[str], seconds: float, limit: float
    ) -> tuple[str, bytes] | None:
        """BLPOP ``keys`` (of one slot) for ``seconds`` (ended by Redis, on its clock tick),
        or until ``limit`` (ended here: TimeoutError, which drops the connection). Returns
        the key and value popped, or None. A direct connection per wait at once."""
        client = self._blpop_client or await self._blpop_on()
        conn = None
        if self._free_blpop:
            conn = self._free_blpop.pop()
        elif not self._cluster:
            conn = client.connection_pool.make_connection()
            self._blpop_direct.append(conn)
        try:
            if conn is not None:
                pop = command(conn, "BLPOP", *keys, seconds)
            else:
                pop = client.blpop(keys, timeout=seconds)
            popped = await self._deadlines.run(pop, limit)
        finally:
            if conn is not None and conn in self._blpop_direct:  # not closed meanwhile
                self._free_blpop.append(conn)
        return None if popped is None else (text(popped[0]), popped[1])

    async def _blpop_any(self, groups: list[list[str]], seconds: float, limit: float) -> None:
        """BLPOP each group of keys (of one slot each) at once; return when one pops (what it
        popped is dropped: markers only), after ``seconds`` or at ``limit``."""
        client = self._blpop_client or await self._blpop_on()
        pops = [asyncio.ensure_future(client.blpop(g, timeout=seconds)) for g in groups]
        try:
            await asyncio.wait(pops, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pop in pops:
                pop.cancel()
            results = await asyncio.gather(*pops, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result

    async def _blpop_on(self) -> Any:
        """The client for BLPOP, made on first use."""
        if self._blpop_client is None:
            client = self._make(blocking=True)
            if self._cluster:
                await client.initialize()
                if self._blpop_client is not None:  # another session's wait made one meanwhile
                    await client.aclose()
                    return self._blpop_client
            self._blpop_client = client
        return self._blpop_client

    async def _extend(
        self, worker: WorkerInfo, leases: Sequence[Lease], lease: float, now: float
    ) -> HeartbeatReply:
        """Record the worker and extend its leases still held (one script per queue); report
        the lost ones and those asked to cancel."""
        await self._conn()
        seen = self._eval(
            "workers",
            [self._k_workers, self._k_seen],
            ["seen", worker.id, encode(worker), worker.seen_at],
        )
        ids = [h.id for h in leases]
        (answers, unknown), _ = await asyncio.gather(
            self._grouped("heartbeat", ids, lambda i: (ids[i], str(leases[i].token)), now + lease),
            seen,
        )
        lost = set(unknown) | {text(i) for a in answers for i in a[0]}
        cancel = {text(i) for a in answers for i in a[1]}
        for job_id in lost:
            self._queue_of.pop(job_id, None)
        return HeartbeatReply(
            lost=[i for i in ids if i in lost], cancel=[i for i in ids if i in cancel]
        )

    async def _record(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Apply a batch of outcomes (one script per queue), each only with a current token;
        return the refused ids."""
        if not outcomes:
            return []
        ids = [o.id for o in outcomes]
        answers, unknown = await self._grouped("finish", ids, lambda i: outcome_row(outcomes[i]))
        queue_of = self._queue_of
        for job_id in ids:
            queue_of.pop(job_id, None)  # its next claim, if any, remembers it again
        if not unknown and not any(answers):  # the usual case: all recorded
            return []
        left = Counter(unknown) + Counter(text(i) for a in answers for i in a)
        refused = []
        for job_id in ids:
            if left[job_id] > 0:
                left[job_id] -= 1
                refused.append(job_id)
        return refused

    async def _release(self, leases: Sequence[Lease], now: float, delay: float = 0.0) -> None:
        """Hand running jobs back, due after ``delay``; the attempt does not count."""
        ids = [h.id for h in leases]
        if ids:
            row = lambda i: (ids[i], str(leases[i].token))  # noqa: E731
            await self._grouped("release", ids, row, now, repr(now + delay))

    @guarded
    async def recover(self, now: float) -> list[str]:
        """Expired leases go back to queued without spending the attempt (a loss, counted);
        the loss after :data:`MAX_LOSSES` fails the job as a poison pill; a job asked to
        cancel ends cancelled. Returns their ids."""
        recovered: list[str] = []
        pending = await self._queues()
        while pending:
            answers = await asyncio.gather(
                *(
                    self._eval("recover", [t, self._keys_of(t)], [now, _BATCH, MAX_LOSSES])
                    for t in map(self._tag, pending)
                )
            )
            recovered += [text(i) for a in answers for i in a]
            pending = [q for q, a in zip(pending, answers, strict=True) if len(a) >= _BATCH]
        return recovered

    # -- reading --------------------------------------------------------------------------

    @guarded
    async def get(self, job_id: str) -> JobRecord | None:
        """One job, or None."""
        await self._conn()
        queue = self._queue_of.get(job_id)
        tags = [self._tag(q) for q in ([queue] if queue is not None else await self._queues())]
        found = [a[0] for _, a in await self._spread("read", tags, ["job", job_id]) if a[0]]
        if not found:
            return None
        job = stored_job(found[0], self._prefix)
        self._remember(job.id, job.queue)
        return job

    @guarded
    async def counts(self) -> Counts:
        """Jobs per queue and status; a scheduled job whose eta has come counts as queued."""
        queues = await self._queues()
        spread = await self._spread("counts", [self._tag(q) for q in queues], [time.time()])
        answers = [numbers for _, answer in spread for numbers in answer]
        result: dict[str, dict[Status, int]] = {}
        for queue, numbers in zip(queues, answers, strict=True):
            per = {Status(s): n for s, n in zip(_STATUSES, numbers, strict=True) if n}
            if per:
                result[queue] = per
        return result

    @guarded
    async def workers(self, now: float, ttl: float) -> builtins.list[WorkerInfo]:
        """Workers whose last heartbeat is under ``ttl`` seconds old."""
        reports = await self._deadlines.run((await self._conn()).hgetall(self._k_workers))
        found = [decode_worker(r) for r in reports.values()]
        return sorted((w for w in found if w.seen_at > now - ttl), key=lambda w: w.id)

    # -- managing -------------------------------------------------------------------------

    @guarded
    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue; resuming wakes its idle workers."""
        await self._conn()
        tag = self._tag(queue)
        flag = "1" if paused else "0"
        if self._cluster:
            await asyncio.gather(
                self._eval("pause", [tag], [flag, queue]),
                self._deadlines.run(self._client.sadd(self._k_queues, queue)),
            )
        else:
            await self._eval("pause", [tag, self._k_queues], [flag, queue])

    @guarded
    async def paused(self) -> builtins.list[str]:
        """The paused queues, sorted."""
        queues = await self._queues()
        flags = await asyncio.gather(
            *(self._deadlines.run(self._client.exists(f"{self._tag(q)}:paused")) for q in queues)
        )
        return [q for q, flag in zip(queues, flags, strict=True) if flag]

    @guarded
    async def cancel(self, job_id: str, now: float) -> JobRecord | None:
        """Cancel a pending job at once, flag a running one for its worker; None if unknown."""
        queue = (await self._locate([job_id])).get(job_id)
        if queue is None:
            return None
        tag = self._tag(queue)
        raw = await self._eval("cancel", [tag, self._keys_of(tag)], [job_id, now])
        return stored_job(raw, self._prefix) if raw else None

    @guarded
    async def retry_failed(self, ids: Sequence[str] | None, queue: str | None, now: float) -> int:
        """Redrive failed jobs to queued with attempts reset; a job whose key an unfinished
        job holds stays failed."""
        if ids is not None:
            return await self._by_ids("retry_failed", ids, queue, now)
        queues = [queue] if queue is not None else await self._queues()
        answers = await asyncio.gather(
            *(
                self._eval("retry_failed", [t, self._keys_of(t)], [now])
                for t in map(self._tag, queues)
            )
        )
        return sum(answers)

    @guarded
    async def purge(self, status: Status, queue: str | None, ids: Sequence[str] | None) -> int:
        """Delete jobs in a finished ``status`` (of one queue, or by id).

        Raises:
            ValueError: ``status`` is not a finished one.
        """
        if status not in FINISHED:
            raise ValueError(f"purge takes a finished status, not {status.value!r}")
        if ids is not None:
            return await self._by_ids("purge", ids, queue, status, "ids")
        deleted = 0
        for q in [queue] if queue is not None else await self._queues():
            while (n := await self._eval("purge", [self._tag(q)], [status, "some", _BATCH])) > 0:
                deleted += n
        return deleted

    @guarded
    async def prune(self, retention: Retention, now: float, limit: int) -> int:
        """Delete up to ``limit`` finished jobs older than their retention, oldest first in
        each queue (and the records of workers gone for longer than every retention)."""
        left = limit
        cutoffs: list[Any] = []
        for status in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED):
            cutoffs += [status.value, now - retention.for_status(status)]
        for queue in await self._queues():
            if left <= 0:
                break
            left -= await self._eval("prune", [self._tag(queue)], [left, *cutoffs])
        oldest = now - max(retention.succeeded, retention.failed, retention.cancelled)
        await self._eval("workers", [self._k_workers, self._k_seen], ["forget", oldest])
        return limit - left

    @guarded
    async def list(self, where: JobFilter) -> builtins.list[JobRecord]:
        """A page of jobs, newest (highest id) first, below the ``before`` cursor."""
        limit = max(where.limit, 0)
        queues = [where.queue] if where.queue is not None else await self._queues()
        if limit == 0 or not queues:
            return []
        status = "" if where.status is None else where.status.value
        task = "" if where.task is None else encode(where.task).decode()
        pages = await asyncio.gather(
            *(self._page(q, status, where.before, limit, task) for q in queues)
        )
        return sorted((j for p in pages for j in p), key=lambda j: j.id, reverse=True)[:limit]

    async def _page(
        self, queue: str, status: str, before: str | None, limit: int, task: str
    ) -> builtins.list[JobRecord]:
        jobs: builtins.list[JobRecord] = []
        while len(jobs) < limit:
            answer = await self._eval(
                "page", [self._tag(queue)], [before or "", limit - len(jobs), task, status]
            )
            jobs += [stored_job(entry, self._prefix) for entry in answer[0]]
            if len(answer) < 2:  # no cursor: the page is complete
                break
            before = text(answer[1])
        return jobs


__all__ = ["DEFAULT_PREFIX", "RedisBroker"]
