"""The worker against the SQLite broker: a file shared by the producer and the worker."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

import conveyor
from conveyor import Backoff, Call, Status
from tests.worker.support import WAIT, record_of, running, until_status

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("conveyor.brokers.sqlite") is None,
    reason="conveyor/brokers/sqlite.py is not written yet",
)


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[conveyor.Conveyor]:
    """An app on a fresh SQLite file."""
    app = conveyor.Conveyor("sqlite:///" + str(tmp_path / "queue.db"))
    try:
        yield app
    finally:
        app.close()


async def test_sqlite_jobs_run_retry_and_wait(sqlite_app: conveyor.Conveyor) -> None:
    """Sync and async tasks, a retry and a delayed job run through a SQLite file."""
    app = sqlite_app
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


async def test_sqlite_cancel_at_heartbeat_and_release_on_stop(
    sqlite_app: conveyor.Conveyor,
) -> None:
    """Through SQLite, a running job is cancelled at a heartbeat, and one past the grace
    period is handed back without counting the attempt."""
    app = sqlite_app
    started: dict[str, asyncio.Event] = {"cancel": asyncio.Event(), "keep": asyncio.Event()}

    @app.task(retries=1)
    async def endless(name: str) -> None:
        started[name].set()
        await asyncio.Event().wait()

    to_cancel = await endless.enqueue_async("cancel")
    to_keep = await endless.enqueue_async("keep")
    async with running(app, lease=0.6, grace=0.2):
        await asyncio.wait_for(started["cancel"].wait(), WAIT)
        await asyncio.wait_for(started["keep"].wait(), WAIT)
        await to_cancel.cancel_async()
        with pytest.raises(conveyor.JobCancelled):
            await to_cancel.result_async(timeout=WAIT)
        running_job = await until_status(app, to_keep.id, Status.RUNNING)
        assert running_job.attempts == 1
    handed_back = await record_of(app, to_keep.id)
    assert (handed_back.status, handed_back.attempts, handed_back.worker) == (
        Status.QUEUED,
        0,
        None,
    )
