"""The workloads, timed the same way for every system, through its driver subprocess.

- drain / io: with the workers started, fill every slot with a ``block`` job, enqueue the
  jobs behind them, then release the blocks (create the go file) and time from the release to
  the last job's end. So the drain starts with warm workers and a full queue and never
  overlaps the enqueue, whether or not the library can enqueue in bulk, and no process is
  stopped (SIGSTOP would make client-side timeouts fire on resume). The enqueue rate is
  reported apart.
- latency: idle workers; jobs enqueued one by one at a fixed interval; each job's start time
  minus the enqueue time its driver stamped just before calling the library.
- CPU: user + system time of the workers' process trees (reaped children included) from the
  release to the end, per job; the same for the broker's server (redis-server, PostgreSQL).
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.systems import procs
from benchmarks.systems.base import ROOT, count_blocked, count_records, read_records


class BenchError(Exception):
    """A system failed a step: its row shows the message, the run goes on."""


class Driver:
    """A driver subprocess (``benchmarks/systems/driver.py``) for one system."""

    def __init__(self, python: str, module: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [python, "-m", "benchmarks.systems.driver", module],
                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=out, start_new_session=True,
            )  # fmt: skip
        self._buffer = b""

    @property
    def pid(self) -> int:
        """The driver's pid."""
        return self.proc.pid

    def call(self, op: str, timeout: float = 60.0, **args: Any) -> Any:
        """Send one request and wait at most ``timeout`` seconds for its reply."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise BenchError(f"the driver exited (see {self.log})") from None
        reply = json.loads(self._readline(op, timeout))
        if not reply["ok"]:
            raise BenchError(f"{op}: {reply['error']}")
        return reply["result"]

    def _readline(self, op: str, timeout: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{op}: no answer from the driver in {timeout:.0f}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise BenchError(f"{op}: the driver exited (see {self.log})")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def close(self, timeout: float = 60.0) -> None:
        """Ask it to stop its workers and exit; kill its process tree if it does not."""
        try:
            self.call("close", timeout=timeout)
            self.proc.wait(timeout=10)
        except (BenchError, subprocess.TimeoutExpired, OSError):
            procs.terminate([self.proc.pid], 10)
            self.proc.wait(timeout=10)


@dataclass
class Target:
    """A system whose workers are running: how to reach and measure them."""

    driver: Driver
    roots: list[int]  # the worker processes started (the driver itself when in process)
    in_process: bool
    records: Path
    slots: int  # jobs its workers run at once
    server_roots: list[int] = field(default_factory=list)  # the broker's server, if any
    _alive: list[procs.Proc] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._alive = [p for p in map(procs.identity, self.roots) if p is not None]

    def count(self) -> int:
        """Jobs finished so far (all workloads)."""
        return count_records(self.records)

    def cpu(self) -> float:
        """CPU seconds the workers have used so far."""
        return procs.cpu_seconds(self.roots)

    def server_cpu(self) -> float:
        """CPU seconds the broker's server has used so far (0 without a server)."""
        return procs.cpu_seconds(self.server_roots)

    @property
    def go(self) -> Path:
        """The file whose existence releases the ``block`` jobs."""
        return Path(f"{self.records}.go")

    def block_slots(self, limit: float = 60.0) -> int:
        """Hold every worker slot with a ``block`` job; returns how many are held.

        A library that prefetches may give one process more blocks than it has slots and the
        other fewer: more are enqueued until every slot is held. The spare ones wait in a
        prefetch buffer and end at once after the release.
        """
        self.go.unlink(missing_ok=True)
        start = count_blocked(self.records)
        deadline = time.monotonic() + limit
        next_round = 0.0
        while (held := count_blocked(self.records) - start) < self.slots:
            now = time.monotonic()
            if now > deadline:
                break
            if now > next_round:  # at first, then every 2 s while slots are still free
                self.driver.call("enqueue_many", task="block", n=self.slots - held, timeout=limit)
                next_round = time.monotonic() + 2.0
            time.sleep(0.005)
        return held

    def wait_done(self, target: int, deadline: float, poll: float = 0.002) -> int:
        """Wait until ``target`` records exist or ``deadline`` (monotonic) passes.

        Raises:
            BenchError: every worker process has exited.
        """
        check = time.monotonic() + 0.5
        while (done := self.count()) < target and (now := time.monotonic()) < deadline:
            if now > check:
                check = now + 0.5
                if not any(procs.alive(p) for p in self._alive):
                    raise BenchError(f"the workers exited (see {self.driver.log})")
            time.sleep(poll)
        return done


def warm_up(target: Target, jobs: int = 50, limit: float = 60.0) -> None:
    """Run a few jobs to prove the workers consume, then wait until they are idle."""
    start = target.count()
    target.driver.call("enqueue_many", task="noop", n=jobs, timeout=limit)
    if target.wait_done(start + jobs, time.monotonic() + limit) < start + jobs:
        raise BenchError(f"warm-up: {jobs} jobs not done in {limit:.0f}s: do the workers run?")
    deadline = time.monotonic() + 20
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:  # two quiet half-seconds in a row
        before = target.cpu()
        time.sleep(0.5)
        quiet = quiet + 1 if target.cpu() - before < 0.03 else 0


