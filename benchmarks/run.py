"""Conveyor against its peers, the same workloads in one run: `make bench`.

Conveyor (memory, SQLite, Redis, PostgreSQL) runs from the project venv; Celery, RQ, Dramatiq,
arq, taskiq, SAQ, streaQ and Huey (on one throwaway Redis) and PgQueuer and Procrastinate (on
one throwaway PostgreSQL) run from the benchmark's own venvs, made on first use: .bench/venv
from benchmarks/requirements-peers.txt, and .bench/venv-redis5 for arq and SAQ. Each system
has 2 worker processes x 50 jobs at once (or its nearest equivalent, shown in the table).

Workloads: drain (enqueue N no-op jobs, then time their drain by warm workers), latency
(idle workers, jobs enqueued one by one 5 ms apart: enqueue-to-start p50 and p99) and I/O
(jobs that each sleep 10 ms). Every figure is printed with its ratio to the Conveyor row of the
same backend; results also go to .bench/results.json. How things are timed and counted:
benchmarks/harness.py and benchmarks/systems/base.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import harness, report  # noqa: E402
from benchmarks.servers import PostgresServer, RedisServer, ServerMissing  # noqa: E402
from benchmarks.systems import SYSTEMS, VENVS, Spec, procs  # noqa: E402
from benchmarks.systems.base import Settings  # noqa: E402

BENCH = ROOT / ".bench"
WORKLOADS = ("drain", "latency", "io")


@dataclass(frozen=True)
class Plan:
    """What to run: the sizes of the workloads and the workers' shape."""

    drain_jobs: int = 20_000
    latency_jobs: int = 500
    latency_interval: float = 0.005
    io_jobs: int = 2_000
    processes: int = 2
    concurrency: int = 50
    sleep: float = 0.01
    workloads: tuple[str, ...] = WORKLOADS
    # The run goes over every system `trials` times (rounds); in each round a system starts
    # afresh and runs one trial of each workload that gets another (harness.another_trial:
    # while the trials stay within `trial_budget` seconds). A slow spell of the shared machine
    # then falls on every system alike instead of on whichever ran at that moment.
    trials: int = 3
    trial_budget: float = 30.0


# -- the benchmark's own venvs -------------------------------------------------------------


def venv_dir(name: str) -> Path:
    """.bench/venv for the ``peers`` venv, .bench/venv-NAME for the others."""
    return BENCH / ("venv" if name == "peers" else f"venv-{name}")


def venv_python(name: str) -> Path:
    """The Python of one of the benchmark's venvs."""
    return venv_dir(name) / "bin" / "python"


def ensure_venv(name: str) -> Path:
    """Create a venv and install its pinned requirements, when missing or out of date."""
    requirements = ROOT / "benchmarks" / VENVS[name]
    venv = venv_dir(name)
    stamp = venv / ".requirements.sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if venv_python(name).exists() and stamp.exists() and stamp.read_text() == digest:
        return venv_python(name)
    print(f"setting up {venv.relative_to(ROOT)} from {requirements.relative_to(ROOT)} ...")
    if not venv_python(name).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv_python(name)), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
        check=True, timeout=1800,
    )  # fmt: skip
    stamp.write_text(digest)
    return venv_python(name)


# -- which systems can run ------------------------------------------------------------------


def select(only: str | None) -> list[Spec]:
    """The systems ``--only`` names: names, backends (``redis``...), ``conveyor``, ``peers``."""
    if not only:
        return list(SYSTEMS)
    wanted = {w.strip().lower() for w in only.split(",") if w.strip()}
    known = {s.name for s in SYSTEMS} | {s.backend for s in SYSTEMS} | {"conveyor", "peers"}
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"--only: unknown {sorted(unknown)}; known: {sorted(known)}")
    return [
        s
        for s in SYSTEMS
        if s.name in wanted
        or s.backend in wanted
        or ("peers" in wanted and s.peer)
        or ("conveyor" in wanted and not s.peer)
    ]


def conveyor_missing(spec: Spec) -> str | None:
    """Why a Conveyor row cannot run in this project venv, or None."""
    needs = {"redis": ("redis", "redis"), "postgres": ("postgres", "psycopg")}
    if spec.peer or spec.backend not in needs:
        return None
    module, package = needs[spec.backend]
    if importlib.util.find_spec(f"conveyor.brokers.{module}") is None:
        return f"Conveyor's {spec.backend} broker (conveyor/brokers/{module}.py) does not exist yet"
    if importlib.util.find_spec(package) is None:
        return (
            f"{package} is not installed in .venv: make bench-setup (pip install -e '.[{module}]')"
        )
    return None


