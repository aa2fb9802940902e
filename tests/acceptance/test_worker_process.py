"""The worker as a real process: crash recovery, graceful shutdown, supervisor, burst."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest

from tests.acceptance.conftest import Env, eventually

pytestmark = pytest.mark.slow


def status(env: Env, job_id: str) -> object:
    """The job's current status."""
    return env.job(job_id)["status"]


def test_sigkill_mid_job_is_recovered_by_another_worker(env: Env) -> None:
    """A worker killed with SIGKILL loses its lease; another worker runs the job, also with
    retries=0: the loss is counted apart and spends no attempt."""
    first = env.worker("--lease", "1")
    job_id = env.enqueue("acc_tasks.hold", "--args", '["k", 60]', "--retries", "0")
    eventually((env.marks / "k.started").exists, what="first attempt to start")
    first.send_signal(signal.SIGKILL)
    first.wait()
    env.worker("--lease", "1")
    eventually(lambda: status(env, job_id) == "succeeded", what="job to succeed elsewhere")
    job = env.job(job_id)
    assert (job["attempts"], job["max_attempts"], job["losses"]) == (1, 1, 1)
    assert "lease expired (loss 1/3): back to its queue" in env.log()
    assert "recovered" not in env.log()
    assert (env.marks / "k.done").read_text() != str(first.pid)
    shown = env.cli("job", job_id).stdout
    assert re.search(r"attempts +1/1", shown)
    assert re.search(r"losses +1 ", shown)


def test_sigterm_lets_the_running_job_finish_and_claims_nothing_new(env: Env) -> None:
    """SIGTERM: the running job completes, queued ones stay queued, exit code 0."""
    worker = env.worker("--concurrency", "1")
    running = env.enqueue("acc_tasks.sleepy", "--args", '["t", 1.0]')
    eventually((env.marks / "t.started").exists, what="job to start")
    waiting = env.enqueue("acc_tasks.add", "--args", "[1, 2]")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert status(env, running) == "succeeded"
    assert status(env, waiting) == "queued"
    assert "waiting up to" in env.log()


def test_a_sigterm_during_the_exit_after_a_stop_is_ignored(env: Env) -> None:
    """A second SIGTERM (of a pair sent by a script, or an init system's) that comes once the
    worker has stopped, while the interpreter tears down, must not turn exit 0 into 143
    (killed). Python leaves an ignored signal ignored to the end of its teardown, where
    asyncio's handlers are gone and the default one would kill it."""
    env.env["SIGTERM_AT_EXIT"] = "1"
    worker = env.worker()
    env.enqueue("acc_tasks.add", "--args", "[1, 2]")
    eventually(lambda: "succeeded" in env.log(), what="the worker to run a job")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert (env.marks / "sigterm-at-exit").read_text() == "ignored"


def test_grace_exceeded_hands_the_job_back_without_counting_the_attempt(env: Env) -> None:
    """A job still running when the grace period ends goes back to queued at once."""
    worker = env.worker("--grace", "0.3")
    job_id = env.enqueue("acc_tasks.sleepy", "--args", '["g", 60]')
    eventually((env.marks / "g.started").exists, what="job to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    job = env.job(job_id)
    assert job["status"] == "queued"
    assert job["attempts"] == 0
    assert "handed back 1 unfinished jobs" in env.log()


def test_second_ctrl_c_stops_at_once(env: Env) -> None:
    """The first SIGINT starts a graceful stop; the second interrupts and hands back."""
    worker = env.worker("--grace", "60")
    job_id = env.enqueue("acc_tasks.sleepy", "--args", '["c", 60]')
    eventually((env.marks / "c.started").exists, what="job to start")
    worker.send_signal(signal.SIGINT)
    eventually(lambda: "Ctrl-C again" in env.log(), what="the first Ctrl-C to register")
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=30) == 0
    assert status(env, job_id) == "queued"


def test_processes_two_replaces_a_killed_child(env: Env) -> None:
    """--processes 2: a child killed with SIGKILL is replaced; SIGTERM stops them all."""
    supervisor = env.worker("--processes", "2")

    def children() -> list[int]:
        return [int(p) for p in re.findall(r"worker process (\d+) started", env.log())]

    eventually(lambda: len(children()) == 2, what="two children")
    eventually(lambda: env.log().count("started: queues=") == 2, what="two workers up")
    victim = children()[0]
    subprocess.run(["kill", "-9", str(victim)], check=True)
    eventually(lambda: len(children()) == 3, what="a replacement child")
    assert f"worker process {victim} exited" in env.log()
    ids = [env.enqueue("acc_tasks.add", "--args", f"[{i}, 1]") for i in range(6)]
    eventually(lambda: all(status(env, i) == "succeeded" for i in ids), what="jobs to run")
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    for pid in children()[1:]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_burst_exits_when_the_queue_is_empty(env: Env) -> None:
    """--burst runs every due job, then exits 0."""
    ids = [env.enqueue("acc_tasks.add", "--args", f"[{i}, {i}]") for i in range(5)]
    worker = env.worker("--burst")
    assert worker.wait(timeout=30) == 0
    assert [env.job(i)["result"] for i in ids] == [0, 2, 4, 6, 8]
    assert "burst done" in env.log()


