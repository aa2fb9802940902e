"""Static checks of the public API's types: mypy runs this file, pytest never collects it.

Each ``assert_type`` must hold, and each ``# type: ignore[code]`` marks a call that must be
an error: mypy's strict mode warns about unused ignores, so a call that stopped being an
error would fail the check.
"""

from __future__ import annotations

from typing import Any, assert_type

import conveyor
from conveyor import Call, Job, Task

app = conveyor.Conveyor("memory://")


@app.task
def add(x: int, y: int) -> int:
    """A sync task."""
    return x + y


@app.task
async def measure(name: str, *, width: int = 100) -> dict[str, int]:
    """An async task with a keyword-only parameter."""
    return {name: width}


@app.task(retries=3, queue="images", timeout=5.0)
def resize(image_id: str, width: int) -> bytes:
    """A sync task registered with options."""
    return image_id.encode() * width


@app.task(retries=3, backoff=conveyor.Backoff(base=0.5), retry_on=(OSError,))
async def fetch(url: str) -> list[str]:
    """An async task registered with options."""
    return [url]


@app.task
def nothing() -> None:
    """A task that returns nothing."""


def check_tasks() -> None:
    """The decorators give ``Task[P, R]`` with the function's own parameters.

    mypy keeps the parameter names in P (``Task[[Arg(int, 'x'), Arg(int, 'y')], int]``),
    which ``assert_type`` cannot spell, so each task is assigned to the positional form,
    and a wrong form is shown to be refused.
    """
    a: Task[[int, int], int] = add
    r: Task[[str, int], bytes] = resize
    f: Task[[str], list[str]] = fetch
    assert_type(nothing, Task[[], None])
    wrong_params: Task[[str, int], int] = add  # type: ignore[assignment]
    wrong_result: Task[[int, int], str] = add  # type: ignore[assignment]
    too_few: Task[[int], int] = add  # type: ignore[assignment]
    async_result: Task[[str], str] = fetch  # type: ignore[assignment]
    del a, r, f, wrong_params, wrong_result, too_few, async_result
    # Calling the task in-process is a plain call of the function.
    add(1, 2)
    add("1", 2)  # type: ignore[arg-type]


def check_enqueue() -> None:
    """``enqueue`` takes the task's parameters and gives a ``Job`` of its return type."""
    assert_type(add.enqueue(1, 2), Job[int])
    assert_type(add.enqueue(1, y=2), Job[int])
    assert_type(measure.enqueue("a", width=3), Job[dict[str, int]])
    assert_type(measure.enqueue("a"), Job[dict[str, int]])
    assert_type(resize.enqueue("abc", 200), Job[bytes])
    assert_type(fetch.enqueue("https://example.com"), Job[list[str]])
    assert_type(nothing.enqueue(), Job[None])
    add.enqueue("x", 2)  # type: ignore[arg-type]
    add.enqueue(1)  # type: ignore[call-arg]
    add.enqueue(1, 2, 3)  # type: ignore[call-arg]
    add.enqueue(1, z=2)  # type: ignore[call-arg]
    measure.enqueue("a", 3)  # type: ignore[call-arg]
    measure.enqueue("a", width="wide")  # type: ignore[arg-type]
    resize.enqueue(1, 200)  # type: ignore[arg-type]
    fetch.enqueue()  # type: ignore[call-arg]


def check_results() -> None:
    """``job.result()`` is the task's return type."""
    assert_type(add.enqueue(1, 2).result(), int)
    assert_type(add.enqueue(1, 2).result(timeout=5), int)
    assert_type(measure.enqueue("a").result(), dict[str, int])
    assert_type(nothing.enqueue().result(), None)
    job = add.enqueue(1, 2)
    assert_type(job.refresh(), Job[int])
    assert_type(job.cancel(), Job[int])
    assert_type(job.id, str)
    assert_type(job.status, conveyor.Status)
    assert_type(job.error, conveyor.ErrorInfo | None)
    text: str = add.enqueue(1, 2).result()  # type: ignore[assignment]
    del text


async def check_async() -> None:
    """The async twins are typed like the sync ones."""
    assert_type(await add.enqueue_async(1, 2), Job[int])
    assert_type(await measure.enqueue_async("a", width=1), Job[dict[str, int]])
    job = await measure.enqueue_async("a")
    assert_type(await job.result_async(timeout=1.0), dict[str, int])
    assert_type(await job.refresh_async(), Job[dict[str, int]])
    await add.enqueue_async(1, "2")  # type: ignore[arg-type]


def check_options() -> None:
    """``options(...)`` keeps the task's parameters and return type."""
    dispatch = add.options(delay=30, priority=9, key="add:1:2", queue="math")
    assert_type(dispatch.enqueue(1, 2), Job[int])
    assert_type(measure.options(retries=1).enqueue("a", width=2), Job[dict[str, int]])
    dispatch.enqueue("x", 2)  # type: ignore[arg-type]
    dispatch.enqueue(1)  # type: ignore[call-arg]
    add.options(delay="soon")  # type: ignore[arg-type]
    add.options(colour="red")  # type: ignore[call-arg]


def check_enqueue_many() -> None:
    """``enqueue_many`` gives a list of typed jobs."""
    assert_type(add.enqueue_many([Call(1, 2), Call(3, y=4)]), list[Job[int]])
    assert_type(add.options(priority=1).enqueue_many([Call(1, 2)]), list[Job[int]])


def check_app() -> None:
    """Enqueue by name and the app's lookups are typed ``Job[Any]``."""
    job = app.enqueue("tests.typing.check_api.add", args=[1, 2], priority=3)
    assert_type(job, Job[Any])
    assert_type(app.get_job(job.id).id, str)
    assert_type(app.cancel(job.id).status, conveyor.Status)
    app.enqueue("x", args=[1], kwargs={"a": 1}, colour="red")  # type: ignore[call-arg]


async def middleware(ctx: conveyor.Context, call_next: conveyor.middleware.CallNext) -> object:
    """A middleware is a plain async function of (ctx, call_next)."""
    assert_type(ctx.job.id, str)
    assert_type(ctx.worker, str)
    return await call_next()


def check_middleware_and_worker() -> None:
    """A plain async function is a Middleware; a Worker takes an app."""
    mw: conveyor.Middleware = middleware
    other = conveyor.Conveyor("memory://", middleware=[mw, middleware])
    worker = conveyor.Worker(other, queues=["default"], concurrency=2, burst=True)
    assert_type(worker.id, str)
