"""Fault injection from outside, on real worker processes: a SIGKILL storm and a poison pill.

At-least-once allows a job to run twice; it never allows one to be lost, nor a lost worker to
spend a job's attempts (issue 16): with ``retries=0``, every job whose worker was killed must
come back and succeed.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

import conveyor
from conveyor.brokers import from_url
from conveyor.brokers.base import JobFilter
from conveyor.job import MAX_LOSSES, JobRecord, Status
from tests.acceptance.conftest import Env
from tests.servers import PostgresServer, RedisServer

pytestmark = pytest.mark.slow

BROKERS = ["sqlite", "redis", "postgres"]

LEASE = "1"  # seconds: a killed worker's jobs come back about a second later
JOBS = 3000
STORM = 15.0  # seconds of kills
DRAIN = 45.0  # seconds the whole drain may take, storm included, on a loaded machine
# Three workers of 4 jobs of 40 ms at once drain at most 300 jobs a second: the 3,000 take
# over 10 s, so that the storm's kills land on running jobs.
CONCURRENCY = 4
JOB_SECONDS = 0.04
UNFINISHED = (Status.SCHEDULED, Status.QUEUED, Status.RUNNING)


@pytest.fixture(params=BROKERS)
def url(request: pytest.FixtureRequest, env: Env) -> str:
    """The broker every process of the test shares: a fresh store of the session's servers."""
    kind: str = request.param
    if kind == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        env.url = f"{redis.url}?prefix=s{uuid.uuid4().hex[:12]}"
    elif kind == "postgres":
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        env.url = f"{postgres.url()}?schema=s_{uuid.uuid4().hex[:16]}"
    env.env["CONVEYOR_URL"] = env.url
    return env.url


def enqueue(url: str, calls: list[tuple[str, list[object]]]) -> list[str]:
    """Enqueue ``(task, args)`` calls with ``retries=0`` straight through a broker, in order."""
    app = conveyor.Conveyor(url)
    records = [app.build_job(name, args, retries=0) for name, args in calls]

    async def go() -> list[str]:
        broker = from_url(url)
        await broker.connect()
        try:
            ids: list[str] = []
            for start in range(0, len(records), 500):
                ids += [r.id for r in await broker.enqueue(records[start : start + 500])]
            return ids
        finally:
            await broker.close()

    return asyncio.run(go())


def statuses(url: str) -> Mapping[Status, int]:
    """How many jobs of the default queue are in each status."""

    async def go() -> Mapping[Status, int]:
        broker = from_url(url)
        await broker.connect()
        try:
            return dict((await broker.counts()).get("default", {}))
        finally:
            await broker.close()

    return asyncio.run(go())


def every_job(url: str) -> list[JobRecord]:
    """Every job in the store, page by page."""

    async def go() -> list[JobRecord]:
        broker = from_url(url)
        await broker.connect()
        try:
            jobs: list[JobRecord] = []
            while page := await broker.list(
                JobFilter(before=jobs[-1].id if jobs else None, limit=1000)
            ):
                jobs += page
            return jobs
        finally:
            await broker.close()

    return asyncio.run(go())


class Crew:
    """``size`` worker processes kept alive: a dead one is replaced by a fresh one."""

    def __init__(self, env: Env, size: int, *args: str) -> None:
        self.env = env
        self.args = args
        self.alive = [env.worker(*args) for _ in range(size)]
        self.kills = 0
        self.deaths = 0

    def kill_one(self) -> None:
        """SIGKILL the oldest worker and start a fresh one in its place."""
        victim = self.alive.pop(0)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.kills += 1
        self.alive.append(self.env.worker(*self.args))

    def replace_the_dead(self) -> None:
        """Start a fresh worker for each one that exited by itself."""
        for proc in list(self.alive):
            if proc.poll() is not None:
                self.alive.remove(proc)
                self.deaths += 1
                self.alive.append(self.env.worker(*self.args))

    def until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Keep the crew up until ``done``, polling; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            self.replace_the_dead()
            time.sleep(0.1)


def drained(url: str) -> bool:
    """No job of the default queue is left unfinished."""
    counts = statuses(url)
    return not any(counts.get(s, 0) for s in UNFINISHED)


