"""Named SQL queries of the SQL brokers, kept in ``<dialect>.sql`` files beside this module.

A file is a series of sections. Each opens with a ``-- name: <name>`` line and holds the text
up to the next such line: one statement (the ``schema`` section may hold several), with the
comments that explain it. Text before the first section is the file's own commentary.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

_SECTION = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """The sections of ``text`` by name, each stripped of surrounding blank space.

    Raises:
        ValueError: a name is defined twice, or a section is empty.
    """
    parts = _SECTION.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"SQL query {name!r} is defined twice")
        if not body.strip():
            raise ValueError(f"SQL query {name!r} is empty")
        queries[name] = body.strip()
    return queries


@functools.cache
def queries(dialect: str) -> Mapping[str, str]:
    """The named queries of ``<dialect>.sql`` (read once per process), by name."""
    text = resources.files(__name__).joinpath(f"{dialect}.sql").read_text(encoding="utf-8")
    return MappingProxyType(parse(text))


__all__ = ["parse", "queries"]
