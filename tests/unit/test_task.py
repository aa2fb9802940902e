"""Enqueue options (``make_options``) and building a job record (``build_record``)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import msgspec
import pytest

from conveyor import Conveyor
from conveyor.errors import ConfigurationError, PayloadTooLarge, SerializationError
from conveyor.job import Status
from conveyor.retry import Policy
from conveyor.serde import DEFAULT_MAX_PAYLOAD
from conveyor.task import ArgumentTypeError, Call, Options, TaskSettings, build_record, make_options

NOW = 1_700_000_000.0


def test_no_options_means_the_task_defaults() -> None:
    """Every option left out is None, i.e. "use the task's default"."""
    assert make_options() == Options()


def test_options_are_normalised_to_seconds() -> None:
    """A timedelta delay or timeout becomes seconds; an aware datetime eta, epoch seconds."""
    eta = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    opts = make_options(delay=dt.timedelta(minutes=2), timeout=dt.timedelta(seconds=1.5))
    assert (opts.delay, opts.timeout) == (120.0, 1.5)
    assert make_options(eta=eta).eta == eta.timestamp()
    assert make_options(eta=NOW).eta == NOW
    assert make_options(delay=0).delay == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": 5, "eta": NOW}, "either delay or eta, not both"),
        ({"delay": -1}, "delay must be a finite number of seconds >= 0"),
        ({"delay": dt.timedelta(seconds=-1)}, "delay must be"),
        ({"delay": math.nan}, "delay must be"),
        ({"delay": math.inf}, "delay must be"),
        ({"timeout": -0.5}, "timeout must be"),
        ({"timeout": math.nan}, "timeout must be"),
        ({"eta": dt.datetime(2030, 1, 1)}, "eta must be timezone-aware"),
        ({"eta": math.nan}, "eta must be a finite Unix time"),
        ({"eta": math.inf}, "eta must be a finite Unix time"),
        ({"queue": ""}, "queue name must not be empty"),
        ({"retries": -1}, "retries must be >= 0, got -1"),
        ({"key": 5}, "key must be a str, got int"),
        ({"priority": "high"}, "priority must be an int, got str"),
    ],
)
def test_bad_options_are_a_configuration_error(kwargs: dict[str, Any], message: str) -> None:
    """Each bad option raises ConfigurationError with a message saying what is wrong."""
    with pytest.raises(ConfigurationError, match=message):
        make_options(**kwargs)


def test_an_unknown_option_is_refused_naming_the_known_ones() -> None:
    """A misspelt option fails at the call, not silently at run time."""
    app = Conveyor("memory://")

    @app.task
    def later() -> None: ...

    with pytest.raises(ConfigurationError, match="unknown enqueue option 'delai'") as caught:
        later.options(delai=30)  # type: ignore[call-arg]
    assert "queue, priority, delay, eta, key, retries, timeout, connection" in str(caught.value)
    with pytest.raises(ConfigurationError, match="options 'delai', 'prio'"):
        app.enqueue("x", delai=30, prio=1)  # type: ignore[call-arg]
    app.close()


class Point(msgspec.Struct):
    """A struct argument: checked as the JSON object it arrives as."""

    x: int
    y: int


class Opaque:
    """A type msgspec cannot check: left to the task."""


def test_check_types_names_the_argument_that_does_not_fit() -> None:
    """Values arriving as JSON are checked against the annotations, never converted."""
    app = Conveyor("memory://")

    @app.task
    def draw(
        at: Point, width: float, *tags: str, thing: Opaque | None = None, **extra: int
    ) -> None: ...

    draw.check_types([{"x": 1, "y": 2}, 3], {})  # an int is a fine float
    draw.check_types([{"x": 1, "y": 2}, 3.5, "a", "b"], {"thing": "anything", "n": 1})
    wrong: list[tuple[list[Any], dict[str, Any], str, str, str]] = [
        ([{"x": 1}, 3], {}, "at", "args", "Object missing required field `y`"),
        ([{"x": 1, "y": 2}, "3"], {}, "width", "args", "Expected `float`, got `str`"),
        ([{"x": 1, "y": 2}, 3, "a", 4], {}, "tags", "args", "Expected `str`, got `int`"),
        ([{"x": 1, "y": 2}], {"width": None}, "width", "kwargs", "got `null`"),
        ([{"x": 1, "y": 2}, 3], {"n": "1"}, "extra", "kwargs", "Expected `int`"),
    ]
    for args, kwargs, name, field, words in wrong:
        with pytest.raises(ArgumentTypeError, match=words) as caught:
            draw.check_types(args, kwargs)
        assert (caught.value.parameter, caught.value.field) == (name, field)
        assert f"argument {name!r}" in str(caught.value)
    with pytest.raises(TypeError, match="missing a required argument"):
        draw.check_types([], {})
    app.close()


SETTINGS = TaskSettings(
    name="images.resize", queue="images", priority=5, timeout=60.0, policy=Policy(retries=4)
)


def record(settings: TaskSettings | None = SETTINGS, **opts: Any) -> Any:
    """A record for ``images.resize("abc", width=200)`` built at NOW with ``opts``."""
    return build_record(
        "images.resize",
        settings,
        make_options(**opts),
        ("abc",),
        {"width": 200},
        DEFAULT_MAX_PAYLOAD,
        NOW,
    )


def test_build_record_without_settings_uses_global_defaults() -> None:
    """A task not registered here: default queue, priority 0, one attempt, no timeout."""
    r = record(settings=None)
    assert r.task == "images.resize"
    assert (r.queue, r.priority, r.max_attempts, r.timeout, r.key) == ("default", 0, 1, None, None)
    assert (r.args, r.kwargs) == (["abc"], {"width": 200})
    assert (r.status, r.eta, r.created_at, r.attempts) == (Status.QUEUED, NOW, NOW, 0)
    assert len(r.id) == 26


def test_build_record_uses_the_task_settings() -> None:
    """The task's queue, priority, timeout and retries (+1 attempt) are the defaults."""
    r = record()
    assert (r.queue, r.priority, r.timeout, r.max_attempts) == ("images", 5, 60.0, 5)


