"""The rows of the PostgreSQL broker's ``jobs`` table, as the statements return them
(``row_to_json`` text, see ``sql/postgres.sql``), read back as JobRecords.

A job is decoded with its shape (args a JSON array, kwargs an object, an error with its
fields). PostgreSQL's ``json`` columns refuse malformed text but take any JSON value, so a
row written by hand or by another program can hold args that are an object: a claim finds
such a row and fails it alone, and reads (get, list, cancel) show it with a placeholder
carrying its stored text in place of the field that does not decode, so listings keep
working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from conveyor.brokers.common import DECODE_ERROR, decode_error, shorten
from conveyor.job import ErrorInfo, JobRecord

_encode = msgspec.json.Encoder().encode
_decode_job = msgspec.json.Decoder(JobRecord).decode
_decode_jobs = msgspec.json.Decoder(list[JobRecord]).decode
_decode_raws = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


class _Ident(msgspec.Struct):
    """What a damaged row must still give to be failed: its id and its lease token."""

    id: str
    token: int


_decode_ident = msgspec.json.Decoder(_Ident).decode

_UNREADABLE = (msgspec.MsgspecError, TypeError, ValueError)
"""What decoding a damaged row raises: malformed JSON or the wrong shape (msgspec)."""

# The JSON columns of a row: field name, decoder with its shape, and what a read shows in
# place of a value that does not decode (given the stored text, shortened). The other
# columns are typed by PostgreSQL itself (text, bigint, a CHECKed status).
_JSON_FIELDS: tuple[tuple[str, Callable[[Any], Any], Callable[[str], Any]], ...] = (
    ("args", msgspec.json.Decoder(list[Any]).decode, lambda raw: [f"<undecodable: {raw}>"]),
    (
        "kwargs",
        msgspec.json.Decoder(dict[str, Any]).decode,
        lambda raw: {"<undecodable>": raw},
    ),
    (
        "error",
        msgspec.json.Decoder(ErrorInfo | None).decode,
        lambda raw: ErrorInfo(DECODE_ERROR, f"undecodable: {raw}"),
    ),
)


def damage(fields: dict[str, msgspec.Raw]) -> tuple[str, str, bytes] | None:
    """The first JSON column of a row (its ``fields``) that does not decode: its name, what is
    wrong and the stored text; or None when they all do."""
    for name, decode, _ in _JSON_FIELDS:
        raw = fields.get(name)
        if raw is None:
            return name, "missing", b""
        try:
            decode(raw)
        except _UNREADABLE as exc:
            return name, str(exc) or type(exc).__name__, bytes(raw)
    return None


def shown(text: str | bytes) -> JobRecord:
    """One row as a JobRecord for reading: a damaged JSON column shows a placeholder with its
    stored text instead of failing the whole read."""
    try:
        return _decode_job(text)
    except _UNREADABLE:
        pass
    fields = _decode_fields(text)
    for name, decode, placeholder in _JSON_FIELDS:
        raw = fields.get(name)
        try:
            decode(raw if raw is not None else b"")
        except _UNREADABLE:
            stored = b"" if raw is None else bytes(raw)
            fields[name] = msgspec.Raw(_encode(placeholder(shorten(stored))))
    return _decode_job(_encode(fields))


def claimed(text: str | None) -> tuple[list[JobRecord], list[dict[str, Any]]]:
    """The jobs of a claim's answer (a JSON array of rows), and the damaged ones to fail as
    ``{"id", "token", "error"}`` entries (see the ``fail_damaged`` statement).

    The whole answer is decoded in one call; only when that fails is it decoded again row by
    row, to tell the damaged rows from the good ones.
    """
    if text is None:
        return [], []
    try:
        return _decode_jobs(text), []
    except _UNREADABLE:
        pass
    jobs: list[JobRecord] = []
    damaged: list[dict[str, Any]] = []
    for raw in _decode_raws(text):
        try:
            jobs.append(_decode_job(raw))
            continue
        except _UNREADABLE as exc:
            found = damage(_decode_fields(raw)) or ("record", str(exc), bytes(raw))
        ident = _decode_ident(raw)
        error = decode_error(found[0], found[1], found[2])
        damaged.append({"id": ident.id, "token": ident.token, "error": error})
    return jobs, damaged


def encode(value: object) -> str:
    """``value`` as JSON text, for a statement's parameter."""
    return _encode(value).decode()


__all__ = ["claimed", "damage", "encode", "shown"]
