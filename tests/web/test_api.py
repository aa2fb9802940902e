"""The JSON API in-process: enqueue, read, list, cancel, retry, queues, workers, stats."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.web.support import Tasks, enqueue, eventually, job, running, serving, until_status


async def test_the_whole_flow_on_every_broker(any_url: str) -> None:
    """Enqueue over HTTP, a worker runs it, the API shows it done, counts and metrics agree."""
    tasks = Tasks(any_url)
    try:
        async with serving(tasks.app) as client, running(tasks.app):
            response = await client.post(
                "/api/jobs", json={"task": "t.add", "args": [2], "kwargs": {"y": 3}}
            )
            assert response.status_code == 202, response.text
            created = response.json()
            assert created["status"] == "queued"
            assert created["url"] == f"/api/jobs/{created['id']}"
            assert response.headers["location"] == created["url"]
            done = await until_status(client, created["id"], "succeeded")
            assert done["result"] == 5
            assert done["attempts"] == 1
            assert done["started_at"] >= done["created_at"]
            page = (await client.get("/api/jobs", params={"status": "succeeded"})).json()
            assert [j["id"] for j in page["jobs"]] == [created["id"]]
            queues = (await client.get("/api/queues")).json()["queues"]
            assert queues[0]["name"] == "default"
            assert queues[0]["counts"]["succeeded"] == 1
            assert queues[0]["workers"] == 1

            async def counted() -> bool:
                text = (await client.get("/metrics")).text
                return (
                    'conveyor_jobs_total{queue="default",task="t.add",outcome="succeeded"} 1'
                    in text
                )

            await eventually(counted, what="the worker's heartbeat to carry its counters")
    finally:
        tasks.app.close()


async def test_enqueue_options_and_key(client: httpx.AsyncClient) -> None:
    """Options reach the job; a key held by an unfinished job returns that job with 200."""
    first = await enqueue(
        client, "t.add", args=[1, 2], queue="math", priority=7, delay=3600, key="k1", retries=4
    )
    assert first["status"] == "scheduled"
    assert (first["queue"], first["priority"], first["max_attempts"]) == ("math", 7, 5)
    assert first["eta"] > first["created_at"] + 3500
    again = await client.post("/api/jobs", json={"task": "t.add", "args": [9, 9], "key": "k1"})
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]


async def test_list_filters_and_cursor(client: httpx.AsyncClient) -> None:
    """Newest first, filtered by status, queue and task, paged with the `next` cursor."""
    ids = [(await enqueue(client, "t.add", args=[i, i], queue="a"))["id"] for i in range(5)]
    other = await enqueue(client, "t.echo", args=["x"], queue="b")
    page = (await client.get("/api/jobs", params={"queue": "a", "limit": 2})).json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    seen = [j["id"] for j in page["jobs"]]
    while page["next"]:
        page = (
            await client.get("/api/jobs", params={"queue": "a", "limit": 2, "cursor": page["next"]})
        ).json()
        seen += [j["id"] for j in page["jobs"]]
    assert seen == ids[::-1]
    by_task = (await client.get("/api/jobs", params={"task": "t.echo"})).json()["jobs"]
    assert [j["id"] for j in by_task] == [other["id"]]
    assert (await client.get("/api/jobs", params={"status": "failed"})).json() == {
        "jobs": [],
        "next": None,
    }


async def test_cancel(client: httpx.AsyncClient, tasks: Tasks) -> None:
    """A waiting job is cancelled at once, a running one by its worker; a finished one: 409."""
    waiting = await enqueue(client, "t.add", args=[1, 1], delay=60)
    response = await client.post(f"/api/jobs/{waiting['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert (await client.post("/api/jobs/nope/cancel")).status_code == 404
    async with running(tasks.app):
        blocked = await enqueue(client, "t.block")
        await until_status(client, blocked["id"], "running")
        asked = (await client.post(f"/api/jobs/{blocked['id']}/cancel")).json()
        assert asked["cancel_requested"] is True
        await until_status(client, blocked["id"], "cancelled")
        done = await enqueue(client, "t.add", args=[1, 2])
        await until_status(client, done["id"], "succeeded")
    refused = await client.post(f"/api/jobs/{done['id']}/cancel")
    assert refused.status_code == 409
    assert "already succeeded" in refused.json()["error"]


async def test_retry_one_and_all_and_purge(client: httpx.AsyncClient, tasks: Tasks) -> None:
    """Failed jobs are retried one by one or all at once, or purged."""
    async with running(tasks.app, queues=["default", "q2"]):
        one = await enqueue(client, "t.flaky")
        two = await enqueue(client, "t.boom", args=["bad"])
        three = await enqueue(client, "t.boom", args=["worse"], queue="q2")
        failed = await until_status(client, one["id"], "failed")
        assert failed["error"]["type"] == "ConnectionError"
        assert "the gateway is down" in failed["error"]["traceback"]
        tasks.fixed.set()
        response = await client.post(f"/api/jobs/{one['id']}/retry")
        assert response.status_code == 200
        # Read after the redrive: the worker may have taken it again already.
        assert response.json()["status"] in ("queued", "running", "succeeded")
        assert (await until_status(client, one["id"], "succeeded"))["result"] == "done"
        refused = await client.post(f"/api/jobs/{one['id']}/retry")
        assert refused.status_code == 409
        assert (await client.post("/api/jobs/nope/retry")).status_code == 404
        await until_status(client, two["id"], "failed")
        await until_status(client, three["id"], "failed")
    missing = await client.post("/api/failed/retry", json={})
    assert missing.status_code == 422
    assert missing.json()["field"] == "all"
    moved = await client.post("/api/failed/retry", json={"queue": "q2"})
    assert moved.json() == {"count": 1}
    assert (await job(client, three["id"]))["status"] == "queued"
    purged = await client.post("/api/failed/purge", json={"all": True})
    assert purged.json() == {"count": 1}
    assert (await client.get(f"/api/jobs/{two['id']}")).status_code == 404


async def test_pause_and_resume_are_honoured_by_a_worker(
    client: httpx.AsyncClient, tasks: Tasks
) -> None:
    """A worker claims nothing from a paused queue and resumes when it is resumed."""
    assert (await client.post("/api/queues/held/pause")).json() == {"name": "held", "paused": True}
    held = await enqueue(client, "t.add", args=[1, 1], queue="held")
    async with running(tasks.app, queues=["held", "free"]):
        free = await enqueue(client, "t.add", args=[2, 2], queue="free")
        await until_status(client, free["id"], "succeeded")
        # The held job is older and was due first: only the pause kept it waiting.
        assert (await job(client, held["id"]))["status"] == "queued"
        queues = {q["name"]: q for q in (await client.get("/api/queues")).json()["queues"]}
        assert queues["held"]["paused"] is True
        assert queues["free"]["paused"] is False
        resumed = await client.post("/api/queues/held/resume")
        assert resumed.json() == {"name": "held", "paused": False}
        await until_status(client, held["id"], "succeeded")


async def test_workers_show_heartbeats_and_running_jobs(
    client: httpx.AsyncClient, tasks: Tasks
) -> None:
    """A live worker is listed with its queues, last heartbeat and the job it runs."""
    assert (await client.get("/api/workers")).json() == {"workers": []}
    async with running(tasks.app, concurrency=3) as worker:
        blocked = await enqueue(client, "t.block")

        async def shows_it() -> bool:
            workers = (await client.get("/api/workers")).json()["workers"]
            return bool(workers) and workers[0]["running"] == [blocked["id"]]

        await eventually(shows_it, what="the heartbeat to name the running job")
        listed = (await client.get("/api/workers")).json()["workers"][0]
        assert listed["id"] == worker.id
        assert listed["queues"] == ["default"]
        assert listed["concurrency"] == 3
        assert listed["seen_at"] >= listed["started_at"]
        tasks.release.set()
        await until_status(client, blocked["id"], "succeeded")


async def test_stats_and_history(client: httpx.AsyncClient, tasks: Tasks) -> None:
    """Totals per status and per task; the sampler fills the history."""
    async with running(tasks.app):
        done = await enqueue(client, "t.add", args=[1, 1])
        await until_status(client, done["id"], "succeeded")

        async def counted() -> bool:
            stats = (await client.get("/api/stats")).json()
            return any(t["task"] == "t.add" and t["succeeded"] == 1 for t in stats["tasks"])

        await eventually(counted, what="the worker's counters in /api/stats")
        stats = (await client.get("/api/stats")).json()
    assert stats["jobs"]["succeeded"] == 1
    assert stats["broker"] == tasks.app.url
    added = next(t for t in stats["tasks"] if t["task"] == "t.add")
    assert added["run_avg"] is not None
    assert added["wait_avg"] is not None

    async def sampled() -> bool:
        samples = (await client.get("/api/history")).json()["samples"]
        return bool(samples) and samples[-1][1]["default"][3] == 1  # succeeded, cumulative

    await eventually(sampled, what="a history sample with the job counted")
    history = (await client.get("/api/history")).json()
    assert history["fields"] == ["scheduled", "queued", "running", "succeeded", "failed", "retried"]
    assert history["every"] == 0.05
    t = history["samples"][-1][0]
    assert (await client.get("/api/history", params={"since": t})).json()["samples"] == []


@pytest.mark.parametrize("path", ["/openapi.json", "/api/stats", "/", "/jobs", "/healthz"])
async def test_every_response_carries_a_strict_csp(client: httpx.AsyncClient, path: str) -> None:
    """The CSP allows scripts and styles from this server only, and no framing."""
    response = await client.get(path)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_it_mounts_under_a_prefix_of_another_app(tasks: Tasks) -> None:
    """Mounted in a host app (whose lifespan does not run it): URLs carry the prefix."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from conveyor.web import WebSettings, create_app

    host = Starlette(routes=[Mount("/ops/queue", create_app(tasks.app, WebSettings(token="t")))])
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get("/ops/queue/jobs")
        assert page.status_code == 303
        assert page.headers["location"] == "/ops/queue/login?next=/jobs"
        bearer = {"Authorization": "Bearer t"}
        created = await client.post(
            "/ops/queue/api/jobs", json={"task": "t.add", "args": [1, 2]}, headers=bearer
        )
        assert created.status_code == 202
        assert created.json()["url"] == f"/ops/queue/api/jobs/{created.json()['id']}"
        login = await client.post("/ops/queue/login", data={"token": "t", "next": "/jobs"})
        assert login.headers["location"] == "/ops/queue/jobs"
        assert "Path=/ops/queue" in login.headers["set-cookie"]
        html = (await client.get("/ops/queue/jobs")).text
        assert 'content="/ops/queue"' in html
        assert 'src="/ops/queue/static/conveyor.js"' in html
        script = await client.get("/ops/queue/static/conveyor.js")
        assert script.status_code == 200
        doc = (await client.get("/ops/queue/openapi.json", headers=bearer)).json()
        assert doc["servers"] == [{"url": "/ops/queue"}]


async def test_a_damaged_record_is_listed_and_shown(tmp_path: Path) -> None:
    """SQLite: the listing and the job's JSON keep working with a job whose stored args do
    not decode (its stored text in their place), and a job shows its losses."""
    tasks = Tasks(f"sqlite:///{tmp_path / 'web.db'}")
    try:
        async with serving(tasks.app) as client:
            good = await enqueue(client, "t.add", args=[1, 2])
            bad = await enqueue(client, "t.add", args=[3, 4])
            conn = sqlite3.connect(tmp_path / "web.db", isolation_level=None)
            try:
                conn.execute("UPDATE jobs SET args = 'not json {' WHERE id = ?", (bad["id"],))
            finally:
                conn.close()
            page = await client.get("/api/jobs")
            assert page.status_code == 200, page.text
            assert [j["id"] for j in page.json()["jobs"]] == [bad["id"], good["id"]]
            shown = await job(client, bad["id"])
            assert shown["args"] == ["<undecodable: 'not json {'>"]
            assert shown["losses"] == 0
    finally:
        tasks.app.close()
