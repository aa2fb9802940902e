"""Tasks: ``@app.task`` turns a function into a Task you can enqueue, typed by its signature."""

from __future__ import annotations

import datetime as dt
import inspect
import math
import time
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, ParamSpec, TypedDict, TypeVar, Unpack

import msgspec

from conveyor import serde
from conveyor.backend import Backend
from conveyor.errors import ConfigurationError
from conveyor.handle import Job
from conveyor.job import JobRecord, initial_status, new_id
from conveyor.retry import Policy

P = ParamSpec("P")
R = TypeVar("R")

Seconds = float | dt.timedelta
When = float | dt.datetime


class Call:
    """The arguments of one job for :meth:`Task.enqueue_many`: ``Call("a", width=2)``."""

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Call({', '.join(parts)})"


class Options(msgspec.Struct, frozen=True, kw_only=True):
    """Per-enqueue overrides; None means "the task's default"."""

    queue: str | None = None
    priority: int | None = None
    delay: float | None = None
    eta: float | None = None
    key: str | None = None
    retries: int | None = None
    timeout: float | None = None


def _seconds(value: Seconds | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigurationError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _epoch(value: When | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ConfigurationError(f"eta must be timezone-aware, got naive {value!r}")
        return value.timestamp()
    epoch = float(value)
    if not math.isfinite(epoch):
        raise ConfigurationError(
            f"eta must be a finite Unix time or an aware datetime, got {value!r}"
        )
    return epoch


class EnqueueOptions(TypedDict, total=False):
    """Per-enqueue overrides of a task's defaults; see :meth:`Task.options`."""

    queue: str | None
    priority: int | None
    delay: Seconds | None
    eta: When | None
    key: str | None
    retries: int | None
    timeout: Seconds | None
    connection: object | None


OPTION_NAMES = tuple(EnqueueOptions.__annotations__)
"""The options :meth:`Task.options` and :meth:`Conveyor.enqueue` take."""


def make_options(**given: Unpack[EnqueueOptions]) -> Options:
    """Validate enqueue options into an :class:`Options`; raises ConfigurationError.

    ``connection`` is not an option of the job: the caller passes it to the broker.
    """
    unknown = sorted(set(given) - set(OPTION_NAMES))
    if unknown:
        # A misspelt option (delai=30) would otherwise be dropped without a word, and the job
        # run at once: refuse it where it was written.
        raise ConfigurationError(
            f"unknown enqueue option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; the options are {', '.join(OPTION_NAMES)}"
        )
    queue, priority, key = given.get("queue"), given.get("priority"), given.get("key")
    delay, eta, retries = given.get("delay"), given.get("eta"), given.get("retries")
    if delay is not None and eta is not None:
        raise ConfigurationError("give either delay or eta, not both")
    if queue is not None and not queue:
        raise ConfigurationError("queue name must not be empty")
    if retries is not None and retries < 0:
        raise ConfigurationError(f"retries must be >= 0, got {retries}")
    if key is not None and not isinstance(key, str):
        raise ConfigurationError(f"key must be a str, got {type(key).__name__}")
    if priority is not None and not isinstance(priority, int):
        raise ConfigurationError(f"priority must be an int, got {type(priority).__name__}")
    return Options(
        queue=queue,
        priority=priority,
        delay=_seconds(delay, "delay"),
        eta=_epoch(eta),
        key=key,
        retries=retries,
        timeout=_seconds(given.get("timeout"), "timeout"),
    )


class TaskSettings(msgspec.Struct, frozen=True, kw_only=True):
    """A task's defaults, set by ``@app.task(...)``."""

    name: str
    queue: str = "default"
    priority: int = 0
    timeout: float | None = None
    policy: Policy = Policy()


def build_record(  # noqa: PLR0917
    name: str,
    settings: TaskSettings | None,
    opts: Options,
    args: Iterable[Any],
    kwargs: dict[str, Any],
    max_payload: int,
    now: float,
) -> JobRecord:
    """A new job record; validates that the arguments are JSON and under the size limit."""
    args = list(args)
    serde.encode_payload(name, args, kwargs, max_payload)
    queue = opts.queue or (settings.queue if settings else "default")
    retries = (
        opts.retries if opts.retries is not None else (settings.policy.retries if settings else 0)
    )
    eta = opts.eta if opts.eta is not None else now + (opts.delay or 0.0)
    return JobRecord(
        id=new_id(),
        task=name,
        queue=queue,
        args=args,
        kwargs=kwargs,
        status=initial_status(eta, now),
        priority=opts.priority
        if opts.priority is not None
        else (settings.priority if settings else 0),
        max_attempts=retries + 1,
        eta=eta,
        timeout=opts.timeout
        if opts.timeout is not None
        else (settings.timeout if settings else None),
        key=opts.key,
        created_at=now,
    )


class ArgumentTypeError(TypeError):
    """An argument's value does not fit the annotation of its parameter.

    Attributes:
        parameter: the parameter's name.
        field: ``args`` or ``kwargs``, whichever carried the value.
    """

    def __init__(self, message: str, parameter: str, field: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.field = field


def _parameter_types(fn: Callable[..., Any], signature: inspect.Signature) -> dict[str, Any]:
    """The type each parameter's value must convert to, for those annotated with a type msgspec
    can check; ``*args: T`` is ``list[T]``, ``**kwargs: T`` is ``dict[str, T]``."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # a name only imported under TYPE_CHECKING, a typo: check nothing
        return {}
    types: dict[str, Any] = {}
    for name, param in signature.parameters.items():
        kind = hints.get(name)
        if kind is None or kind is Any:
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            kind = list[kind]  # type: ignore[valid-type]
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            kind = dict[str, kind]  # type: ignore[valid-type]
        try:
            info = msgspec.inspect.type_info(kind)
        except TypeError:  # not a type msgspec knows: the task's own business
            continue
        if not _has_custom(info, set()):
            types[name] = kind
    return types


def _integral(value: Any) -> Any:
    """``value`` with each float that has no fraction made an int, as JSON Schema reads it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list | tuple):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


def _has_custom(node: object, seen: set[int]) -> bool:
    """Whether a msgspec type description holds a class of the user's own, which JSON never
    decodes to by itself (the task may convert the value): such a parameter is not checked."""
    if isinstance(node, msgspec.inspect.CustomType):
        return True
    if id(node) in seen:
        return False
    seen.add(id(node))
    if isinstance(node, tuple | list):
        return any(_has_custom(item, seen) for item in node)
    if isinstance(node, msgspec.inspect.Type | msgspec.inspect.Field):
        return any(_has_custom(getattr(node, f), seen) for f in node.__struct_fields__)
    return False


class Dispatch(Generic[P, R]):
    """A task with enqueue options bound: what :meth:`Task.options` returns."""

    __slots__ = ("_connection", "_opts", "_task")

    def __init__(self, task: Task[P, R], opts: Options, connection: object | None = None) -> None:
        self._task = task
        self._opts = opts
        self._connection = connection

    def _record(self, args: Sequence[Any], kwargs: dict[str, Any], now: float) -> JobRecord:
        task = self._task
        task.check_args(args, kwargs)
        return build_record(
            task.name, task.settings, self._opts, args, kwargs, task.app.max_payload, now
        )

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue one job; returns at once with its handle."""
        record = self._record(args, kwargs, time.time())
        app = self._task.app
        return Job(app, app.submit([record], self._connection)[0])

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Async twin of :meth:`enqueue`."""
        record = self._record(args, kwargs, time.time())
        app = self._task.app
        return Job(app, (await app.submit_async([record], self._connection))[0])

    def enqueue_many(self, calls: Iterable[Call]) -> list[Job[R]]:
        """Enqueue one job per :class:`Call` in one broker round trip, atomically."""
        now = time.time()
        records = [self._record(c.args, c.kwargs, now) for c in calls]
        app = self._task.app
        return [Job(app, r) for r in app.submit(records, self._connection)]

    async def enqueue_many_async(self, calls: Iterable[Call]) -> list[Job[R]]:
        """Async twin of :meth:`enqueue_many`."""
        now = time.time()
        records = [self._record(c.args, c.kwargs, now) for c in calls]
        app = self._task.app
        return [Job(app, r) for r in await app.submit_async(records, self._connection)]


class Task(Generic[P, R]):
    """A registered task. Call it to run the function here; enqueue it to run it on a worker."""

    def __init__(self, app: Backend, fn: Callable[P, Any], settings: TaskSettings) -> None:
        self.app = app
        self.fn = fn
        self.settings = settings
        self.name = settings.name
        self.signature = inspect.signature(fn)
        # (required, total) positional parameters, when every parameter is a plain one:
        # then a call with positional arguments only is checked by counting them.
        plain = all(
            p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            for p in self.signature.parameters.values()
        )
        params = self.signature.parameters.values()
        required = sum(p.default is inspect.Parameter.empty for p in params)
        self._positional = (required, len(params)) if plain else None
        self.is_async = inspect.iscoroutinefunction(fn)
        self._types: dict[str, Any] | None = None  # resolved at first use: see check_types
        self._plain = Dispatch(self, Options())
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.settings.queue}>"

    def check_args(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Raise TypeError, naming the task, unless the function accepts these arguments."""
        counts = self._positional
        if counts is not None and not kwargs and counts[0] <= len(args) <= counts[1]:
            return  # the usual call, checked without binding (a hot path of enqueue)
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"cannot enqueue {self.name}: {exc}") from None

    def argument_types(self) -> dict[str, Any]:
        """The type each parameter's JSON value is checked against, by parameter name.

        Only parameters annotated with a type msgspec can check are there: ``*args: T`` as
        ``list[T]``, ``**kwargs: T`` as ``dict[str, T]``.
        """
        if self._types is None:
            # Resolved here, not at registration: annotations may name what is defined later.
            self._types = _parameter_types(self.fn, self.signature)
        return self._types

    def check_types(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Like :meth:`check_args`, and check each value against its parameter's annotation.

        For arguments that arrive as JSON (the HTTP API, the CLI): a value that does not fit
        raises :class:`ArgumentTypeError` naming the parameter. Values are checked, never
        converted: the task gets them as they were sent. A number with no fraction (``3.0``)
        counts as an integer, as in JSON Schema. Parameters annotated with a type msgspec
        cannot check (or whose annotations do not resolve) are not checked.
        """
        self.check_args(args, kwargs)
        types = self.argument_types()
        if not types:
            return
        bound = self.signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            kind = types.get(name)
            if kind is None:
                continue
            try:
                msgspec.convert(_integral(value), kind)
            except msgspec.ValidationError as exc:
                by_name = self.signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD
                field = "kwargs" if by_name or name in kwargs else "args"
                raise ArgumentTypeError(
                    f"cannot enqueue {self.name}: argument {name!r}: {exc}", name, field
                ) from None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run the function in this process, as a plain call (a coroutine for async tasks)."""
        return self.fn(*args, **kwargs)

    def options(self, **given: Unpack[EnqueueOptions]) -> Dispatch[P, R]:
        """Override the task's defaults for the next enqueue: ``task.options(delay=30)``.

        Args:
            queue: the queue to put the job in.
            priority: higher runs first within a queue.
            delay: seconds (or a timedelta) to wait before the job is due.
            eta: when the job is due (Unix time or an aware datetime); not with ``delay``.
            key: uniqueness key; while a job with this key is unfinished, enqueue returns it.
            retries: retries after the first attempt.
            timeout: seconds one attempt may run.
            connection: enqueue inside this database connection's current transaction, so
                that the job exists if and only if it commits (PostgreSQL broker only): a
                psycopg 3 connection (an AsyncConnection for ``enqueue_async``), a
                SQLAlchemy session or connection, or ``django.db.connection``.
        """
        return Dispatch(self, make_options(**given), given.get("connection"))

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue one job with the task's defaults; returns at once with its handle."""
        return self._plain.enqueue(*args, **kwargs)

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Async twin of :meth:`enqueue`."""
        return await self._plain.enqueue_async(*args, **kwargs)

    def enqueue_many(self, calls: Iterable[Call]) -> list[Job[R]]:
        """Enqueue one job per :class:`Call` in one broker round trip."""
        return self._plain.enqueue_many(calls)

    async def enqueue_many_async(self, calls: Iterable[Call]) -> list[Job[R]]:
        """Async twin of :meth:`enqueue_many`."""
        return await self._plain.enqueue_many_async(calls)
