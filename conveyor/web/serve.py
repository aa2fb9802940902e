"""``conveyor serve``: the web app on uvicorn, with the dashboard's address in the log."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.web")


class _Server(uvicorn.Server):
    """Logs the dashboard's URL once the sockets listen (the real port when 0 was asked), and
    exits 0 after a graceful stop on SIGTERM or Ctrl-C, like ``conveyor worker``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn raises the signal again once stopped, which ends the process with
            # -SIGTERM: a graceful stop is a normal exit here.
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                log.info(
                    "dashboard at http://%s:%d/ (API under /api, metrics at /metrics)", shown, port
                )


def serve(web: ASGIApp, app: Conveyor, *, host: str, port: int, access_log: bool) -> int:
    """Run ``web`` until SIGINT or SIGTERM; returns the exit code."""
    if app.url.startswith("memory:"):
        log.warning(
            "the broker is memory://: this server sees only the jobs of its own process; "
            "use SQLite, Redis or PostgreSQL to watch workers"
        )
    config = uvicorn.Config(
        web,
        host=host,
        port=port,
        log_config=None,  # uvicorn's loggers go to the handler `conveyor` set up
        access_log=access_log,
        server_header=False,
        lifespan="on",
    )
    server = _Server(config)
    server.run()
    return 0 if server.started else 1
