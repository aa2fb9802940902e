"""The Redis URL (auth, database, TLS, options), the missing extra and an unreachable server."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from conveyor.brokers import from_url
from conveyor.brokers.redis import RedisBroker
from conveyor.errors import BrokerUnavailable, ConfigurationError, MissingDependency
from conveyor.job import Status
from tests.brokers.support import claim_one, make_job, must_get
from tests.redis.conftest import fresh
from tests.servers import RedisServer, free_port, temp_root


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, a redis:// URL raises MissingDependency naming the extra."""
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "conveyor.brokers.redis", raising=False)
    for url in ("redis://localhost:6379/0", "rediss://localhost:6380/0"):
        with pytest.raises(MissingDependency, match=r"pip install 'conveyor\[redis\]'"):
            from_url(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h/0?prefix=", "empty prefix"),
        ("redis://h/0?cluster=maybe", "cluster="),
        ("http://h/0", "not a Redis URL"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    """A malformed URL or option is a ConfigurationError at once, before any connection."""
    with pytest.raises(ConfigurationError, match=message):
        RedisBroker(url)


@pytest.mark.parametrize(
    "url", ["redis://:s3cret@h/0?cluster=maybe", "redis://u:s3cret@h/0?prefix=", "http://:s3cret@h"]
)
def test_a_refused_url_is_named_without_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        RedisBroker(url)
    assert "s3cret" not in str(refused.value)
    assert "***" in str(refused.value)


async def test_unreachable_server_is_unavailable() -> None:
    """Nothing listening: connect raises BrokerUnavailable, promptly."""
    broker = from_url(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1"):
        await broker.connect()
    assert time.monotonic() - started < 10
    await broker.close()


async def test_prefixes_are_separate_namespaces(redis_server: RedisServer) -> None:
    """Two prefixes on one server see separate queues and jobs."""
    one, two = from_url(fresh(redis_server.url)), from_url(fresh(redis_server.url))
    try:
        [job] = await one.enqueue([make_job()])
        assert await two.get(job.id) is None
        assert await two.counts() == {}
        assert (await must_get(one, job.id)).id == job.id
    finally:
        await one.close()
        await two.close()


async def test_database_number_and_acl_user(redis_server: RedisServer) -> None:
    """A user and password in the URL authenticate; the path selects the database; a wrong
    password is BrokerUnavailable."""
    user = f"conveyor-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis(port=redis_server.port)
    admin.acl_setuser(
        user, enabled=True, passwords=["+s3cret"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    try:
        base = f"redis://{user}:s3cret@127.0.0.1:{redis_server.port}/5"
        broker = from_url(base + "?prefix=acl")
        try:
            [job] = await broker.enqueue([make_job()])
            assert (await must_get(broker, job.id)).id == job.id
        finally:
            await broker.close()
        assert redis.Redis(port=redis_server.port, db=5).exists(f"{{acl:default}}:j:{job.id}")
        assert not admin.exists(f"{{acl:default}}:j:{job.id}")

        wrong = from_url(f"redis://{user}:nope@127.0.0.1:{redis_server.port}/5")
        with pytest.raises(BrokerUnavailable):
            await wrong.connect()
        await wrong.close()
    finally:
        admin.acl_deluser(user)
        admin.close()


@pytest.fixture
def tls_redis() -> Iterator[tuple[RedisServer, Path]]:
    """A redis-server that speaks TLS only, with a certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the TLS test")
    root = temp_root("conveyor-redis-tls-")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server = RedisServer(root)
    server.extra = ["--port", "0", "--tls-port", str(server.port)]
    server.extra += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    server.extra += ["--tls-auth-clients", "no"]
    try:
        server.start()
        yield server, cert
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_tls(tls_redis: tuple[RedisServer, Path]) -> None:
    """rediss:// with the server's CA: jobs go in, wake a waiter and come out over TLS."""
    server, cert = tls_redis
    url = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={cert}&prefix=tls"
    broker = from_url(url)
    try:
        await broker.connect()
        await broker.consumer("w1", ["default"], 30.0).wait(
            0.05
        )  # the blocking connection speaks TLS too
        [job] = await broker.enqueue([make_job()])
        await broker.consumer("w1", ["default"], 30.0).wait(5)
        assert (await claim_one(broker, job.id)).id == job.id
    finally:
        await broker.close()


async def test_a_full_redis_refuses_enqueues_as_unavailable(durable_redis: RedisServer) -> None:
    """With maxmemory and noeviction, a full Redis refuses new jobs with BrokerUnavailable
    (the producer learns it) instead of evicting, and so losing, stored ones."""
    admin = redis.Redis(port=durable_redis.port)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", str(admin.info("memory")["used_memory"] + 1_000_000))
    broker = from_url(durable_redis.url)
    stored: list[str] = []

    async def fill() -> None:
        for _ in range(1000):
            batch = [make_job(args=["x" * 1000]) for _ in range(50)]
            stored.extend(j.id for j in await broker.enqueue(batch))

    try:
        with pytest.raises(BrokerUnavailable, match="maxmemory"):
            await fill()
        assert stored
        for job_id in stored[:: max(len(stored) // 10, 1)]:
            assert await broker.get(job_id) is not None
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()
        await broker.close()


async def test_a_cancelled_call_leaves_no_reply_for_the_next(broker: RedisBroker) -> None:
    """Calls take turns on a few connections on a single server: one cancelled between its
    command and its reply must not hand that reply to the next call on its connection."""
    (job,) = await broker.enqueue([make_job(queue="cancelled")])
    for turns in range(6):
        call = asyncio.create_task(broker.counts())
        for _ in range(turns):
            await asyncio.sleep(0)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        assert (await must_get(broker, job.id)).queue == "cancelled"
        assert (await broker.counts())["cancelled"][Status.QUEUED] == 1


async def test_calls_beyond_the_direct_connections_take_the_pool(broker: RedisBroker) -> None:
    """A few calls at once each get a direct connection of the broker; more than that go
    through redis-py's pool. Every call gets its own answer either way."""
    jobs = await broker.enqueue([make_job(queue=f"q{i}") for i in range(12)])
    for _ in range(3):
        found = await asyncio.gather(*(broker.get(j.id) for j in jobs))
        assert [f.queue if f else None for f in found] == [j.queue for j in jobs]
    assert 1 <= len(broker._direct) <= 3
    assert sorted(map(id, broker._free_direct)) == sorted(map(id, broker._direct))


async def test_a_redis_that_does_not_answer_is_unavailable_not_a_hang(
    durable_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that Redis leaves unanswered past the command time limit fails as
    BrokerUnavailable (an outage, which a worker waits out) instead of hanging; its
    connection is dropped, so the next call gets its own answer, not the late one."""
    monkeypatch.setattr("conveyor.brokers.redis._COMMAND_TIMEOUT", 0.3)
    broker = from_url(durable_redis.url)
    admin = redis.Redis(port=durable_redis.port)
    try:
        (first,) = await broker.enqueue([make_job(queue="before")])
        admin.client_pause(60_000, all=False)  # WRITE: scripts wait, unanswered
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=r"TimeoutError: no answer in 0\.3s"):
            await broker.enqueue([make_job(queue="paused")])
        assert time.monotonic() - started < 10
        admin.client_unpause()
        job = make_job(queue="after")
        (again,) = await broker.enqueue([job])
        assert (again.id, again.queue) == (job.id, "after")
        assert (await must_get(broker, first.id)).queue == "before"
    finally:
        admin.client_unpause()
        admin.close()
        await broker.close()
