"""PostgreSQL with a damaged row in its table (args that are a JSON object, as a hand edit
or another program can leave): the CLI's listings and a burst worker keep working."""

from __future__ import annotations

import uuid

import psycopg

from tests.acceptance.conftest import Env, run_past_a_damaged_job
from tests.servers import PostgresServer


def test_a_damaged_row_fails_alone_and_stays_listable(
    env: Env, postgres_server: PostgresServer
) -> None:
    """Among good jobs, one whose args are a JSON object: `jobs` lists it while queued; a
    burst worker fails it with a decode error and runs the others; `jobs --status failed`,
    `failed list` (also --json) and `job` show it with its stored text, and exit 0."""
    schema = f"a{uuid.uuid4().hex[:16]}"
    env.env["CONVEYOR_URL"] = f"{postgres_server.url()}?schema={schema}"
    ids = [env.enqueue("acc_tasks.add", "--args", f"[{n}, 1]") for n in range(5)]
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(
            f"UPDATE {schema}.jobs SET args = '{{\"x\": 1}}'::json WHERE id = %s".encode(),
            (ids[2],),
        )
    assert ids[2] in env.cli("jobs").stdout
    failed = run_past_a_damaged_job(env, ids, ids[2])
    assert "<undecodable: " in env.cli("job", ids[2]).stdout
    assert env.job(ids[2])["args"] == ["""<undecodable: '{"x": 1}'>"""]
    error = failed[0]["error"]
    assert isinstance(error, dict)
    assert "stored args" in error["message"]
