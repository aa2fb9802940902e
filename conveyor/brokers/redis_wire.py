"""What the Redis broker sends and reads: the URL, the scripts, the codecs of jobs and
outcomes as the Lua scripts take and return them, and one command on a raw connection.

The store (:mod:`conveyor.brokers.redis`) and the consumer session
(:mod:`conveyor.brokers.redis_consumer`) share these; neither keeps any state here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from importlib import resources
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlencode, urlunsplit

import msgspec
from redis import exceptions as rexc

from conveyor.brokers.base import Outcome, WorkerInfo
from conveyor.brokers.common import redact, split_url
from conveyor.errors import BrokerUnavailable, ConfigurationError
from conveyor.job import ErrorInfo, JobRecord, Status

_pack_command: Any = None  # hiredis, the C parser of the redis extra, packs commands faster
with contextlib.suppress(ImportError):  # redis-py works without it
    from hiredis import pack_command as _pack_command

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_PREFIX = "conveyor"
"""The start of every key name; ``?prefix=`` in the URL changes it (one namespace per app)."""

# Errors that Redis answers while it cannot serve (starting, failing over, out of memory):
# the worker retries them like a lost connection.
_OUTAGE = {"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "OOM"}
REDIS_ERRORS = (rexc.RedisError, rexc.RedisClusterException, OSError)
"""What redis-py raises for a lost connection or an answer that is an error."""

_STATUS = {s.value.encode(): s for s in Status}
encode = msgspec.json.Encoder().encode
"""JSON, as the scripts store payloads, errors and worker reports."""
_decode_any = msgspec.json.Decoder().decode
decode_error = msgspec.json.Decoder(ErrorInfo).decode
"""An error as a script returns it (JSON)."""
decode_worker = msgspec.json.Decoder(WorkerInfo).decode
"""A worker's report as stored by workers.lua (JSON)."""
# The immutable fields are a subset of JobRecord's: they decode straight into one.
decode_record = msgspec.json.Decoder(JobRecord).decode
"""A job from its immutable fields (JSON); the state fields keep their defaults."""
pack = msgspec.msgpack.Encoder().encode
"""MessagePack, as the scripts take batches (``cmsgpack.unpack``)."""
_unpack = msgspec.msgpack.Decoder().decode

ClaimedRow = tuple[bytes, bytes, bytes, int, int]
"""A job as claim.lua returns it: payload (JSON), eta, error (JSON or empty), attempts, token."""


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


def enqueued(job: JobRecord) -> tuple[Any, ...]:
    """A job as enqueue.lua reads it; numbers as text, so that Redis keeps them exactly."""
    payload = _Payload(
        job.id, job.task, job.queue, job.args, job.kwargs, job.priority,
        job.max_attempts, job.timeout, job.key, job.created_at,
    )  # fmt: skip
    return (
        job.id, encode(payload).decode(), str(job.priority), repr(job.eta), job.key,
        str(job.attempts), str(job.token), str(job.max_attempts),
    )  # fmt: skip


def outcome_row(out: Outcome) -> tuple[str, ...]:
    """An outcome as finish.lua reads it; '' for None."""
    return (
        out.id,
        str(out.token),
        out.status.value,
        repr(out.finished_at),
        "" if out.result is None else out.result.decode(),
        "" if out.error is None else encode(out.error).decode(),
        "" if out.eta is None else repr(out.eta),
    )


def handed_jobs(batch: bytes) -> list[JobRecord]:
    """The jobs enqueue.lua handed to an idle worker: {id, payload, eta, attempts, token}
    each (the claim fields are set by the consumer's claim)."""
    return [
        _record(payload, attempts=attempts, eta=float(eta), token=token)
        for _id, payload, eta, attempts, token in _unpack(batch)
    ]


def claimed_jobs(rows: list[ClaimedRow]) -> list[JobRecord]:
    """The jobs of claim.lua's answer (the claim fields are set by the consumer's claim)."""
    jobs = []
    for payload, eta, error, attempts, token in rows:  # the hot path: no _record()
        job = decode_record(payload)
        job.eta, job.attempts, job.token = float(eta), attempts, token
        if error:
            job.error = decode_error(error)
        jobs.append(job)
    return jobs


