"""The `conveyor` command's inspection commands and its errors: one line, non-zero exit."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import uuid

import pytest

from conveyor.cli import build_parser
from tests.acceptance.conftest import Env, run_past_a_damaged_job
from tests.servers import PostgresServer


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
        (["enqueue", "acc_tasks.add", "--args", '[1, "2"]'], 1, "argument 'y': Expected `int`"),
        (["jobs", "--app", "no_such_module:app"], 2, "cannot import app module"),
        (["jobs", "--app", "acc_tasks:nothing"], 2, "is not a Conveyor app"),
        (["jobs", "--url", "sqlite:////no/such/dir/x.db"], 1, "/no/such/dir"),
        (["jobs", "--url", "mongodb://x"], 1, "unknown broker URL"),
        (["job", "0000"], 1, "no job with id"),
        (["failed", "retry"], 2, "name job ids, or --queue Q, or --all"),
        (["worker", "acc_tasks:app", "--processes", "0"], 2, "--processes must be at least 1"),
        (["worker", "acc_tasks:app", "--concurrency", "0"], 1, "concurrency must be at least 1"),
        (["worker", "acc_tasks.py"], 2, "did you mean 'acc_tasks:app'?"),
        (["worker", "./acc_tasks.py"], 2, "did you mean 'acc_tasks:app'?"),
        (["jobs", "--app", "acc_tasks.py:other"], 2, "did you mean 'acc_tasks:other'?"),
        (["enqueue", "acc_tasks.ad"], 1, "unknown task 'acc_tasks.ad'"),
        (["enqueue", "acc_tasks.add", "--eta", "soon"], 2, "--eta must be an ISO-8601 time"),
        (
            ["enqueue", "acc_tasks.add", "--args", "[1, 2]", "--eta", "1", "--delay", "1"],
            1,
            "either",
        ),
        (["queues", "pause"], 2, "queues pause: name the queue"),
        (["failed", "retry", "0000", "0001"], 1, "no job with id '0000'; no job with id '0001'"),
        (["failed", "purge", "0000"], 1, "failed purge: no job with id '0000'"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(
    env: Env, args: list[str], code: int, message: str
) -> None:
    """Bad input: a single clear line on stderr, no traceback, a non-zero exit code."""
    env.cli("queues", "resume", "default")  # the store exists: reading commands refuse none
    done = env.cli(*args, check=False)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_worker_without_an_app_refuses_to_start(env: Env) -> None:
    """No app and no $CONVEYOR_APP: a worker would know no task, so it does not start."""
    del env.env["CONVEYOR_APP"]
    done = env.cli("worker", "--burst", check=False)
    assert done.returncode == 2
    assert "conveyor worker tasks:app" in done.stderr
    assert "$CONVEYOR_APP" in done.stderr


def test_a_file_suggests_the_apps_own_name(env: Env) -> None:
    """The suggestion for a file names the Conveyor it assigns, found without running it."""
    (env.root / "jobs").mkdir()
    (env.root / "jobs" / "mail.py").write_text(
        "import conveyor\nraise SystemExit('imported')\nqueue = conveyor.Conveyor()\n"
    )
    done = env.cli("worker", "jobs/mail.py", check=False)
    assert done.returncode == 2
    assert "did you mean 'jobs.mail:queue'?" in done.stderr


def test_enqueue_names_the_known_tasks_of_the_app(env: Env) -> None:
    """An unknown task is refused with the app's tasks; --allow-unknown or --url take it."""
    refused = env.cli("enqueue", "acc_tasks.ad", check=False)
    assert refused.returncode == 1
    listed = refused.stderr.partition("(its tasks: ")[2].partition(")")[0].split(", ")
    assert listed == sorted(listed)
    assert {"acc_tasks.add", "acc_tasks.boom", "acc_tasks.hold"} <= set(listed)
    assert "; pass --allow-unknown" in refused.stderr
    assert not (env.root / "conveyor.db").exists()  # refused before it touched the store
    other = env.enqueue("other.task", "--allow-unknown")
    assert env.job(other)["task"] == "other.task"
    by_url = env.enqueue("other.task", "--url", env.url)
    assert env.job(by_url)["task"] == "other.task"


def test_enqueue_takes_an_eta_and_a_timeout(env: Env) -> None:
    """--eta as ISO-8601 (with a zone, or local time) or epoch seconds; --timeout seconds."""
    at = env.enqueue("acc_tasks.add", "--args", "[1, 2]", "--eta", "2030-01-31T09:00:00+00:00")
    assert env.job(at)["eta"] == dt.datetime(2030, 1, 31, 9, tzinfo=dt.UTC).timestamp()
    local = env.enqueue("acc_tasks.add", "--args", "[1, 2]", "--eta", "2030-01-31T09:00")
    assert env.job(local)["eta"] == dt.datetime(2030, 1, 31, 9).timestamp()
    epoch = env.enqueue("acc_tasks.add", "--args", "[1, 2]", "--eta", "1900000000.5")
    assert env.job(epoch)["eta"] == 1900000000.5
    assert env.job(epoch)["status"] == "scheduled"
    timed = env.enqueue("acc_tasks.add", "--args", "[1, 2]", "--timeout", "2.5")
    assert env.job(timed)["timeout"] == 2.5


