"""How a :class:`~conveyor.brokers.postgres.PostgresBroker` reaches its server: the URL, a
small pool of autocommit connections, and the one connection that listens for notifications.

All of it belongs to the broker object (the store) and is shared by every consumer session
opened on it; none of it holds a worker's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from conveyor.brokers.common import redact, split_url, whole_number
from conveyor.errors import BrokerUnavailable, ConfigurationError

DEFAULT_SCHEMA = "conveyor"
DEFAULT_POOL_SIZE = 4
"""Connections per broker object (plus one that listens): enough for a worker's two claims
at once (it splits a big one), its outcome recorder and its sweeper."""

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

# -- the URL --------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,49}")


def parse_url(url: str) -> tuple[str, str, int]:
    """The libpq connection string, the schema and the pool size of a PostgreSQL URL.

    Raises:
        ConfigurationError: the URL is not a PostgreSQL one, or has a bad option.
    """
    parts, query = split_url(
        url, ("postgresql", "postgres"), name="PostgreSQL", example="postgresql://..."
    )
    options = dict(query)
    schema = options.pop("schema", DEFAULT_SCHEMA)
    if not _IDENTIFIER.fullmatch(schema):
        raise ConfigurationError(
            f"schema {schema!r} in URL {redact(url)!r} must be a lower-case identifier "
            "(letters, digits and _, at most 50 characters)"
        )
    size = whole_number(url, "pool_size", options.pop("pool_size", str(DEFAULT_POOL_SIZE)), 1)
    options.setdefault("connect_timeout", "10")
    options.setdefault("application_name", "conveyor")
    conninfo = urlunsplit(parts._replace(query=urlencode(options)))
    try:
        conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"bad PostgreSQL URL {redact(url)!r}: {exc}") from None
    return conninfo, schema, size


# -- the pool -------------------------------------------------------------------------------


class Pool:
    """Up to ``size`` autocommit connections, opened when needed, for one event loop."""

    def __init__(self, connect: Callable[[], Awaitable[Connection]], size: int) -> None:
        self._connect = connect
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A connection of the pool for the duration of the block."""
        async with self._slots:
            conn = None
            while self._idle and conn is None:
                conn = self._idle.pop()
                if _ended(conn):
                    await close_quietly(conn)
                    conn = None
            if conn is None:
                conn = await self._connect()
            try:
                yield conn
            except psycopg.Error:
                if conn.broken or conn.closed or not _idle(conn) or self._closed:
                    await close_quietly(conn)
                else:  # a statement failed, the connection did not
                    self._idle.append(conn)
                raise
            except BaseException:
                # Cancelled, maybe in the middle of a statement: never reuse it.
                await close_quietly(conn)
                raise
            if self._closed:  # closed while this connection was out
                await close_quietly(conn)
            else:
                self._idle.append(conn)

    async def close(self) -> None:
        """Close the idle connections, and the others as they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await close_quietly(conn)


def _ended(conn: Connection) -> bool:
    """Whether the server has ended an idle connection (a restart, an idle timeout).

    An idle connection has nothing to say: anything to read is the server's farewell. One
    look at the socket, so that a restart costs no operation an error.
    """
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


def _idle(conn: Connection) -> bool:
    return conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


async def close_quietly(conn: Connection) -> None:
    """Close ``conn``, ignoring any error: it is being given up on."""
    with contextlib.suppress(Exception):
        await conn.close()


# -- the listener ---------------------------------------------------------------------------


class _Waiter:
    """An idle session's wake-up: set by a notification for one of its queues."""

    __slots__ = ("event", "queues")

    def __init__(self, queues: frozenset[str]) -> None:
        self.queues = queues
        self.event = asyncio.Event()


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # looked at: asyncio would log it as never retrieved


class Listener:
    """The broker object's one ``LISTEN`` connection, shared by every session opened on it.

    It wakes the sessions waiting for a queue it hears of, and counts what it hears so
    that a session can tell whether anything was notified for its queues since it last
    looked at them (:meth:`mark`, :meth:`heard_since`). A count means something only under
    the connection that heard it: ``listens`` numbers the connections.

    The connection lives and dies inside one task, which :meth:`close` cancels: a waiter
    cancelled meanwhile leaves nothing open behind it.
    """

    def __init__(
        self,
        open_connection: Callable[[], Awaitable[Connection]],
        statement: str,
        unavailable: Callable[[BaseException], BrokerUnavailable],
    ) -> None:
        self._open = open_connection
        self._statement = statement
        self._unavailable = unavailable
        self._task: asyncio.Task[None] | None = None
        self._listening: asyncio.Future[None] | None = None
        self.listens = 0
        """How many connections have listened so far (the current one's number)."""
        self.heard = 0
        """Notifications heard so far, over every connection."""
        self._last_heard: dict[str, int] = {}  # queue -> ``heard`` at its last notification
        self._waiters: set[_Waiter] = set()

    def mark(self) -> tuple[int, int] | None:
        """Where the listener stands (``listens``, ``heard``), if it listens now: taken
        before a look at the queues, it dates what the look saw."""
        listening, task = self._listening, self._task
        if listening is None or task is None or task.done() or not listening.done():
            return None
        return self.listens, self.heard

    def heard_since(self, listens: int, heard: int, queues: frozenset[str]) -> bool | None:
        """Whether a notification for ``queues`` came after the mark ``(listens, heard)``;
        None when another connection listens since (notifications may have been missed)."""
        if listens != self.listens:
            return None
        last_heard = self._last_heard
        return any(last_heard.get(q, 0) > heard for q in queues)

    def waiter(self, queues: frozenset[str]) -> _Waiter:
        """A wake-up for ``queues``, registered until :meth:`discard`."""
        waiter = _Waiter(queues)
        self._waiters.add(waiter)
        return waiter

    def discard(self, waiter: _Waiter) -> None:
        """Stop waking ``waiter``."""
        self._waiters.discard(waiter)

    async def listen(self) -> None:
        """Return once the connection listens; start it unless it runs.

        Raises:
            BrokerUnavailable: the server cannot be reached.
        """
        listening = self._listening
        if listening is None or self._task is None or self._task.done():
            listening = self._listening = asyncio.get_running_loop().create_future()
            listening.add_done_callback(_retrieve)
            self._task = asyncio.create_task(self._notifications(listening), name="conveyor-listen")
        await asyncio.shield(listening)

    def abandon(self) -> object:
        """Forget the connection without closing it (it was inherited through fork(), and
        closing it would end the parent's); returns what the caller must keep referenced."""
        task, self._task, self._listening = self._task, None, None
        return task

    async def close(self) -> None:
        """Stop listening; a later :meth:`listen` connects again."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _notifications(self, listening: asyncio.Future[None]) -> None:
        conn: Connection | None = None
        try:
            conn = await self._open()
            await conn.execute(self._statement)
            self.listens += 1
            listening.set_result(None)
            async for note in conn.notifies():
                self.heard += 1
                self._last_heard[note.payload] = self.heard
                for waiter in self._waiters:
                    if note.payload in waiter.queues:
                        waiter.event.set()
        except psycopg.Error as exc:  # lost: the next wait listens again
            if not listening.done():
                listening.set_exception(self._unavailable(exc))
        except Exception as exc:
            if not listening.done():
                listening.set_exception(exc)
        finally:
            if not listening.done():
                listening.set_exception(BrokerUnavailable("the broker was closed"))
            # Notifications may have been missed: every waiter looks again.
            for waiter in self._waiters:
                waiter.event.set()
            if conn is not None:
                await close_quietly(conn)
