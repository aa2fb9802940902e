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
from conveyor.brokers.common import DECODE_ERROR, redact, shorten, split_url
from conveyor.brokers.common import decode_error as damage_error
from conveyor.errors import BrokerUnavailable, ConfigurationError
from conveyor.job import ErrorInfo, JobRecord, Status

_pack_command: Any = None  # hiredis, the C parser of the redis extra, packs commands faster
with contextlib.suppress(ImportError):  # redis-py works without it
    from hiredis import pack_command as _pack_command

P = ParamSpec("P")
T = TypeVar("T")
D = TypeVar("D")

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

ClaimedRow = tuple[bytes | None, bytes, bytes, int, int, int]
"""A job as claim.lua returns it: payload (JSON; None if missing), eta, error (JSON or empty),
attempts, token, losses."""

UNREADABLE = (msgspec.MsgspecError, TypeError, ValueError, KeyError)
"""What decoding a damaged record raises: malformed JSON or the wrong shape (msgspec), a
missing value (TypeError), a field that is not a number (ValueError), an unknown status
(KeyError)."""

Damaged = tuple[int, ErrorInfo]
"""A claimed job that does not decode: its token and the error to fail it with."""


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


def claimed_jobs(rows: list[ClaimedRow]) -> tuple[list[JobRecord], list[Damaged]]:
    """The jobs of claim.lua's answer (the claim fields are set by the consumer's claim),
    and those that do not decode, for the claimer to fail alone."""
    jobs, damaged = [], []
    for payload, eta, error, attempts, token, losses in rows:  # the hot path
        try:  # costs nothing until it catches (Python 3.11)
            job = decode_record(payload)  # type: ignore[arg-type]  # None: caught
            job.eta, job.attempts, job.token, job.losses = float(eta), attempts, token, losses
            if error:
                job.error = decode_error(error)
        except UNREADABLE as exc:
            damaged.append((token, _damage(payload, eta, error, exc)))
            continue
        jobs.append(job)
    return jobs, damaged


def _damage(payload: bytes | None, eta: bytes, error: bytes, exc: Exception) -> ErrorInfo:
    """The error of a claimed job whose payload, eta (which claim.lua leaves to this
    check) or last error does not decode (``exc``)."""
    if payload is None:
        return damage_error("payload (task, args, kwargs...)", "it is missing", None)
    try:
        decode_record(payload)
    except UNREADABLE:
        # msgspec names the path of a field of the wrong shape: "... - at `$.args`".
        where = str(exc).rpartition("at `$.")[2].rstrip("`")
        field = where if "at `$." in str(exc) else "payload (task, args, kwargs...)"
        return damage_error(field, str(exc), payload)
    try:
        float(eta)
    except ValueError as bad:
        return damage_error("eta", str(bad), eta)
    return damage_error("error", str(exc), error)


def _opt(value: bytes | None) -> float | None:
    return float(value) if value else None


def _number(value: bytes | None, kind: Callable[[Any], T], default: D) -> T | D:
    """A numeric field of a damaged job hash, or ``default`` if it is not one."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        return default


def _record(payload: bytes, **state: Any) -> JobRecord:
    """A job from its immutable fields (JSON) and its state."""
    job = decode_record(payload)
    for name, value in state.items():
        setattr(job, name, value)
    return job


def stored_job(entry: Sequence[Any], prefix: str = DEFAULT_PREFIX) -> JobRecord:
    """A job as the scripts return it: [HGETALL of its state, its immutable fields, its id,
    its queue's tag] (see lua/lib.lua for the one-letter fields); an empty string is None.
    A damaged one is shown with placeholders (see :func:`_shown`), never raises."""
    flat, payload = entry[0], entry[1]
    h = dict(zip(flat[::2], flat[1::2], strict=True))
    try:
        return _stored(h, payload)
    except UNREADABLE:
        return _shown(h, payload, entry, prefix)


def _stored(h: dict[bytes, bytes], payload: bytes) -> JobRecord:
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
        losses=int(h.get(b"n") or 0),
    )


_SALVAGED = ("task", "queue", "priority", "max_attempts", "timeout", "key", "created_at")
_TYPES = {f.name: f.type for f in msgspec.structs.fields(JobRecord)}


def _shown(
    h: dict[bytes, bytes], payload: bytes | None, entry: Sequence[Any], prefix: str
) -> JobRecord:
    """A damaged job as reads show it: a field that does not decode shows its stored text in
    a placeholder (as on SQLite), a missing one its default; an unknown status shows as
    failed, with a decode error."""
    job_id = text(entry[2]) if len(entry) > 2 else "<unknown>"
    tag = text(entry[3]) if len(entry) > 3 else ""
    queue = tag[len(prefix) + 2 : -1] if tag.startswith("{" + prefix + ":") else "<unknown>"
    job = JobRecord(id=job_id, task="<undecodable>", queue=queue)
    try:
        fields = _decode_any(payload) if payload is not None else None
    except UNREADABLE:
        fields = None
    if not isinstance(fields, dict):
        job.args = [f"<undecodable: {shorten(payload)}>"]
    else:
        for name in _SALVAGED:
            with contextlib.suppress(*UNREADABLE):
                setattr(job, name, msgspec.convert(fields[name], _TYPES[name]))
        try:
            job.args = msgspec.convert(fields.get("args"), list[Any])
        except UNREADABLE:
            job.args = [f"<undecodable: {shorten(encode(fields.get('args')))}>"]
        try:
            job.kwargs = msgspec.convert(fields.get("kwargs"), dict[str, Any])
        except UNREADABLE:
            job.kwargs = {"<undecodable>": shorten(encode(fields.get("kwargs")))}
    status = _STATUS.get(h.get(b"s", b""))
    job.status = Status.FAILED if status is None else status
    job.attempts = _number(h.get(b"a"), int, 0)
    job.eta = _number(h.get(b"e"), float, 0.0)
    job.token = _number(h.get(b"t"), int, 0)
    job.losses = _number(h.get(b"n"), int, 0)
    job.started_at = _number(h.get(b"b"), float, None)
    job.finished_at = _number(h.get(b"f"), float, None)
    job.lease_until = _number(h.get(b"l"), float, None)
    worker, result, error = h.get(b"w"), h.get(b"r"), h.get(b"x")
    job.worker = worker.decode(errors="replace") if worker else None
    job.cancel_requested = h.get(b"c") == b"1"
    if result:
        try:
            job.result = _decode_any(result)
        except UNREADABLE:
            job.result = f"<undecodable: {shorten(result)}>"
    if error:
        try:
            job.error = decode_error(error)
        except UNREADABLE:
            job.error = ErrorInfo(DECODE_ERROR, f"undecodable: {shorten(error)}")
    if status is None and job.error is None:
        job.error = ErrorInfo(DECODE_ERROR, f"the stored status is {shorten(h.get(b's'))}")
    return job


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
