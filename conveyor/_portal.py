"""The one bridge from sync code to the async core: an event loop in a daemon thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Portal:
    """Runs coroutines on a private event loop thread, started on first use.

    Sync callers block on the result; async callers on another loop await it without
    blocking their loop. Broker connections live on this one loop, so they are never
    shared between loops.
    """

    def __init__(self, name: str = "conveyor-portal") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name=self._name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def runs_here(self) -> bool:
        """Whether the caller runs on the portal's loop thread."""
        return threading.current_thread() is self._thread

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal loop and block until it returns (or raises)."""
        loop = self._ensure()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync Conveyor method was called from its own portal loop")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def call_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal loop and await it from the caller's loop."""
        loop = self._ensure()
        if asyncio.get_running_loop() is loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def close(self) -> None:
        """Stop the loop thread (a later call starts a new one)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()
