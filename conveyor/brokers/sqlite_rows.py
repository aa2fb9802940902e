"""The rows of the SQLite broker's ``jobs`` table as JobRecords (see ``sql/sqlite.sql``).

A claim decodes each row with its shape (args a JSON array, kwargs an object), so a damaged
row is found and failed alone; reads show a damaged row with a placeholder carrying its
stored text in place of the field that does not decode, so listings keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from conveyor.brokers.base import decode_json
from conveyor.brokers.common import DECODE_ERROR, shorten
from conveyor.job import ErrorInfo, JobRecord, Status

STATUS = {s.value: s for s in Status}
"""Each status by its stored text."""

_encode = msgspec.json.Encoder().encode
_decode_error = msgspec.json.Decoder(ErrorInfo).decode
# The payload is decoded with its shape: args that are a JSON object, say, are damage to
# refuse, not arguments to pass.
_decode_args = msgspec.json.Decoder(list[Any]).decode
_decode_kwargs = msgspec.json.Decoder(dict[str, Any]).decode

UNREADABLE = (msgspec.MsgspecError, TypeError, ValueError, KeyError)
"""What decoding a damaged row raises: malformed JSON or the wrong shape (msgspec), NULL
where text was expected (TypeError), an unknown status (KeyError)."""

TOKEN = 18
"""The position of ``token`` in a row."""

# The JSON columns of a row: position, field name, decoder, and what a read shows in place
# of a value that does not decode (given the stored text, shortened).
_JSON_COLUMNS: tuple[tuple[int, str, Callable[[Any], Any], Callable[[str], Any]], ...] = (
    (3, "args", _decode_args, lambda raw: [f"<undecodable: {raw}>"]),
    (4, "kwargs", _decode_kwargs, lambda raw: {"<undecodable>": raw}),
    (15, "result", decode_json, lambda raw: f"<undecodable: {raw}>"),
    (16, "error", _decode_error, lambda raw: ErrorInfo(DECODE_ERROR, f"undecodable: {raw}")),
)


def job_of(row: tuple[Any, ...]) -> JobRecord:
    """A ``jobs`` row (``SELECT *``: the columns follow JobRecord's fields) as a JobRecord.

    Spelled out field by field rather than through a dict of the columns, which costs more,
    as claims call it per job (benchmarks/sqlite_rows.py; figures in docs/design-notes.md).
    """
    (
        job_id, task, queue, args, kwargs, status, priority, attempts, max_attempts, eta,
        timeout, key, created_at, started_at, finished_at, result, error, worker, token,
        lease_until, cancel_requested, losses,
    ) = row  # fmt: skip
    return JobRecord(
        id=job_id, task=task, queue=queue, args=_decode_args(args),
        kwargs=_decode_kwargs(kwargs), status=STATUS[status], priority=priority,
        attempts=attempts, max_attempts=max_attempts, eta=eta, timeout=timeout, key=key,
        created_at=created_at, started_at=started_at, finished_at=finished_at,
        result=decode_json(result), error=None if error is None else _decode_error(error),
        worker=worker, token=token, lease_until=lease_until,
        cancel_requested=bool(cancel_requested), losses=losses,
    )  # fmt: skip


def damage(row: tuple[Any, ...]) -> tuple[int, str, str, Any] | None:
    """The first JSON column of ``row`` that does not decode (position, field name, what is
    wrong, the stored value), or None when they all do."""
    for index, field, decode, _ in _JSON_COLUMNS:
        raw = row[index]
        if raw is None and field in ("result", "error"):
            continue
        try:
            decode(raw)
        except UNREADABLE as exc:
            return index, field, str(exc) or type(exc).__name__, raw
    return None


def shown(row: tuple[Any, ...]) -> JobRecord:
    """A ``jobs`` row as a JobRecord for reading (get, list): a damaged JSON column shows its
    stored text in a placeholder instead of failing the whole read."""
    try:
        return job_of(row)
    except UNREADABLE:
        pass
    fixed = list(row)
    while (found := damage(tuple(fixed))) is not None:
        index, _, _, raw = found
        placeholder = next(c[3] for c in _JSON_COLUMNS if c[0] == index)
        fixed[index] = _encode(placeholder(shorten(raw))).decode()
    return job_of(tuple(fixed))


__all__ = ["STATUS", "TOKEN", "UNREADABLE", "damage", "job_of", "shown"]


def insert_params(job: JobRecord, status: Status) -> dict[str, Any]:
    """The named parameters of ``insert`` (one per column) for ``job`` stored as ``status``."""
    params = msgspec.structs.asdict(job)
    params.update(
        args=_encode(job.args).decode(),
        kwargs=_encode(job.kwargs).decode(),
        status=status.value,
        result=None if job.result is None else _encode(job.result).decode(),
        error=None if job.error is None else _encode(job.error).decode(),
        cancel_requested=int(job.cancel_requested),
    )
    return params
