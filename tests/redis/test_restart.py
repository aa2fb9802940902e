"""Redis restarts under load: workers and producers ride it out and no job is lost."""

from __future__ import annotations

import asyncio
import threading

import conveyor
from conveyor.brokers import from_url
from conveyor.errors import BrokerUnavailable
from conveyor.job import JobRecord, Status
from tests.brokers.support import eventually, make_job
from tests.servers import RedisServer

JOBS = 400


def start_worker(worker: conveyor.Worker) -> threading.Thread:
    """Run ``worker`` on its own thread and event loop, as ``conveyor worker`` would."""
    thread = threading.Thread(target=asyncio.run, args=(worker.run(),), name="test-worker")
    thread.start()
    return thread


async def enqueue_through(url: str, jobs: list[JobRecord], restarted: asyncio.Event) -> None:
    """Enqueue ``jobs`` in small batches, retrying a batch until Redis takes it (enqueue is
    idempotent by id, so a batch whose reply was lost is not doubled)."""
    producer = from_url(url)
    try:
        for i in range(0, len(jobs), 20):
            while True:
                try:
                    await producer.enqueue(jobs[i : i + 20])
                    break
                except BrokerUnavailable:
                    await asyncio.sleep(0.05)
            if i == len(jobs) // 2:
                await restarted.wait()  # the second half goes in after the restart
            await asyncio.sleep(0.01)
    finally:
        await producer.close()


async def test_every_job_completes_across_a_restart(durable_redis: RedisServer) -> None:
    """Two workers consume while Redis is killed and restarted (its append-only file keeps
    the data): they reconnect on their own, every job ends succeeded, none failed."""
    url = durable_redis.url + "?prefix=restart"
    app = conveyor.Conveyor(url)

    @app.task(name="tests.restart.work")
    async def work(n: int) -> int:
        await asyncio.sleep(0.02)
        return n

    workers = [conveyor.Worker(app, concurrency=20, lease=5.0, poll=0.2) for _ in range(2)]
    threads = [start_worker(w) for w in workers]
    broker = from_url(url)
    jobs = [make_job("tests.restart.work", args=[n], max_attempts=1) for n in range(JOBS)]
    restarted = asyncio.Event()
    producer = asyncio.create_task(enqueue_through(url, jobs, restarted))

    async def reached(n: int) -> bool:
        try:
            counts = await broker.counts()
        except BrokerUnavailable:  # while Redis is down
            return False
        return counts.get("default", {}).get(Status.SUCCEEDED, 0) >= n

    try:
        await eventually(lambda: reached(60), timeout=30)
        durable_redis.stop(kill=True)  # mid-flight: claims, outcomes and heartbeats break
        await asyncio.sleep(0.3)
        durable_redis.start()
        restarted.set()
        await eventually(lambda: reached(JOBS), timeout=60)
        await producer
        counts = await broker.counts()
        assert counts == {"default": {Status.SUCCEEDED: JOBS}}
        for job in jobs[:: JOBS // 20]:
            stored = await broker.get(job.id)
            assert stored is not None
            assert stored.result == job.args[0]
    finally:
        restarted.set()
        for w in workers:
            w.stop()
        for t in threads:
            await asyncio.to_thread(t.join, 30)
        await broker.close()
        app.close()
    assert all(w.exit_code == 0 for w in workers)
