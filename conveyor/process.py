"""Run one worker as this process: its own event loop, signal handling and a clean exit."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time

from conveyor.worker import Worker

log = logging.getLogger("conveyor.worker")


def run_worker(worker: Worker) -> int:
    """Run ``worker`` on a fresh event loop (uvloop when installed) with signal handling.

    SIGTERM or a first Ctrl-C stop it gracefully; a second Ctrl-C stops it now.
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
        return await worker.run()

    try:
        import uvloop
    except ImportError:
        code = asyncio.run(main())
    else:
        code = uvloop.run(main())
    # The task threads of a shut-down pool end at once unless a sync task is stuck in one,
    # which would keep the interpreter alive forever: then exit without waiting for it.
    give_up = time.monotonic() + 1.0
    for thread in threading.enumerate():
        if thread.name.startswith("conveyor-task"):
            thread.join(max(give_up - time.monotonic(), 0.0))
            if thread.is_alive():
                logging.shutdown()
                os._exit(code)
    return code
