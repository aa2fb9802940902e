"""``error_info`` and ``type_name``: how an exception is recorded on a job."""

from __future__ import annotations

from conveyor.errors import TaskTimeout
from conveyor.execute import MAX_TRACEBACK, error_info, type_name


class BrokenStr(Exception):
    """An exception whose ``__str__`` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class NotAStr(Exception):
    """An exception whose ``__str__`` returns something that is not a str."""

    def __str__(self) -> str:
        return 42  # type: ignore[return-value]  # noqa: PLE0307


def raised(exc: BaseException) -> BaseException:
    """``exc`` after being raised and caught, so that it carries a traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_type_name_is_bare_for_builtins_and_qualified_otherwise() -> None:
    """Builtins keep their short name; others get module.QualName."""
    assert type_name(ValueError()) == "ValueError"
    assert type_name(SystemExit()) == "SystemExit"
    assert type_name(TaskTimeout()) == "conveyor.errors.TaskTimeout"
    assert type_name(BrokenStr()) == "tests.unit.test_execute.BrokenStr"


def test_error_info_records_type_message_and_traceback() -> None:
    """The type, str() and formatted traceback of the exception."""
    info = error_info(raised(ValueError("bad input: 42")))
    assert info.type == "ValueError"
    assert info.message == "bad input: 42"
    assert info.traceback.startswith("Traceback (most recent call last):")
    assert "in raised" in info.traceback
    assert info.traceback.rstrip().endswith("ValueError: bad input: 42")


def test_error_info_never_raises_when_str_raises() -> None:
    """A broken ``__str__`` gives a placeholder message, and the traceback survives."""
    info = error_info(raised(BrokenStr()))
    assert info.type == "tests.unit.test_execute.BrokenStr"
    assert "RuntimeError" in info.message
    assert "in raised" in info.traceback


def test_error_info_never_raises_when_str_returns_a_non_str() -> None:
    """A ``__str__`` returning an int is a TypeError inside str(): still recorded."""
    info = error_info(raised(NotAStr()))
    assert info.type == "tests.unit.test_execute.NotAStr"
    assert "TypeError" in info.message


def test_error_info_without_a_traceback() -> None:
    """An exception never raised has no frames; it is still recorded."""
    info = error_info(KeyError("k"))
    assert (info.type, info.message) == ("KeyError", "'k'")
    assert "KeyError" in info.traceback


def test_a_long_traceback_keeps_its_end() -> None:
    """A traceback over the limit is cut from the front, keeping the raising frame."""

    # Two functions in turn, so that the traceback does not fold repeated lines.
    def ping(n: int) -> None:
        if n == 0:
            raise ValueError("at the bottom")
        pong(n - 1)

    def pong(n: int) -> None:
        ping(n)

    try:
        ping(400)
    except ValueError as exc:
        info = error_info(exc)
    assert len(info.traceback) <= MAX_TRACEBACK + len("...\n")
    assert info.traceback.startswith("...\n")
    assert info.traceback.rstrip().endswith("ValueError: at the bottom")


def test_a_huge_message_is_truncated_in_the_traceback() -> None:
    """A megabyte-long message does not make a megabyte-long traceback."""
    info = error_info(raised(ValueError("x" * 1_000_000)))
    assert len(info.traceback) <= MAX_TRACEBACK + len("...\n")
