"""The worker: one task group of a batch claimer, job runners, an outcome flusher, a heartbeat
and a sweeper, with graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from conveyor.app import Conveyor
from conveyor.brokers.base import Consumer, Lease, Outcome, TaskStats, WorkerInfo
from conveyor.errors import ConfigurationError
from conveyor.execute import SyncRunner, execute
from conveyor.job import JobRecord, Status

log = logging.getLogger("conveyor.worker")

EXIT_OK = 0
EXIT_RESTART = 3  # a sync task would not stop: the supervisor should replace this process
FLUSH_AT_EXIT = 10.0  # seconds a stopping worker keeps retrying to record outcomes
UNKNOWN_TASK = "(unknown)"  # the stats label of every task this worker has not registered
CLAIM_SPLIT = 20  # a claim for this many slots or more goes out as two halves at once


class _Running:
    __slots__ = ("job", "reason", "started", "stats", "task")

    def __init__(self, job: JobRecord, stats: TaskStats) -> None:
        self.job = job
        self.stats = stats
        self.task: asyncio.Task[None] | None = None
        self.reason = ""  # why we cancelled it: "cancel", "lost" or "shutdown"
        self.started = time.perf_counter()


async def _first(*aws: Awaitable[Any]) -> None:
    """Wait until the first of ``aws`` completes; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


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
        host = socket.gethostname()
        self.id = name or f"{host}.{os.getpid()}.{os.urandom(2).hex()}"
        self.broker = app.broker.copy()
        self.exit_code = EXIT_OK
        self.stats = {"succeeded": 0, "failed": 0, "retried": 0, "cancelled": 0}
        # Per queue, then per task; sent with each heartbeat for /metrics.
        self._task_stats: dict[str, dict[str, TaskStats]] = {}
        self._host = host
        self._started_at = time.time()
        self._running: dict[str, _Running] = {}
        self._outcomes: list[Outcome] = []
        self._to_release: list[Lease] = []
        self._last_claim = time.monotonic()
        self._sync = SyncRunner(concurrency)
        self._closing = False
        self._give_up_at = float("inf")
        # Created in run(), on the worker's own loop.
        self._stopping: asyncio.Event
        self._killed: asyncio.Event
        # Set when a slot frees, and on stop() and kill(): what a full claim loop waits for.
        self._capacity: asyncio.Event
        # Outcomes are recorded while the claim loop waits (the worker is full, or idle): a
        # claim is what a freed slot waits for, and the broker would take it after them.
        self._parked: asyncio.Event  # set while the claim loop waits
        self._flush_due: asyncio.Event  # set when the flusher may have outcomes to record
        self._idle: asyncio.Timeout | None = None  # the wait of an idle worker, while it waits
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: Consumer  # opened in run(), once the broker is connected
        # stop() or kill() called before run() has made its events (a SIGTERM at start-up).
        self._early: list[Callable[[], None]] = []

    # -- control, callable from any thread or a signal handler --------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get ``grace`` seconds, then are handed back."""

        def soon() -> None:  # looks the events up when called: run() makes them
            self._stopping.set()
            self._capacity.set()  # a full worker's claim loop waits on this one alone
            self._end_idle_wait()

        self._call(soon)

    def kill(self) -> None:
        """Stop now: running jobs are interrupted and handed back at once."""

        def now() -> None:
            self._stopping.set()
            self._killed.set()
            self._capacity.set()
            self._end_idle_wait()

        self._call(now)

    def _call(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None:
            self._early.append(fn)  # run() applies it as soon as its events exist
            return
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    # -- the loops ----------------------------------------------------------------------

    async def run(self) -> int:
        """Work until stopped (or, with ``burst``, until idle); returns the exit code."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._killed = asyncio.Event()
        self._capacity = asyncio.Event()
        self._parked = asyncio.Event()
        self._flush_due = asyncio.Event()
        early, self._early = self._early, []
        for fn in early:
            fn()
        await self.broker.connect()
        self._session = self.broker.consumer(self.id, self.queues, self.lease)
        log.info(
            "worker %s started: queues=%s concurrency=%d lease=%ss broker=%s tasks=%d",
            self.id, ",".join(self.queues), self.concurrency, self.lease,
            self.app.url, len(self.app.tasks),
        )  # fmt: skip
        try:
            async with asyncio.TaskGroup() as tg:
                chores = [
                    tg.create_task(self._heartbeat_loop()),
                    tg.create_task(self._sweep_loop()),
                ]
                flusher = tg.create_task(self._flush_loop())
                try:
                    await self._claim_loop(tg)
                finally:
                    self._parked.set()
                    self._flush_due.set()
                await self._drain()
                self._closing = True
                self._give_up_at = time.monotonic() + FLUSH_AT_EXIT
                self._flush_due.set()
                await flusher
                for chore in chores:
                    chore.cancel()
        finally:
            await self._release_leftovers()
            await self._session.close()
            await self.broker.close()
            self._sync.shutdown()
        log.info(
            "worker %s stopped: %s", self.id, " ".join(f"{k}={v}" for k, v in self.stats.items())
        )
        return self.exit_code

    async def _claim_loop(self, tg: asyncio.TaskGroup) -> None:
        pause = 0.1
        busy = False  # the last claim got all it asked for: more work is likely waiting
        while not self._stopping.is_set():
            if self._sync.stuck:
                log.critical(
                    "worker %s has a task thread that will not stop; exiting so that a fresh "
                    "process replaces it",
                    self.id,
                )
                self.exit_code = EXIT_RESTART
                break
            free = self.concurrency - len(self._running)
            if free <= 0:
                # One plain event and no helper tasks: the jobs of a batch tend to end
                # together, and this wakes in the same pass of the loop as their ends.
                self._capacity.clear()
                await self._park(self._capacity.wait())
                continue
            try:
                claimed = await self._claim(tg, free, split=busy)
            except Exception as exc:  # the broker is down: back off and try again
                log.error(
                    "claim failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, pause
                )
                await self._park(_first(asyncio.sleep(pause), self._stopping.wait()))
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
            if not claimed and self.burst and not self._running:
                log.info("worker %s: no due jobs left, burst done", self.id)
                break
            if self.burst:  # the last job's end may be the moment to exit
                self._capacity.clear()
                await self._park(
                    _first(
                        self._session.wait(self.poll),
                        self._stopping.wait(),
                        self._capacity.wait(),
                    )
                )
            else:
                await self._park(self._idle_wait())

    async def _park(self, waiting: Awaitable[Any]) -> None:
        """Await ``waiting`` with the flusher free to record outcomes meanwhile."""
        self._parked.set()
        if self._outcomes:
            self._flush_due.set()
        try:
            await waiting
        finally:
            self._parked.clear()

    async def _idle_wait(self) -> None:
        """Wait for the broker's wake-up in this very task, until stop() ends it early: a
        helper task per wait would cost the job that ends it one more turn of the loop."""
        if self._stopping.is_set():
            return
        idle = asyncio.timeout(None)
        try:
            async with idle:
                self._idle = idle
                await self._session.wait(self.poll)
        except TimeoutError:
            if not idle.expired():
                raise
        finally:
            self._idle = None

    def _end_idle_wait(self) -> None:
        # A second stop() or kill() (SIGINT then SIGTERM) may come once the wait's timer has
        # fired but before the wait unwinds: it is ending already, and may not be rescheduled.
        idle = self._idle
        if idle is not None and not idle.expired():
            idle.reschedule(asyncio.get_running_loop().time())

    async def _claim(self, tg: asyncio.TaskGroup, free: int, *, split: bool) -> int:
        """Claim up to ``free`` jobs and start them; returns how many came."""
        if not split or free < CLAIM_SPLIT:
            return await self._claim_some(tg, free)
        # A broker spends time on each job it hands out (Redis: tens of µs), so a big claim
        # from a busy queue goes out as two halves at once: the jobs of the first half start
        # while the broker is still taking the second. Together they ask for the free slots
        # only. (An idle worker's claim is not split: it would cost the latency path a
        # second round trip for nothing.)
        halves = await asyncio.gather(
            self._claim_some(tg, free // 2),
            self._claim_some(tg, free - free // 2),
            return_exceptions=True,  # let both end: the jobs of either must start
        )
        claimed = 0
        for half in halves:
            if isinstance(half, BaseException):
                raise half
            claimed += half
        return claimed

    async def _claim_some(self, tg: asyncio.TaskGroup, limit: int) -> int:
        jobs = await self._session.claim(limit, time.time())
        for job in jobs:
            stats = self._tally(job)
            stats.observe_wait(max((job.started_at or 0.0) - job.eta, 0.0))
            entry = _Running(job, stats)
            self._running[job.id] = entry
            entry.task = tg.create_task(self._run_one(entry))
        return len(jobs)

    async def _run_one(self, entry: _Running) -> None:
        job = entry.job
        outcome: Outcome | None = None
        try:
            outcome = await execute(
                job, self.app.tasks, worker=self.id, middleware=self.app.middleware, sync=self._sync
            )
        except asyncio.CancelledError:
            if entry.reason == "cancel":
                outcome = Outcome(
                    id=job.id, token=job.token, status=Status.CANCELLED, finished_at=time.time()
                )
            elif entry.reason == "shutdown":
                self._to_release.append(Lease(job.id, job.token))
            elif entry.reason != "lost":
                raise
        finally:
            del self._running[job.id]
            self._capacity.set()
        if outcome is not None:
            self._log_outcome(entry, outcome, time.perf_counter() - entry.started)
            self._outcomes.append(outcome)
            if self._may_flush():
                self._flush_due.set()

    def _may_flush(self) -> bool:
        """While the claim loop claims, outcomes wait for it to wait; as many as the worker
        has slots go at once (with jobs that end as they start it may never wait)."""
        return self._parked.is_set() or self._closing or len(self._outcomes) >= self.concurrency

    def _tally(self, job: JobRecord) -> TaskStats:
        """The stats of ``job``'s queue and task (names this worker does not know share one,
        so that a flood of unknown names cannot grow them)."""
        per_task = self._task_stats.get(job.queue)
        if per_task is None:
            per_task = self._task_stats[job.queue] = {}
        name = job.task if job.task in self.app.tasks else UNKNOWN_TASK
        stats = per_task.get(name)
        if stats is None:
            stats = per_task[name] = TaskStats()
        return stats

    def _log_outcome(self, entry: _Running, out: Outcome, took: float) -> None:
        job, tally = entry.job, entry.stats
        if out.status is not Status.CANCELLED:
            tally.observe_run(took)
        if out.status is Status.SUCCEEDED:  # the hot path: build no string unless logged
            self.stats["succeeded"] += 1
            tally.succeeded += 1
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
            self.stats["retried"] += 1
            tally.retried += 1
            delay = max((out.eta or out.finished_at) - out.finished_at, 0.0)
            log.warning(
                "%s failed (%s): %s: %s; retry in %s",
                what, tries, err and err.type, err and err.message, _ms(delay),
            )  # fmt: skip
        elif out.status is Status.FAILED:
            self.stats["failed"] += 1
            tally.failed += 1
            log.error(
                "%s failed for good (%s): %s: %s",
                what, tries, err and err.type, err and err.message,
            )  # fmt: skip
        else:
            self.stats["cancelled"] += 1
            tally.cancelled += 1
            log.info("%s cancelled while running", what)

    async def _flush_loop(self) -> None:
        pause = 0.1
        while True:
            await self._flush_due.wait()
            self._flush_due.clear()
            if not self._may_flush():
                continue  # the claim loop went on claiming: it sets _flush_due when it waits
            if not self._parked.is_set():
                # A full pile, while the claim loop claims: the claims it has just made
                # (halves run as tasks) go first, for the slots that wait on them.
                await asyncio.sleep(0)
            # The batch stays in the pile until recorded: its leases are renewed meanwhile.
            batch = self._outcomes[:]
            if batch:
                try:
                    refused = await self._session.finish(batch)
                except Exception as exc:
                    if self._killed.is_set() or time.monotonic() > self._give_up_at:
                        # Their leases expire and another worker runs the jobs again:
                        # at-least-once holds, at the cost of a repeat.
                        log.error("dropping %d outcomes at shutdown: %s", len(batch), exc)
                        return
                    log.error("recording %d outcomes failed (%s); retrying", len(batch), exc)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 5.0)
                    self._flush_due.set()
                    continue
                del self._outcomes[: len(batch)]  # those that ended meanwhile stay
                pause = 0.1
                for job_id in refused:
                    log.warning(
                        "outcome of job %s refused: its lease passed to another worker", job_id
                    )
            if self._closing and not self._outcomes:
                return

    def _info(self, now: float) -> WorkerInfo:
        return WorkerInfo(
            id=self.id,
            hostname=self._host,
            pid=os.getpid(),
            queues=self.queues,
            concurrency=self.concurrency,
            started_at=self._started_at,
            seen_at=now,
            running=list(self._running),
            lease=self.lease,
            # Copies: the memory broker keeps the object, and the counters go on moving.
            stats={
                queue: {task: stats.snapshot() for task, stats in per_task.items()}
                for queue, per_task in self._task_stats.items()
            },
        )

    async def _heartbeat_loop(self) -> None:
        while True:
            now = time.time()
            # Jobs whose outcome waits to be recorded (the broker refused it for a while)
            # keep their leases too: else another worker would run them again.
            leases = [Lease(e.job.id, e.job.token) for e in self._running.values()]
            leases += [Lease(o.id, o.token) for o in self._outcomes]
            try:
                reply = await self._session.heartbeat(self._info(now), leases, now)
            except Exception as exc:
                log.error("heartbeat failed (%s: %s)", type(exc).__name__, exc)
            else:
                for job_id, reason in [(i, "lost") for i in reply.lost] + [
                    (i, "cancel") for i in reply.cancel
                ]:
                    entry = self._running.get(job_id)
                    if entry is not None and entry.task is not None and not entry.reason:
                        if reason == "lost":
                            log.warning("job %s: lease lost to another worker; stopping it", job_id)
                        entry.reason = reason
                        entry.task.cancel()
            await asyncio.sleep(self.lease / 3)

    async def _sweep_loop(self) -> None:
        last_prune = 0.0
        while True:
            now = time.time()
            try:
                for job_id in await self.broker.recover(now):
                    log.warning("job %s: its worker's lease expired; recovered", job_id)
                if now - last_prune > 60:
                    last_prune = now
                    while await self.broker.prune(self.app.retention, now, 1000) == 1000:
                        pass
            except Exception as exc:
                log.error("sweep failed (%s: %s)", type(exc).__name__, exc)
            idle = time.monotonic() - self._last_claim
            if idle > max(60.0, 10 * self.poll) and not self._stopping.is_set():
                log.critical(
                    "worker %s has not tried to claim for %.0fs although it is free to: "
                    "is the broker reachable?",
                    self.id, idle,
                )  # fmt: skip
            await asyncio.sleep(min(self.lease / 2, 5.0))

    async def _drain(self) -> None:
        if self._running and not self._killed.is_set():
            log.info(
                "worker %s stopping: waiting up to %ss for %d running jobs",
                self.id, self.grace, len(self._running),
            )  # fmt: skip
            deadline = time.monotonic() + self.grace
            while self._running and not self._killed.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._capacity.clear()
                await _first(self._capacity.wait(), self._killed.wait(), asyncio.sleep(left))
        for entry in list(self._running.values()):
            if entry.task is not None and not entry.reason:
                entry.reason = "shutdown"
                entry.task.cancel()
        while self._running:
            self._capacity.clear()
            await self._capacity.wait()

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


def run_worker(worker: Worker) -> int:
    """Run ``worker`` on a fresh event loop (uvloop when installed) with signal handling.

    SIGTERM or a first Ctrl-C stop it gracefully; a second Ctrl-C stops it now.
    """

    async def main() -> int:
        loop = asyncio.get_running_loop()
        presses = 0

        def on_sigint() -> None:
            nonlocal presses
            presses += 1
            if presses == 1:
                log.warning("stopping gracefully (Ctrl-C again to stop now)")
                worker.stop()
            else:
                log.warning("stopping now")
                worker.kill()

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, worker.stop)
        return await worker.run()

    try:
        import uvloop
    except ImportError:
        code = asyncio.run(main())
    else:
        code = uvloop.run(main())
    if any(t.name.startswith("conveyor-task") and t.is_alive() for t in threading.enumerate()):
        # A sync task that ignores interrupts would keep the interpreter alive forever.
        logging.shutdown()
        os._exit(code)
    return code
