"""Runs one system module in its own process and obeys the orchestrator, one JSON line each.

``python -m benchmarks.systems.driver MODULE`` (with the Python of the venv that holds the
library, from the repository root). Requests on stdin, e.g. ``{"op": "enqueue_one", "task":
"noop"}``; one reply per request on stdout: ``{"ok": true, "result": ...}`` or ``{"ok":
false, "error": "..."}``. Whatever the library itself prints goes to stderr.

Standard library only.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

from benchmarks.systems.base import Settings, System


async def handle(system: System, request: dict[str, Any]) -> Any:
    """Carry out one request; its result goes back to the orchestrator."""
    op = request["op"]
    if op == "setup":
        await system.setup()
        return {"version": system.version(), "layout": system.layout(), "slots": system.slots()}
    if op == "start":
        return {"pids": system.start_workers(), "in_process": system.in_process}
    if op == "enqueue_many":
        args = [0.0] * int(request["n"])
        t0 = time.perf_counter()
        await system.enqueue_many(request["task"], args)
        return time.perf_counter() - t0
    if op == "enqueue_one":
        enqueued_at = time.time()
        await system.enqueue_one(request["task"], enqueued_at)
        return enqueued_at
    if op == "stop":
        system.stop_workers()
        return None
    raise ValueError(f"unknown op {op!r}")


def load(module_name: str) -> System:
    """Import the system's module and make its ``SYSTEM`` from the ``BENCH_*`` settings."""
    module = importlib.import_module(module_name)
    system: System = module.SYSTEM(Settings.from_env())
    return system


def main() -> int:
    """Serve requests until stdin closes or a ``close`` request comes."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # a library printing to stdout must not break the protocol
    try:
        system: System | None = load(sys.argv[1])
        failure = ""
    except Exception as exc:  # answer every request with it: the orchestrator skips the row
        traceback.print_exc()
        system, failure = None, f"cannot load {sys.argv[1]}: {type(exc).__name__}: {exc}"
    loop = asyncio.new_event_loop()
    try:
        for line in sys.stdin:
            request = json.loads(line)
            if request["op"] == "close":
                break
            try:
                if system is None:
                    raise RuntimeError(failure)
                result = loop.run_until_complete(handle(system, request))
                reply: dict[str, Any] = {"ok": True, "result": result}
            except Exception as exc:
                traceback.print_exc()
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            replies.write(json.dumps(reply) + "\n")
    finally:
        try:
            if system is not None:
                system.stop_workers()
                loop.run_until_complete(system.close())
        finally:
            loop.close()
    replies.write(json.dumps({"ok": True, "result": None}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
