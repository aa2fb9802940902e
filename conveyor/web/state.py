"""The web app's state: its settings, its own broker object and the monitor's sampler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import msgspec

from conveyor.brokers.base import Broker
from conveyor.errors import BrokerUnavailable
from conveyor.serde import DEFAULT_MAX_PAYLOAD
from conveyor.web.auth import Auth
from conveyor.web.monitor import Monitor

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.web")

BROKER_ERRORS: tuple[type[BaseException], ...] = (BrokerUnavailable, OSError, TimeoutError)
"""What a broker raises when it cannot be reached: the API answers 503."""


class WebSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the web app behaves.

    Args:
        token: the API token; None lets everyone in (see ``auth.py``).
        allow_unknown: accept jobs for tasks this app has not registered.
        max_body: the largest request body in bytes; larger ones get 413, and none of it is kept.
        sample_every: seconds between the history samples behind the charts.
        history: seconds of history kept in memory.
    """

    token: str | None = None
    allow_unknown: bool = False
    max_body: int = DEFAULT_MAX_PAYLOAD
    sample_every: float = 5.0
    history: float = 3600.0


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


class WebState:
    """Shared by every request of one web app (``request.app.state.conveyor``).

    The broker object is the app broker's :meth:`~conveyor.brokers.base.Broker.copy`,
    connected on first use on the server's event loop; the sampler starts with it.
    """

    def __init__(self, app: Conveyor, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings
        self.auth = Auth(settings.token)
        self.monitor = Monitor(every=settings.sample_every, keep=settings.history)
        self.broker_url = redact(app.url)
        self._broker: Broker | None = None
        self._lock: asyncio.Lock | None = None
        self._sampler: asyncio.Task[None] | None = None

    async def broker(self) -> Broker:
        """The connected broker. Raises BrokerUnavailable (or the broker's own error)."""
        broker = self._broker
        if broker is not None:
            return broker
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._broker is None:
                fresh = self.app.broker.copy()
                try:
                    await fresh.connect()
                except BrokerUnavailable:
                    raise
                except Exception as exc:  # a wrong path or URL: the API answers 503 all the same
                    raise BrokerUnavailable(
                        f"cannot connect to {self.broker_url}: {type(exc).__name__}: {exc}"
                    ) from exc
                self._broker = fresh
                if self._sampler is None:
                    self._sampler = asyncio.create_task(self._sample_loop())
            return self._broker

    async def _sample_loop(self) -> None:
        every = self.settings.sample_every
        failing = ""
        while True:
            try:
                await self.monitor.sample(await self.broker())
            except Exception as exc:  # a gap in the charts, not a dead sampler
                error = f"{type(exc).__name__}: {exc}"
                if error != failing:  # once per outage, not every few seconds
                    log.warning("history sample failed: %s", error)
                failing = error
            else:
                if failing:
                    log.info("history samples resumed")
                failing = ""
            await asyncio.sleep(every)

    async def start(self) -> None:
        """Connect early so that a wrong URL shows at start-up (the server runs on anyway)."""
        try:
            await self.broker()
        except Exception as exc:
            log.error("broker %s unavailable at start-up: %s", self.broker_url, exc)

    async def close(self) -> None:
        """Stop the sampler and close the broker."""
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The lifespan: started on entry, closed on exit."""
        await self.start()
        try:
            yield
        finally:
            await self.close()
