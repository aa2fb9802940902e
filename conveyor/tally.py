"""What a worker counts and logs of the outcomes the broker accepted."""

from __future__ import annotations

import logging
from collections.abc import Container

from conveyor.brokers.base import Outcome, TaskStats
from conveyor.job import JobRecord, Status

log = logging.getLogger("conveyor.worker")

UNKNOWN_TASK = "(unknown)"
"""The stats label of every task this worker has not registered."""


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


class Tally:
    """A worker's counters: totals per outcome, and per queue then per task the
    :class:`TaskStats` that its heartbeat reports for ``/metrics``.

    Only outcomes the broker accepted are counted and logged as such: one it refused (the
    lease had passed to another worker) is not this worker's result.
    """

    def __init__(self, known: Container[str]) -> None:
        self.known = known
        self.totals = {"succeeded": 0, "failed": 0, "retried": 0, "cancelled": 0}
        self.per_queue: dict[str, dict[str, TaskStats]] = {}

    def of(self, job: JobRecord) -> TaskStats:
        """The stats of ``job``'s queue and task (names this worker does not know share one,
        so that a flood of unknown names cannot grow them)."""
        per_task = self.per_queue.get(job.queue)
        if per_task is None:
            per_task = self.per_queue[job.queue] = {}
        name = job.task if job.task in self.known else UNKNOWN_TASK
        stats = per_task.get(name)
        if stats is None:
            stats = per_task[name] = TaskStats()
        return stats

    def snapshot(self) -> dict[str, dict[str, TaskStats]]:
        """Copies of the per-task stats, which later observations leave unchanged."""
        # The heartbeat's thread reads while the loop counts: dict() copies a dict in one
        # step under the GIL, where iterating it while a new task's entry is added would fail.
        return {
            queue: {task: stats.snapshot() for task, stats in dict(per_task).items()}
            for queue, per_task in dict(self.per_queue).items()
        }

    def recorded(self, job: JobRecord, out: Outcome, took: float) -> None:
        """Count and log ``out``, the outcome of ``job`` that ran ``took`` seconds."""
        stats = self.of(job)
        if out.status is not Status.CANCELLED:
            stats.observe_run(took)
        if out.status is Status.SUCCEEDED:  # the hot path: build no string unless logged
            self.totals["succeeded"] += 1
            stats.succeeded += 1
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "job %s %s succeeded in %s (attempt %d/%d)",
                    job.id, job.task, _ms(took), job.attempts, job.max_attempts,
                )  # fmt: skip
            return
        what = f"job {job.id} {job.task}"
        tries = f"attempt {job.attempts}/{job.max_attempts}"
        err = out.error
        if out.status in (Status.SCHEDULED, Status.QUEUED):
            self.totals["retried"] += 1
            stats.retried += 1
            delay = max((out.eta or out.finished_at) - out.finished_at, 0.0)
            log.warning(
                "%s failed (%s): %s: %s; retry in %s",
                what, tries, err and err.type, err and err.message, _ms(delay),
            )  # fmt: skip
        elif out.status is Status.FAILED:
            self.totals["failed"] += 1
            stats.failed += 1
            log.error(
                "%s failed for good (%s): %s: %s",
                what, tries, err and err.type, err and err.message,
            )  # fmt: skip
        else:
            self.totals["cancelled"] += 1
            stats.cancelled += 1
            log.info("%s cancelled while running", what)

    @staticmethod
    def refused(job: JobRecord, out: Outcome) -> None:
        """Log an outcome the broker refused: another worker holds the job now."""
        log.warning(
            "outcome of job %s refused: its lease passed to another worker (%s, %s: not counted)",
            job.id, job.task, out.status.value,
        )  # fmt: skip
