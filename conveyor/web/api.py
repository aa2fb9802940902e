"""The JSON API under ``/api``, ``/healthz`` and ``/metrics``: every route goes through the
broker contract, so it works the same on every broker.

Request and response bodies are msgspec Structs; ``openapi.py`` describes them from the same
types. Errors are ``{"error": message, "field": name-or-null}`` with a 4xx status naming what
was wrong, or 503 when the broker cannot be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor import __version__
from conveyor.brokers.base import BUCKETS, Broker, JobFilter
from conveyor.errors import ConfigurationError, PayloadTooLarge, SerializationError
from conveyor.job import Status
from conveyor.task import ArgumentTypeError
from conveyor.web import metrics
from conveyor.web.monitor import SAMPLE_FIELDS, Snapshot
from conveyor.web.schema import (
    MAX_ID,
    MAX_LIMIT,
    MAX_NAME,
    BatchBody,
    Count,
    EnqueueBody,
    Health,
    History,
    JobPage,
    QueueList,
    QueueState,
    QueueView,
    Stats,
    TaskTotals,
    WorkerList,
    WorkerView,
    view,
)
from conveyor.web.state import BROKER_ERRORS, WebState

T = TypeVar("T")

HEALTH_TIMEOUT = 5.0


# -- plumbing ---------------------------------------------------------------------------


class ApiError(Exception):
    """Answered as a :class:`Problem` with ``status``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def respond(
    body: msgspec.Struct, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response."""
    return Response(msgspec.json.encode(body), status, headers, media_type="application/json")


def state_of(request: Request) -> WebState:
    """The web app's shared state."""
    state: WebState = request.app.state.conveyor
    return state


async def broker_of(request: Request) -> Broker:
    """The web app's connected broker."""
    return await state_of(request).broker()


_AT = re.compile(r"at `\$\.?([^`\[]*)")
_FIELD = re.compile(r"field `([^`]+)`")


def _field_of(message: str) -> str | None:
    found = _FIELD.search(message) or _AT.search(message)
    return (found.group(1) or None) if found else None


DISCARD_MOST = 16 * 1024 * 1024
"""How much of a refused body is read and dropped so that its sender reads the 413."""
DISCARD_SECONDS = 10.0
"""How long a refused body is read for, at most (a slow sender must not hold the server)."""


async def discard(chunks: AsyncIterator[bytes], most: int) -> None:
    """Read and drop up to ``most`` bytes more of a refused body, for ``DISCARD_SECONDS``.

    A server that answers and closes while the client is still writing resets the connection,
    and a client that sends the whole body before it reads (Python's urllib, most libraries)
    gets a broken pipe instead of the answer. Beyond the bound the connection is closed anyway.
    """
    read = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DISCARD_SECONDS):
            async for chunk in chunks:
                read += len(chunk)
                if read > most:
                    return


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it passes the limit (``Content-Length``
    is checked before reading, by the body-limit middleware); the rest is discarded."""
    limit = state_of(request).settings.max_body
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            await discard(stream, DISCARD_MOST)
            raise ApiError(413, f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


_INTEGER_FIELDS: dict[type, frozenset[str]] = {}


def _integer_fields(kind: type) -> frozenset[str]:
    """The fields of a body struct that hold an integer (or null)."""
    known = _INTEGER_FIELDS.get(kind)
    if known is not None:
        return known
    names = set()
    for field in getattr(msgspec.inspect.type_info(kind), "fields", ()):
        one = field.type
        types = one.types if isinstance(one, msgspec.inspect.UnionType) else (one,)
        if any(isinstance(t, msgspec.inspect.IntType) for t in types):
            names.add(field.encode_name)
    known = _INTEGER_FIELDS[kind] = frozenset(names)
    return known


async def read_json(request: Request, kind: type[T]) -> T:
    """Decode the JSON body into ``kind``: 400 when malformed, 422 naming the field."""
    body = await read_body(request)
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, f"send JSON with Content-Type: application/json, not {media!r}")
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    if isinstance(raw, dict):
        # 3.0 is an integer to JSON Schema, and so to the OpenAPI document: take it as one.
        for name in _integer_fields(kind):
            value = raw.get(name)
            if isinstance(value, float) and value.is_integer():
                raw[name] = int(value)
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, str(exc), _field_of(str(exc))) from None


def job_id_of(request: Request) -> str:
    """The ``{id}`` path parameter (404 when it cannot be an id)."""
    job_id: str = request.path_params["id"]
    if not job_id or len(job_id) > MAX_ID:
        raise ApiError(404, f"no job with id {job_id[:MAX_ID]!r}", "id")
    return job_id


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


async def _snapshot(request: Request) -> Snapshot:
    state = state_of(request)
    return await state.monitor.snapshot(await state.broker())


# -- jobs -------------------------------------------------------------------------------


async def enqueue(request: Request) -> Response:
    """``POST /api/jobs``: 202 with the new job, or 200 with the unfinished job holding
    ``key``."""
    state = state_of(request)
    body = await read_json(request, EnqueueBody)
    if body.task not in state.app.tasks and not state.settings.allow_unknown:
        raise ApiError(
            404,
            f"unknown task {body.task!r}: this app registers no task by that name "
            "(the server accepts any name only with --allow-unknown)",
            "task",
        )
    if body.delay is not None and body.eta is not None:
        raise ApiError(422, "give either delay or eta, not both", "eta")
    task = state.app.tasks.get(body.task)
    try:
        if task is not None:
            task.check_types(body.args, body.kwargs)
        record = state.app.build_job(
            body.task,
            body.args,
            body.kwargs,
            queue=body.queue,
            priority=body.priority,
            delay=body.delay,
            eta=body.eta,
            key=body.key,
            retries=body.retries,
            timeout=body.timeout,
        )
    except PayloadTooLarge as exc:
        raise ApiError(413, str(exc), "args") from None
    except SerializationError as exc:
        raise ApiError(422, str(exc), "args") from None
    except ConfigurationError as exc:
        raise ApiError(422, str(exc)) from None
    except ArgumentTypeError as exc:
        raise ApiError(422, str(exc), exc.field) from None
    except TypeError as exc:  # the arguments do not fit the task's signature
        raise ApiError(422, str(exc), "args") from None
    stored = (await (await state.broker()).enqueue([record]))[0]
    job = view(stored, _root(request))
    return respond(job, 202 if stored.id == record.id else 200, {"Location": job.url})


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(422, f"limit must be an integer, got {raw[:40]!r}", "limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(422, f"limit must be between 1 and {MAX_LIMIT}, got {limit}", "limit")
    return limit


def _text(request: Request, name: str, most: int = MAX_NAME) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and len(value) > most:
        raise ApiError(422, f"{name} is longer than {most} characters", name)
    return value


async def list_jobs(request: Request) -> Response:
    """``GET /api/jobs``: a page of jobs, newest first, filtered by status, queue and task."""
    status_text = request.query_params.get("status", "")
    try:
        status = Status(status_text) if status_text else None
    except ValueError:
        known = ", ".join(s.value for s in Status)
        raise ApiError(
            422, f"status must be one of {known}, got {status_text[:40]!r}", "status"
        ) from None
    where = JobFilter(
        status=status,
        queue=_text(request, "queue"),
        task=_text(request, "task"),
        before=_text(request, "cursor", MAX_ID),
        limit=_limit(request),
    )
    records = await (await broker_of(request)).list(where)
    root = _root(request)
    more = len(records) == where.limit
    return respond(
        JobPage(jobs=[view(r, root) for r in records], next=records[-1].id if more else None)
    )


async def get_job(request: Request) -> Response:
    """``GET /api/jobs/{id}``."""
    job_id = job_id_of(request)
    record = await (await broker_of(request)).get(job_id)
    if record is None:
        raise ApiError(404, f"no job with id {job_id!r}", "id")
    return respond(view(record, _root(request)))


async def cancel_job(request: Request) -> Response:
    """``POST /api/jobs/{id}/cancel``: a waiting job at once, a running one at its worker's
    next heartbeat (``cancel_requested``); 409 when it already finished otherwise."""
    job_id = job_id_of(request)
    record = await (await broker_of(request)).cancel(job_id, time.time())
    if record is None:
        raise ApiError(404, f"no job with id {job_id!r}", "id")
    if record.status in (Status.SUCCEEDED, Status.FAILED):
        raise ApiError(409, f"job {job_id} already {record.status.value}; nothing to cancel")
    return respond(view(record, _root(request)))


async def retry_job(request: Request) -> Response:
    """``POST /api/jobs/{id}/retry``: a failed job back to queued with its attempts reset."""
    job_id = job_id_of(request)
    broker = await broker_of(request)
    moved = await broker.retry_failed([job_id], None, time.time())
    record = await broker.get(job_id)
    if record is None:
        raise ApiError(404, f"no job with id {job_id!r}", "id")
    if not moved:
        if record.status is Status.FAILED:
            raise ApiError(409, f"job {job_id} keeps failed: an unfinished job holds its key")
        raise ApiError(409, f"job {job_id} is {record.status.value}; only failed jobs are retried")
    return respond(view(record, _root(request)))


async def _batch(request: Request) -> BatchBody:
    # The body is required, as the OpenAPI document says: without one, nothing is named.
    body = await read_json(request, BatchBody)
    if body.ids is None and body.queue is None and not body.all:
        raise ApiError(422, "name the jobs: ids, or queue, or all: true", "all")
    return body


async def retry_failed(request: Request) -> Response:
    """``POST /api/failed/retry``: redrive failed jobs (by id, of a queue, or all)."""
    body = await _batch(request)
    n = await (await broker_of(request)).retry_failed(body.ids, body.queue, time.time())
    return respond(Count(count=n))


async def purge_failed(request: Request) -> Response:
    """``POST /api/failed/purge``: delete failed jobs (by id, of a queue, or all)."""
    body = await _batch(request)
    n = await (await broker_of(request)).purge(Status.FAILED, body.queue, body.ids)
    return respond(Count(count=n))


# -- queues, workers, stats -----------------------------------------------------------------


async def list_queues(request: Request) -> Response:
    """``GET /api/queues``: jobs per queue and status, paused, live workers per queue."""
    snap = await _snapshot(request)
    live = snap.live_workers()
    return respond(
        QueueList(
            queues=[
                QueueView(
                    name=q,
                    paused=q in snap.paused,
                    counts={s.value: snap.counts.get(q, {}).get(s, 0) for s in Status},
                    workers=sum(q in w.queues for w in live),
                )
                for q in snap.queue_names()
            ]
        )
    )


def _queue_name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not 1 <= len(name) <= MAX_NAME:
        raise ApiError(422, f"a queue name has 1 to {MAX_NAME} characters", "name")
    return name


async def pause_queue(request: Request) -> Response:
    """``POST /api/queues/{name}/pause``: no worker claims from it until it is resumed."""
    name = _queue_name(request)
    await (await broker_of(request)).set_paused(name, True)
    return respond(QueueState(name=name, paused=True))


async def resume_queue(request: Request) -> Response:
    """``POST /api/queues/{name}/resume``."""
    name = _queue_name(request)
    await (await broker_of(request)).set_paused(name, False)
    return respond(QueueState(name=name, paused=False))


async def list_workers(request: Request) -> Response:
    """``GET /api/workers``: live workers, their last heartbeat and running jobs."""
    snap = await _snapshot(request)
    views = []
    for w in snap.live_workers():
        per_task = [s for per in w.stats.values() for s in per.values()]
        views.append(
            WorkerView(
                id=w.id,
                hostname=w.hostname,
                pid=w.pid,
                queues=w.queues,
                concurrency=w.concurrency,
                started_at=w.started_at,
                seen_at=w.seen_at,
                lease=w.lease,
                running=w.running,
                succeeded=sum(s.succeeded for s in per_task),
                failed=sum(s.failed for s in per_task),
                retried=sum(s.retried for s in per_task),
            )
        )
    return respond(WorkerList(workers=views))


def _avg(total: float, counts: list[int]) -> float | None:
    n = sum(counts)
    return total / n if n else None


async def stats(request: Request) -> Response:
    """``GET /api/stats``: totals over every queue and worker."""
    state = state_of(request)
    snap = await _snapshot(request)
    jobs = {s.value: sum(per.get(s, 0) for per in snap.counts.values()) for s in Status}
    live = snap.live_workers()
    width = len(BUCKETS) + 1
    tasks = [
        TaskTotals(
            queue=queue,
            task=task,
            succeeded=s.succeeded,
            failed=s.failed,
            retried=s.retried,
            cancelled=s.cancelled,
            run_avg=_avg(s.run_sum, s.run) if len(s.run) == width else None,
            wait_avg=_avg(s.wait_sum, s.wait) if len(s.wait) == width else None,
        )
        for queue, per_task in sorted(snap.totals.items())
        for task, s in sorted(per_task.items())
    ]
    return respond(
        Stats(
            version=__version__,
            broker=state.broker_url,
            since=state.monitor.started_at,
            jobs=jobs,
            queues=len(snap.queue_names()),
            paused=snap.paused,
            workers=len(live),
            slots=sum(w.concurrency for w in live),
            tasks=tasks,
        )
    )


async def history(request: Request) -> Response:
    """``GET /api/history?since=T``: the samples taken after ``T`` (all by default)."""
    raw = request.query_params.get("since", "0")
    try:
        since = float(raw)
    except ValueError:
        raise ApiError(
            422, f"since must be a number (Unix time), got {raw[:40]!r}", "since"
        ) from None
    state = state_of(request)
    await state.broker()  # starts the sampler when nothing did yet
    monitor = state.monitor
    return respond(
        History(
            every=monitor.every,
            started_at=monitor.started_at,
            fields=list(SAMPLE_FIELDS),
            samples=monitor.since(since),
        )
    )


# -- health and metrics ---------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200, or 503 when the broker is unreachable or a queue with due jobs
    has no live worker. Only authenticated callers see the problems."""
    state = state_of(request)
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            snap = await state.monitor.snapshot(await state.broker())
        problems = snap.problems()
    except Exception as exc:
        problems = [f"broker {state.broker_url} unreachable: {type(exc).__name__}: {exc}"]
    shown = problems if request.scope.get("conveyor.authenticated") else []
    if problems:
        return respond(Health(status="unhealthy", problems=shown), 503)
    return respond(Health(status="ok", problems=[]))


