"""Run one worker as this process: its own event loop, signal handling and a clean exit."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

from conveyor.worker import EXIT_RESTART, Worker

log = logging.getLogger("conveyor.worker")


def run_worker(worker: Worker) -> int:
    """Run ``worker`` on a fresh event loop (uvloop when installed) with signal handling.

    SIGTERM or a first Ctrl-C stop it gracefully; a second Ctrl-C stops it now. When a sync
    task's thread will not stop, the process restarts itself in place once the worker has
    stopped (see :func:`restart_in_place`).
    """

    async def main() -> int:
        loop = asyncio.get_running_loop()
        presses = 0

        def on_sigint() -> None:
            nonlocal presses
            presses += 1
            if presses == 1:
                log.warning("stopping gracefully (Ctrl-C again to stop now)")
                worker.stop()
            else:
                log.warning("stopping now")
                worker.kill()

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, worker.stop)
        if _stop_asked:
            worker.stop()
        return await worker.run()

    # Chosen outside the except block: a worker run inside it would chain the ImportError
    # to every exception its tasks raise, and so to every stored traceback.
    run: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    try:
        import uvloop
    except ImportError:
        pass
    else:
        run = uvloop.run
    code = run(main())
    # The task threads of a shut-down pool end at once unless a sync task is stuck in one,
    # which would keep the interpreter alive forever: then exit without waiting for it.
    give_up = time.monotonic() + 1.0
    stuck = False
    for thread in threading.enumerate():
        if thread.name.startswith("conveyor-task"):
            thread.join(max(give_up - time.monotonic(), 0.0))
            stuck = stuck or thread.is_alive()
    if code == EXIT_RESTART:
        restart_in_place()
    if stuck:
        logging.shutdown()
        os._exit(code)
    return code


def restart_in_place() -> None:
    """Replace this process with a fresh run of the same command (same pid, so a process
    manager or the supervisor sees no exit): the only way to be rid of a thread stuck in C."""
    log.warning("restarting this worker process in place: %s", " ".join(sys.orig_argv))
    logging.shutdown()
    os.execv(sys.executable, sys.orig_argv)


_stop_asked = False


def catch_early_stop() -> None:
    """Until :func:`run_worker` installs its handlers, remember a SIGTERM or Ctrl-C instead
    of dying of it (exit 143 while the app loads): the worker then stops as soon as it runs,
    with exit code 0."""

    def remember(signum: int, frame: FrameType | None) -> None:
        global _stop_asked
        _stop_asked = True

    signal.signal(signal.SIGTERM, remember)
    signal.signal(signal.SIGINT, remember)
