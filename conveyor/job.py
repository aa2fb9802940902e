"""The job record, its statuses and the transitions between them (pure: no I/O)."""

from __future__ import annotations

import enum
import os
import threading
import time
from typing import Any

import msgspec


class Status(enum.StrEnum):
    """Where a job is in its lifecycle."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the terminal statuses: succeeded, failed and cancelled."""
        return self in FINISHED


FINISHED = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
PENDING = frozenset({Status.SCHEDULED, Status.QUEUED})
UNFINISHED = frozenset({Status.SCHEDULED, Status.QUEUED, Status.RUNNING})

# The lifecycle of DESIGN.md as data: a broker applies only these moves, and the conformance
# suite (tests/brokers/test_transitions.py) checks every broker against it.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.SCHEDULED: frozenset({Status.QUEUED, Status.RUNNING, Status.CANCELLED}),
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED}),
    Status.RUNNING: frozenset(
        {Status.SUCCEEDED, Status.SCHEDULED, Status.QUEUED, Status.FAILED, Status.CANCELLED}
    ),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset({Status.QUEUED}),  # redrive from the dead-letter queue
    Status.CANCELLED: frozenset(),
}


MAX_LOSSES = 3
"""How many times a job may lose its worker (its lease expired: the worker was SIGKILLed, ran
out of memory, lost its node) and still run again. A loss does not spend an attempt; the loss
after these ends the job ``failed`` as a poison pill (``conveyor.PoisonPill``), since a job
that was running each time its worker died is the likely cause."""


def can_move(src: Status, dst: Status) -> bool:
    """Whether the lifecycle allows a job to go from ``src`` to ``dst``."""
    return dst in TRANSITIONS[src]


class ErrorInfo(msgspec.Struct, frozen=True):
    """The last exception a job raised: its qualified type name, message and traceback."""

    type: str
    message: str
    traceback: str = ""


class JobRecord(msgspec.Struct, kw_only=True):
    """Everything a broker stores about one job. Times are Unix epoch seconds."""

    id: str
    task: str
    queue: str = "default"
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    status: Status = Status.QUEUED
    priority: int = 0
    attempts: int = 0
    max_attempts: int = 1
    eta: float = 0.0
    timeout: float | None = None
    key: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: ErrorInfo | None = None
    worker: str | None = None
    token: int = 0
    lease_until: float | None = None
    cancel_requested: bool = False
    losses: int = 0
    """How many times a worker was lost while it ran this job (its lease expired): counted
    apart from ``attempts``, which a loss does not spend (see :data:`MAX_LOSSES`)."""


_id_lock = threading.Lock()
_last_micros = 0


def new_id() -> str:
    """A new job id: 26 hex digits that sort by creation time, unique across processes.

    Microseconds since the epoch (strictly increasing within a process) then 48 random bits.
    """
    global _last_micros
    with _id_lock:
        micros = max(time.time_ns() // 1000, _last_micros + 1)
        _last_micros = micros
    return f"{micros:014x}{os.urandom(6).hex()}"


def initial_status(eta: float, now: float) -> Status:
    """A new job is ``scheduled`` when its eta is in the future, else ``queued``."""
    return Status.SCHEDULED if eta > now else Status.QUEUED