def _opt(value: bytes | None) -> float | None:
    return float(value) if value else None


def _record(payload: bytes, **state: Any) -> JobRecord:
    """A job from its immutable fields (JSON) and its state."""
    job = decode_record(payload)
    for name, value in state.items():
        setattr(job, name, value)
    return job


def stored_job(entry: Sequence[Any]) -> JobRecord:
    """A job as the scripts return it: [HGETALL of its state, its immutable fields] (see
    lua/lib.lua for the one-letter fields); an empty string is None."""
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
        error=decode_error(error) if error else None,
        worker=worker.decode() if worker else None,
        token=int(h[b"t"]),
        lease_until=_opt(h.get(b"l")),
        cancel_requested=h.get(b"c") == b"1",
    )


class Script:
    """A Lua script (with lua/lib.lua in front) and its SHA1, by which Redis caches it."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


@functools.cache
def script(name: str) -> Script:
    """The script ``lua/<name>.lua``, read once."""
    folder = resources.files(__package__ or "conveyor.brokers").joinpath("lua")
    lib = folder.joinpath("lib.lua").read_text(encoding="utf-8")
    return Script(lib + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8"))


def text(value: bytes | str) -> str:
    """A key or id as Redis returned it, as text."""
    return value.decode() if isinstance(value, bytes) else value


def parse_url(url: str) -> tuple[str, str, bool | None]:
    """The URL for redis-py (without our options), the key prefix and the cluster setting."""
    parts, options = split_url(
        url, ("redis", "rediss"), name="Redis", example="redis:// or rediss://"
    )
    prefix, cluster, rest = DEFAULT_PREFIX, None, []
    for name, value in options:
        if name == "prefix":
            if not value:
                raise ConfigurationError(f"empty prefix in Redis URL {redact(url)!r}")
            prefix = value
        elif name == "cluster":
            choices = {"auto": None, "yes": True, "true": True, "no": False, "false": False}
            if value.lower() not in choices:
                raise ConfigurationError(f"cluster= in {redact(url)!r} must be auto, yes or no")
            cluster = choices[value.lower()]
        else:
            rest.append((name, value))  # redis-py's own, e.g. socket_timeout, ssl_cert_reqs
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix, cluster


def outage(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis cannot serve now (lost, starting, failing over, full)."""
    if isinstance(exc, rexc.ReadOnlyError | rexc.OutOfMemoryError | rexc.TryAgainError):
        return True
    if isinstance(exc, rexc.ClusterError):
        return True
    if isinstance(exc, rexc.ResponseError):
        return str(exc).split(" ", 1)[0] in _OUTAGE
    return isinstance(exc, REDIS_ERRORS)


async def command(conn: Any, *args: Any) -> Any:
    """Send one command on a redis-py connection and read its reply. On any error or cancel
    redis-py drops the connection, so a late reply is never read as the next command's."""
    if _pack_command is None:
        await conn.send_command(*args)
    else:
        await conn.send_packed_command(_pack_command(args))
    return await conn.read_response()


async def eval_on(conn: Any, script: Script, n_keys: int, argv: list[Any]) -> Any:
    """Run ``script`` on one redis-py connection (see :func:`command`)."""
    try:
        return await command(conn, "EVALSHA", script.sha, n_keys, *argv)
    except rexc.NoScriptError:  # a restarted server has no script cache
        return await command(conn, "EVAL", script.text, n_keys, *argv)


async def gather_all(calls: Sequence[Awaitable[T]]) -> list[T]:
    """``asyncio.gather``, except that one call (the usual case: one queue) is awaited as it
    is: gather would wrap it in a task, a turn of the loop before it is even sent."""
    if len(calls) == 1:
        return [await calls[0]]
    return list(await asyncio.gather(*calls))


def guarded(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn a lost connection (or a Redis that cannot serve) into BrokerUnavailable, named
    after the ``_server`` of the method's object."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except REDIS_ERRORS as exc:
            if not outage(exc):
                raise
            server = getattr(args[0], "_server", "Redis")
            raise BrokerUnavailable(f"{server}: {type(exc).__name__}: {exc}") from exc

    return call
