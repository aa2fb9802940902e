"""`make demo`: a worker on the embedded SQLite broker and jobs succeeding, retrying, failing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import conveyor

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CONVEYOR_DEMO_DIR", ROOT / ".demo"))


def conveyor_cmd(*args: str) -> list[str]:
    """The `conveyor` command, run with this interpreter."""
    return [sys.executable, "-m", "conveyor", *args]


def main() -> int:
    """Start a worker, enqueue jobs, show their outcomes, stop the worker."""
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir()
    url = f"sqlite:///{DATA / 'conveyor.db'}"
    env = {**os.environ, "CONVEYOR_URL": url, "PYTHONPATH": str(ROOT)}
    os.environ["CONVEYOR_URL"] = url
    sys.path.insert(0, str(ROOT))
    from examples.tasks import app, charge_card, import_report, resize, send_welcome_email

    print(f"== broker: {url}")
    print("== starting: conveyor worker examples.tasks:app --processes 2 --concurrency 20\n")
    worker = subprocess.Popen(
        conveyor_cmd("worker", "examples.tasks:app", "--processes", "2", "--concurrency", "20"),
        env=env,
        cwd=ROOT,
    )
    try:
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
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        app.close()
    print("\n== done. Try: .venv/bin/conveyor jobs --url " + url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
