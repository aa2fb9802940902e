"""The `conveyor` command's inspection commands and its errors: one line, non-zero exit."""

from __future__ import annotations

import json

import pytest

from tests.acceptance.conftest import Env


def test_enqueue_show_list_and_cancel(env: Env) -> None:
    """enqueue prints an id; job, jobs, queues show it; cancel cancels it."""
    job_id = env.enqueue(
        "acc_tasks.add", "--args", "[2]", "--kwargs", '{"y": 3}', "--priority", "4",
        "--queue", "math", "--delay", "3600", "--key", "sum-2-3",
    )  # fmt: skip
    shown = env.cli("job", job_id).stdout
    assert "scheduled" in shown
    assert "acc_tasks.add" in shown
    job = env.job(job_id)
    assert (job["args"], job["kwargs"], job["priority"], job["queue"], job["key"]) == (
        [2], {"y": 3}, 4, "math", "sum-2-3",
    )  # fmt: skip
    assert env.enqueue("acc_tasks.add", "--args", "[9, 9]", "--key", "sum-2-3") == job_id
    assert job_id in env.cli("jobs", "--queue", "math").stdout
    assert json.loads(env.cli("queues", "--json").stdout) == {"math": {"scheduled": 1}}
    assert "cancelled" in env.cli("cancel", job_id).stdout
    assert env.job(job_id)["status"] == "cancelled"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["enqueue", "acc_tasks.add", "--args", "[1,"], 2, "--args is not valid JSON"),
        (["enqueue", "acc_tasks.add", "--args", '{"x": 1}'], 2, "--args must be a JSON list"),
        (["enqueue", "acc_tasks.add", "--kwargs", "[]"], 2, "--kwargs must be a JSON dict"),
        (["enqueue", "acc_tasks.add", "--args", '["a"]'], 1, "missing a required argument"),
        (["jobs", "--app", "no_such_module:app"], 2, "cannot import app module"),
        (["jobs", "--app", "acc_tasks:nothing"], 2, "is not a Conveyor app"),
        (["jobs", "--url", "sqlite:////no/such/dir/x.db"], 1, "/no/such/dir"),
        (["jobs", "--url", "mongodb://x"], 1, "unknown broker URL"),
        (["job", "0000"], 1, "no job with id"),
        (["failed", "retry"], 2, "name job ids, or --queue Q, or --all"),
        (["worker", "acc_tasks:app", "--processes", "0"], 2, "--processes must be at least 1"),
        (["worker", "acc_tasks:app", "--concurrency", "0"], 1, "concurrency must be at least 1"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(
    env: Env, args: list[str], code: int, message: str
) -> None:
    """Bad input: a single clear line on stderr, no traceback, a non-zero exit code."""
    done = env.cli(*args, check=False)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
