"""The Redis broker: many machines on one Redis (or Redis Cluster), the highest throughput.

Every change of a job is one Lua script (``lua/*.lua``, each run after the helpers of
``lua/lib.lua``), atomic in Redis. All the keys of a queue share the hash tag
``{prefix:queue}`` (the layout is at the top of ``lua/lib.lua``), so a script on one queue
runs on one cluster slot; on a cluster, an operation on several queues runs one script per
queue. Idle workers block in BLPOP on their queues' signal lists, on a connection of their
own; a worker idle on one queue also blocks on an inbox, where an enqueue hands it a job
already claimed for it. ``docs/redis.md`` tells the whole design: wake-ups, hand-offs, lost
connections, memory.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from importlib import resources
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
from conveyor.brokers.deadlines import Deadlines
from conveyor.brokers.session import StatelessConsumer
from conveyor.errors import BrokerUnavailable, ConfigurationError
from conveyor.job import FINISHED, ErrorInfo, JobRecord, Status

log = logging.getLogger("conveyor.redis")

_pack_command: Any = None  # the C parser of the redis extra packs commands 5x faster
with contextlib.suppress(ImportError):  # redis-py works without it
    from hiredis import pack_command as _pack_command

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_PREFIX = "conveyor"
"""The start of every key name; ``?prefix=`` in the URL changes it (one namespace per app)."""

_STATUSES = [s.value for s in Status]
_BATCH = 1000  # jobs per call of the scripts that sweep (recover, purge)
_REMEMBERED = 100_000  # ids whose queue this object remembers
_COMMAND_TIMEOUT = 30.0  # seconds Redis has to answer a command before it counts as lost
_LANES = 3  # direct connections for scripts (a worker's claim halves and outcomes at once)
# Errors that Redis answers while it cannot serve (starting, failing over, out of memory):
# the worker retries them like a lost connection.
_OUTAGE = {"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "OOM"}

_STATUS = {s.value.encode(): s for s in Status}
_encode = msgspec.json.Encoder().encode
_decode_any = msgspec.json.Decoder().decode
_decode_error = msgspec.json.Decoder(ErrorInfo).decode
_decode_worker = msgspec.json.Decoder(WorkerInfo).decode


class _Idle(msgspec.Struct):
    """What the last claim left free: a worker of one queue may be handed that many jobs."""

    queue: str
    worker: str
    slots: int
    lease: float


class _Payload(msgspec.Struct):
    """The fields of a job that never change, stored as one JSON object."""

    id: str
    task: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    max_attempts: int
    timeout: float | None
    key: str | None
    created_at: float


# The immutable fields are a subset of JobRecord's: they decode straight into one.
_decode_record = msgspec.json.Decoder(JobRecord).decode
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder().decode


def _enqueued(job: JobRecord) -> tuple[Any, ...]:
    """A job as enqueue.lua reads it; numbers as text, so that Redis keeps them exactly."""
    payload = _Payload(
        job.id, job.task, job.queue, job.args, job.kwargs, job.priority,
        job.max_attempts, job.timeout, job.key, job.created_at,
    )  # fmt: skip
    return (
        job.id, _encode(payload).decode(), str(job.priority), repr(job.eta), job.key,
        str(job.attempts), str(job.token), str(job.max_attempts),
    )  # fmt: skip


def _outcome(out: Outcome) -> tuple[str, ...]:
    """An outcome as finish.lua reads it; '' for None."""
    return (
        out.id,
        str(out.token),
        out.status.value,
        repr(out.finished_at),
        "" if out.result is None else out.result.decode(),
        "" if out.error is None else _encode(out.error).decode(),
        "" if out.eta is None else repr(out.eta),
    )


def _handed(batch: bytes) -> list[JobRecord]:
    """The jobs enqueue.lua handed to an idle worker: {id, payload, eta, attempts, token}
    each (the claim fields are set by claim())."""
    return [
        _record(payload, attempts=attempts, eta=float(eta), token=token)
        for _id, payload, eta, attempts, token in _unpack(batch)
    ]


def _opt(value: bytes | None) -> float | None:
    return float(value) if value else None


def _record(payload: bytes, **state: Any) -> JobRecord:
    """A job from its immutable fields (JSON) and its state."""
    job = _decode_record(payload)
    for name, value in state.items():
        setattr(job, name, value)
    return job


def _job(entry: Sequence[Any]) -> JobRecord:
    """A job as the scripts return it: [HGETALL of its state, its immutable fields] (see
    lua/lib.lua); an empty string is None."""
    flat, payload = entry
    h = dict(zip(flat[::2], flat[1::2], strict=True))
    result, error, worker = h.get(b"r"), h.get(b"x"), h.get(b"w")
    return _record(
        payload,
        status=_STATUS[h[b"s"]],
        attempts=int(h[b"a"]),
        eta=float(h[b"e"]),
        started_at=_opt(h.get(b"b")),
        finished_at=_opt(h.get(b"f")),
        result=_decode_any(result) if result else None,
        error=_decode_error(error) if error else None,
        worker=worker.decode() if worker else None,
        token=int(h[b"t"]),
        lease_until=_opt(h.get(b"l")),
        cancel_requested=h.get(b"c") == b"1",
    )


class _Script:
    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


@functools.cache
def _script(name: str) -> _Script:
    folder = resources.files(__package__ or "conveyor.brokers").joinpath("lua")
    lib = folder.joinpath("lib.lua").read_text(encoding="utf-8")
    return _Script(lib + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse_url(url: str) -> tuple[str, str, bool | None]:
    """The URL for redis-py (without our options), the key prefix and the cluster setting."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("redis", "rediss"):
        raise ConfigurationError(f"not a Redis URL: {url!r} (expected redis:// or rediss://)")
    prefix, cluster, rest = DEFAULT_PREFIX, None, []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "prefix":
            if not value:
                raise ConfigurationError(f"empty prefix in Redis URL {url!r}")
            prefix = value
        elif name == "cluster":
            choices = {"auto": None, "yes": True, "true": True, "no": False, "false": False}
            if value.lower() not in choices:
                raise ConfigurationError(f"cluster= in {url!r} must be auto, yes or no")
            cluster = choices[value.lower()]
        else:
            rest.append((name, value))  # redis-py's own, e.g. socket_timeout, ssl_cert_reqs
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix, cluster