# -- one system -----------------------------------------------------------------------------


@dataclass
class Servers:
    """The throwaway servers of this run (None: not needed or not installed)."""

    redis: RedisServer | None = None
    postgres: PostgresServer | None = None
    redis_error: str = ""
    postgres_error: str = ""


def settings_for(spec: Spec, plan: Plan, servers: Servers, tmp: Path) -> Settings:
    """The ``BENCH_*`` settings of one system; prepares a clean database for it."""
    for leftover in tmp.glob(f"{spec.name}.db*"):  # a fresh SQLite database each time
        leftover.unlink()
    settings = Settings(
        backend=spec.backend,
        sqlite_path=str(tmp / f"{spec.name}.db"),
        records=str(tmp / f"{spec.name}.records"),
        log=str(BENCH / "logs" / f"{spec.name}.log"),
        concurrency=plan.concurrency,
        processes=plan.processes,
        sleep=plan.sleep,
    )
    if spec.backend == "redis":
        if servers.redis is None:
            raise harness.BenchError(servers.redis_error or "no Redis")
        servers.redis.flush()
        settings = replace(settings, redis_url=servers.redis.url)
    if spec.backend == "postgres":
        if servers.postgres is None:
            raise harness.BenchError(servers.postgres_error or "no PostgreSQL")
        url = servers.postgres.create_database("bench_" + spec.name.replace("-", "_"))
        settings = replace(settings, postgres_url=url)
    return settings


def run_trial(target: harness.Target, plan: Plan, workload: str) -> dict[str, Any]:
    """Run one workload once; ``trial_s`` is how long it took."""
    began = time.monotonic()
    out: dict[str, Any]
    try:
        if workload == "drain":
            out = harness.batch(target, "noop", plan.drain_jobs, max(60.0, plan.drain_jobs / 100))
        elif workload == "io":
            out = harness.batch(target, "sleep", plan.io_jobs, max(60.0, plan.io_jobs / 20))
            out |= {"ideal_per_s": target.slots / plan.sleep}
        else:
            out = harness.latency(target, plan.latency_jobs, plan.latency_interval, 30.0)
    except harness.BenchError as exc:
        out = {"error": str(exc)}
    return out | {"trial_s": time.monotonic() - began}


def trial_summary(workload: str, out: dict[str, Any]) -> str:
    """One line of progress for one trial."""
    if "error" in out:
        return f"error: {out['error']}"
    if not out.get("complete"):
        return f"timeout: {out.get('done', 0)}/{out['jobs']} done"
    if workload == "latency":
        return f"p50 {out['p50_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms"
    rate, cpu = out.get("jobs_per_s"), out.get("cpu_us_per_job")
    return f"{rate or 0:,.0f} jobs/s, {cpu or 0:,.0f} µs CPU/job, {out['blocked_slots']} blocked"


def summary(workload: str, out: dict[str, Any]) -> str:
    """One line of results for the trials of a workload combined (see harness.combine)."""
    text, n = trial_summary(workload, out), out.get("trials", 1)
    if n > 1 and "error" not in out and out.get("complete"):
        if workload == "latency":
            each = ", ".join(f"{p:.2f}" for p in out["trial_p99_ms"])
            text += f" (the jobs of {n} trials; p99 of each: {each})"
        else:
            each = ", ".join(f"{r or 0:,.0f}" for r in out["trial_jobs_per_s"])
            text += f" (median of {n} trials: {each})"
    return text


def server_pids(spec: Spec, servers: Servers) -> list[int]:
    """The processes of the server a system uses, for its CPU time."""
    if spec.backend == "redis" and servers.redis is not None:
        return servers.redis.pids
    if spec.backend == "postgres" and servers.postgres is not None:
        return servers.postgres.pids
    return []