def batch(target: Target, task: str, jobs: int, limit: float) -> dict[str, Any]:
    """Block the workers, enqueue ``jobs`` behind, release, time until all are done."""
    blocked = target.block_slots()
    start = target.count()
    try:
        enqueue_s: float = target.driver.call("enqueue_many", task=task, n=jobs, timeout=limit)
    finally:
        cpu0, server0 = target.cpu(), target.server_cpu()
        t_go = time.time()
        target.go.touch()
    done = target.wait_done(start + jobs, time.monotonic() + limit) - start
    time.sleep(0.2)  # let the last outcomes be recorded: their CPU counts too
    cpu1, server1 = target.cpu(), target.server_cpu()
    records = read_records(target.records, start)
    result: dict[str, Any] = {
        "jobs": jobs,
        "done": done,
        "complete": done >= jobs,
        "blocked_slots": f"{blocked}/{target.slots}",
        "enqueue_s": enqueue_s,
        "enqueue_per_s": jobs / enqueue_s if enqueue_s > 0 else None,
        "cpu_us_per_job": (cpu1 - cpu0) / done * 1e6 if done else None,
        "server_cpu_us_per_job": (
            (server1 - server0) / done * 1e6 if done and target.server_roots else None
        ),
    }
    if records:
        seconds = max(r[2] for r in records) - t_go
        result["seconds"] = seconds
        result["jobs_per_s"] = done / seconds if seconds > 0 else None
    return result


def latency(target: Target, jobs: int, interval: float, limit: float) -> dict[str, Any]:
    """Enqueue ``jobs`` no-ops one by one, ``interval`` seconds apart, to idle workers."""
    start = target.count()
    cpu0 = target.cpu()
    began = time.time()
    t0 = time.monotonic()
    for i in range(jobs):
        pause = t0 + i * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        target.driver.call("enqueue_one", task="noop", timeout=10)
    done = target.wait_done(start + jobs, time.monotonic() + limit) - start
    cpu1 = target.cpu()
    records = [r for r in read_records(target.records, start) if r[0] >= began]  # ours only
    delays = [(r[1] - r[0]) * 1000 for r in records]
    return {
        "jobs": jobs,
        "done": done,
        "complete": done >= jobs,
        "interval_ms": interval * 1000,
        "cpu_us_per_job": (cpu1 - cpu0) / done * 1e6 if done else None,
        "delays_ms": delays,
    } | delay_stats(delays)


def delay_stats(delays: list[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean of enqueue-to-start delays in ms (none for fewer than 2)."""
    if len(delays) < 2:
        return {}
    ordered = sorted(delays)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_ms": statistics.median(ordered),
        "p90_ms": cuts[89],
        "p99_ms": cuts[98],
        "max_ms": ordered[-1],
        "mean_ms": statistics.fmean(ordered),
    }


def another_trial(trials: list[dict[str, Any]], most: int, budget: float) -> bool:
    """Whether a workload of a system gets one more trial: it has had fewer than ``most``,
    the last one completed, and the time of those so far plus one more as long as the last
    (``trial_s`` each) stays within ``budget`` seconds. The fast systems, whose figures a
    hiccup of the machine moves most, get several trials; the slowest get one."""
    if not trials:
        return True
    last = trials[-1]
    if len(trials) >= most or "error" in last or not last.get("complete"):
        return False
    spent: float = sum(t.get("trial_s", 0.0) for t in trials)
    return spent + float(last.get("trial_s", 0.0)) <= budget


def combine(workload: str, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from the trials of a workload, all complete: for a batch, the median
    trial by throughput (the lower middle one of an even number), so that its other figures
    are that trial's own; for latency, every trial's jobs pooled. A failed or incomplete
    trial is the result itself (the last trial, as trials stop at one)."""
    last = trials[-1]
    if "error" in last or not last.get("complete"):
        last.pop("delays_ms", None)
        return last | {"trials": len(trials)}
    if workload == "latency":
        delays = [d for t in trials for d in t["delays_ms"]]
        done = sum(t["done"] for t in trials)
        cpu = sum((t["cpu_us_per_job"] or 0.0) * t["done"] for t in trials)
        merged = {k: v for k, v in last.items() if k != "delays_ms"}
        return (
            merged
            | delay_stats(delays)
            | {
                "jobs": sum(t["jobs"] for t in trials),
                "done": done,
                "cpu_us_per_job": cpu / done if done else None,
                "trials": len(trials),
                "trial_p99_ms": [t.get("p99_ms") for t in trials],
            }
        )
    ranked = sorted(trials, key=lambda t: t.get("jobs_per_s") or 0.0)
    return ranked[(len(ranked) - 1) // 2] | {
        "trials": len(trials),
        "trial_jobs_per_s": [t.get("jobs_per_s") for t in trials],
    }
