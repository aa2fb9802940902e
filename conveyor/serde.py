"""The JSON codec (msgspec) for task payloads and results, with enqueue-time validation."""

from __future__ import annotations

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


def _find_bad(value: Any, path: str) -> str | None:
    """The path of the first value inside ``value`` that JSON cannot hold, if any."""
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
    try:
        _encoder.encode(value)
    except (TypeError, ValueError, OverflowError):
        return f"{path} = {value!r:.80} ({_describe(value)})"
    return None


def encode_payload(task: str, args: Any, kwargs: Any, max_size: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Encode a job's arguments, or raise an error that names the argument JSON cannot hold.

    Raises:
        SerializationError: an argument is not JSON (a set, a datetime, an object...).
        PayloadTooLarge: the encoded arguments exceed ``max_size`` bytes.
    """
    try:
        data = _encoder.encode((args, kwargs))
    except (TypeError, ValueError, OverflowError) as exc:
        where = _find_bad(list(args), "args") or _find_bad(dict(kwargs), "kwargs") or str(exc)
        raise SerializationError(
            f"cannot enqueue {task}: argument {where} is not JSON-serializable; "
            "pass plain JSON values (str, int, float, bool, None, list, dict)"
        ) from exc
    if len(data) > max_size:
        raise PayloadTooLarge(
            f"cannot enqueue {task}: arguments are {len(data)} bytes encoded, "
            f"over the limit of {max_size}; store large data elsewhere and pass a reference"
        )
    return data


def encode_result(task: str, value: Any) -> bytes:
    """Encode a task's return value, or raise SerializationError naming the task."""
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(
            f"task {task} returned {_describe(value)}, which is not JSON-serializable: {exc}"
        ) from exc
