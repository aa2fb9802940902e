"""A real server for the browser tests: the web app on uvicorn and workers, each in a thread
with its own event loop, on an SQLite file; and the headless Chromium that Debian ships."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

import conveyor
from conveyor.web import WebSettings, create_app
from tests.servers import free_port, missing

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """Debian's chromium; skips without it on a laptop, fails under CI=true."""
    found = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if found is None:
        missing("chromium is not installed (on Debian: apt-get install chromium)")
    return found


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what}")
        time.sleep(0.01)


class LiveServer:
    """``create_app(app)`` served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: conveyor.Conveyor, settings: WebSettings | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        web = create_app(app, settings or WebSettings(sample_every=0.2))
        config = uvicorn.Config(
            web, host="127.0.0.1", port=self.port, log_config=None, access_log=False,
            lifespan="on",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, "uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class LiveWorker:
    """A conveyor Worker in a thread of its own (its own loop and broker connection)."""

    def __init__(self, app: conveyor.Conveyor, **options: Any) -> None:
        self.worker = conveyor.Worker(app, **{"lease": 0.6, "poll": 0.05, "grace": 2.0, **options})
        self.thread = threading.Thread(target=self._run, name="worker", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.worker.run())
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc

    def __enter__(self) -> LiveWorker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the worker did not stop"
        if self.error is not None:
            raise self.error
