"""Rolling deploys: a job whose task this worker does not know may be another's to run.

While old and new workers run side by side, a job of a task that only the new code has can
be claimed by an old worker. Failing it there ("unknown task") would lose it to a deploy; so
a worker that does not know the task hands the job back, for a moment, when a live worker of
the job's queue reports that it knows the task. Only a task that no live worker knows fails.
"""

from __future__ import annotations

import logging
import time

from conveyor.brokers.base import Broker, Consumer, Lease
from conveyor.job import JobRecord

log = logging.getLogger("conveyor.worker")

PASS_ON_DELAY = 1.0
"""Seconds a job handed back for another worker waits, so that this one does not take it
straight back."""


SEEN_WITHIN = 3600.0
"""Seconds back the store is asked for workers; each is then judged by its own lease."""


async def pass_on(store: Broker, session: Consumer, job: JobRecord) -> bool:
    """Hand ``job`` back if a live worker of its queue knows its task; return whether it went.

    A broker that cannot be reached counts as gone: the job's lease, no longer renewed,
    expires and the job comes back as a loss, never failed for a deploy.
    """
    try:
        now = time.time()
        # Each worker is alive for its own lease after its last heartbeat, not for this
        # worker's: a shorter lease here must not see a live worker as gone.
        workers = await store.workers(now, max(session.lease, SEEN_WITHIN))
        homes = [
            w.id
            for w in workers
            if w.id != session.worker
            and w.seen_at > now - (w.lease or session.lease)
            and job.queue in w.queues
            and job.task in w.tasks
        ]
        if not homes:
            return False
        await session.release([Lease(job.id, job.token)], time.time(), PASS_ON_DELAY)
    except Exception as exc:
        log.error("job %s: could not hand it back for another worker (%s)", job.id, exc)
        return True
    log.warning(
        "job %s: task %s is unknown here but known to %s (a rolling deploy?); handed back",
        job.id, job.task, ", ".join(homes),
    )  # fmt: skip
    return True
