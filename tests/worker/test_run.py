"""Jobs run and their results come back: sync and async tasks, every way to enqueue."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Sequence

import pytest

import conveyor
from conveyor import Backoff, Call, Status
from conveyor.brokers.base import Broker, Outcome
from conveyor.brokers.memory import MemoryBroker
from conveyor.job import JobRecord
from tests.worker.support import (
    WAIT,
    record_of,
    run_burst,
    running,
    store_of,
    until_status,
)


async def test_sync_and_async_tasks_run_and_results_read_back(app: conveyor.Conveyor) -> None:
    """A sync task (in a thread) and an async task (on the loop) both succeed."""
    threads: list[str] = []

    @app.task
    def add(x: int, y: int) -> int:
        threads.append(threading.current_thread().name)
        return x + y

    @app.task
    async def measure(name: str, *, width: int = 100) -> dict[str, int]:
        await asyncio.sleep(0)
        return {name: width}

    async with running(app):
        j1 = add.enqueue(2, 3)
        j2 = await measure.enqueue_async("a", width=7)
        assert await j1.result_async(timeout=WAIT) == 5
        assert await j2.result_async(timeout=WAIT) == {"a": 7}
    assert threads
    assert threads[0].startswith("conveyor-task")
    # Finished jobs read back through the sync API too (they need no worker any more).
    assert j1.result() == 5
    assert j1.status is Status.SUCCEEDED
    fetched = app.get_job(j2.id)
    assert (fetched.status, fetched.result(), fetched.attempts) == (Status.SUCCEEDED, {"a": 7}, 1)
    assert fetched.task == measure.name
    assert fetched.started_at is not None
    assert fetched.finished_at is not None
    assert fetched.created_at <= fetched.started_at <= fetched.finished_at
    assert fetched.worker is None
    assert fetched.error is None


async def test_task_name_defaults_to_module_and_qualname(app: conveyor.Conveyor) -> None:
    """A task is named after its module and qualified name, and its jobs carry that name."""

    @app.task
    def noop() -> None:
        return None

    assert noop.name == f"{__name__}.{noop.fn.__qualname__}"
    assert app.tasks[noop.name] is noop
    job = noop.enqueue()
    assert job.task == noop.name
    await run_burst(app)
    await job.result_async(timeout=WAIT)
    assert (await job.refresh_async()).status is Status.SUCCEEDED


async def test_enqueue_many_and_by_name(app: conveyor.Conveyor) -> None:
    """enqueue_many with Call, its async twin, and app.enqueue by name all run."""

    @app.task(name="math.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    many = add.enqueue_many([Call(1, 2), Call(3, y=4), Call(5)])
    many_async = await add.enqueue_many_async([Call(10, 1)])
    by_name = app.enqueue("math.add", args=[20], kwargs={"y": 2})
    by_name_async = await app.enqueue_async("math.add", args=[30, 3])
    assert add.enqueue_many([]) == []
    assert len({j.id for j in [*many, *many_async, by_name, by_name_async]}) == 6
    await run_burst(app)
    results = [await j.result_async(timeout=WAIT) for j in many]
    assert results == [3, 7, 5]
    assert await many_async[0].result_async(timeout=WAIT) == 11
    assert await by_name.result_async(timeout=WAIT) == 22
    assert await by_name_async.result_async(timeout=WAIT) == 33


async def test_options_are_applied_to_the_job(app: conveyor.Conveyor) -> None:
    """options(delay, priority, key, queue) show on the job, which runs from that queue."""

    @app.task(queue="images", priority=1, retries=2)
    def resize(image_id: str) -> str:
        return image_id.upper()

    # First, so that the delay below is not spent connecting to a server broker.
    plain = resize.enqueue("def")
    assert (plain.queue, plain.priority, plain.key) == ("images", 1, None)
    before = time.time()
    # Far above an enqueue's round trip on a loaded machine, which it must outlast.
    job = resize.options(delay=0.3, priority=9, key="resize:abc", queue="urgent").enqueue("abc")
    assert (job.queue, job.priority, job.key, job.max_attempts) == ("urgent", 9, "resize:abc", 3)
    assert job.status is Status.SCHEDULED
    assert job.eta >= before + 0.3
    async with running(app, queues=["urgent", "images"]):
        assert await job.result_async(timeout=WAIT) == "ABC"
        assert await plain.result_async(timeout=WAIT) == "DEF"


async def test_a_worker_runs_only_its_queues(app: conveyor.Conveyor) -> None:
    """A job in a queue the worker does not consume stays queued."""

    @app.task
    def echo(v: int) -> int:
        return v

    elsewhere = echo.options(queue="elsewhere").enqueue(1)
    here = echo.enqueue(2)
    await run_burst(app, queues=["default"])
    assert await here.result_async(timeout=WAIT) == 2
    assert (await record_of(app, elsewhere.id)).status is Status.QUEUED


async def test_wrong_arguments_are_refused_at_enqueue(
    app: conveyor.Conveyor, store: Broker
) -> None:
    """Arguments that do not bind to the signature raise TypeError naming the task."""

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TypeError, match=rf"cannot enqueue {add.name}: missing .*'y'"):
        add.enqueue(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=rf"cannot enqueue {add.name}: too many"):
        await add.enqueue_async(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=rf"cannot enqueue {add.name}: .*'z'"):
        add.options(priority=1).enqueue(1, 2, z=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=rf"cannot enqueue {add.name}"):
        add.enqueue_many([Call(1, 2), Call(1)])
    with pytest.raises(TypeError, match=rf"cannot enqueue {add.name}"):
        app.enqueue(add.name, args=[1, 2, 3])
    assert await store.counts() == {}


async def test_argument_checks_see_defaults_and_special_parameters(
    app: conveyor.Conveyor, store: Broker
) -> None:
    """Counting positional arguments (the fast check) never accepts what binding refuses."""

    @app.task
    def scale(x: int, factor: int = 2) -> int:
        return x * factor

    @app.task
    def flagged(x: int, *, flag: bool) -> bool:
        return flag

    @app.task
    def first(x: int, /) -> int:
        return x

    scale.enqueue(1)
    scale.enqueue(1, 3)
    app.enqueue(scale.name, args=[1], kwargs={"factor": 3})
    for bad in [(), (1, 2, 3)]:
        with pytest.raises(TypeError, match=rf"cannot enqueue {scale.name}"):
            scale.enqueue(*bad)
    with pytest.raises(TypeError, match=rf"cannot enqueue {flagged.name}: .*'flag'"):
        flagged.enqueue(1)  # type: ignore[call-arg]
    flagged.enqueue(1, flag=True)
    with pytest.raises(TypeError, match=rf"cannot enqueue {first.name}"):
        first.enqueue(x=1)  # type: ignore[call-arg]
    first.enqueue(1)
    assert sum((await store.counts())["default"].values()) == 5


async def test_non_json_arguments_are_refused_at_enqueue(
    app: conveyor.Conveyor, store: Broker
) -> None:
    """A set or datetime argument raises SerializationError naming it; nothing is enqueued."""

    @app.task
    def schedule(ids: list[int], *, when: dt.datetime | None = None) -> None:
        return None

    with pytest.raises(conveyor.SerializationError, match=r"args\[0\] = \{1, 2\}"):
        schedule.enqueue({1, 2})  # type: ignore[arg-type]
    with pytest.raises(conveyor.SerializationError, match=r"kwargs\['when'\]"):
        await schedule.enqueue_async([1], when=dt.datetime.now(dt.UTC))
    with pytest.raises(conveyor.SerializationError, match=schedule.name):
        app.enqueue(schedule.name, args=[[object()]])
    with pytest.raises(conveyor.SerializationError):
        schedule.enqueue_many([Call([1]), Call([2], when=dt.datetime.now(dt.UTC))])
    assert await store.counts() == {}


async def test_payload_too_large_is_refused(app_url: str) -> None:
    """Arguments over the app's max_payload raise PayloadTooLarge at enqueue."""
    small = conveyor.Conveyor(app_url, max_payload=64)
    try:

        @small.task
        def keep(blob: str) -> None:
            return None

        with pytest.raises(conveyor.PayloadTooLarge, match=keep.name):
            keep.enqueue("x" * 100)
        async with store_of(small) as store:
            assert await store.counts() == {}
    finally:
        await small.close_async()


