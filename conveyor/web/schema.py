"""The shapes of the API's request and response bodies (msgspec Structs): ``api.py``
decodes and encodes with them, ``openapi.py`` describes them."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from conveyor.job import ErrorInfo, JobRecord, Status
from conveyor.web.monitor import Sample

MAX_NAME = 200
MAX_ID = 64
MAX_LIMIT = 500

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=10 * 365 * 86_400)]
JobIds = Annotated[
    list[Annotated[str, msgspec.Meta(max_length=MAX_ID)]], msgspec.Meta(max_length=10_000)
]

# -- bodies -----------------------------------------------------------------------------


class EnqueueBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/jobs``: a job for the task called ``task``.

    Options left out take the task's defaults (or the queue ``default``, no retries).
    """

    task: Name
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    queue: Name | None = None
    priority: Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)] | None = None
    delay: Seconds | None = None
    eta: Annotated[float, msgspec.Meta(ge=0, le=1e11)] | None = None
    key: Name | None = None
    retries: Annotated[int, msgspec.Meta(ge=0, le=10_000)] | None = None
    timeout: Annotated[float, msgspec.Meta(gt=0, le=10 * 365 * 86_400)] | None = None


class BatchBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which failed jobs a batch action applies to: ``ids``, or every one of ``queue``, or
    ``all``; one of them is required."""

    ids: JobIds | None = None
    queue: Name | None = None
    all: bool = False


# -- responses --------------------------------------------------------------------------


class Problem(msgspec.Struct, kw_only=True):
    """An error: what went wrong and, when one input is at fault, its name."""

    error: str
    field: str | None = None


class JobView(msgspec.Struct, kw_only=True):
    """One job. Times are Unix epoch seconds."""

    id: str
    url: str
    task: str
    queue: str
    status: Status
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    attempts: int
    max_attempts: int
    losses: int
    eta: float
    timeout: float | None
    key: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: Any
    error: ErrorInfo | None
    worker: str | None
    lease_until: float | None
    cancel_requested: bool


class JobPage(msgspec.Struct, kw_only=True):
    """A page of jobs, newest first; ``next`` is the cursor of the next page, if any."""

    jobs: list[JobView]
    next: str | None


class QueueView(msgspec.Struct, kw_only=True):
    """One queue: its jobs per status, whether it is paused, how many live workers read it."""

    name: str
    paused: bool
    counts: dict[str, int]
    workers: int


class QueueList(msgspec.Struct, kw_only=True):
    """Every queue that has jobs, is paused or has a worker."""

    queues: list[QueueView]


class QueueState(msgspec.Struct, kw_only=True):
    """A queue after pause or resume."""

    name: str
    paused: bool


class WorkerView(msgspec.Struct, kw_only=True):
    """A live worker, its last heartbeat and the jobs it runs."""

    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: float
    seen_at: float
    lease: float
    running: list[str]
    succeeded: int
    failed: int
    retried: int


class WorkerList(msgspec.Struct, kw_only=True):
    """The live workers."""

    workers: list[WorkerView]


class TaskTotals(msgspec.Struct, kw_only=True):
    """What the workers did for one task in one queue since this server started."""

    queue: str
    task: str
    succeeded: int
    failed: int
    retried: int
    cancelled: int
    run_avg: float | None
    wait_avg: float | None


class Stats(msgspec.Struct, kw_only=True):
    """Totals: jobs per status over all queues, workers, and the workers' counters."""

    version: str
    broker: str
    since: float
    jobs: dict[str, int]
    queues: int
    paused: list[str]
    workers: int
    slots: int
    tasks: list[TaskTotals]


class History(msgspec.Struct, kw_only=True):
    """Samples taken every ``every`` seconds since ``started_at`` (in memory: the history
    starts empty with the server). Each sample is ``[t, {queue: [numbers of fields]}]``;
    succeeded, failed and retried are cumulative."""

    every: float
    started_at: float
    fields: list[str]
    samples: list[Sample]


class Health(msgspec.Struct, kw_only=True):
    """``ok``, or ``unhealthy`` with the problems (shown only to authenticated callers)."""

    status: str
    problems: list[str]


class Count(msgspec.Struct, kw_only=True):
    """How many jobs a batch action moved or deleted."""

    count: int


def view(record: JobRecord, root: str) -> JobView:
    """The API's view of a job record."""
    return JobView(
        id=record.id,
        url=f"{root}/api/jobs/{record.id}",
        task=record.task,
        queue=record.queue,
        status=record.status,
        args=record.args,
        kwargs=record.kwargs,
        priority=record.priority,
        attempts=record.attempts,
        max_attempts=record.max_attempts,
        losses=record.losses,
        eta=record.eta,
        timeout=record.timeout,
        key=record.key,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        result=record.result,
        error=record.error,
        worker=record.worker,
        lease_until=record.lease_until,
        cancel_requested=record.cancel_requested,
    )
