"""Run ONE job: middleware, timeout, async on the loop or sync in a thread -> an Outcome."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import functools
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conveyor import serde
from conveyor.brokers.base import Outcome
from conveyor.errors import SerializationError, TaskTimeout, UnknownTask
from conveyor.job import ErrorInfo, JobRecord, Status
from conveyor.middleware import Context, Middleware, compose
from conveyor.retry import decide
from conveyor.task import Task

MAX_TRACEBACK = 32 * 1024
STUCK_GRACE = 1.0  # seconds a sync task gets to honour an interrupt before it counts as stuck


class _TimeoutInterrupt(BaseException):
    """Raised inside a sync task's thread when its timeout passes (BaseException so that a
    task's own ``except Exception`` does not swallow it)."""


class _CancelInterrupt(BaseException):
    """Raised inside a sync task's thread when its job is cancelled or the worker stops."""


class _ThreadState:
    __slots__ = ("ident", "lock", "running")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ident = 0
        self.running = True


def _in_thread(state: _ThreadState, call: Callable[[], Any]) -> Any:
    state.ident = threading.get_ident()
    try:
        return call()
    finally:
        with state.lock:
            state.running = False


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class SyncRunner:
    """Runs sync tasks in a thread pool, and can interrupt one that overstays.

    Python cannot kill a thread; it can raise an exception in it at the next bytecode. A task
    blocked in C (a socket read with no timeout, say) ignores that: it is counted in
    ``stuck`` and the worker exits so that its supervisor replaces the process.
    """

    def __init__(self, threads: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="conveyor-task")
        self.stuck = 0

    @staticmethod
    def _interrupt(state: _ThreadState, exc: type[BaseException]) -> None:
        with state.lock:
            if state.running and state.ident:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(state.ident), ctypes.py_object(exc)
                )

    async def run(self, fn: Callable[..., Any], job: JobRecord, timeout: float | None) -> Any:
        """Call ``fn(*args, **kwargs)`` in a thread; TaskTimeout after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        state = _ThreadState()
        call = functools.partial(contextvars.copy_context().run, fn, *job.args, **job.kwargs)
        fut = loop.run_in_executor(self.pool, _in_thread, state, call)
        # On a timeout or a cancel the future is abandoned while its thread still runs; it
        # later ends with our interrupt, which asyncio would log as "never retrieved".
        fut.add_done_callback(_retrieve)
        try:
            done, _ = await asyncio.wait({fut}, timeout=timeout)
        except asyncio.CancelledError:
            self._interrupt(state, _CancelInterrupt)
            raise
        if not done:
            self._interrupt(state, _TimeoutInterrupt)
            done, _ = await asyncio.wait({fut}, timeout=STUCK_GRACE)
            if not done:
                self.stuck += 1
            raise TaskTimeout(f"{job.task} ran over its timeout of {timeout}s")
        try:
            return fut.result()
        except _TimeoutInterrupt:
            raise TaskTimeout(f"{job.task} ran over its timeout of {timeout}s") from None

    def shutdown(self) -> None:
        """Stop the pool without waiting for stuck threads."""
        self.pool.shutdown(wait=False, cancel_futures=True)


def type_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, else ``module.QualName``."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def error_info(exc: BaseException) -> ErrorInfo:
    """The recordable form of an exception; never raises, whatever ``str(exc)`` does."""
    try:
        message = str(exc)
    except Exception as inner:  # a broken __str__ must not lose the job
        message = f"<str() of the exception raised {type(inner).__name__}>"
    try:
        tb = "".join(traceback.format_exception(exc))
    except Exception:
        tb = ""
    if len(tb) > MAX_TRACEBACK:
        tb = "...\n" + tb[-MAX_TRACEBACK:]
    return ErrorInfo(type_name(exc), message, tb)


def failure(job: JobRecord, task: Task[Any, Any] | None, exc: BaseException) -> Outcome:
    """The outcome of an attempt that raised ``exc``: a retry or the dead-letter queue."""
    now = time.time()
    if task is None or isinstance(exc, SerializationError | UnknownTask):
        return Outcome(
            id=job.id, token=job.token, status=Status.FAILED, finished_at=now,
            error=error_info(exc),
        )  # fmt: skip
    decision = decide(task.settings.policy, job.attempts, job.max_attempts, exc)
    return Outcome(
        id=job.id,
        token=job.token,
        status=decision.status,
        finished_at=now,
        error=error_info(exc),
        eta=now + decision.delay if decision.status is Status.SCHEDULED else None,
    )


async def _call(task: Task[Any, Any], job: JobRecord, sync: SyncRunner) -> Any:
    """Call the task itself, bounded by the job's timeout."""
    if not task.is_async:
        return await sync.run(task.fn, job, job.timeout)
    timeout = job.timeout
    if timeout is None:
        return await task.fn(*job.args, **job.kwargs)
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await task.fn(*job.args, **job.kwargs)
    except TimeoutError:
        if not deadline.expired():
            raise  # the task's own TimeoutError, not ours
        raise TaskTimeout(f"{job.task} ran over its timeout of {timeout}s") from None


async def execute(
    job: JobRecord,
    tasks: dict[str, Task[Any, Any]],
    *,
    worker: str,
    middleware: list[Middleware],
    sync: SyncRunner,
) -> Outcome:
    """Run one attempt of ``job`` and decide its outcome. Cancellation propagates."""
    task = tasks.get(job.task)
    if task is None:
        known = ", ".join(sorted(tasks)) or "none"
        exc = UnknownTask(
            f"no task named {job.task!r} is registered in this worker (it knows: {known}); "
            "is the worker running the same code as the producer?"
        )
        return failure(job, None, exc)
    try:
        if middleware:
            ctx = Context(job=job, task=task, worker=worker)
            value = await compose(middleware, ctx, functools.partial(_call, task, job, sync))()
        else:  # the common case builds no chain: it runs once per job
            value = await _call(task, job, sync)
        result = serde.encode_result(job.task, value)
    except (asyncio.CancelledError, _CancelInterrupt):
        raise
    except BaseException as exc:  # SystemExit from a task fails the job, not the worker
        return failure(job, task, exc)
    return Outcome(
        id=job.id, token=job.token, status=Status.SUCCEEDED, finished_at=time.time(),
        result=result,
    )  # fmt: skip