def test_build_record_options_override_the_settings() -> None:
    """Every option given wins over the task's default."""
    r = record(queue="urgent", priority=9, retries=0, timeout=2.0, key="resize:abc")
    assert (r.queue, r.priority, r.max_attempts, r.timeout, r.key) == (
        "urgent",
        9,
        1,
        2.0,
        "resize:abc",
    )


def test_zero_priority_option_overrides_a_task_priority() -> None:
    """priority=0 is an override, not "unset"."""
    assert record(priority=0).priority == 0
    assert record(priority=-3).priority == -3


def test_build_record_with_delay_is_scheduled() -> None:
    """A delay puts the eta that far after now and the job starts scheduled."""
    r = record(delay=30)
    assert (r.status, r.eta) == (Status.SCHEDULED, NOW + 30)


def test_build_record_with_eta() -> None:
    """A future eta is scheduled at that time; a past eta is queued at once."""
    assert (record(eta=NOW + 5).status, record(eta=NOW + 5).eta) == (Status.SCHEDULED, NOW + 5)
    assert (record(eta=NOW - 5).status, record(eta=NOW - 5).eta) == (Status.QUEUED, NOW - 5)


def test_build_record_ids_are_fresh() -> None:
    """Two records of the same call get different ids."""
    assert record().id != record().id


def test_build_record_validates_the_payload() -> None:
    """Non-JSON arguments and oversized payloads are refused while building the record."""
    with pytest.raises(SerializationError, match=r"kwargs\['s'\]"):
        build_record("t", None, Options(), [], {"s": {1}}, DEFAULT_MAX_PAYLOAD, NOW)
    with pytest.raises(PayloadTooLarge):
        build_record("t", None, Options(), ["x" * 100], {}, 50, NOW)


def test_call_holds_arguments() -> None:
    """Call keeps positional and keyword arguments and shows them in its repr."""
    c = Call("a", 1, width=2)
    assert (c.args, c.kwargs) == (("a", 1), {"width": 2})
    assert repr(c) == "Call('a', 1, width=2)"
