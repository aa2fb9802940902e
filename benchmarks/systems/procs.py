"""Process trees on Linux, read from /proc: who descends from whom, their CPU time, signals.

Standard library only: the driver uses it in the benchmark's venv to stop its workers, and the
orchestrator to measure the CPU time they spend.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable

TICKS = os.sysconf("SC_CLK_TCK")

# One process, named so that a reused pid is never taken for the process we started.
Proc = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    # Fields: pid (comm) state ppid ...; comm may hold spaces and parentheses.
    return text[text.rindex(")") + 2 :].split()


def identity(pid: int) -> Proc | None:
    """``(pid, start time)`` of a live process."""
    fields = _stat(pid)
    return None if fields is None else (pid, int(fields[19]))


def alive(proc: Proc) -> bool:
    """Whether this very process still exists (and is not a zombie)."""
    fields = _stat(proc[0])
    return fields is not None and fields[0] != "Z" and int(fields[19]) == proc[1]


def tree(roots: Iterable[int]) -> list[Proc]:
    """The live processes in ``roots`` and all their descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[Proc] = []
    todo = list(roots)
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        ident = identity(pid)
        if ident is not None:
            found.append(ident)
            todo.extend(children.get(pid, ()))
    return found


def cpu_seconds(roots: Iterable[int]) -> float:
    """User + system CPU time of the tree under ``roots``, with its reaped children's."""
    ticks = 0
    for pid, _ in tree(roots):
        fields = _stat(pid)
        if fields is not None:
            # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the name.
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / TICKS


def send(procs: Iterable[Proc], signum: int) -> None:
    """Send ``signum`` to each process that is still the one we know."""
    for proc in procs:
        if alive(proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc[0], signum)


def terminate(roots: Iterable[int], timeout: float) -> None:
    """SIGTERM ``roots`` (each stops its own children); SIGKILL what is left after ``timeout``."""
    roots = list(roots)
    procs = tree(roots)
    send([p for p in procs if p[0] in roots], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in procs):
            return
        time.sleep(0.05)
    send(procs + tree(roots), signal.SIGKILL)