def test_queues_are_paused_and_resumed(env: Env) -> None:
    """queues pause NAME stops claims from it (a worker in --burst leaves its job); resume."""
    job_id = env.enqueue("acc_tasks.add", "--args", "[1, 2]", "--queue", "math")
    assert "queue math paused" in env.cli("queues", "pause", "math").stdout
    assert env.cli("queues").stdout.splitlines()[1].endswith("  yes")
    assert env.worker("-Q", "math", "--burst").wait(timeout=30) == 0
    assert env.job(job_id)["status"] == "queued"
    assert env.cli("queues", "resume", "math").stdout.strip() == "queue math resumed"
    assert not env.cli("queues").stdout.splitlines()[1].endswith("yes")
    assert env.worker("-Q", "math", "--burst").wait(timeout=30) == 0
    assert env.job(job_id)["result"] == 3


def test_every_command_that_prints_takes_json(env: Env) -> None:
    """--json is accepted wherever something is printed, and what is printed is JSON."""
    assert {c for c in _subcommands() if "--json" not in _subcommands()[c]} == {
        "worker",
        "serve",
    }
    job_id = json.loads(env.cli("enqueue", "acc_tasks.add", "--args", "[1, 2]", "--json").stdout)[
        "id"
    ]
    printed = {
        "job": json.loads(env.cli("job", job_id, "--json").stdout)["id"],
        "jobs": [j["id"] for j in json.loads(env.cli("jobs", "--json").stdout)],
        "queues": json.loads(env.cli("queues", "--json").stdout),
        "pause": json.loads(env.cli("queues", "pause", "q", "--json").stdout),
        "resume": json.loads(env.cli("queues", "resume", "q", "--json").stdout),
        "cancel": json.loads(env.cli("cancel", job_id, "--json").stdout)["status"],
        "failed list": json.loads(env.cli("failed", "list", "--json").stdout),
        "failed retry": json.loads(env.cli("failed", "retry", "--all", "--json").stdout),
        "failed purge": json.loads(env.cli("failed", "purge", "--all", "--json").stdout),
        "migrate": json.loads(env.cli("migrate", "--json").stdout),
    }
    assert printed == {
        "job": job_id,
        "jobs": [job_id],
        "queues": {"default": {"queued": 1}},
        "pause": {"name": "q", "paused": True},
        "resume": {"name": "q", "paused": False},
        "cancel": "cancelled",
        "failed list": [],
        "failed retry": {"count": 0, "errors": []},
        "failed purge": {"count": 0, "errors": []},
        "migrate": {"broker": "sqlite", "migrated": False},
    }


def _subcommands() -> dict[str, set[str]]:
    """Each subcommand of ``conveyor`` and its option strings."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()
    }


def test_migrate_prints_json_on_postgres(env: Env, postgres_server: PostgresServer) -> None:
    """migrate --json says what it did to a PostgreSQL schema; --sql --json holds the script."""
    schema = f"m{uuid.uuid4().hex[:16]}"
    url = f"{postgres_server.url()}?schema={schema}"
    script = json.loads(env.cli("migrate", "--url", url, "--sql", "--json").stdout)
    assert "CREATE TABLE IF NOT EXISTS" in script["sql"]
    first = json.loads(env.cli("migrate", "--url", url, "--json").stdout)
    assert (first["broker"], first["schema"], first["migrated"], first["from"]) == (
        "postgresql", schema, True, 0,
    )  # fmt: skip
    again = json.loads(env.cli("migrate", "--url", url, "--json").stdout)
    assert (again["migrated"], again["from"], again["to"]) == (False, first["to"], first["to"])


def test_a_damaged_record_fails_alone_and_stays_listable(env: Env) -> None:
    """A job whose stored args do not decode, among good ones: a burst worker fails it with a
    decode error and runs the others; `jobs --status failed`, `failed list` and `job` show it
    (its stored text in place of its args) and exit 0."""
    import sqlite3

    ids = [env.enqueue("acc_tasks.add", "--args", f"[{n}, 1]") for n in range(5)]
    conn = sqlite3.connect(env.root / "conveyor.db", isolation_level=None)
    try:
        conn.execute("UPDATE jobs SET args = 'not json {' WHERE id = ?", (ids[2],))
    finally:
        conn.close()
    run_past_a_damaged_job(env, ids, ids[2])
    shown = env.cli("job", ids[2]).stdout
    assert "<undecodable: 'not json {'>" in shown


@pytest.mark.parametrize(
    "command", [["queues"], ["jobs"], ["job", "0000"], ["failed", "list"], ["serve"]]
)
def test_a_command_that_only_reads_creates_no_database(env: Env, command: list[str]) -> None:
    """The default relative SQLite URL, run from another directory: the command would see a new
    empty database there; it exits 1 saying where it looked, and creates nothing."""
    del env.env["CONVEYOR_URL"]  # the app's default, sqlite:///conveyor.db
    elsewhere = env.root / "elsewhere"
    elsewhere.mkdir()
    done = env.cli(*command, check=False, cwd=elsewhere)
    assert done.returncode == 1, done.stderr
    looked = os.path.join(os.path.realpath(elsewhere), "conveyor.db")
    assert done.stderr.strip() == (
        f"conveyor: error: no Conveyor database at {looked} (run from the directory of your "
        f"app, or give --url sqlite:///{looked})"
    )
    assert list(elsewhere.iterdir()) == []


def test_the_worker_logs_the_absolute_path_of_its_database(env: Env) -> None:
    """A relative SQLite URL: the worker's start line names the file it opened in full."""
    del env.env["CONVEYOR_URL"]
    env.enqueue("acc_tasks.add", "--args", "[1, 2]")
    assert env.worker("--burst").wait(timeout=60) == 0
    path = os.path.join(os.path.realpath(env.root), "conveyor.db")
    assert f"broker={path} tasks=" in env.log()
    assert "succeeded" in env.cli("jobs").stdout
