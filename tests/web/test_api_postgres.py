"""The JSON API on PostgreSQL with a damaged row in the table (args that are a JSON object,
as a hand edit or another program can leave): listing and showing keep working."""

from __future__ import annotations

import uuid

import psycopg

from tests.servers import PostgresServer
from tests.web.support import Tasks, enqueue, job, serving


async def test_a_damaged_row_is_listed_and_shown(postgres_server: PostgresServer) -> None:
    """The listing (also of failed jobs) and the job's JSON show a row whose args are a JSON
    object with its stored text in their place, beside the good job."""
    schema = f"w{uuid.uuid4().hex[:16]}"
    tasks = Tasks(f"{postgres_server.url()}?schema={schema}")
    try:
        async with serving(tasks.app) as client:
            good = await enqueue(client, "t.add", args=[1, 2])
            bad = await enqueue(client, "t.add", args=[3, 4])
            async with await psycopg.AsyncConnection.connect(
                postgres_server.url(), autocommit=True
            ) as conn:
                await conn.execute(
                    f"UPDATE {schema}.jobs SET args = '{{\"x\": 1}}'::json WHERE id = %s"
                    .encode(),
                    (bad["id"],),
                )  # fmt: skip
            page = await client.get("/api/jobs")
            assert page.status_code == 200, page.text
            assert [j["id"] for j in page.json()["jobs"]] == [bad["id"], good["id"]]
            shown = await job(client, bad["id"])
            assert shown["args"] == ["""<undecodable: '{"x": 1}'>"""]
            assert shown["losses"] == 0
            cancelled = await client.post(f"/api/jobs/{bad['id']}/cancel")
            assert cancelled.status_code < 300, cancelled.text
            page = await client.get("/api/jobs", params={"status": "cancelled"})
            assert [j["id"] for j in page.json()["jobs"]] == [bad["id"]]
    finally:
        tasks.app.close()
