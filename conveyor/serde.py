"""The JSON codec (msgspec) for task payloads and results, with enqueue-time validation."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import msgspec

from conveyor.errors import PayloadTooLarge, SerializationError

DEFAULT_MAX_PAYLOAD = 1024 * 1024

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

encode = _encoder.encode
decode = _decoder.decode


def _describe(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _plain_scalar(value: Any) -> bool:
    """Whether ``value``, not a container, is a JSON scalar (NaN and Infinity are not)."""
    if value is None or isinstance(value, str | int):  # bool is an int
        return True
    return isinstance(value, float) and math.isfinite(value)


def _plain(value: Any) -> bool:
    """Whether ``value`` is plain JSON all the way down, by the rules of :func:`_find_bad`.

    The check that runs on every enqueue: it builds no path strings (which cost sixty times
    the encoding of a list of 100,000 ints), and decides the usual scalars by their exact
    type in the loop, without a call each.
    """
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                return False
        items: Iterable[Any] = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return _plain_scalar(value)
    for v in items:
        kind = type(v)
        if kind is str or kind is int or kind is bool or v is None:
            continue
        if kind is float:
            if not math.isfinite(v):
                return False
        elif not _plain(v):
            return False
    return True


def _find_bad(value: Any, path: str) -> str | None:
    """The path of the first value inside ``value`` that is not plain JSON, if any.

    msgspec would encode a datetime, a set, bytes, a Decimal or an int dict key, but the task
    would get back a str, a list or a str key: a silent change of type. Such values are
    refused here, at enqueue, like anything msgspec cannot encode at all. Tuples are
    accepted and arrive as lists, as in every JSON task queue.
    """
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{path} key {k!r} ({_describe(k)})"
            found = _find_bad(v, f"{path}[{k!r}]")
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = _find_bad(v, f"{path}[{i}]")
            if found:
                return found
        return None
    if _plain_scalar(value):
        return None
    return f"{path} = {value!r:.80} ({_describe(value)})"


def encode_payload(task: str, args: Any, kwargs: Any, max_size: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Encode a job's arguments, or raise an error that names the argument JSON cannot hold.

    Raises:
        SerializationError: an argument is not JSON (a set, a datetime, an object...).
        PayloadTooLarge: the encoded arguments exceed ``max_size`` bytes.
    """
    args, kwargs = list(args), dict(kwargs)
    where = None
    if not (_plain(args) and _plain(kwargs)):
        where = _find_bad(args, "args") or _find_bad(kwargs, "kwargs")
    data = b""
    if where is None:
        try:
            data = _encoder.encode((args, kwargs))
        except (TypeError, ValueError, OverflowError) as exc:
            where = str(exc)
    if where is not None:
        raise SerializationError(
            f"cannot enqueue {task}: argument {where} is not JSON-serializable; "
            "pass plain JSON values (str, int, float, bool, None, list, dict)"
        )
    if len(data) > max_size:
        raise PayloadTooLarge(
            f"cannot enqueue {task}: arguments are {len(data)} bytes encoded, "
            f"over the limit of {max_size}; store large data elsewhere and pass a reference"
        )
    return data


def encode_result(task: str, value: Any) -> bytes:
    """Encode a task's return value, or raise SerializationError naming the task.

    The plain-JSON rule of the arguments applies, so that ``result()`` returns what the
    task returned and not, say, a str in place of a datetime.
    """
    if value is None:  # what most tasks return
        return b"null"
    where = None if _plain(value) else _find_bad(value, "result")
    if where is None:
        try:
            return _encoder.encode(value)
        except (TypeError, ValueError, OverflowError) as exc:
            where = str(exc)
    raise SerializationError(
        f"task {task} returned {_describe(value)}, which is not JSON-serializable: {where}"
    )