async def test_get_job_of_an_unknown_id(app: conveyor.Conveyor) -> None:
    """get_job and cancel raise JobNotFound for an id that never existed."""
    with pytest.raises(conveyor.JobNotFound):
        await app.get_job_async("0" * 26)
    with pytest.raises(conveyor.JobNotFound):
        await app.cancel_async("0" * 26)


async def test_result_times_out_while_no_worker_runs(app: conveyor.Conveyor) -> None:
    """result(timeout=...) raises ResultTimeout while the job is still queued."""

    @app.task
    def noop() -> None:
        return None

    job = noop.enqueue()
    with pytest.raises(conveyor.ResultTimeout, match="still queued"):
        await job.result_async(timeout=0.05)


def test_sync_producer_with_a_worker_in_another_thread(app: conveyor.Conveyor) -> None:
    """Plain sync code enqueues and waits on results while a worker runs in a thread."""

    @app.task
    def double(x: int) -> int:
        return 2 * x

    worker = conveyor.Worker(app, poll=0.05, grace=1.0)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(asyncio.run(worker.run())))
    thread.start()
    try:
        jobs = [double.enqueue(i) for i in range(5)]
        assert [j.result(timeout=WAIT) for j in jobs] == [0, 2, 4, 6, 8]
        assert jobs[0].refresh().status is Status.SUCCEEDED
    finally:
        worker.stop()  # from another thread than the worker's
        thread.join(timeout=WAIT)
    assert not thread.is_alive()
    assert codes == [0]
    assert worker.stats["succeeded"] == 5


