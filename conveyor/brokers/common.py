"""What every broker needs and none should write again: the lease-expiry error, waiters woken
across loops and threads, a fork guard, URL options and redaction, and the matching of a
batch of outcomes or leases to what the store applied.

No broker imports another broker: what two of them share lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from conveyor.brokers.base import HeartbeatReply, Lease, Outcome
from conveyor.errors import ConfigurationError
from conveyor.job import ErrorInfo

LEASE_EXPIRED = "conveyor.LeaseExpired"
"""The error type recorded on a job whose worker stopped renewing its lease."""


def lease_expired_error(worker: str | None, attempts: int) -> ErrorInfo:
    """The error recorded when ``worker`` stopped renewing the lease of attempt ``attempts``."""
    return ErrorInfo(
        LEASE_EXPIRED,
        f"worker {worker} stopped renewing the lease of attempt {attempts} "
        "(it crashed, was killed or lost the broker)",
    )


POISON_PILL = "conveyor.PoisonPill"
"""The error type recorded on a job failed because its worker was lost each time it ran it."""

DECODE_ERROR = "conveyor.DecodeError"
"""The error type recorded on a job whose stored record cannot be read back (failed alone)."""


def poison_pill_error(worker: str | None, losses: int) -> ErrorInfo:
    """The error recorded when a job's worker was lost for the ``losses``-th time, more than
    :data:`conveyor.job.MAX_LOSSES`: the job itself most likely kills its workers."""
    return ErrorInfo(
        POISON_PILL,
        f"its worker was lost {losses} times while running this job (the lease expired each "
        "time): probably a poison pill that kills its worker (out of memory, a segfault, "
        f"os._exit); the last worker was {worker}",
    )


def decode_error(field: str, reason: str, raw: object) -> ErrorInfo:
    """The error recorded on a job whose stored ``field`` (``raw``, shown shortened) cannot be
    decoded, for ``reason``."""
    return ErrorInfo(
        DECODE_ERROR, f"the stored {field} cannot be decoded ({reason}): {shorten(raw)}"
    )


def shorten(raw: object, limit: int = 200) -> str:
    """``raw`` (stored text or bytes) as a short printable text, for messages and listings."""
    text = repr(raw.decode(errors="replace") if isinstance(raw, bytes) else raw)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- waiters ----------------------------------------------------------------------------------


class Waiter:
    """One pending ``wait``: the loop it runs on, the queues it waits for, the event that ends
    it. The event is set on the waiter's own loop, whichever thread wakes it."""

    __slots__ = ("event", "loop", "queues")

    def __init__(self, loop: asyncio.AbstractEventLoop, queues: frozenset[str]) -> None:
        self.loop = loop
        self.queues = queues
        self.event = asyncio.Event()

    def wake(self) -> None:
        """Set the event, from any thread."""
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is self.loop:
            self.event.set()  # the common case, without a trip through the loop's queue
            return
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(self.event.set)


class Waiters:
    """The pending waits on one store, from any number of loops and threads."""

    __slots__ = ("_lock", "_waiting")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: set[Waiter] = set()

    @contextlib.contextmanager
    def waiting(self, queues: Iterable[str]) -> Iterator[Waiter]:
        """A waiter for ``queues`` on the running loop, registered while the block runs.

        Register before looking at the store: a change made after the look then wakes it.
        """
        waiter = Waiter(asyncio.get_running_loop(), frozenset(queues))
        with self._lock:
            self._waiting.add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                self._waiting.discard(waiter)

    def notify(self, queues: Collection[str]) -> None:
        """Wake the waiters that wait for any of ``queues``."""
        if not queues:
            return
        with self._lock:
            woken = [w for w in self._waiting if not w.queues.isdisjoint(queues)]
        for waiter in woken:
            waiter.wake()


_shared: dict[str, Waiters] = {}
_shared_lock = threading.Lock()


