"""Conveyor: the application object that owns a broker, the task registry and the settings."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar, Unpack, overload

from conveyor._loops import LoopBrokers
from conveyor._portal import Portal
from conveyor.brokers import DEFAULT_URL, from_url
from conveyor.brokers.base import Broker, Retention, TransactionalBroker
from conveyor.errors import ConfigurationError, JobNotFound
from conveyor.handle import Job
from conveyor.job import JobRecord
from conveyor.middleware import Middleware
from conveyor.retry import Backoff, Policy
from conveyor.serde import DEFAULT_MAX_PAYLOAD
from conveyor.task import EnqueueOptions, Seconds, Task, TaskSettings, build_record, make_options

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` with arguments returns."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


def _default_name(fn: Callable[..., Any]) -> str:
    module = fn.__module__
    if module == "__main__":
        # A script run directly: use the name a worker would import it by.
        main = sys.modules["__main__"]
        spec = getattr(main, "__spec__", None)
        module = spec.name if spec is not None else Path(getattr(main, "__file__", "main")).stem
    return f"{module}.{fn.__qualname__}"


class Conveyor:
    """A Conveyor application: ``app = Conveyor()`` uses SQLite in ``./conveyor.db``.

    Args:
        url: the broker URL; defaults to ``$CONVEYOR_URL`` or ``sqlite:///conveyor.db``.
        retention: how long finished jobs and their results are kept.
        max_payload: the largest encoded arguments a job may carry, in bytes.
        middleware: wrappers around every task execution, outermost first.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        retention: Retention | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.url = url or os.environ.get("CONVEYOR_URL") or DEFAULT_URL
        self.broker: Broker = from_url(self.url)
        self.retention = retention or Retention()
        self.max_payload = max_payload
        self.middleware: list[Middleware] = list(middleware)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._portal = Portal()
        # Async callers use a copy of the broker on their own loop (see conveyor/_loops.py);
        # sync callers use self.broker on the portal's loop.
        self._loops = LoopBrokers(self._copy_broker)
        self._connect_lock: asyncio.Lock | None = None
        self._is_connected = False

    def __repr__(self) -> str:
        return f"<Conveyor {self.url} tasks={len(self.tasks)}>"

    # -- registering tasks ------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        retries: int = 0,
        backoff: Backoff | None = None,
        timeout: Seconds | None = None,
        retry_on: Iterable[type[BaseException]] = (Exception,),
        no_retry_on: Iterable[type[BaseException]] = (),
    ) -> TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        retries: int = 0,
        backoff: Backoff | None = None,
        timeout: Seconds | None = None,
        retry_on: Iterable[type[BaseException]] = (Exception,),
        no_retry_on: Iterable[type[BaseException]] = (),
    ) -> Any:
        """Register a function (sync or async) as a task: ``@app.task`` or ``@app.task(...)``.

        Args:
            name: the name jobs carry; defaults to ``module.function``.
            queue: the queue its jobs go to.
            priority: higher runs first within a queue.
            retries: how many times a failed attempt is retried (attempts = retries + 1).
            backoff: the wait between retries; exponential with full jitter by default.
            timeout: seconds one attempt may run before it is stopped and counted as failed.
            retry_on: exception types that are retried; others fail the job at once.
            no_retry_on: exception types that are never retried (checked first).
        """
        opts = make_options(queue=queue, priority=priority, retries=retries, timeout=timeout)
        policy = Policy(
            retries=retries,
            backoff=backoff or Backoff(),
            retry_on=tuple(retry_on),
            no_retry_on=tuple(no_retry_on),
        )

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            if not callable(func):
                raise ConfigurationError(f"@app.task needs a function, got {func!r}")
            settings = TaskSettings(
                name=name or _default_name(func),
                queue=queue,
                priority=priority,
                timeout=opts.timeout,
                policy=policy,
            )
            existing = self.tasks.get(settings.name)
            if existing is not None and existing.fn is not func:
                raise ConfigurationError(
                    f"two tasks are named {settings.name!r}; give one of them name=..."
                )
            task: Task[Any, Any] = Task(self, func, settings)
            self.tasks[settings.name] = task
            return task

        return register if fn is None else register(fn)

    # -- enqueueing by name -------------------------------------------------------------

    def build_job(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> JobRecord:
        """The record a job for the task called ``name`` would be enqueued as.

        When ``name`` is registered in this app its defaults apply and the arguments are
        checked against its signature (TypeError); the arguments must be plain JSON
        (SerializationError) under ``max_payload`` (PayloadTooLarge).
        """
        task = self.tasks.get(name)
        if task is not None:
            args = list(args)
            task.check_args(args, kwargs or {})
        return build_record(
            name,
            task.settings if task else None,
            make_options(**options),
            args,
            dict(kwargs or {}),
            self.max_payload,
            time.time(),
        )

    def enqueue(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Job[Any]:
        """Enqueue a job for the task called ``name``, which need not be imported here.

        The options are those of :meth:`Task.options`. When ``name`` is registered in this
        app, its defaults apply and the arguments are checked against its signature.
        """
        record = self.build_job(name, args, kwargs, **options)
        return Job(self, self.submit([record], options.get("connection"))[0])

    async def enqueue_async(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Job[Any]:
        """Async twin of :meth:`enqueue`."""
        record = self.build_job(name, args, kwargs, **options)
        return Job(self, (await self.submit_async([record], options.get("connection")))[0])

    # -- the broker: the portal's for sync callers, a copy per loop for async ones -------

    async def _connected(self) -> Broker:
        """The app's broker, connected once; runs on the portal loop."""
        if not self._is_connected:
            if self._connect_lock is None:
                self._connect_lock = asyncio.Lock()
            async with self._connect_lock:
                if not self._is_connected:
                    await self.broker.connect()
                    self._is_connected = True
        return self.broker

    def _copy_broker(self) -> Broker:
        # Looked up at each call: tests (and users) may swap self.broker before first use.
        return self.broker.copy()

    async def broker_here(self) -> Broker:
        """The app's broker for the running event loop, connected (the portal's own broker
        on the portal's loop, else a copy made for this loop)."""
        if self._portal.runs_here():
            return await self._connected()
        return await self._loops.get()

    def run_blocking(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the app's portal loop from sync code; return what it returns."""
        return self._portal.call(work)

    async def _enqueue_here(self, records: Sequence[JobRecord]) -> list[JobRecord]:
        return await (await self.broker_here()).enqueue(records)

    def _transactional(self) -> TransactionalBroker:
        if not isinstance(self.broker, TransactionalBroker):
            raise ConfigurationError(
                f"enqueue inside a transaction (connection=...) needs the PostgreSQL broker; "
                f"this app uses {self.url.partition(':')[0]}://"
            )
        return self.broker

    def submit(
        self, records: Sequence[JobRecord], connection: object | None = None
    ) -> list[JobRecord]:
        """Enqueue built records from sync code, in one round trip (in the caller's own
        transaction when ``connection`` is given); returns them as stored. The seam under
        :meth:`Task.enqueue <conveyor.Task.enqueue>`; most code wants that instead."""
        if connection is not None:
            # On the caller's connection and thread, in its transaction; the portal only
            # makes sure once that the schema exists.
            broker = self._transactional()
            if not self._is_connected:
                self._portal.call(self._connected())
            return broker.enqueue_in(connection, records)
        if not records:
            return []
        return self._portal.call(self._enqueue_here(records))

    async def submit_async(
        self, records: Sequence[JobRecord], connection: object | None = None
    ) -> list[JobRecord]:
        """Async twin of :meth:`submit`."""
        if connection is not None:
            broker = self._transactional()
            if not self._is_connected:
                await self._portal.call_async(self._connected())
            return await broker.enqueue_in_async(connection, records)
        if not records:
            return []
        return await self._enqueue_here(records)

    async def _get_here(self, job_id: str) -> Job[Any]:
        record = await (await self.broker_here()).get(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return Job(self, record)

    def get_job(self, job_id: str) -> Job[Any]:
        """The job with this id. Raises JobNotFound."""
        return self._portal.call(self._get_here(job_id))

    async def get_job_async(self, job_id: str) -> Job[Any]:
        """Async twin of :meth:`get_job`."""
        return await self._get_here(job_id)

    async def _cancel_here(self, job_id: str) -> Job[Any]:
        record = await (await self.broker_here()).cancel(job_id, time.time())
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return Job(self, record)

    def cancel(self, job_id: str) -> Job[Any]:
        """Cancel a job: a waiting one at once, a running one at its worker's next heartbeat.

        A finished job is left as it is. Returns the job after the change; raises
        JobNotFound.
        """
        return self._portal.call(self._cancel_here(job_id))

    async def cancel_async(self, job_id: str) -> Job[Any]:
        """Async twin of :meth:`cancel`."""
        return await self._cancel_here(job_id)

    async def _close_here(self) -> None:
        if self._is_connected:
            self._is_connected = False
            await self.broker.close()

    def close(self) -> None:
        """Close the app's broker connections and its portal thread.

        Async code should prefer :meth:`close_async`: a sync call cannot close the connection
        of the loop it runs on (that loop's shutdown does).
        """
        self._loops.close_all()
        self._portal.call(self._close_here())
        self._portal.close()

    async def close_async(self) -> None:
        """Close the app's broker connections, this loop's included, and its portal thread.

        ``asyncio.run`` and the like close this loop's connection by themselves when the loop
        ends; call this when the app is done before that, or when you close loops by hand.
        """
        await self._loops.close_here()
        self._loops.close_all()
        await self._portal.call_async(self._close_here())
        self._portal.close()
