"""The JSON codec: enqueue-time validation that names the bad argument, and the size limit."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import uuid
from typing import Any

import pytest

from conveyor import serde
from conveyor.errors import PayloadTooLarge, SerializationError


class Color(enum.Enum):
    """An enum that is not a str or int."""

    RED = 1


def test_plain_json_round_trips() -> None:
    """str, int, float, bool, None, list and str-keyed dict come back as they went in."""
    args = ["a", 1, 2.5, True, None, [1, [2, {"x": None}]], 2**70]
    kwargs = {"nested": {"list": [1.5, "b"], "empty": {}}, "flag": False}
    assert serde.decode(serde.encode_payload("t.ok", args, kwargs)) == [args, kwargs]


def test_tuples_are_accepted_as_lists() -> None:
    """A tuple is accepted and arrives as a list, as in other JSON task queues."""
    data = serde.encode_payload("t.ok", [(1, 2)], {"pair": ("a", "b")})
    assert serde.decode(data) == [[[1, 2]], {"pair": ["a", "b"]}]


def test_a_datetime_keyword_argument_is_named() -> None:
    """A datetime in kwargs is refused with the path kwargs['when'] and its type."""
    when = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    with pytest.raises(SerializationError) as info:
        serde.encode_payload("emails.send", ["a@example.com"], {"when": when})
    message = str(info.value)
    assert "emails.send" in message
    assert "kwargs['when']" in message
    assert "datetime.datetime" in message


def test_a_set_inside_a_list_is_named() -> None:
    """A set nested in a positional list argument is named by its full index path."""
    with pytest.raises(SerializationError, match=r"args\[1\]\[2\] = \{3\} \(builtins\.set\)"):
        serde.encode_payload("t.sets", ["x", [1, 2, {3}]], {})


def test_a_non_str_dict_key_is_named() -> None:
    """A dict with an int key is refused, naming the key and where the dict is."""
    with pytest.raises(SerializationError, match=r"kwargs\['scores'\] key 7 \(builtins\.int\)"):
        serde.encode_payload("t.keys", [], {"scores": {"ok": 1, 7: 2}})


def test_an_arbitrary_object_is_named() -> None:
    """An object JSON cannot hold at all is named with its type."""
    with pytest.raises(SerializationError, match=r"args\[0\] = .*builtins\.object"):
        serde.encode_payload("t.obj", [object()], {})


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        b"bytes",
        decimal.Decimal("1.5"),
        uuid.UUID(int=1),
        dt.date(2024, 1, 1),
        frozenset({1}),
        Color.RED,
    ],
    ids=repr,
)
def test_values_json_would_change_are_refused(value: Any) -> None:
    """Values the encoder would turn into something else (a str, a list, null) are refused."""
    with pytest.raises(SerializationError, match=r"kwargs\['v'\]"):
        serde.encode_payload("t.lossy", [], {"v": value})


def test_serialization_error_is_a_type_error() -> None:
    """Callers catching TypeError also catch a refused argument."""
    with pytest.raises(TypeError):
        serde.encode_payload("t.obj", [{1}], {})


def test_payload_over_the_limit_is_refused() -> None:
    """Arguments larger than max_size encoded raise PayloadTooLarge with both sizes."""
    with pytest.raises(PayloadTooLarge) as info:
        serde.encode_payload("t.big", ["x" * 200], {}, max_size=100)
    message = str(info.value)
    assert "t.big" in message
    assert "over the limit of 100" in message
    assert isinstance(info.value, ValueError)


def test_payload_at_the_limit_is_accepted() -> None:
    """A payload exactly max_size bytes long is fine."""
    size = len(serde.encode_payload("t", ["x" * 50], {}))
    assert serde.encode_payload("t", ["x" * 50], {}, max_size=size)
    with pytest.raises(PayloadTooLarge):
        serde.encode_payload("t", ["x" * 50], {}, max_size=size - 1)


def test_encode_result_round_trips() -> None:
    """A JSON result encodes to what decode gives back."""
    value = {"width": 200, "tags": ["a", "b"], "ratio": 0.5, "none": None}
    assert serde.decode(serde.encode_result("t.ok", value)) == value


@pytest.mark.parametrize("value", [object(), {1, 2}, dt.datetime(2024, 1, 1), {1: "a"}], ids=repr)
def test_encode_result_error_names_the_task(value: Any) -> None:
    """A non-JSON return value raises SerializationError naming the task and the type."""
    with pytest.raises(SerializationError) as info:
        serde.encode_result("images.resize", value)
    assert "images.resize" in str(info.value)
    assert type(value).__qualname__ in str(info.value)


def test_plain_values_are_checked_without_naming_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid arguments and results pass the quick check alone: the walk that names a bad
    value's path (a string per element) runs only when some value is bad."""

    def never(value: Any, path: str) -> str | None:
        raise AssertionError(f"path walk ran for plain {path}")

    class Label(enum.StrEnum):
        """A str enum: encoded as its str value, so it is plain."""

        A = "a"

    args = [list(range(1000)), {"n": [1.5, True, None, "s", {"deep": [()]}]}, Label.A, 2**70]
    kwargs = {"pair": (1, "b"), "empty": {}}
    real = serde._find_bad
    monkeypatch.setattr(serde, "_find_bad", never)
    data = serde.encode_payload("t.ok", args, kwargs)
    assert serde.decode(serde.encode_result("t.ok", args)) == serde.decode(data)[0]
    monkeypatch.setattr(serde, "_find_bad", real)
    bad = [[], {"n": [1.5, True, None, "s", {"deep": [(), math.nan]}]}]
    with pytest.raises(SerializationError, match=r"args\[1\]\['n'\]\[4\]\['deep'\]\[1\]"):
        serde.encode_payload("t.bad", bad, {})
