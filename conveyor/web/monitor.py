"""What the web app knows of the whole system: one snapshot of the broker (counts, paused
queues, workers) with the workers' counters summed, and a ring buffer of past snapshots.

The broker is the only place every worker process reaches, so each worker reports its own
cumulative counters and histograms with each heartbeat (``WorkerInfo.stats``) and the
:class:`Monitor` adds them up. A worker that stops reporting (it exited or died) leaves the
broker's list of workers after :data:`STATS_WINDOW`; its last report is then folded into a
running total, so the sums never go down while this server runs (they restart from zero with
the server, which Prometheus treats as a counter reset). What a worker counted after its last
heartbeat (at most a third of its lease) is not seen.

The history behind the dashboard's charts is kept in this process's memory: it starts empty
when the server starts and holds the last hour, one sample every few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Mapping

import msgspec

from conveyor.brokers.base import BUCKETS, Broker, Counts, TaskStats, WorkerInfo
from conveyor.job import Status

STATS_WINDOW = 3600.0
"""Workers seen within this many seconds still count in the sums (alive or not)."""
DEFAULT_LEASE = 30.0
MIN_ALIVE = 2.0

SAMPLE_FIELDS = ("scheduled", "queued", "running", "succeeded", "failed", "retried")
"""The numbers of each queue in a history sample; the last three are cumulative counters."""

Totals = dict[str, dict[str, TaskStats]]
"""Per queue, then per task: counters and histograms summed over workers."""


def alive(worker: WorkerInfo, now: float) -> bool:
    """Whether ``worker`` heartbeated within its lease (after which its jobs are recovered)."""
    return now - worker.seen_at <= max(worker.lease or DEFAULT_LEASE, MIN_ALIVE)


def add_stats(into: Totals, stats: Mapping[str, Mapping[str, TaskStats]]) -> None:
    """Add one worker's per-queue, per-task stats into ``into``."""
    width = len(BUCKETS) + 1
    for queue, per_task in stats.items():
        target = into.setdefault(queue, {})
        for task, s in per_task.items():
            t = target.get(task)
            if t is None:
                t = target[task] = TaskStats()
            t.succeeded += s.succeeded
            t.failed += s.failed
            t.retried += s.retried
            t.cancelled += s.cancelled
            # A worker of another version may have other buckets: its histograms are skipped.
            if len(s.run) == width and len(s.wait) == width:
                t.run = [a + b for a, b in zip(t.run, s.run, strict=True)]
                t.wait = [a + b for a, b in zip(t.wait, s.wait, strict=True)]
                t.run_sum += s.run_sum
                t.wait_sum += s.wait_sum


class Snapshot(msgspec.Struct, kw_only=True):
    """The system at one moment, as the web app reports it."""

    taken_at: float
    counts: Counts
    paused: list[str]
    workers: list[WorkerInfo]
    """Workers seen within :data:`STATS_WINDOW`, alive or not; see :meth:`live_workers`."""
    totals: Totals

    def live_workers(self) -> list[WorkerInfo]:
        """The workers that heartbeated within their lease."""
        return [w for w in self.workers if alive(w, self.taken_at)]

    def queue_names(self) -> list[str]:
        """Every queue that has jobs, is paused or is consumed by a live worker, sorted."""
        names = set(self.counts) | set(self.paused)
        names.update(q for w in self.live_workers() for q in w.queues)
        return sorted(names)

    def problems(self) -> list[str]:
        """What makes the system unhealthy: due jobs in a queue no live worker consumes."""
        consumed = {q for w in self.live_workers() for q in w.queues}
        found: list[str] = []
        for queue in sorted(self.counts):
            due = self.counts[queue].get(Status.QUEUED, 0)
            if due and queue not in consumed and queue not in self.paused:
                found.append(f"queue {queue!r} has {due} due jobs and no live worker consumes it")
        return found


class Sample(msgspec.Struct, array_like=True):
    """One point of the history: a time and, per queue, the numbers of SAMPLE_FIELDS."""

    t: float
    queues: dict[str, list[int]]


def sample_of(snap: Snapshot) -> Sample:
    """The history sample of a snapshot."""
    queues: dict[str, list[int]] = {}
    for queue in set(snap.counts) | set(snap.totals):
        per = snap.counts.get(queue, {})
        done = snap.totals.get(queue, {}).values()
        queues[queue] = [
            per.get(Status.SCHEDULED, 0),
            per.get(Status.QUEUED, 0),
            per.get(Status.RUNNING, 0),
            sum(s.succeeded for s in done),
            sum(s.failed for s in done),
            sum(s.retried for s in done),
        ]
    return Sample(round(snap.taken_at, 3), queues)


class Monitor:
    """Takes snapshots of the broker, one at a time, and keeps the recent ones as history.

    Args:
        every: seconds between history samples.
        keep: seconds of history kept.
    """

    def __init__(self, *, every: float = 5.0, keep: float = 3600.0) -> None:
        self.every = every
        self.started_at = time.time()
        self.history: deque[Sample] = deque(maxlen=max(1, int(keep / every)))
        self._last_seen: dict[str, WorkerInfo] = {}
        self._retired: Totals = {}
        self._lock = asyncio.Lock()

    async def snapshot(self, broker: Broker) -> Snapshot:
        """The system now. Raises what the broker raises.

        Three reads, each atomic but not together; one snapshot at a time, so that the
        workers' reports are folded in order.
        """
        async with self._lock:
            # One call after another: some brokers hold one connection.
            counts = await broker.counts()
            paused = await broker.paused()
            now = time.time()
            workers = await broker.workers(now, STATS_WINDOW)
            return Snapshot(
                taken_at=now,
                counts=counts,
                paused=paused,
                workers=workers,
                totals=self._fold(workers),
            )

    def _fold(self, workers: Iterable[WorkerInfo]) -> Totals:
        current = {w.id: w for w in workers}
        for worker_id, last in self._last_seen.items():
            if worker_id not in current:
                add_stats(self._retired, last.stats)
        self._last_seen = current
        totals: Totals = {}
        add_stats(totals, self._retired)
        for w in current.values():
            add_stats(totals, w.stats)
        return totals

    async def sample(self, broker: Broker) -> None:
        """Take a snapshot into the history (a broker error leaves a gap)."""
        snap = await self.snapshot(broker)
        self.history.append(sample_of(snap))

    def since(self, t: float) -> list[Sample]:
        """The samples taken after ``t``."""
        return [s for s in self.history if s.t > t]