async def prometheus(request: Request) -> Response:
    """``GET /metrics``: Prometheus text; ``conveyor_broker_up 0`` when the broker is down."""
    try:
        text = metrics.render(await _snapshot(request))
    except BROKER_ERRORS as exc:
        text = metrics.render_down(f"{type(exc).__name__}: {exc}")
    return Response(text, media_type=metrics.CONTENT_TYPE)


async def jobs(request: Request) -> Response:
    """``/api/jobs``: ``GET`` lists, ``POST`` enqueues. One route, so that a 405 on it names
    both methods in its ``Allow`` header (two routes would each answer for their own)."""
    return await (enqueue if request.method == "POST" else list_jobs)(request)


ROUTES = [
    Route("/api/jobs", jobs, methods=["GET", "POST"]),
    Route("/api/jobs/{id}", get_job, methods=["GET"]),
    Route("/api/jobs/{id}/cancel", cancel_job, methods=["POST"]),
    Route("/api/jobs/{id}/retry", retry_job, methods=["POST"]),
    Route("/api/failed/retry", retry_failed, methods=["POST"]),
    Route("/api/failed/purge", purge_failed, methods=["POST"]),
    Route("/api/queues", list_queues, methods=["GET"]),
    Route("/api/queues/{name:path}/pause", pause_queue, methods=["POST"]),
    Route("/api/queues/{name:path}/resume", resume_queue, methods=["POST"]),
    Route("/api/workers", list_workers, methods=["GET"]),
    Route("/api/stats", stats, methods=["GET"]),
    Route("/api/history", history, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", prometheus, methods=["GET"]),
]

__all__ = ["ROUTES", "ApiError"]
