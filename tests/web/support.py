"""Helpers of the web tests: an app with test tasks, a worker in the test's loop, a client
of the ASGI app in-process, and polling with a deadline."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

import conveyor
from conveyor.web import WebSettings, create_app

WAIT = 15.0
"""The longest any test waits for something to happen; far above what it takes."""


class Tasks:
    """An app with the tasks the web tests use, and the switches some of them wait on."""

    def __init__(self, url: str) -> None:
        self.app = conveyor.Conveyor(url)
        self.fixed = threading.Event()  # t.flaky raises until it is set
        self.release = threading.Event()  # t.block runs until it is set
        app = self.app

        @app.task(name="t.add")
        def add(x: int, y: int) -> int:
            return x + y

        @app.task(name="t.echo")
        async def echo(value: Any) -> Any:
            return value

        @app.task(name="t.boom")
        def boom(message: str) -> None:
            raise ValueError(message)

        @app.task(name="t.flaky")
        def flaky() -> str:
            if not self.fixed.is_set():
                raise ConnectionError("the gateway is down")
            return "done"

        @app.task(name="t.block")
        async def block() -> str:
            while not self.release.is_set():  # the task waits, not the test
                await asyncio.sleep(0.01)
            return "released"


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = WAIT, what: str = ""
) -> None:
    """Await ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(app: conveyor.Conveyor, **options: Any) -> AsyncIterator[conveyor.Worker]:
    """Run a Worker as a task of the test's loop (short lease: frequent heartbeats)."""
    options = {"lease": 0.6, "poll": 0.05, "grace": 2.0, **options}
    worker = conveyor.Worker(app, **options)
    task = asyncio.create_task(worker.run(), name=f"worker {worker.id}")
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=WAIT)


@asynccontextmanager
async def serving(
    app: conveyor.Conveyor, settings: WebSettings | None = None, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The web app of ``app`` in-process, its lifespan running, and a client for it."""
    web = create_app(app, settings or WebSettings(sample_every=0.05), **options)
    async with web.router.lifespan_context(web):
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def job(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """``GET /api/jobs/{id}``."""
    response = await client.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until_status(
    client: httpx.AsyncClient, job_id: str, *statuses: str, timeout: float = WAIT
) -> dict[str, Any]:
    """Poll the API until the job is in one of ``statuses``; return it."""
    deadline = time.monotonic() + timeout
    while True:
        body = await job(client, job_id)
        if body["status"] in statuses:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {body['status']} after {timeout}s")
        await asyncio.sleep(0.01)


async def enqueue(client: httpx.AsyncClient, task: str, **body: Any) -> dict[str, Any]:
    """``POST /api/jobs``; asserts 202 and returns the job."""
    response = await client.post("/api/jobs", json={"task": task, **body})
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created
