"""A broker per event loop, so that async callers talk to the broker from their own loop.

Going through the portal thread costs two thread wake-ups per call (about 0.3 ms), which is
most of an enqueue. A broker's connections belong to one loop, so each caller loop gets its
own copy, connected on first use and closed when the loop shuts down: ``asyncio.run``,
``asyncio.Runner``, ``uvloop.run`` and pytest-asyncio all finalise async generators before
closing their loop, and a generator started here closes the copy at that moment.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable

from conveyor.brokers.base import Broker

CLOSE_TIMEOUT = 5.0  # seconds close_all() waits for a copy on another thread's loop


class _Copy:
    __slots__ = ("broker", "connected", "connecting", "lifetime")

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.connected = False
        self.connecting: asyncio.Future[None] | None = None
        self.lifetime: AsyncGenerator[None, None] | None = None


class LoopBrokers:
    """The copies of one app's broker, by the loop that uses them."""

    def __init__(self, make: Callable[[], Broker]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._copies: dict[asyncio.AbstractEventLoop, _Copy] = {}

    async def get(self) -> Broker:
        """The running loop's copy, connected."""
        loop = asyncio.get_running_loop()
        copy = self._copies.get(loop)
        if copy is None:
            with self._lock:
                for old in [old for old in self._copies if old.is_closed()]:
                    # Closed without finalising its generators: nothing can close the copy
                    # any more, and keeping it would keep the dead loop alive.
                    del self._copies[old]
                copy = self._copies.setdefault(loop, _Copy(self._make()))
        if not copy.connected:
            await self._connect(copy)
        return copy.broker

    async def _connect(self, copy: _Copy) -> None:
        if copy.connecting is not None:  # another task of this loop is connecting it
            await asyncio.shield(copy.connecting)
            return
        copy.connecting = asyncio.get_running_loop().create_future()
        try:
            await copy.broker.connect()
        except BaseException as exc:
            copy.connecting.set_exception(exc)
            copy.connecting.exception()  # retrieved: the waiters re-raise it themselves
            raise
        else:
            copy.connected = True
            copy.connecting.set_result(None)
            lifetime = self._lifetime(copy)
            await anext(lifetime)  # now the loop knows it, and closes it at shutdown
            copy.lifetime = lifetime
        finally:
            copy.connecting = None

    async def _lifetime(self, copy: _Copy) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                for loop in [loop for loop, c in self._copies.items() if c is copy]:
                    del self._copies[loop]
            copy.connected = False
            await copy.broker.close()

    async def close_here(self) -> None:
        """Close the running loop's copy, if it has one."""
        copy = self._copies.get(asyncio.get_running_loop())
        if copy is None:
            return
        if copy.lifetime is not None:
            await copy.lifetime.aclose()  # its finally closes the broker
        else:
            with self._lock:
                self._copies.pop(asyncio.get_running_loop(), None)

    def close_all(self) -> None:
        """Close every copy whose loop runs in another thread; a copy on the caller's own
        running loop is closed when that loop shuts down (a sync call cannot await it)."""
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        with self._lock:
            copies = list(self._copies.items())
        for loop, copy in copies:
            if loop is here or copy.lifetime is None or not loop.is_running():
                continue
            done = asyncio.run_coroutine_threadsafe(copy.lifetime.aclose(), loop)
            try:
                done.result(CLOSE_TIMEOUT)
            except Exception:  # best effort: the loop's own shutdown closes it otherwise
                done.cancel()
