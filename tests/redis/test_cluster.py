"""Redis Cluster: every key of a queue lives in its hash tag's slot, queues spread over the
nodes, and the operations that span queues work across nodes."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import redis
from redis.crc import key_slot

from conveyor.brokers import from_url
from conveyor.brokers.base import JobFilter, Lease, Outcome
from conveyor.job import Status
from tests.brokers.support import LEASE, finish, heartbeat, make_job, worker_info
from tests.servers import RedisCluster


def _keys_by_node(cluster: RedisCluster, prefix: str) -> dict[int, list[bytes]]:
    found: dict[int, list[bytes]] = {}
    for server in cluster.servers:
        with redis.Redis(port=server.port) as node:
            found[server.port] = list(node.scan_iter(match="{" + prefix + "*", count=1000))
    return found


async def test_each_queue_is_one_slot_and_queues_spread(
    redis_cluster: RedisCluster, cluster_url: str
) -> None:
    """After every kind of operation, all the keys of a queue sit in the slot of its tag, on
    the node that serves it; the queues of one app are spread over the nodes."""
    prefix = parse_qs(urlsplit(cluster_url).query)["prefix"][0]
    broker = from_url(cluster_url)
    queues = [f"q{i}" for i in range(8)]
    now = time.time()
    try:
        jobs = await broker.enqueue(
            [make_job(queue=q, key=f"k-{q}") for q in queues]
            + [make_job(queue=q, eta=now + 3600) for q in queues]
            + [make_job(queue=q, priority=3) for q in queues]
        )
        claimed = await broker.consumer("w1", queues, LEASE).claim(12, now)
        assert [j.priority for j in claimed[:8]] == [3] * 8  # across the nodes, by priority
        leases = [Lease(j.id, j.token) for j in claimed]
        await heartbeat(broker, worker_info(seen_at=now), leases, LEASE, now)
        done = [
            Outcome(id=j.id, token=j.token, status=s, finished_at=now)
            for j, s in zip(claimed, [Status.SUCCEEDED, Status.FAILED] * 6, strict=True)
        ]
        assert await finish(broker, done) == []
        await broker.set_paused("q7", True)
        await broker.cancel(jobs[-1].id, now)
        assert await broker.retry_failed(None, None, now) == 6
        assert len(await broker.list(JobFilter(limit=100))) == len(jobs)
    finally:
        await broker.close()

    by_node = _keys_by_node(redis_cluster, prefix)
    nodes_of_queues = set()
    for queue in queues:
        tag = f"{{{prefix}:{queue}}}"
        slot = key_slot(tag.encode())
        holders = {
            port for port, keys in by_node.items() if any(k.startswith(tag.encode()) for k in keys)
        }
        assert len(holders) == 1, (queue, holders)
        for keys in by_node.values():
            assert {key_slot(k) for k in keys if k.startswith(tag.encode())} <= {slot}
        nodes_of_queues |= holders
    assert len(nodes_of_queues) >= 2, "eight queues should not all hash to one node"


async def test_keys_are_unique_per_queue_on_a_cluster(cluster_url: str) -> None:
    """A script reaches one slot only, so on a cluster a uniqueness key holds per queue (on a
    single server it holds across queues)."""
    broker = from_url(cluster_url)
    try:
        [a] = await broker.enqueue([make_job(queue="a", key="k")])
        [again] = await broker.enqueue([make_job(queue="a", key="k")])
        [b] = await broker.enqueue([make_job(queue="b", key="k")])
        assert again.id == a.id
        assert b.id != a.id
    finally:
        await broker.close()


async def test_keys_are_unique_across_queues_on_a_single_server(redis_url: str) -> None:
    """On a single server a uniqueness key holds across queues, as on SQLite."""
    broker = from_url(redis_url)
    try:
        [a] = await broker.enqueue([make_job(queue="a", key="k")])
        [b] = await broker.enqueue([make_job(queue="b", key="k")])
        assert b.id == a.id
    finally:
        await broker.close()
