"""`make demo`: a worker and the dashboard on the embedded SQLite broker, and jobs
succeeding, retrying and failing.

The dashboard stays up (with a trickle of new jobs) until Ctrl-C; set CONVEYOR_DEMO_EXIT=1 to
stop once the first jobs are done (the test of this script does).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import conveyor

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CONVEYOR_DEMO_DIR", ROOT / ".demo"))
PORT = 8181


def conveyor_cmd(*args: str) -> list[str]:
    """The `conveyor` command, run with this interpreter."""
    return [sys.executable, "-m", "conveyor", *args]


async def create_store(app: conveyor.Conveyor) -> None:
    """Create the app's store (the SQLite file), as the first worker to connect would."""
    broker = app.broker.copy()
    await broker.connect()
    await broker.close()


def pick_port() -> int:
    """8181 when it is free, else any free port."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
        try:
            s.bind(("127.0.0.1", PORT))
        except OSError:
            s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_up(url: str, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Poll the dashboard's health check until it answers (any status)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # 503 is an answer: the server is up
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"conveyor serve exited with code {server.returncode}") from None
            if time.monotonic() > deadline:
                raise SystemExit(f"the dashboard did not answer at {url} in {timeout}s") from None
            time.sleep(0.05)


def first_jobs(env: dict[str, str]) -> None:
    """Enqueue jobs that succeed, retry and fail; print their outcomes."""
    from examples.tasks import charge_card, import_report, resize, send_welcome_email

    emails = send_welcome_email.enqueue_many(
        [conveyor.Call(f"user{i}@example.com") for i in range(10)]
    )
    images = [resize.enqueue(f"img-{i}", width=200 + i) for i in range(5)]
    charges = [charge_card.enqueue(order) for order in range(1001, 1006)]
    doomed = import_report.options(delay=0.5).enqueue("/reports/2026-11.csv")
    started = time.monotonic()
    pending: list[conveyor.Job[Any]] = [*emails, *images, *charges]
    for job in pending:
        job.result(timeout=60)
    try:
        doomed.result(timeout=60)
    except conveyor.JobFailed as exc:
        failed = exc
    took = time.monotonic() - started
    retried = sum(j.refresh().attempts - 1 for j in charges)
    print(f"\n== {len(emails) + len(images) + len(charges)} jobs succeeded in {took:.2f}s")
    print(f"== charge_card needed {retried} retries across 5 orders")
    print(f"== import_report failed for good: {failed.error_type}: {failed.message}\n")
    subprocess.run(conveyor_cmd("queues"), env=env, cwd=ROOT, check=True)
    print()
    subprocess.run(conveyor_cmd("failed", "list"), env=env, cwd=ROOT, check=True)
    print()


def trickle() -> None:
    """A few jobs a second, until Ctrl-C, so that the dashboard's charts move."""
    from examples.tasks import charge_card, import_report, resize, send_welcome_email

    n = 0
    while True:
        n += 1
        send_welcome_email.enqueue(f"visitor{n}@example.com")
        if n % 2 == 0:
            resize.enqueue(f"photo-{n}", width=320)
        if n % 3 == 0:
            charge_card.enqueue(2000 + n)
        if n % 40 == 0:
            import_report.enqueue(f"/reports/daily-{n}.csv")
        time.sleep(random.uniform(0.1, 0.5))


def main() -> int:
    """Start a worker and the dashboard, enqueue jobs, show their outcomes."""
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    url = f"sqlite:///{DATA / 'conveyor.db'}"
    env = {**os.environ, "CONVEYOR_URL": url, "PYTHONPATH": str(ROOT)}
    os.environ["CONVEYOR_URL"] = url
    sys.path.insert(0, str(ROOT))
    from examples.tasks import app

    # The worker and the server start side by side, and `conveyor serve` refuses an SQLite
    # database that does not exist yet (it would be one made in the wrong directory).
    asyncio.run(create_store(app))
    # SIGTERM stops the demo like Ctrl-C does: its worker and server are stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    port = pick_port()
    dashboard = f"http://127.0.0.1:{port}/"
    print(f"== broker: {url}")
    print("== starting: conveyor worker examples.tasks:app --processes 2 --concurrency 20")
    print(f"== starting: conveyor serve examples.tasks:app --port {port}\n")
    worker = subprocess.Popen(
        conveyor_cmd("worker", "examples.tasks:app", "--processes", "2", "--concurrency", "20"),
        env=env,
        cwd=ROOT,
    )
    server = subprocess.Popen(
        conveyor_cmd("--log-level", "WARNING", "serve", "examples.tasks:app", "--port", str(port)),
        env=env,
        cwd=ROOT,
    )
    try:
        wait_until_up(dashboard, server)
        print(f"== dashboard: {dashboard}\n")
        first_jobs(env)
        if os.environ.get("CONVEYOR_DEMO_EXIT") == "1":
            print("== done. Try: .venv/bin/conveyor jobs --url " + url)
            return 0
        print(f"== dashboard: {dashboard}  (a few new jobs a second; Ctrl-C to stop)")
        trickle()
    except KeyboardInterrupt:
        print("\n== stopping")
    finally:
        # A second Ctrl-C reaches the worker and the server too (the terminal signals the
        # whole group), and they stop at once; this process just waits for them.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc in (server, worker):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        worker.wait(timeout=30)
        app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
