"""How long the SQLite broker takes to turn one ``jobs`` row into a JobRecord, two ways.

    PYTHONPATH=. .venv/bin/python benchmarks/sqlite_rows.py

``sqlite_rows.job_of`` spells the fields out; the other way builds a dict of the columns first. A
claim pays this per job. The figures are in docs/design-notes.md.
"""

from __future__ import annotations

import functools
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conveyor.brokers import sqlite_rows  # noqa: E402
from conveyor.brokers.base import decode_json  # noqa: E402
from conveyor.job import JobRecord  # noqa: E402

_FIELDS = JobRecord.__struct_fields__
_decode_any = msgspec.json.Decoder().decode


def by_dict(row: tuple[Any, ...]) -> JobRecord:
    """The row through a dict of its columns."""
    columns = dict(zip(_FIELDS, row, strict=True))
    columns.update(
        args=_decode_any(columns["args"]),
        kwargs=_decode_any(columns["kwargs"]),
        status=sqlite_rows.STATUS[columns["status"]],
        result=decode_json(columns["result"]),
        error=None,
        cancel_requested=bool(columns["cancel_requested"]),
    )
    return JobRecord(**columns)


def main() -> None:
    """Print the best of five runs of 100,000 conversions each, per way."""
    now = time.time()
    row = (
        "0661d0ee0096268fe07506fc96", "tests.noop", "default", "[1, 2]", '{"a": 1}', "running",
        0, 1, 3, now, None, None, now, now, None, None, None, "w1", 4, now + 30, 0, 0,
    )  # fmt: skip
    assert by_dict(row) == sqlite_rows.job_of(row)
    spelled = ("spelled out (sqlite_rows.job_of)", sqlite_rows.job_of)
    for name, convert in (spelled, ("through a dict", by_dict)):
        timer = timeit.Timer(functools.partial(convert, row))
        best = min(timer.repeat(number=100_000, repeat=5)) / 100_000
        print(f"{name:28} {best * 1e6:.2f} µs per row")


if __name__ == "__main__":
    main()