def shared_waiters(store: str) -> Waiters:
    """The waiters of every broker object of this process on ``store`` (a file's path, say),
    so that a change through one object wakes the waits of all the others at once."""
    with _shared_lock:
        return _shared.setdefault(store, Waiters())


# -- fork ---------------------------------------------------------------------------------------


# Connections, sockets and threads inherited through fork(): kept referenced for good, so that
# the child never closes (or collects, which closes) what its parent still uses.
_abandoned: list[object] = []


class ForkGuard:
    """Tells a broker object that it now runs in a forked child of the process that made it.

    A child inherits its parent's connections but not their threads; using or closing them
    would corrupt the parent's sessions. Check :attr:`forked` before using a connection; on
    True, :meth:`abandon` what was inherited and make new ones.
    """

    __slots__ = ("_pid",)

    def __init__(self) -> None:
        self._pid = os.getpid()

    @property
    def forked(self) -> bool:
        """True in a process other than the one that made (or last abandoned) the resources."""
        return self._pid != os.getpid()

    def abandon(self, *inherited: object) -> None:
        """Keep ``inherited`` referenced, never closed, and own what is made from now on."""
        _abandoned.append(inherited)
        self._pid = os.getpid()


# -- URLs -----------------------------------------------------------------------------------------


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def split_url(
    url: str, schemes: Collection[str], *, name: str, example: str
) -> tuple[SplitResult, list[tuple[str, str]]]:
    """The parts of a broker URL and its query options, in order (repeats kept).

    Raises:
        ConfigurationError: the scheme is not one of ``schemes``; the message names the
            broker (``name``), shows ``example`` and the URL without its password.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in schemes:
        raise ConfigurationError(f"not a {name} URL: {redact(url)!r} (expected {example})")
    return parts, parse_qsl(parts.query, keep_blank_values=True)


def whole_number(url: str, name: str, value: str, minimum: int = 0) -> int:
    """The option ``name`` of ``url`` as a whole number of at least ``minimum``.

    Raises:
        ConfigurationError: it is not one.
    """
    if not value.isdecimal() or int(value) < minimum:
        raise ConfigurationError(
            f"{name} in URL {redact(url)!r} must be a whole number >= {minimum}, not {value!r}"
        )
    return int(value)


# -- matching a batch to what the store applied ----------------------------------------------------


def first_outcomes(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Each (id, token) once, the first outcome for it: a repeat is refused, as the job is no
    longer running under that token once the first is applied."""
    first: dict[tuple[str, int], Outcome] = {}
    for out in outcomes:
        first.setdefault((out.id, out.token), out)
    return list(first.values())


def refused_ids(outcomes: Sequence[Outcome], applied: Iterable[tuple[str, int]]) -> list[str]:
    """The ids of ``outcomes`` the store did not apply, in order, given the (id, token) pairs
    it applied: each applied pair accounts for one outcome, so repeats come back refused."""
    left = Counter(applied)
    refused: list[str] = []
    for out in outcomes:
        pair = (out.id, out.token)
        if left[pair] > 0:
            left[pair] -= 1
        else:
            refused.append(out.id)
    return refused


def heartbeat_reply(
    leases: Sequence[Lease], held: Mapping[tuple[str, int], bool]
) -> HeartbeatReply:
    """The reply to a heartbeat over ``leases``, given the (id, token) pairs the store still
    held, each with whether its job was asked to cancel."""
    return HeartbeatReply(
        lost=[h.id for h in leases if (h.id, h.token) not in held],
        cancel=[h.id for h in leases if held.get((h.id, h.token))],
    )


__all__ = [
    "DECODE_ERROR",
    "LEASE_EXPIRED",
    "POISON_PILL",
    "ForkGuard",
    "Waiter",
    "Waiters",
    "decode_error",
    "first_outcomes",
    "heartbeat_reply",
    "lease_expired_error",
    "poison_pill_error",
    "redact",
    "refused_ids",
    "shared_waiters",
    "shorten",
    "split_url",
    "whole_number",
]