def test_failed_jobs_are_listed_redriven_and_purged(env: Env) -> None:
    """The dead-letter queue from the CLI: failed list, failed retry, failed purge."""
    job_id = env.enqueue("acc_tasks.boom", "--args", '["kaput"]')
    assert env.worker("--burst").wait(timeout=30) == 0
    listing = env.cli("failed", "list").stdout
    assert job_id in listing
    assert "ValueError: kaput" in listing
    retried = env.cli("failed", "retry", job_id, "0000", check=False)
    assert "1 failed job queued again" in retried.stdout
    assert retried.returncode == 1
    assert retried.stderr.strip() == "conveyor: error: failed retry: no job with id '0000'"
    assert status(env, job_id) == "queued"
    assert env.worker("--burst").wait(timeout=30) == 0
    assert status(env, job_id) == "failed"
    assert "1 failed job deleted" in env.cli("failed", "purge", "--all").stdout
    assert env.cli("job", job_id, check=False).returncode == 1
    queues = json.loads(env.cli("queues", "--json").stdout)
    assert queues == {}


def test_burst_with_several_processes_exits_when_all_are_done(env: Env) -> None:
    """--processes 2 --burst: each child exits when the queue is empty and is not replaced;
    the supervisor then exits 0."""
    ids = [env.enqueue("acc_tasks.add", "--args", f"[{i}, 1]") for i in range(6)]
    supervisor = env.worker("--processes", "2", "--burst")
    assert supervisor.wait(timeout=30) == 0
    assert all(status(env, i) == "succeeded" for i in ids)
    assert "replacing it" not in env.log()


def test_an_async_task_that_blocks_the_loop_keeps_its_job_and_is_reported(env: Env) -> None:
    """A blocked event loop cannot renew leases on it; the heartbeat's own thread does, so
    the other worker does not take the job over, the attempt's outcome is kept, and the log
    names the task that blocks while it blocks."""
    blocked = env.worker("--lease", "0.6")
    job_id = env.enqueue("acc_tasks.blocker", "--args", '["b", 2.5]')
    eventually((env.marks / "b.started").exists, what="the blocking job to start")
    env.worker("--lease", "0.6")  # its sweeper would recover an expired lease at once
    eventually(lambda: status(env, job_id) == "succeeded", what="the job to succeed")
    job = env.job(job_id)
    assert job["attempts"] == 1
    assert job["result"] == f"b by {blocked.pid}"
    log = env.log(0)
    assert "blocked for" in log
    assert f"by job {job_id} (acc_tasks.blocker)" in log
    assert "ran again after being blocked" in log
    assert "refused" not in log


def test_a_worker_with_a_stuck_task_thread_restarts_itself_in_place(env: Env) -> None:
    """A sync task stuck in C past its timeout cannot be interrupted: its job fails with the
    timeout, and the single worker process (no supervisor) replaces itself, same pid, and
    goes on running jobs."""
    worker = env.worker("--grace", "0.5")
    stuck = env.enqueue("acc_tasks.stuck", "--args", '["s", 60]')
    eventually((env.marks / "s.started").exists, what="the stuck task to start")
    eventually(lambda: "restarting this worker process in place" in env.log(), what="restart")
    assert status(env, stuck) == "failed"
    later = env.enqueue("acc_tasks.add", "--args", "[1, 2]")
    eventually(lambda: status(env, later) == "succeeded", what="the job after the restart")
    assert worker.poll() is None  # the same process, running again
    started = [line for line in env.log().splitlines() if " started: queues=" in line]
    assert len(started) == 2
    assert all(f".{worker.pid}." in line for line in started)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_a_sigterm_while_the_worker_starts_stops_it_cleanly(env: Env) -> None:
    """A SIGTERM that comes while the command still loads the app is kept for the worker,
    which stops as soon as it runs: exit 0, not 143."""
    env.env["SLOW_IMPORT"] = "1.0"
    worker = env.worker()
    eventually((env.marks / "importing").exists, what="the app to start loading")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert "stopped" in env.log()


def test_a_failed_jobs_traceback_is_its_own_without_uvloop(env: Env) -> None:
    """Where uvloop is not installed, the worker's fallback to asyncio leaves no trace in the
    tracebacks of the jobs it runs (it once chained 'No module named uvloop' to each)."""
    (env.root / "uvloop.py").write_text('raise ImportError("no uvloop here")\n')
    env.worker()
    job_id = env.enqueue("acc_tasks.boom", "--args", '["bad input"]')
    eventually(lambda: status(env, job_id) == "failed", what="the job to fail")
    shown = env.cli("job", job_id).stdout
    assert "ValueError: bad input" in shown
    assert "uvloop" not in shown