@pytest.mark.timeout(120)
def test_a_sigkill_storm_loses_no_job_and_fails_none(
    env: Env, url: str, record_property: Callable[[str, object], None]
) -> None:
    """Three workers, one SIGKILLed every second for 15 s (a fresh one started in its place)
    while 3,000 jobs of retries=0 drain: every job succeeds, on its one attempt; the jobs a
    killed worker held come back (each loss counted apart from the attempts)."""
    ids = enqueue(url, [("acc_tasks.brief", [n, JOB_SECONDS]) for n in range(JOBS)])
    started = time.monotonic()
    crew = Crew(env, 3, "--lease", LEASE, "--concurrency", str(CONCURRENCY))
    crew.until(lambda: statuses(url).get(Status.SUCCEEDED, 0) > 0, 30, "a first job to succeed")
    storm_end = time.monotonic() + STORM
    # A kill a second is the storm's own clock, not a wait for work: the fixed sleep is the
    # point. It stops early once nothing is left to lose.
    while time.monotonic() < storm_end and not drained(url):
        time.sleep(1.0)
        crew.kill_one()
    crew.until(lambda: drained(url), DRAIN, "every job to finish")
    elapsed = time.monotonic() - started
    jobs = every_job(url)
    assert sorted(j.id for j in jobs) == sorted(ids)
    by_status = collections.Counter(j.status for j in jobs)
    errors = collections.Counter(j.error.type for j in jobs if j.error is not None)
    assert by_status == {Status.SUCCEEDED: JOBS}, (by_status, errors)
    assert {(j.attempts, j.max_attempts) for j in jobs} == {(1, 1)}
    assert sorted(j.result for j in jobs) == list(range(JOBS))
    lost = [j.losses for j in jobs if j.losses]
    assert crew.kills > 0
    assert lost, "no kill caught a job running: the storm tested nothing"
    record_property("kills", crew.kills)
    record_property("jobs run more than once", len(lost))
    record_property("losses", sum(lost))
    record_property("seconds", round(elapsed, 1))
    print(
        f"storm: {crew.kills} kills, {len(lost)} jobs ran more than once "
        f"({sum(lost)} losses, at most {max(lost)} for one job), drained in {elapsed:.1f}s"
    )


def poison_pill_run(env: Env, url: str, crew: int, concurrency: int, mates: int) -> None:
    """The pill enqueued after ``mates`` jobs and before the rest of 200: the crew runs them
    all, each worker the pill kills replaced by a fresh one."""
    calls: list[tuple[str, list[object]]] = [("acc_tasks.brief", [n]) for n in range(200)]
    ids = enqueue(url, [*calls[:mates], ("acc_tasks.pill", []), *calls[mates:]])
    bad = ids[mates]
    workers = Crew(env, crew, "--lease", LEASE, "--concurrency", str(concurrency))
    workers.until(lambda: drained(url), DRAIN, "every job to finish")
    jobs = {j.id: j for j in every_job(url)}
    pill = jobs.pop(bad)
    assert pill.status == Status.FAILED
    assert pill.error is not None
    assert pill.error.type == "conveyor.PoisonPill"
    assert f"lost {MAX_LOSSES + 1} times" in pill.error.message
    assert pill.losses == MAX_LOSSES + 1
    assert workers.deaths == MAX_LOSSES + 1
    others = collections.Counter(j.status for j in jobs.values())
    assert others == {Status.SUCCEEDED: 200}, [j for j in jobs.values() if j.error]
    logs = "".join(path.read_text() for path in env.logs)
    assert f"failed as a poison pill after {MAX_LOSSES + 1} losses" in logs
    assert "recovered" not in logs


@pytest.mark.timeout(120)
def test_a_poison_pill_fails_after_its_limit_while_200_others_succeed(env: Env, url: str) -> None:
    """A task that kills its worker process every time it runs ends failed as a poison pill
    after MAX_LOSSES + 1 losses, while 200 other jobs of retries=0 succeed. Workers of
    concurrency 1 (the next test has concurrency 4)."""
    poison_pill_run(env, url, crew=2, concurrency=1, mates=100)


@pytest.mark.timeout(120)
def test_the_jobs_running_beside_a_poison_pill_do_not_fail_with_it(tmp_path: Path) -> None:
    """SQLite, one worker of concurrency 4 at a time: the pill is claimed with the 3 jobs
    enqueued after it, and all four come back together after its first kill. From then on
    each runs alone (a job lost with its worker does), so only the pill dies again, and
    only the pill ends failed."""
    env = Env(tmp_path)
    try:
        poison_pill_run(env, env.url, crew=1, concurrency=4, mates=0)
    finally:
        env.cleanup()