class CountingBroker(MemoryBroker):
    """A memory broker that notes, for each batch of outcomes, its size and how many jobs
    were still queued."""

    def __init__(self) -> None:
        super().__init__("memory://")
        self.batches: list[tuple[int, int]] = []

    async def record(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Note, then record."""
        queued = (await self.counts()).get("default", {}).get(Status.QUEUED, 0)
        self.batches.append((len(outcomes), queued))
        return await super().record(outcomes)


async def test_outcomes_of_jobs_that_never_let_the_worker_wait_are_recorded(
    memory_app: conveyor.Conveyor,
) -> None:
    """Outcomes are recorded while the worker waits for a slot or for work; jobs that end
    as soon as they start never let it wait, and then they go by the worker's concurrency,
    not all at the end."""
    # Memory only: a broker that notes each batch shows how the worker splits them.
    app = memory_app
    broker = CountingBroker()
    app.broker = broker

    @app.task
    async def instant(n: int) -> int:
        return n

    jobs = instant.enqueue_many([Call(n) for n in range(300)])
    worker = await run_burst(app, concurrency=4)
    assert worker.stats["succeeded"] == 300
    assert [await j.result_async(timeout=WAIT) for j in jobs] == list(range(300))
    assert sum(n for n, _ in broker.batches) == 300
    assert [n for n, queued in broker.batches if queued > 0]  # recorded while jobs waited
    assert max(n for n, _ in broker.batches) <= 3 * 4


async def test_outcomes_are_recorded_while_the_worker_is_full(app: conveyor.Conveyor) -> None:
    """With every slot busy, the outcomes of the jobs that ended are recorded meanwhile."""
    release = asyncio.Event()

    @app.task
    async def hold(n: int) -> int:
        if n:
            await release.wait()
        return n

    quick = hold.enqueue(0)
    slow = hold.enqueue_many([Call(1), Call(2)])
    async with running(app, concurrency=2):
        assert await quick.result_async(timeout=WAIT) == 0  # recorded while both slots hold
        assert [(await j.refresh_async()).status for j in slow] == [Status.RUNNING] * 2
        release.set()
        assert [await j.result_async(timeout=WAIT) for j in slow] == [1, 2]


class CallLogBroker(MemoryBroker):
    """A memory broker that logs its claims and outcome batches in the order they come."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    async def claim_for(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float
    ) -> list[JobRecord]:
        """Log the claim's limit, then claim."""
        self.calls.append(("claim", limit))
        return await super().claim_for(queues, worker, limit, lease, now)

    async def record(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Log the batch's size, then record it."""
        self.calls.append(("finish", len(outcomes)))
        return await super().record(outcomes)


async def test_claims_for_freed_slots_go_before_their_outcomes(
    memory_app: conveyor.Conveyor,
) -> None:
    """When a full worker's jobs all end at once, the claim that refills their slots (two
    halves at once) reaches the broker before their outcomes, which the slots do not wait
    for."""
    # Memory only: a broker that logs its calls shows the order the worker makes them in.
    app = memory_app
    broker = CallLogBroker()
    app.broker = broker
    release = asyncio.Event()

    @app.task
    async def hold(n: int) -> int:
        await release.wait()
        return n

    first = hold.enqueue_many([Call(n) for n in range(20)])
    hold.enqueue_many([Call(n) for n in range(20, 40)])
    async with running(app, concurrency=20):
        await until_status(app, first[-1].id, Status.RUNNING)
        assert broker.calls == [("claim", 20)]
        release.set()
        assert await first[0].result_async(timeout=WAIT) == 0
        assert broker.calls[1:4] == [("claim", 10), ("claim", 10), ("finish", 20)]


async def test_jobs_run_retry_and_wait_side_by_side(app: conveyor.Conveyor) -> None:
    """Sync and async tasks, a retry and a delayed job run through one store together."""
    tries: list[int] = []

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(retries=2, backoff=Backoff(base=0.02, jitter=False))
    async def flaky(n: int) -> dict[str, int]:
        tries.append(n)
        if len(tries) < 2:
            raise ConnectionError("upstream down")
        return {"n": n, "tries": len(tries)}

    sums = await add.enqueue_many_async([Call(i, i) for i in range(10)])
    retried = await flaky.enqueue_async(5)
    delayed = await add.options(delay=0.2, priority=3).enqueue_async(100, 1)
    assert delayed.status is Status.SCHEDULED
    async with running(app):
        assert [await j.result_async(timeout=WAIT) for j in sums] == [2 * i for i in range(10)]
        assert await retried.result_async(timeout=WAIT) == {"n": 5, "tries": 2}
        assert await delayed.result_async(timeout=WAIT) == 101
    record = await record_of(app, retried.id)
    assert (record.status, record.attempts, record.max_attempts) == (Status.SUCCEEDED, 2, 3)
    done = await record_of(app, delayed.id)
    assert done.started_at is not None
    assert done.started_at >= delayed.eta
