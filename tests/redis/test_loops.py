"""Async callers talk to Redis from their own loop, on connections closed with that loop."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import redis

import conveyor
from tests.redis.conftest import fresh
from tests.servers import RedisServer

WAIT = 10.0


def clients(server: RedisServer) -> int:
    """Connections to ``server`` other than the one asking."""
    with redis.Redis.from_url(server.url) as probe:
        return len(probe.client_list(_type="normal")) - 1


def settle(server: RedisServer, expected: int) -> int:
    """The connection count once it reaches ``expected`` (Redis notices a close a moment
    after the client makes it), or the last count seen at the deadline."""
    deadline = time.monotonic() + WAIT
    count = clients(server)
    while count != expected and time.monotonic() < deadline:
        time.sleep(0.01)
        count = clients(server)
    return count


def portal_running() -> bool:
    return any(t.name == "conveyor-portal" and t.is_alive() for t in threading.enumerate())


def make_app(server: RedisServer) -> tuple[conveyor.Conveyor, conveyor.Task[[int], int]]:
    app = conveyor.Conveyor(fresh(server.url))

    @app.task(name="loops.double")
    def double(x: int) -> int:
        return 2 * x

    return app, double


def test_async_enqueue_uses_the_callers_loop_and_closes_with_it(redis_server: RedisServer) -> None:
    """No portal thread is started, and asyncio.run's end closes the loop's connections."""
    app, double = make_app(redis_server)
    before = clients(redis_server)

    async def main() -> list[str]:
        jobs = [await double.enqueue_async(i) for i in range(3)]
        assert clients(redis_server) > before
        assert not portal_running()
        got = await app.get_job_async(jobs[0].id)
        assert (await got.refresh_async()).status is conveyor.Status.QUEUED
        return [j.id for j in jobs]

    for _ in range(2):  # a second asyncio.run gets a fresh copy, not the dead loop's
        ids = asyncio.run(main())
        assert settle(redis_server, before) == before
    gc.collect()  # an unclosed connection would warn here, and warnings are errors
    assert app.get_job(ids[2]).args == [2]  # sync callers still use the portal
    app.close()


def test_loops_on_several_threads_share_one_app(redis_server: RedisServer) -> None:
    """Each thread's loop gets its own connections; every job lands."""
    app, double = make_app(redis_server)
    ids: list[str] = []
    lock = threading.Lock()

    async def produce(n: int) -> None:
        jobs = await asyncio.gather(*(double.enqueue_async(i) for i in range(n)))
        with lock:
            ids.extend(j.id for j in jobs)

    threads = [threading.Thread(target=asyncio.run, args=(produce(50),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(set(ids)) == 200
    assert {app.get_job(i).status for i in ids} == {conveyor.Status.QUEUED}
    app.close()


async def test_close_async_closes_this_loops_connections(redis_server: RedisServer) -> None:
    app, double = make_app(redis_server)
    before = await asyncio.to_thread(clients, redis_server)
    await double.enqueue_async(1)
    assert await asyncio.to_thread(clients, redis_server) > before
    await app.close_async()
    assert await asyncio.to_thread(settle, redis_server, before) == before
    job = await double.enqueue_async(2)  # a closed app connects again on its next call
    assert (await app.get_job_async(job.id)).args == [2]
    await app.close_async()


def test_sync_close_closes_the_connections_of_other_threads_loops(
    redis_server: RedisServer,
) -> None:
    """app.close() from the main thread reaches a loop that runs on in another thread."""
    app, double = make_app(redis_server)
    before = clients(redis_server)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        job = asyncio.run_coroutine_threadsafe(double.enqueue_async(3), loop).result(WAIT)
        assert clients(redis_server) > before
        app.close()
        assert settle(redis_server, before) == before
        assert loop.is_running()
        assert app.get_job(job.id).args == [3]
        app.close()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()