def _outage(exc: BaseException) -> bool:
    if isinstance(exc, rexc.ReadOnlyError | rexc.OutOfMemoryError | rexc.TryAgainError):
        return True
    if isinstance(exc, rexc.ClusterError):
        return True
    if isinstance(exc, rexc.ResponseError):
        return str(exc).split(" ", 1)[0] in _OUTAGE
    return isinstance(exc, rexc.RedisError | rexc.RedisClusterException | OSError)


async def _command(conn: Any, *args: Any) -> Any:
    """Send one command on a redis-py connection and read its reply. On any error or cancel
    redis-py drops the connection, so a late reply is never read as the next command's."""
    if _pack_command is None:
        await conn.send_command(*args)
    else:
        await conn.send_packed_command(_pack_command(args))
    return await conn.read_response()


async def _eval_on(conn: Any, script: _Script, n_keys: int, argv: list[Any]) -> Any:
    """Run ``script`` on one redis-py connection (see :func:`_command`)."""
    try:
        return await _command(conn, "EVALSHA", script.sha, n_keys, *argv)
    except rexc.NoScriptError:  # a restarted server has no script cache
        return await _command(conn, "EVAL", script.text, n_keys, *argv)


async def _all(calls: Sequence[Awaitable[T]]) -> list[T]:
    """``asyncio.gather``, except that one call (the usual case: one queue) is awaited as it
    is: gather would wrap it in a task, a turn of the loop before it is even sent."""
    if len(calls) == 1:
        return [await calls[0]]
    return list(await asyncio.gather(*calls))


