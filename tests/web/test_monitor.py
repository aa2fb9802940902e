"""/healthz and /metrics: health from the broker and the workers' heartbeats, metrics summed
over every worker."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.brokers.base import BUCKETS, TaskStats, WorkerInfo
from conveyor.brokers.memory import MemoryBroker
from conveyor.web.monitor import Monitor
from tests.brokers.support import heartbeat
from tests.web.support import Tasks, enqueue, eventually, running, serving, until_status


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by Prometheus's own client library."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_healthz(client: httpx.AsyncClient, tasks: Tasks) -> None:
    """Healthy when idle; 503 when due jobs have no worker, unless their queue is paused."""
    assert (await client.get("/healthz")).json() == {"status": "ok", "problems": []}
    await client.post("/api/queues/orphans/pause")
    await enqueue(client, "t.add", args=[1, 1], queue="orphans")
    await enqueue(client, "t.add", args=[1, 1], delay=3600)  # scheduled: not due
    assert (await client.get("/healthz")).status_code == 200
    await client.post("/api/queues/orphans/resume")
    sick = await client.get("/healthz")
    assert sick.status_code == 503
    assert sick.json()["problems"] == [
        "queue 'orphans' has 1 due jobs and no live worker consumes it"
    ]
    async with running(tasks.app, queues=["orphans"]):

        async def healthy() -> bool:
            return (await client.get("/healthz")).status_code == 200

        await eventually(healthy, what="the worker to drain the queue")


async def test_an_unreachable_broker_is_503_everywhere(tmp_path: Path) -> None:
    """A broker that cannot be opened: /healthz 503, the API 503, /metrics says it is down."""
    tasks = Tasks(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}")
    try:
        async with serving(tasks.app) as client:
            health = await client.get("/healthz")
            assert health.status_code == 503
            assert "unreachable" in health.json()["problems"][0]
            for path in ["/api/jobs", "/api/queues", "/api/workers", "/api/stats"]:
                response = await client.get(path)
                assert response.status_code == 503, path
                assert response.json()["error"].startswith("broker unavailable")
            response = await client.post("/api/jobs", json={"task": "t.add", "args": [1, 2]})
            assert response.status_code == 503
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert _samples(metrics.text)[("conveyor_broker_up", ())] == 0
    finally:
        tasks.app.close()


async def test_metrics_sum_over_workers(client: httpx.AsyncClient, tasks: Tasks) -> None:
    """Two workers, each with its own broker object: the counters and histograms add up."""
    async with running(tasks.app, queues=["a"]) as one, running(tasks.app, queues=["b"]) as two:
        jobs = [await enqueue(client, "t.add", args=[i, i], queue="ab"[i % 2]) for i in range(6)]
        failing = await enqueue(client, "t.boom", args=["no"], queue="a")
        for j in jobs:
            await until_status(client, j["id"], "succeeded")
        await until_status(client, failing["id"], "failed")

        async def all_counted() -> bool:
            samples = _samples((await client.get("/metrics")).text)
            done = sum(
                v
                for (name, labels), v in samples.items()
                if name == "conveyor_jobs_total" and ("outcome", "succeeded") in labels
            )
            return done == 6

        await eventually(all_counted, what="both workers' heartbeats")
        response = await client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = _samples(response.text)
    assert one.stats["succeeded"] == 3
    assert two.stats["succeeded"] == 3
    assert samples[("conveyor_workers", ())] == 2
    assert samples[("conveyor_worker_slots", ())] == one.concurrency + two.concurrency

    def sample(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    for queue in "ab":
        assert sample("conveyor_jobs_total", queue=queue, task="t.add", outcome="succeeded") == 3
        assert sample("conveyor_queue_jobs", queue=queue, status="succeeded") == 3
        assert sample("conveyor_job_run_seconds_count", queue=queue, task="t.add") == 3
        assert sample("conveyor_job_wait_seconds_count", queue=queue, task="t.add") == 3
        assert sample("conveyor_job_run_seconds_bucket", queue=queue, task="t.add", le="+Inf") == 3
        assert sample("conveyor_job_run_seconds_sum", queue=queue, task="t.add") > 0
    assert sample("conveyor_jobs_total", queue="a", task="t.boom", outcome="failed") == 1
    assert sample("conveyor_queue_jobs", queue="a", status="failed") == 1
    assert sample("conveyor_queue_paused", queue="a") == 0
    assert sample("conveyor_jobs_running") == 0


async def test_unknown_task_names_share_one_label(tasks: Tasks) -> None:
    """Jobs for names the worker does not know count under "(unknown)": bounded labels."""
    from conveyor.web import WebSettings

    async with serving(tasks.app, WebSettings(allow_unknown=True)) as client:
        async with running(tasks.app):
            for name in ["x.one", "x.two"]:
                created = await enqueue(client, name)
                await until_status(client, created["id"], "failed")

            async def counted() -> bool:
                return (
                    '{queue="default",task="(unknown)",outcome="failed"} 2'
                    in (await client.get("/metrics")).text
                )

            await eventually(counted, what="the unknown tasks' failures")
        text = (await client.get("/metrics")).text
    assert "x.one" not in text


def _worker(worker_id: str, succeeded: int, seen_at: float) -> WorkerInfo:
    stats = TaskStats(succeeded=succeeded)
    for _ in range(succeeded):
        stats.observe_run(0.02)
    return WorkerInfo(
        id=worker_id, hostname="h", pid=1, queues=["q"], concurrency=1,
        started_at=seen_at, seen_at=seen_at, lease=1.0, stats={"q": {"t": stats}},
    )  # fmt: skip


async def test_a_gone_workers_counts_are_kept() -> None:
    """When a worker leaves the broker's list its last report stays in the sums."""
    broker = MemoryBroker()
    monitor = Monitor()
    now = time.time()
    await heartbeat(broker, _worker("w1", 5, now), [], 1.0, now)
    first = await monitor.snapshot(broker)
    assert first.totals["q"]["t"].succeeded == 5
    broker._workers.clear()  # w1 is gone (its record expired)
    await heartbeat(broker, _worker("w2", 2, now), [], 1.0, now)
    second = await monitor.snapshot(broker)
    assert second.totals["q"]["t"].succeeded == 7
    assert sum(second.totals["q"]["t"].run) == 7
    assert second.totals["q"]["t"].run[BUCKETS.index(0.025)] == 7
    assert [w.id for w in second.live_workers()] == ["w2"]


@pytest.mark.parametrize(("seconds", "bucket"), [(0.0, 0), (0.005, 0), (0.0051, 1), (1e9, -1)])
def test_histogram_buckets(seconds: float, bucket: int) -> None:
    """An observation lands in the first bucket whose bound is at least it (le)."""
    stats = TaskStats()
    stats.observe_wait(seconds)
    assert stats.wait[bucket] == 1
    assert sum(stats.wait) == 1