@contextlib.contextmanager
def session(
    spec: Spec, plan: Plan, servers: Servers, tmp: Path, result: dict[str, Any]
) -> Iterator[harness.Target]:
    """A system on a clean broker, its driver and workers started and warm; stopped after."""
    settings = settings_for(spec, plan, servers, tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "BENCH_"))}
    env |= settings.to_env() | {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    python = str(venv_python(spec.venv)) if spec.peer else sys.executable
    driver = harness.Driver(python, spec.module, env, Path(settings.log))
    started_procs: list[procs.Proc] = []
    try:
        info = driver.call("setup", timeout=120)
        if "version" not in result:
            print(f"  {info['version']}, {info['layout']}", flush=True)
        result |= info
        started = driver.call("start", timeout=60)
        started_procs = [p for p in map(procs.identity, started["pids"]) if p is not None]
        target = harness.Target(
            driver,
            started["pids"] or [driver.pid],
            started["in_process"],
            Path(settings.records),
            int(info["slots"]),
            server_pids(spec, servers),
        )
        harness.warm_up(target)
        yield target
    finally:
        driver.close()
        # Whatever a failed driver left behind: only the very processes it started.
        procs.terminate([p[0] for p in started_procs if procs.alive(p)], 10)


@dataclass
class Run:
    """One system over the rounds: its result row and the trials of each workload so far."""

    spec: Spec
    result: dict[str, Any]
    trials: dict[str, list[dict[str, Any]]]

    def pending(self, plan: Plan) -> list[str]:
        """The workloads that get a trial in the next round."""
        if "skipped" in self.result or "error" in self.result:
            return []
        return [
            w
            for w in plan.workloads
            if harness.another_trial(self.trials[w], plan.trials, plan.trial_budget)
        ]


def new_run(spec: Spec, plan: Plan) -> Run:
    """A system before its first round (skipped at once if Conveyor lacks its broker)."""
    result = {
        "name": spec.name,
        "backend": spec.backend,
        "peer": spec.peer,
        "workloads": list(plan.workloads),  # a failure leaves the others' cells "-", not "error"
    }
    run = Run(spec, result, {w: [] for w in plan.workloads})
    why = conveyor_missing(spec)
    if why:
        result["skipped"] = why
        print(f"{spec.name}: skipped: {why}")
    else:
        (BENCH / "logs" / f"{spec.name}.log").write_bytes(b"")
    return run


def run_round(run: Run, plan: Plan, servers: Servers, tmp: Path, round_no: int) -> None:
    """One round of one system: a fresh broker and workers, then one trial of each workload
    that gets another; after a time-out, the rest go on with a fresh broker."""
    pending = run.pending(plan)
    if not pending:
        return
    spec = run.spec
    print(f"{spec.name} (round {round_no} of {plan.trials}):", flush=True)
    try:
        while pending:
            with session(spec, plan, servers, tmp, run.result) as target:
                while pending:
                    workload = pending.pop(0)
                    print(f"  {workload} ...", end=" ", flush=True)
                    out = run_trial(target, plan, workload)
                    run.trials[workload].append(out)
                    print(trial_summary(workload, out), flush=True)
                    if pending and not out.get("complete"):
                        print("  (jobs are left in the queue: restarting on an empty one)")
                        break
                    time.sleep(0.5)
    except (harness.BenchError, ServerMissing, subprocess.SubprocessError, OSError) as exc:
        print(f"  error: {exc}", flush=True)
        # No more rounds for it; the trials of the rounds before still count.
        run.result["error"] = f"round {round_no}: {exc}" if round_no > 1 else str(exc)


def finish_run(run: Run, plan: Plan) -> dict[str, Any]:
    """The result row: each workload's trials combined into its one figure."""
    result = run.result
    if not any(run.trials.values()):
        return result
    print(f"{run.spec.name}:", flush=True)
    for workload in plan.workloads:
        trials = run.trials[workload]
        if trials:
            result[workload] = out = harness.combine(workload, trials)
            print(f"  {workload}: {summary(workload, out)}", flush=True)
    return result


# -- the run ----------------------------------------------------------------------------------


@contextlib.contextmanager
def servers_for(specs: list[Spec], tmp: Path) -> Iterator[Servers]:
    """Start the servers the chosen systems need; stop them at the end, whatever happens."""
    servers = Servers()
    try:
        if any(s.backend == "redis" and not conveyor_missing(s) for s in specs):
            root = tmp / "redis"
            root.mkdir()
            try:
                servers.redis = RedisServer(root)
                servers.redis.start()
            except (ServerMissing, OSError) as exc:
                servers.redis, servers.redis_error = None, str(exc)
        if any(s.backend == "postgres" and not conveyor_missing(s) for s in specs):
            root = tmp / "postgres"
            root.mkdir()
            root.chmod(0o755)
            try:
                servers.postgres = PostgresServer(root)
                servers.postgres.start()
            except (ServerMissing, OSError, subprocess.SubprocessError) as exc:
                servers.postgres, servers.postgres_error = None, str(exc)
        yield servers
    finally:
        if servers.redis is not None:
            servers.redis.stop()
        if servers.postgres is not None:
            servers.postgres.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    names = ", ".join(s.name for s in SYSTEMS)
    parser.add_argument(
        "--only", metavar="NAME,...", help=f"systems to run: {names}; or redis, postgres, "
        "sqlite, memory, conveyor, peers",
    )  # fmt: skip
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="drain,latency,io (default: all)"
    )
    parser.add_argument("--jobs", type=int, help="jobs in the drain (default 20,000)")
    parser.add_argument(
        "--trials",
        type=int,
        help="rounds over the systems, the most trials per workload "
        "(default 3, within 30 s per workload)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    parser.add_argument(
        "--setup-only", action="store_true", help="make the venvs in .bench and exit"
    )
    parser.add_argument("--json", type=Path, default=BENCH / "results.json", help="results file")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    """The sizes from the options."""
    workloads = tuple(w.strip() for w in args.workloads.split(",") if w.strip())
    bad = set(workloads) - set(WORKLOADS)
    if bad:
        raise SystemExit(f"--workloads: unknown {sorted(bad)}; known: {', '.join(WORKLOADS)}")
    plan = Plan(workloads=workloads)
    if args.quick:
        plan = replace(plan, drain_jobs=2_000, latency_jobs=100, io_jobs=500, trials=1)
    if args.trials is not None:
        if args.trials < 1:
            raise SystemExit("--trials must be at least 1")
        plan = replace(plan, trials=args.trials)
    if args.jobs is not None:
        if args.jobs < 1:
            raise SystemExit("--jobs must be at least 1")
        plan = replace(plan, drain_jobs=args.jobs)
    return plan