def _guarded(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn a lost connection (or a Redis that cannot serve) into BrokerUnavailable."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (rexc.RedisError, rexc.RedisClusterException, OSError) as exc:
            if not _outage(exc):
                raise
            where = getattr(args[0], "_where_text", "Redis")
            raise BrokerUnavailable(f"{where}: {type(exc).__name__}: {exc}") from exc

    return call


class RedisBroker:
    """Keeps jobs in Redis (``redis://``, or ``rediss://`` for TLS), shared by any number
    of machines; runs unchanged on Redis Cluster.

    The URL is redis-py's: ``redis://[[user]:password@]host[:port][/db]``, with its options
    (``?socket_timeout=``, ``?ssl_cert_reqs=`` ...) and two of Conveyor's: ``?prefix=``, the
    start of every key name (default ``conveyor``), and ``?cluster=auto|yes|no`` (by default
    a cluster is detected on connect). Operations connect on first use.

    Raises:
        ConfigurationError: the URL is not a Redis URL, or has a bad option.
    """

    def __init__(self, url: str = "redis://localhost:6379/0") -> None:
        self.url = url
        self._client_url, self._prefix, self._cluster_setting = _parse_url(url)
        parts = urlsplit(self._client_url)
        self._where_text = f"Redis at {parts.hostname}:{parts.port or 6379}"
        self._cluster = False
        self._client: Any = None
        self._blocker: Any = None  # for BLPOP only, so that a blocked wait holds no pooled link
        # On a single server, a few connections of each client are used directly, one call
        # at a time each, past redis-py's pool, retry and metrics layers: a quarter off a
        # round trip, and redis-py's packing and pool bookkeeping off the worker's CPU.
        self._deadlines = Deadlines(_COMMAND_TIMEOUT)  # bounds every call (a BLPOP: by its wait)
        self._lanes: list[Any] = []  # every lane made
        self._free_lanes: list[Any] = []  # those not in use
        self._block_lane: Any = None
        self._lock: asyncio.Lock | None = None
        self._pid = os.getpid()
        self._where: dict[str, str] = {}  # job id -> its queue
        self._receipts: dict[tuple[str, ...], list[str]] = {}  # claims whose reply was lost
        self._idle: _Idle | None = None  # set by claim(), for wait() to offer the free slots
        self._stash: list[JobRecord] = []  # jobs handed over in a wait, for the next claim
        # The queue where this object may have offered slots, or may have jobs in its inbox
        # (a claim then has to look, a few Redis commands that it otherwise saves).
        self._offered: str | None = None
        tag = "{" + self._prefix + "}"
        self._k_queues, self._k_keys = f"{tag}:queues", f"{tag}:keys"
        self._k_workers, self._k_seen = f"{tag}:workers", f"{tag}:seen"

    def copy(self) -> Broker:
        """A new broker on the same Redis, with connections of its own."""
        return RedisBroker(self.url)

    def consumer(self, worker: str, queues: Sequence[str], lease: float) -> Consumer:
        """A worker's session: each of its calls is one atomic step of this store."""
        return StatelessConsumer(self, worker, queues, lease)

    @_guarded
    async def connect(self) -> None:
        """Connect (detecting a cluster) and check that Redis answers."""
        await self._deadlines.run((await self._conn()).ping())

    async def close(self) -> None:
        """Close the connections; a later operation connects again. Jobs handed to this
        worker and not yet claimed go back to their queue."""
        if self._idle is not None or self._stash:
            await self._withdraw()
        clients = [self._client, self._blocker]
        lanes = [*self._lanes, self._block_lane]
        self._client = self._blocker = self._block_lane = None
        self._lanes, self._free_lanes = [], []
        if self._pid != os.getpid():
            return
        for lane in lanes:
            if lane is not None:
                await lane.disconnect()
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

    async def _conn(self) -> Any:
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
            self._client = self._blocker = self._lock = None
            self._lanes, self._free_lanes, self._block_lane = [], [], None
            self._idle, self._stash, self._offered = None, [], None  # the parent's, not ours
            self._pid = os.getpid()
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
        script, client = _script(name), await self._conn()
        argv = [*keys, *args]
        lane = self._take_lane(client)
        if lane is not None:
            try:
                return await self._deadlines.run(_eval_on(lane, script, len(keys), argv))
            except rexc.ConnectionError:
                pass  # redis-py dropped the connection: the pool's retries take over below
            finally:
                if lane in self._lanes:  # not closed meanwhile
                    self._free_lanes.append(lane)
        try:
            return await self._deadlines.run(client.evalsha(script.sha, len(keys), *argv))
        except rexc.NoScriptError:  # a restarted server has no script cache
            return await self._deadlines.run(client.eval(script.text, len(keys), *argv))

    def _take_lane(self, client: Any) -> Any:
        """A free lane (made if fewer than _LANES exist), or None: on a cluster, or when all
        are in use (the call then takes a pooled connection)."""
        if self._free_lanes:
            return self._free_lanes.pop()
        if self._cluster or len(self._lanes) >= _LANES:
            return None
        lane = client.connection_pool.make_connection()
        self._lanes.append(lane)
        return lane

    async def _spread(
        self, name: str, tags: Sequence[str], args: Sequence[Any]
    ) -> list[tuple[list[str], Any]]:
        """Run a script over several queues: once over all of them on a single server, once
        per queue (concurrently) on a cluster, where a script reaches one slot only.
        Returns (the tags of a call, its answer) pairs."""
        groups = [[t] for t in tags] if self._cluster else ([list(tags)] if tags else [])
        answers = await _all([self._eval(name, g, args) for g in groups])
        return list(zip(groups, answers, strict=True))

    async def _queues(self) -> list[str]:
        """Every queue that has had a job (or a pause), sorted."""
        members = await self._deadlines.run((await self._conn()).smembers(self._k_queues))
        return sorted(_text(m) for m in members)

    def _remember(self, job_id: str, queue: str) -> None:
        self._make_room(1)
        self._where[job_id] = queue

    def _make_room(self, n: int) -> None:
        """Before remembering ``n`` more ids past the bound, forget the oldest half (or
        ``n``, if more)."""
        if len(self._where) + n > _REMEMBERED:
            for old in list(self._where)[: max(_REMEMBERED // 2, n)]:
                del self._where[old]

    async def _locate(self, ids: Iterable[str]) -> dict[str, str]:
        """The queue of each of ``ids`` that exists (remembered, else searched for)."""
        found = {i: q for i in ids if (q := self._where.get(i)) is not None}
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
        answers = await _all(
            [
                self._eval(name, [self._tag(q), self._keys_of(self._tag(q))], [*head, _pack(rows)])
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

    @_guarded
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
            batch = [_enqueued(jobs[i]) for i in indexes]
            calls.append(self._eval("enqueue", keys, [now, queue, _pack(batch)]))
        if self._cluster:
            calls.append(self._deadlines.run(self._client.sadd(self._k_queues, *groups)))
        answers = await _all(calls)
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
                    stored[i] = _job(raw)
                self._remember(stored[i].id, stored[i].queue)
        return stored

    # -- the worker's operations ----------------------------------------------------------

    @_guarded
    async def claim_for(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float
    ) -> list[JobRecord]:
        """Take up to ``limit`` due jobs, highest priority then oldest eta first, after making
        the due scheduled jobs queued; paused queues are skipped.

        First come the jobs handed to this worker during its last wait, with no round trip.
        Claims may run concurrently (a worker splits a big one); the slots offered at the
        next wait are those the last claim to end left free, which never over-counts.
        """
        names = list(dict.fromkeys(queues))
        if not names or limit <= 0:
            return []
        if self._stash:  # handed over during the last wait: already claimed, no round trip
            jobs, self._stash = self._stash[:limit], self._stash[limit:]
            self._idle = _Idle(names[0], worker, limit - len(jobs), lease)
            return self._claimed(jobs, worker, now, lease)
        await self._conn()
        args: list[Any] = [now, now + lease, worker]
        if not self._cluster or len(names) == 1:
            jobs = await self._claim_from(names, [*args, limit])
        else:
            # One script cannot reach several slots: look at each queue's best candidates,
            # then claim from each queue its share of the best ``limit``.
            peeks = await asyncio.gather(
                *(self._eval("peek", [self._tag(q)], [now, limit]) for q in names)
            )
            best = sorted(
                (float(flat[i]), float(flat[i + 1]), flat[i + 2], q)
                for q, flat in zip(names, peeks, strict=True)
                for i in range(0, len(flat), 3)
            )[:limit]
            shares = Counter(best_q for *_, best_q in best)
            parts = await asyncio.gather(
                *(self._claim_from([q], [*args, n]) for q, n in shares.items())
            )
            jobs = sorted((j for p in parts for j in p), key=lambda j: (-j.priority, j.eta, j.id))
        # A worker of one queue with slots left may be handed jobs while it waits.
        self._idle = _Idle(names[0], worker, limit - len(jobs), lease) if len(names) == 1 else None
        return self._claimed(jobs, worker, now, lease)

    def _claimed(
        self, jobs: list[JobRecord], worker: str, now: float, lease: float
    ) -> list[JobRecord]:
        self._make_room(len(jobs))
        where, until = self._where, now + lease
        for job in jobs:
            job.status, job.worker = Status.RUNNING, worker
            job.started_at, job.lease_until = now, until
            where[job.id] = job.queue
        return jobs

    async def _claim_from(self, queues: list[str], args: list[Any]) -> list[JobRecord]:
        tags = tuple(self._tag(q) for q in queues)
        receipt, lost = os.urandom(8).hex(), self._receipts.pop(tags, [])
        look = self._offered is not None and queues == [self._offered]
        if look:
            self._offered = None  # unless jobs are left in the inbox (see below)
        argv = [*args, receipt, "1" if look else "", *lost]
        try:
            raw, left = await self._eval("claim", tags, argv)
        except BaseException:
            # The claim may have run with its reply lost: the next claim hands its jobs over.
            self._receipts[tags] = [*lost, receipt][-8:]
            if look:
                self._offered = queues[0]
            raise
        if left:
            self._offered = queues[0]
        jobs = []
        for payload, eta, error, attempts, token in raw:  # the hot path: no _record()
            job = _decode_record(payload)
            job.eta, job.attempts, job.token = float(eta), attempts, token
            if error:
                job.error = _decode_error(error)
            jobs.append(job)
        return jobs

    async def _withdraw(self) -> None:
        """Stop being handed jobs, and hand back those handed over but not claimed. Best
        effort: if Redis cannot be reached, their leases expire and they are recovered."""
        idle, stash = self._idle, self._stash
        self._idle, self._stash = None, []
        if idle is None and not stash:
            return
        leases = [Lease(j.id, j.token) for j in stash]
        try:
            if idle is not None:
                raw = await self._eval("withdraw", [self._tag(idle.queue)], [idle.worker])
                leases += [Lease(_text(i), int(t)) for i, t in raw]
                if self._offered == idle.queue:
                    self._offered = None
            await self.hand_back(leases, time.time())
        except (rexc.RedisError, rexc.RedisClusterException, OSError, BrokerUnavailable) as exc:
            log.warning("could not hand back %d jobs handed to this worker: %s", len(leases), exc)

    async def wait_for(self, queues: Sequence[str], timeout: float) -> None:
        """Return when a job may be due in ``queues`` (an enqueue, a retry, a resume, a
        scheduled job's eta), or after ``timeout`` seconds. May return early; on a lost
        connection it returns after a short pause (the next claim reports the outage)."""
        names = list(dict.fromkeys(queues))
        started = time.monotonic()
        if not names:
            await asyncio.sleep(timeout)
            return
        idle = self._idle
        if idle is not None and (names != [idle.queue] or idle.slots <= 0):
            idle = None
        try:
            await self._conn()
            tags = [self._tag(q) for q in names]
            now = time.time()
            if idle is None:
                answers = [a for _, a in await self._spread("probe", tags, [now])]
                sigs = [f"{t}:sig" for t in tags]
                groups = [[k] for k in sigs] if self._cluster else [sigs]
                inbox = ""
            else:
                # The slots it offers outlast this wait a little: its end claims anyway.
                offer = [idle.worker, idle.slots, idle.lease, now + timeout + 1.0]
                self._offered = idle.queue
                answers = [await self._eval("probe", tags, [now, *offer])]
                inbox = f"{tags[0]}:in:{idle.worker}"
                groups = [[inbox, f"{tags[0]}:sig"]]  # one slot: a cluster takes it as one
            if any(a[0] for a in answers):
                return
            etas = [float(a[1]) for a in answers if len(a) > 1]
            until_eta = min(etas) - now if etas else float("inf")
            try:
                await self._block(groups, min(timeout, until_eta), until_eta, inbox)
            except asyncio.CancelledError:
                await self._withdraw()  # it stops waiting: no more jobs may be handed to it
                raise
        except (rexc.RedisError, rexc.RedisClusterException, OSError) as exc:
            if not _outage(exc):
                raise
            await asyncio.sleep(max(0.0, min(timeout, 0.5) - (time.monotonic() - started)))

    async def _block(
        self, groups: list[list[str]], seconds: float, until_eta: float, inbox: str
    ) -> None:
        """BLPOP on each group of keys (of one slot) for ``seconds``; jobs popped from
        ``inbox`` (in the only group, if any) go to the stash. Ends here exactly at an eta
        (which drops the connection); Redis ends the plain timeouts, keeping it."""
        if seconds <= 0:
            return
        if self._blocker is None:
            blocker = self._make(blocking=True)
            if self._cluster:
                await blocker.initialize()
            self._blocker = blocker
        exact = until_eta <= seconds
        server = seconds + 1.0 if exact else seconds
        local = seconds if exact else seconds + 5.0
        if len(groups) == 1:  # in this task: a task of its own would cost a turn of the loop
            if self._block_lane is None and not self._cluster:
                self._block_lane = self._blocker.connection_pool.make_connection()
            if self._block_lane is not None:
                pop = _command(self._block_lane, "BLPOP", *groups[0], server)
            else:
                pop = self._blocker.blpop(groups[0], timeout=server)
            try:
                popped = await self._deadlines.run(pop, local)
            except TimeoutError:
                return
            if popped is not None and _text(popped[0]) == inbox:
                self._stash += _handed(popped[1])
            return
        pops = [asyncio.ensure_future(self._blocker.blpop(g, timeout=server)) for g in groups]
        try:
            await asyncio.wait(pops, timeout=local, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pop in pops:
                pop.cancel()
            results = await asyncio.gather(*pops, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result

    @_guarded
    async def extend(
        self, worker: WorkerInfo, leases: Sequence[Lease], lease: float, now: float
    ) -> HeartbeatReply:
        """Record the worker and extend its leases still held (one script per queue); report
        the lost ones and those asked to cancel."""
        await self._conn()
        seen = self._eval(
            "workers",
            [self._k_workers, self._k_seen],
            ["seen", worker.id, _encode(worker), worker.seen_at],
        )
        ids = [h.id for h in leases]
        (answers, unknown), _ = await asyncio.gather(
            self._grouped("heartbeat", ids, lambda i: (ids[i], str(leases[i].token)), now + lease),
            seen,
        )
        lost = set(unknown) | {_text(i) for a in answers for i in a[0]}
        cancel = {_text(i) for a in answers for i in a[1]}
        for job_id in lost:
            self._where.pop(job_id, None)
        return HeartbeatReply(
            lost=[i for i in ids if i in lost], cancel=[i for i in ids if i in cancel]
        )

    @_guarded
    async def record(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Apply a batch of outcomes (one script per queue), each only with a current token;
        return the refused ids."""
        if not outcomes:
            return []
        ids = [o.id for o in outcomes]
        answers, unknown = await self._grouped("finish", ids, lambda i: _outcome(outcomes[i]))
        where = self._where
        for job_id in ids:
            where.pop(job_id, None)  # its next claim, if any, remembers it again
        if not unknown and not any(answers):  # the usual case: all recorded
            return []
        left = Counter(unknown) + Counter(_text(i) for a in answers for i in a)
        refused = []
        for job_id in ids:
            if left[job_id] > 0:
                left[job_id] -= 1
                refused.append(job_id)
        return refused

    @_guarded
    async def hand_back(self, leases: Sequence[Lease], now: float) -> None:
        """Hand running jobs back as due now; the attempt does not count."""
        ids = [h.id for h in leases]
        if ids:
            await self._grouped("release", ids, lambda i: (ids[i], str(leases[i].token)), now)

    @_guarded
    async def recover(self, now: float) -> list[str]:
        """Expired leases go back to queued, to failed when no attempts are left, or to
        cancelled when cancellation was asked; returns their ids."""
        recovered: list[str] = []
        pending = await self._queues()
        while pending:
            answers = await asyncio.gather(
                *(
                    self._eval("recover", [t, self._keys_of(t)], [now, _BATCH])
                    for t in map(self._tag, pending)
                )
            )
            recovered += [_text(i) for a in answers for i in a]
            pending = [q for q, a in zip(pending, answers, strict=True) if len(a) >= _BATCH]
        return recovered

    # -- reading --------------------------------------------------------------------------

    @_guarded
    async def get(self, job_id: str) -> JobRecord | None:
        """One job, or None."""
        await self._conn()
        queue = self._where.get(job_id)
        tags = [self._tag(q) for q in ([queue] if queue is not None else await self._queues())]
        found = [a[0] for _, a in await self._spread("read", tags, ["job", job_id]) if a[0]]
        if not found:
            return None
        job = _job(found[0])
        self._remember(job.id, job.queue)
        return job

    @_guarded
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

    @_guarded
    async def workers(self, now: float, ttl: float) -> builtins.list[WorkerInfo]:
        """Workers whose last heartbeat is under ``ttl`` seconds old."""
        reports = await self._deadlines.run((await self._conn()).hgetall(self._k_workers))
        found = [_decode_worker(r) for r in reports.values()]
        return sorted((w for w in found if w.seen_at > now - ttl), key=lambda w: w.id)

    # -- managing -------------------------------------------------------------------------

    @_guarded
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

    @_guarded
    async def paused(self) -> builtins.list[str]:
        """The paused queues, sorted."""
        queues = await self._queues()
        flags = await asyncio.gather(
            *(self._deadlines.run(self._client.exists(f"{self._tag(q)}:paused")) for q in queues)
        )
        return [q for q, flag in zip(queues, flags, strict=True) if flag]

    @_guarded
    async def cancel(self, job_id: str, now: float) -> JobRecord | None:
        """Cancel a pending job at once, flag a running one for its worker; None if unknown."""
        queue = (await self._locate([job_id])).get(job_id)
        if queue is None:
            return None
        tag = self._tag(queue)
        raw = await self._eval("cancel", [tag, self._keys_of(tag)], [job_id, now])
        return _job(raw) if raw else None

    @_guarded
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

    @_guarded
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

    @_guarded
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

    @_guarded
    async def list(self, where: JobFilter) -> builtins.list[JobRecord]:
        """A page of jobs, newest (highest id) first, below the ``before`` cursor."""
        limit = max(where.limit, 0)
        queues = [where.queue] if where.queue is not None else await self._queues()
        if limit == 0 or not queues:
            return []
        status = "" if where.status is None else where.status.value
        task = "" if where.task is None else _encode(where.task).decode()
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
            jobs += [_job(entry) for entry in answer[0]]
            if len(answer) < 2:  # no cursor: the page is complete
                break
            before = _text(answer[1])
        return jobs


__all__ = ["DEFAULT_PREFIX", "RedisBroker"]
