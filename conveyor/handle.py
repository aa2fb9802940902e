"""Job: the handle a producer holds on one enqueued job (status, result, cancel)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Generic, TypeVar, cast

from conveyor.backend import Backend
from conveyor.errors import JobCancelled, JobFailed, JobNotFound, ResultTimeout
from conveyor.job import ErrorInfo, JobRecord, Status

R = TypeVar("R")


class Job(Generic[R]):
    """One job as last read from the broker; :meth:`refresh` reads it again.

    ``R`` is the task's return type, so ``job.result()`` is typed.
    """

    __slots__ = ("_app", "_record")

    def __init__(self, app: Backend, record: JobRecord) -> None:
        self._app = app
        self._record = record

    def __repr__(self) -> str:
        r = self._record
        return f"<Job {r.id} {r.task} {r.status.value} attempts={r.attempts}/{r.max_attempts}>"

    @property
    def record(self) -> JobRecord:
        """The underlying record, as the broker stores it."""
        return self._record

    @property
    def id(self) -> str:
        """The job's id: sorts by creation time."""
        return self._record.id

    @property
    def task(self) -> str:
        """The task's registered name."""
        return self._record.task

    @property
    def queue(self) -> str:
        """The queue it waits in."""
        return self._record.queue

    @property
    def status(self) -> Status:
        """Its status when last read."""
        return self._record.status

    @property
    def attempts(self) -> int:
        """Attempts started so far; a run whose worker was lost does not count (see
        :attr:`losses`)."""
        return self._record.attempts

    @property
    def losses(self) -> int:
        """How many times its worker was lost (killed, out of memory, a lost node) while it
        ran it; the loss after ``conveyor.job.MAX_LOSSES`` fails it as a poison pill."""
        return self._record.losses

    @property
    def max_attempts(self) -> int:
        """1 + the task's retries."""
        return self._record.max_attempts

    @property
    def priority(self) -> int:
        """Higher runs first."""
        return self._record.priority

    @property
    def args(self) -> list[Any]:
        """Positional arguments."""
        return self._record.args

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments."""
        return self._record.kwargs

    @property
    def key(self) -> str | None:
        """Its uniqueness key, if any."""
        return self._record.key

    @property
    def eta(self) -> float:
        """When it is (or was) due, Unix time."""
        return self._record.eta

    @property
    def error(self) -> ErrorInfo | None:
        """The last error (type, message, traceback), if an attempt failed."""
        return self._record.error

    @property
    def created_at(self) -> float:
        """When it was enqueued, Unix time."""
        return self._record.created_at

    @property
    def started_at(self) -> float | None:
        """When its latest attempt started."""
        return self._record.started_at

    @property
    def finished_at(self) -> float | None:
        """When it reached a final status."""
        return self._record.finished_at

    @property
    def worker(self) -> str | None:
        """The worker holding it while it runs."""
        return self._record.worker

    def refresh(self) -> Job[R]:
        """Read the job again from the broker; returns self."""
        return self._app.run_blocking(self._reload())

    async def refresh_async(self) -> Job[R]:
        """Async twin of :meth:`refresh`."""
        return await self._reload()

    async def _reload(self) -> Job[R]:
        """Read the record again, on the running loop."""
        broker = await self._app.broker_here()
        record = await broker.get(self._record.id)
        if record is None:
            raise JobNotFound(f"job {self._record.id} no longer exists (retention removed it?)")
        self._record = record
        return self

    def result(self, timeout: float | None = None) -> R:
        """Wait until the job finishes and return its result.

        Raises:
            JobFailed: it failed for good (``error_type``, ``message``, ``traceback``).
            JobCancelled: it was cancelled.
            ResultTimeout: ``timeout`` seconds passed first.
        """
        return self._app.run_blocking(self._wait(timeout))

    async def result_async(self, timeout: float | None = None) -> R:
        """Async twin of :meth:`result`."""
        return await self._wait(timeout)

    async def _wait(self, timeout: float | None) -> R:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.002
        while True:
            await self._reload()
            status = self._record.status
            if status is Status.SUCCEEDED:
                return cast(R, self._record.result)
            if status is Status.FAILED:
                err = self._record.error or ErrorInfo("unknown", "no error recorded")
                raise JobFailed(self.id, err.type, err.message, err.traceback)
            if status is Status.CANCELLED:
                raise JobCancelled(self.id)
            if deadline is not None and time.monotonic() + pause > deadline:
                raise ResultTimeout(
                    f"job {self.id} ({self.task}) is still {status.value} after {timeout}s"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.1)

    def cancel(self) -> Job[R]:
        """Cancel the job (see :meth:`Conveyor.cancel`); returns self, refreshed."""
        return self._app.run_blocking(self._cancel())

    async def cancel_async(self) -> Job[R]:
        """Async twin of :meth:`cancel`."""
        return await self._cancel()

    async def _cancel(self) -> Job[R]:
        record = await (await self._app.broker_here()).cancel(self.id, time.time())
        if record is None:
            raise JobNotFound(f"job {self.id} no longer exists (retention removed it?)")
        self._record = record
        return self
