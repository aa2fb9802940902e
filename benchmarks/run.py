"""Conveyor's benchmark: `make bench` (or `python benchmarks/run.py --help`).

Drain: enqueue N no-op jobs with `enqueue_many`, then time how long `conveyor worker
--processes 2` (already started and idle) takes to run them all. Reports the enqueue rate
and the drain throughput per broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import conveyor  # noqa: E402
from conveyor.brokers import from_url  # noqa: E402
from conveyor.job import Status  # noqa: E402


def succeeded(url: str) -> int:
    """How many jobs the broker holds as succeeded."""

    async def count() -> int:
        broker = from_url(url)
        await broker.connect()
        try:
            counts = await broker.counts()
            return sum(c.get(Status.SUCCEEDED, 0) for c in counts.values())
        finally:
            await broker.close()

    return asyncio.run(count())


def drain(url: str, jobs: int, processes: int, concurrency: int, task: str) -> dict[str, float]:
    """Enqueue ``jobs`` no-ops, then time the drain by ``processes`` workers."""
    env = {**os.environ, "CONVEYOR_URL": url, "PYTHONPATH": str(ROOT)}
    os.environ["CONVEYOR_URL"] = url
    from benchmarks import bench_tasks

    app = conveyor.Conveyor(url)
    target = getattr(bench_tasks, task)
    noop = app.task(name=target.name)(target.fn)
    noop.enqueue_many([])  # connect (and create the schema) before timing
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "conveyor", "--log-level", "WARNING", "worker",
            "benchmarks.bench_tasks:app", "--processes", str(processes),
            "--concurrency", str(concurrency),
        ],
        env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # let the workers start and go idle: we time the drain, not imports
        calls = [conveyor.Call() for _ in range(jobs)]
        t0 = time.perf_counter()
        noop.enqueue_many(calls)
        t1 = time.perf_counter()
        while (done := succeeded(url)) < jobs:
            if time.perf_counter() - t1 > 300:
                raise SystemExit(f"drain stalled at {done}/{jobs}")
            time.sleep(0.02)
        t2 = time.perf_counter()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        app.close()
    return {"enqueue_per_s": jobs / (t1 - t0), "drain_per_s": jobs / (t2 - t1), "drain_s": t2 - t1}


def main() -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--task", choices=["noop", "noop_sync"], default="noop")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    try:
        url = f"sqlite:///{tmp / 'bench.db'}"
        r = drain(url, args.jobs, args.processes, args.concurrency, args.task)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n{'system':<20} {'enqueue jobs/s':>15} {'drain jobs/s':>13} {'drain s':>8}\n"
        f"{'conveyor sqlite':<20} {r['enqueue_per_s']:>15,.0f} {r['drain_per_s']:>13,.0f}"
        f" {r['drain_s']:>8.2f}\n"
        f"({args.jobs:,} {args.task} jobs, {args.processes} worker processes x "
        f"{args.concurrency} concurrency, {os.cpu_count()} cores)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