def legend(plan: Plan, load_before: float, load_after: float, seconds: float) -> str:
    """What the table's figures are."""
    ms = plan.sleep * 1000
    return (
        f"\nRatios: the figure over the Conveyor row's of the same backend (throughput: higher "
        f"is better; latency, CPU: lower is better). Drain: {plan.drain_jobs:,} no-op jobs "
        "enqueued while every worker slot was held by a blocking job, timed from their release "
        f"to the last job's end. Latency: {plan.latency_jobs} jobs enqueued one by one "
        f"{plan.latency_interval * 1000:.0f} ms apart to idle workers, enqueue to start. I/O: "
        f"{plan.io_jobs:,} jobs sleeping {ms:.0f} ms, timed like the drain; % of the ideal, "
        f"slots / {ms:.0f} ms. CPU: user + system time per job during the drain, of the worker "
        f"processes and of the broker's server. The run went over the systems {plan.trials} "
        "times, each starting afresh and running one trial of each workload, as long as its "
        f"trials stayed within {plan.trial_budget:.0f} s: drain and I/O show the median trial "
        "(the lower middle one of two), latency the jobs of every trial together. "
        f"{os.cpu_count()} cores; load average "
        f"{load_before:.1f} before, {load_after:.1f} after; {seconds:.0f} s."
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    args = parse_args(argv)
    if args.setup_only:
        for name in VENVS:
            ensure_venv(name)
        return 0
    plan = make_plan(args)
    specs = select(args.only)
    for name in sorted({s.venv for s in specs if s.venv}):
        ensure_venv(name)
    (BENCH / "logs").mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    tmp.chmod(0o755)
    results: list[dict[str, Any]] = []
    try:
        with servers_for(specs, tmp) as servers:
            runs = [new_run(spec, plan) for spec in specs]
            for round_no in range(1, plan.trials + 1):
                for run in runs:
                    run_round(run, plan, servers, tmp, round_no)
            print()
            results = [finish_run(run, plan) for run in runs]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    seconds = time.time() - started
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": round(seconds, 1),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "plan": asdict(plan),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "systems": results}, indent=2) + "\n")
    print()
    print(report.table(results))
    print(legend(plan, load_before[0], load_after[0], seconds))
    print(f"Results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
