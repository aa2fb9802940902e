"""Atomicity under concurrency: claimers and producers on several threads and processes.

Each thread runs its own event loop (``asyncio.run``) with its own broker from ``copy()``,
as workers do; a barrier starts them together so that their operations overlap.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

from conveyor.brokers import Broker, from_url
from conveyor.brokers.base import JobFilter
from conveyor.job import JobRecord
from tests.brokers.support import make_job

T = TypeVar("T")

THREADS = 4
JOBS = 200


async def in_threads(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run each coroutine on its own thread and event loop, all at once."""
    return await asyncio.gather(*(asyncio.to_thread(asyncio.run, c) for c in coros))


async def claim_until_empty(broker: Broker, worker: str, start: threading.Barrier) -> list[str]:
    """Claim small batches until nothing is due; return the ids claimed."""
    await broker.connect()
    try:
        start.wait()
        got: list[str] = []
        while batch := await broker.consumer(worker, ["default"], 30.0).claim(3, time.time()):
            got += [j.id for j in batch]
        return got
    finally:
        await broker.close()


async def enqueue_keyed(
    broker: Broker, jobs: list[JobRecord], start: threading.Barrier
) -> list[JobRecord]:
    """Enqueue ``jobs`` one per call, after every producer is ready."""
    await broker.connect()
    try:
        start.wait()
        return [stored for job in jobs for stored in await broker.enqueue([job])]
    finally:
        await broker.close()


async def test_concurrent_claimers_take_each_job_once(broker: Broker) -> None:
    """Claimers on several threads together take every job exactly once."""
    jobs = [make_job() for _ in range(JOBS)]
    await broker.enqueue(jobs)
    start = threading.Barrier(THREADS, timeout=30)
    results = await in_threads(
        [claim_until_empty(broker.copy(), f"w{i}", start) for i in range(THREADS)]
    )
    claimed = Counter(i for ids in results for i in ids)
    assert sorted(claimed) == sorted(j.id for j in jobs)
    assert set(claimed.values()) == {1}, [i for i, n in claimed.items() if n > 1]


async def test_concurrent_producers_of_one_key_create_one_job(broker: Broker) -> None:
    """Producers on several threads enqueueing the same keys get one job per key."""
    keys = [f"key-{i}" for i in range(20)]
    start = threading.Barrier(THREADS, timeout=30)
    results = await in_threads(
        [
            enqueue_keyed(broker.copy(), [make_job(key=k, args=[p]) for k in keys], start)
            for p in range(THREADS)
        ]
    )
    for i, key in enumerate(keys):
        assert len({stored[i].id for stored in results}) == 1, key
    stored = await broker.list(JobFilter(limit=1000))
    assert sorted(j.key or "" for j in stored) == sorted(keys)


CLAIMER = """
import asyncio, json, sys, time
from conveyor.brokers import from_url

async def main(url, worker):
    broker = from_url(url)
    await broker.connect()
    try:
        print("ready", flush=True)
        sys.stdin.readline()
        got = []
        while batch := await broker.consumer(worker, ["default"], 30.0).claim(3, time.time()):
            got += [j.id for j in batch]
        print(json.dumps(got), flush=True)
    finally:
        await broker.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_claimers_in_separate_processes_take_each_job_once(shared_url: str) -> None:
    """Claimer processes on one shared store together take every job exactly once."""
    broker = from_url(shared_url)
    await broker.connect()
    try:
        jobs = [make_job() for _ in range(JOBS)]
        await broker.enqueue(jobs)
    finally:
        await broker.close()

    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLAIMER,
            shared_url,
            f"proc{i}",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(THREADS)
    ]
    try:
        for proc in procs:  # all connected before any starts claiming
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
        outputs = await asyncio.gather(*(p.communicate(b"go\n") for p in procs))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert [p.returncode for p in procs] == [0] * THREADS
    claimed = Counter(i for out, _ in outputs for i in json.loads(out.splitlines()[-1]))
    assert sorted(claimed) == sorted(j.id for j in jobs)
    assert set(claimed.values()) == {1}, [i for i, n in claimed.items() if n > 1]
