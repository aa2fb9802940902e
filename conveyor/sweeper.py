"""A worker's sweeper: recover the jobs of lost workers, apply retention, and say where
each recovered job went."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from conveyor.brokers.base import Broker, Retention
from conveyor.brokers.common import POISON_PILL
from conveyor.job import MAX_LOSSES, Status

log = logging.getLogger("conveyor.worker")

PRUNE_EVERY = 60.0
"""Seconds between two rounds of retention."""
PRUNE_BATCH = 1000
"""Finished jobs deleted per call of ``prune``."""


async def sweep(
    store: Broker, retention: Retention, every: float, idle_for: Callable[[], float], poll: float
) -> None:
    """Every ``every`` seconds, until cancelled: put back (or fail) the running jobs whose
    lease expired, and once a minute delete the finished jobs past their retention; then say
    loudly if the worker's claimer has not tried to claim for a while (``idle_for()``
    seconds, against its ``poll``). Errors are logged, never raised."""
    last_prune = 0.0
    while True:
        now = time.time()
        try:
            for job_id in await store.recover(now):
                await report_loss(store, job_id)
            if now - last_prune > PRUNE_EVERY:
                last_prune = now
                while await store.prune(retention, now, PRUNE_BATCH) == PRUNE_BATCH:
                    pass
        except Exception as exc:
            log.error("sweep failed (%s: %s)", type(exc).__name__, exc)
        idle = idle_for()
        if idle > max(60.0, 10 * poll):  # a broker reconnect must never leave a silent worker
            log.critical(
                "the worker has not tried to claim for %.0fs although it is free to: "
                "is the broker reachable?",
                idle,
            )
        await asyncio.sleep(every)


async def report_loss(store: Broker, job_id: str) -> None:
    """Log where a job whose worker was lost went (recoveries are rare: it is read back),
    so the log never says a job was recovered when it was failed."""
    job = await store.get(job_id)
    if job is None:
        return
    error = job.error.message if job.error is not None else ""
    if job.status is Status.FAILED and job.error is not None and job.error.type == POISON_PILL:
        log.error(
            "job %s (%s): failed as a poison pill after %d losses: %s",
            job.id, job.task, job.losses, error,
        )  # fmt: skip
    elif job.status in (Status.FAILED, Status.CANCELLED):
        log.error("job %s (%s): lease expired; %s: %s", job.id, job.task, job.status, error)
    else:
        log.warning(
            "job %s (%s): lease expired (loss %d/%d): back to its queue",
            job.id, job.task, job.losses, MAX_LOSSES,
        )  # fmt: skip
