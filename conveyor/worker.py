"""The worker: one task group that reads as a pipeline.

    claimer -> bounded queue of claimed jobs -> runners -> batch of outcomes -> recorder

beside a heartbeat (renews the leases of every job the worker holds) and a sweeper (recovers
expired leases, applies retention). The claimer claims only for idle runners, so the queue
never holds more than the worker can start at once and nothing waits in its memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import socket
import time
from collections.abc import Sequence

from conveyor.app import Conveyor
from conveyor.brokers.base import Consumer, HeartbeatReply, Lease, Outcome, WorkerInfo
from conveyor.deploys import pass_on
from conveyor.errors import ConfigurationError
from conveyor.execute import SyncRunner, execute
from conveyor.heartbeat import Heartbeat
from conveyor.job import JobRecord, Status
from conveyor.outcomes import Outcomes
from conveyor.sweeper import sweep
from conveyor.tally import Tally

log = logging.getLogger("conveyor.worker")

EXIT_OK = 0
EXIT_RESTART = 3  # a sync task would not stop: the process must be replaced
FLUSH_AT_EXIT = 10.0  # seconds a stopping worker keeps retrying to record outcomes
CLAIM_SPLIT = 20  # a claim for this many slots or more goes out as two halves at once
SPARE_DELAY = 1.0  # seconds until a job lost with its worker, handed back unrun, is due again
BLOCKED_REPORT = 1.0  # seconds an async task may block the event loop before it is reported


class Phase(enum.Enum):
    """Where a worker is in its life; only ever moves forward."""

    CLAIMING = "claiming"
    DRAINING = "draining"  # stop(): no more claims; running jobs get the grace period
    KILLED = "killed"  # kill(): running jobs are interrupted and handed back at once


@dataclasses.dataclass(slots=True, eq=False)
class _Running:
    """A claimed job, from its claim to its outcome; ``reason`` says why it was interrupted."""

    job: JobRecord
    runner: asyncio.Task[None] | None = None
    reason: str = ""  # "cancel", "lost" or "shutdown"
    started: float = 0.0


class Worker:
    """Claims jobs from ``queues`` and runs up to ``concurrency`` of them at once.

    Args:
        app: the application whose tasks and broker the worker uses.
        queues: the queues to consume, in no particular order (priority decides).
        concurrency: jobs run at once; sync tasks get as many threads.
        lease: seconds a claim lasts without a heartbeat (renewed every third of it).
        burst: return once no due job is left and nothing runs.
        grace: seconds running jobs get to finish on shutdown before they are handed back.
        poll: the longest idle wait before claiming again (the broker wakes it sooner).
    """

    def __init__(
        self,
        app: Conveyor,
        *,
        queues: Sequence[str] = ("default",),
        concurrency: int = 10,
        lease: float = 30.0,
        burst: bool = False,
        grace: float = 30.0,
        poll: float = 1.0,
        name: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        if lease < 0.3:
            raise ConfigurationError(f"lease must be at least 0.3 seconds, got {lease}")
        if not queues or not all(queues):
            raise ConfigurationError(f"queues must be non-empty names, got {list(queues)!r}")
        self.app = app
        self.queues = list(dict.fromkeys(queues))
        self.concurrency = concurrency
        self.lease = lease
        self.burst = burst
        self.grace = grace
        self.poll = poll
        self._host = socket.gethostname()
        self.id = name or f"{self._host}.{os.getpid()}.{os.urandom(2).hex()}"
        self.broker = app.broker.copy()
        self.exit_code = EXIT_OK
        self.phase = Phase.CLAIMING
        self.tally = Tally(app.tasks)
        self._started_at = time.time()
        self._sync = SyncRunner(concurrency)
        self._last_claim = time.monotonic()
        # The pipeline. Events bind to a loop only when first awaited, so stop() may set
        # them before run() starts (a SIGTERM at start-up).
        self._jobs: asyncio.Queue[_Running | None] = asyncio.Queue()
        self._running: dict[str, _Running] = {}  # claimed and not yet ended: queued or running
        self._suspect: _Running | None = None  # claimed, to run alone (see _isolate)
        self._slot_freed = asyncio.Event()  # a runner finished a job (or the phase moved on)
        self._killed = asyncio.Event()
        self._outcomes = Outcomes(concurrency)
        self._to_release: list[Lease] = []  # jobs interrupted by the shutdown
        self._idle_wait: asyncio.Timeout | None = None  # the claimer's wait, while it waits
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: Consumer  # opened in run(), once the broker is connected
        self._heart = Heartbeat(
            self.broker.copy(),
            worker=self.id,
            queues=self.queues,
            lease=lease,
            snapshot=self._snapshot,
            on_reply=self._on_heartbeat,
            tasks=app.tasks,
            running=lambda: [e.job for e in list(self._running.values()) if e.runner],
            report_after=min(BLOCKED_REPORT, lease / 3),
        )

    @property
    def stats(self) -> dict[str, int]:
        """Outcomes the broker accepted, by kind: succeeded, failed, retried, cancelled."""
        return self.tally.totals

    # -- control, callable from any thread or a signal handler --------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get ``grace`` seconds, then are handed back."""
        self._move_to(Phase.DRAINING)

    def kill(self) -> None:
        """Stop now: running jobs are interrupted and handed back at once."""
        self._move_to(Phase.KILLED)

    def _move_to(self, phase: Phase) -> None:
        loop = self._loop
        if loop is None or asyncio._get_running_loop() is loop:
            self._advance(phase)
        else:
            loop.call_soon_threadsafe(self._advance, phase)

    def _advance(self, phase: Phase) -> None:
        order = list(Phase)
        if order.index(phase) <= order.index(self.phase):
            return
        self.phase = phase
        if phase is Phase.KILLED:
            self._killed.set()
        self._slot_freed.set()  # a full claimer waits on this one alone
        self._end_wait()

    def _end_wait(self) -> None:
        # A second stop() or kill() may come once the wait's timer has fired but before the
        # wait unwound: it is ending already, and may not be rescheduled.
        idle = self._idle_wait
        if idle is not None and not idle.expired():
            idle.reschedule(asyncio.get_running_loop().time())

    # -- the pipeline -------------------------------------------------------------------

    async def run(self) -> int:
        """Work until stopped (or, with ``burst``, until idle); returns the exit code."""
        self._loop = asyncio.get_running_loop()
        await self.broker.connect()
        self._session = self.broker.consumer(self.id, self.queues, self.lease)
        self._heart.start()
        log.info(
            "worker %s started: queues=%s concurrency=%d lease=%ss broker=%s tasks=%d",
            self.id, ",".join(self.queues), self.concurrency, self.lease,
            self.broker.location, len(self.app.tasks),
        )  # fmt: skip
        try:
            async with asyncio.TaskGroup() as tg:
                every = min(self.lease / 2, 5.0)
                sweeper = tg.create_task(
                    sweep(self.broker, self.app.retention, every, self._idle_for, self.poll)
                )
                recorder = tg.create_task(
                    self._outcomes.record(self._session, self.tally, self._killed)
                )
                runners = [tg.create_task(self._runner()) for _ in range(self.concurrency)]
                try:
                    await self._claimer()
                finally:
                    self._outcomes.claimer_done()
                await self._drain(runners)
                self._outcomes.close(time.monotonic() + FLUSH_AT_EXIT)
                await recorder
                sweeper.cancel()
        finally:
            await self._heart.stop()
            await self._release_leftovers()
            await self._session.close()
            await self.broker.close()
            self._sync.shutdown()
        totals = " ".join(f"{k}={v}" for k, v in self.stats.items())
        log.info("worker %s stopped: %s", self.id, totals)
        return self.exit_code

    async def _claimer(self) -> None:
        pause = 0.1
        busy = False  # the last claim got all it asked for: more work is likely waiting
        while self.phase is Phase.CLAIMING:
            if self._sync.stuck:
                log.critical(
                    "worker %s has a task thread that will not stop; stopping, so that a "
                    "fresh process takes over",
                    self.id,
                )
                self.exit_code = EXIT_RESTART
                return
            if self._suspect is not None:
                await self._isolate(self._suspect)
                continue
            free = self.concurrency - len(self._running)
            if free <= 0:
                await self._until_a_job_ends()
                continue
            try:
                claimed = await self._claim(free, split=busy)
            except Exception as exc:  # the broker is down: back off and try again
                log.error(
                    "claim failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, pause
                )
                await self._outcomes.while_claimer_waits(self._wait(pause))
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.1
            self._last_claim = time.monotonic()
            if claimed:
                # Let the jobs just claimed take their first step before this task goes on
                # to the broker again (a claim or a wait costs a broker call's worth of CPU).
                await asyncio.sleep(0)
            busy = claimed == free
            if busy:
                continue
            if self.burst and not claimed and not self._running:
                if self._outcomes.pending:  # a retry due at once may be among them
                    await self._outcomes.while_claimer_waits(self._outcomes.all_recorded())
                    continue
                log.info("worker %s: no due jobs left, burst done", self.id)
                return
            await self._outcomes.while_claimer_waits(self._wait(self.poll))

    async def _until_a_job_ends(self) -> None:
        # One plain event and no helper tasks: the jobs of a batch tend to end together,
        # and this wakes in the same pass of the loop as their ends.
        self._slot_freed.clear()
        await self._outcomes.while_claimer_waits(self._slot_freed.wait())

    async def _isolate(self, suspect: _Running) -> None:
        """Run a job that was running when its worker was lost with no other job beside it:
        were it a poison pill that kills its process, no other job would die with it again,
        and be taken for a poison pill in its turn."""
        while len(self._running) > 1 and self.phase is Phase.CLAIMING:
            await self._until_a_job_ends()
        # Nor beside an outcome not yet recorded, which would be lost with the process too.
        await self._outcomes.while_claimer_waits(self._outcomes.all_recorded())
        if self.phase is not Phase.CLAIMING:
            return  # _drain hands it back
        self._suspect = None
        self._jobs.put_nowait(suspect)
        while suspect.job.id in self._running and self.phase is Phase.CLAIMING:
            await self._until_a_job_ends()
        # Its own outcome goes in before the next claim brings a job that might be a pill.
        await self._outcomes.while_claimer_waits(self._outcomes.all_recorded())

    async def _wait(self, seconds: float) -> None:
        """Wait for the broker's wake-up in this very task, until stop() (or, in burst mode,
        a job's end) ends it early: a helper task per wait would cost the job that ends it
        one more turn of the loop."""
        if self.phase is not Phase.CLAIMING:
            return
        idle = asyncio.timeout(None)
        try:
            async with idle:
                self._idle_wait = idle
                await self._session.wait(seconds)
        except TimeoutError:
            if not idle.expired():
                raise
        finally:
            self._idle_wait = None

    async def _claim(self, free: int, *, split: bool) -> int:
        """Claim up to ``free`` jobs and hand them to the runners; returns how many came."""
        if not split or free < CLAIM_SPLIT:
            return await self._claim_some(free)
        # A broker spends time on each job it hands out, so a big claim from a busy queue
        # goes out as two halves at once: the jobs of the first half start while the broker
        # is still taking the second. Together they ask for the free slots only. (An idle
        # worker's claim is not split: it would cost the latency path a round trip.)
        halves = await asyncio.gather(
            self._claim_some(free // 2),
            self._claim_some(free - free // 2),
            return_exceptions=True,  # let both end: the jobs of either must start
        )
        for half in halves:
            if isinstance(half, BaseException):
                raise half
        return sum(h for h in halves if isinstance(h, int))

    async def _claim_some(self, limit: int) -> int:
        jobs = await self._session.claim(limit, time.time())
        spare: list[Lease] = []  # jobs lost with their worker, beyond the one this one keeps
        for job in jobs:
            if job.losses and self._suspect is not None:
                spare.append(Lease(job.id, job.token))
                continue
            self.tally.of(job).observe_wait(max((job.started_at or 0.0) - job.eta, 0.0))
            entry = self._running[job.id] = _Running(job)
            if job.losses:  # lost with its worker before: it runs alone (see _isolate)
                self._suspect = entry
            else:
                self._jobs.put_nowait(entry)
        if spare:  # held here, they would die with the suspect too: a second later, another
            await self._session.release(spare, time.time(), SPARE_DELAY)  # worker runs them
        return len(jobs)

    async def _runner(self) -> None:
        """Run claimed jobs one at a time until the queue hands it None (the shutdown)."""
        me = asyncio.current_task()
        while (entry := await self._jobs.get()) is not None:
            entry.runner, entry.started = me, time.perf_counter()
            outcome = await self._run(entry)
            del self._running[entry.job.id]
            self._slot_freed.set()
            if self.burst:  # the last job's end may be the moment to exit
                self._end_wait()
            if outcome is not None:
                self._outcomes.add(entry.job, outcome, time.perf_counter() - entry.started)

    async def _run(self, entry: _Running) -> Outcome | None:
        job = entry.job
        try:
            if entry.reason:  # interrupted before it started (a kill with jobs queued)
                raise asyncio.CancelledError
            if job.task not in self.app.tasks and await pass_on(self.broker, self._session, job):
                return None
            return await execute(
                job, self.app.tasks, worker=self.id, middleware=self.app.middleware, sync=self._sync
            )
        except asyncio.CancelledError:
            if not entry.reason:
                raise  # not ours: the task group is being torn down
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()  # the runner goes on with the next job
            if entry.reason == "cancel":
                return Outcome(
                    id=job.id, token=job.token, status=Status.CANCELLED, finished_at=time.time()
                )
            if entry.reason == "shutdown":
                self._to_release.append(Lease(job.id, job.token))
            return None

    def _interrupt(self, entry: _Running, reason: str) -> None:
        if entry.reason:
            return
        entry.reason = reason
        if entry.runner is not None:
            entry.runner.cancel()

    def _snapshot(self, now: float) -> tuple[WorkerInfo, list[Lease]]:
        """What the heartbeat reports and renews: every job claimed and not yet ended, and
        those whose outcome waits to be recorded (else another worker would run them again).
        Called in the heartbeat's thread: it copies, in single steps, and changes nothing."""
        entries = list(self._running.values())
        leases = [Lease(e.job.id, e.job.token) for e in entries] + self._outcomes.leases()
        info = WorkerInfo(
            id=self.id,
            hostname=self._host,
            pid=os.getpid(),
            queues=self.queues,
            concurrency=self.concurrency,
            started_at=self._started_at,
            seen_at=now,
            running=[e.job.id for e in entries],
            lease=self.lease,
            tasks=sorted(self.app.tasks),
            # Copies: the memory broker keeps the object, and the counters go on moving.
            stats=self.tally.snapshot(),
        )
        return info, leases

    def _on_heartbeat(self, reply: HeartbeatReply) -> None:
        """Stop the jobs whose lease was lost or whose cancel was asked (on the loop)."""
        for job_id in reply.lost:
            if (entry := self._running.get(job_id)) is not None and not entry.reason:
                log.warning("job %s: lease lost to another worker; stopping it", job_id)
                self._interrupt(entry, "lost")
        for job_id in reply.cancel:
            if (entry := self._running.get(job_id)) is not None:
                self._interrupt(entry, "cancel")

    def _idle_for(self) -> float:
        """Seconds since the claimer last tried to claim, while it should (0 once stopping):
        the sweeper's silent-idle-worker guard reads it."""
        claiming = self.phase is Phase.CLAIMING
        return time.monotonic() - self._last_claim if claiming else 0.0

    async def _drain(self, runners: list[asyncio.Task[None]]) -> None:
        """End the runners: jobs claimed still run, within the grace period unless killed;
        then those left are interrupted and handed back."""
        if self._suspect is not None:  # never started: handed back, not run
            self._suspect.reason = "shutdown"
            self._jobs.put_nowait(self._suspect)
        for _ in runners:
            self._jobs.put_nowait(None)  # after every claimed job: each runner takes one
        busy = {r for r in runners if not r.done()}
        if self._running and self.phase is not Phase.KILLED:
            log.info(
                "worker %s stopping: waiting up to %ss for %d running jobs",
                self.id, self.grace, len(self._running),
            )  # fmt: skip
            deadline = time.monotonic() + self.grace
            killed = asyncio.ensure_future(self._killed.wait())
            try:
                while busy and not killed.done() and (left := deadline - time.monotonic()) > 0:
                    await asyncio.wait({*busy, killed}, timeout=left, return_when="FIRST_COMPLETED")
                    busy = {r for r in busy if not r.done()}
            finally:
                killed.cancel()
        for entry in list(self._running.values()):
            self._interrupt(entry, "shutdown")
        await asyncio.gather(*runners)

    async def _release_leftovers(self) -> None:
        if not self._to_release:
            return
        leases, self._to_release = self._to_release, []
        try:
            await self._session.release(leases, time.time())
            log.info("handed back %d unfinished jobs", len(leases))
        except Exception as exc:
            log.error(
                "could not hand back %d jobs (%s); their leases will expire", len(leases), exc
            )
