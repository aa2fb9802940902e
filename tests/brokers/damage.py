"""Planting damaged records in a broker's store from outside, as a bug, a hand edit or
another program could leave them: one hook per kind of broker, written against the store's
layout (SQLite and PostgreSQL columns, Redis keys) and not through the broker."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pytest

from conveyor.brokers import Broker
from conveyor.brokers.sqlite import SQLiteBroker
from conveyor.job import JobRecord

NOT_JSON = "not json {"

DAMAGE: dict[str, tuple[str, str]] = {
    "args-not-json": ("args", NOT_JSON),
    "args-an-object": ("args", '{"x": 1}'),
    "kwargs-an-array": ("kwargs", "[1, 2]"),
    "args-null": ("args", "null"),
}
"""Each kind of damage: the field it spoils and the stored text put in its place."""


async def plant(broker: Broker, job: JobRecord, kind: str) -> None:
    """Spoil the stored record of ``job`` (enqueued, not yet claimed) with ``kind`` of
    :data:`DAMAGE`; skip the test on a store that cannot hold that damage."""
    field, text = DAMAGE[kind]
    scheme = urlsplit(broker.url).scheme
    hooks: dict[str, Callable[[Broker, JobRecord, str, str], Any]] = {
        "sqlite": _plant_sqlite,
        "postgresql": _plant_postgres,
        "postgres": _plant_postgres,
        "redis": _plant_redis,
    }
    hook = hooks.get(scheme)
    if hook is None:
        pytest.skip(f"the {scheme} broker keeps objects, not encoded records: nothing to spoil")
    await hook(broker, job, field, text)


async def _plant_sqlite(broker: Broker, job: JobRecord, field: str, text: str) -> None:
    assert isinstance(broker, SQLiteBroker)
    conn = sqlite3.connect(broker.path, isolation_level=None)
    try:
        # The column name comes from DAMAGE, never from input.
        changed = conn.execute(f"UPDATE jobs SET {field} = ? WHERE id = ?", (text, job.id)).rowcount
    finally:
        conn.close()
    assert changed == 1


async def _plant_postgres(broker: Broker, job: JobRecord, field: str, text: str) -> None:
    import psycopg

    if text == NOT_JSON:
        pytest.skip("PostgreSQL's json columns refuse malformed text: it cannot be stored")
    parts = urlsplit(broker.url)
    schema = dict(parse_qsl(parts.query)).get("schema", "conveyor")
    dsn = urlunsplit(parts._replace(query=""))
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            f'UPDATE "{schema}".jobs SET {field} = %s::json WHERE id = %s',
            (text, job.id),
        )
        assert cursor.rowcount == 1


async def _plant_redis(broker: Broker, job: JobRecord, field: str, text: str) -> None:
    # The job's immutable fields (args and kwargs among them) are one JSON string at
    # {prefix:queue}:p:<id> (see lua/lib.lua).
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    parts = urlsplit(broker.url)
    prefix = dict(parse_qsl(parts.query)).get("prefix", "conveyor")
    base = urlunsplit(parts._replace(query=""))
    plain = Redis.from_url(base)
    try:
        clustered = (await plain.info("cluster")).get("cluster_enabled") == 1
    finally:
        await plain.aclose()
    client: Any = RedisCluster.from_url(base) if clustered else Redis.from_url(base)
    key = "{" + prefix + ":" + job.queue + "}:p:" + job.id
    try:
        stored = await client.get(key)
        assert stored is not None, f"no payload at {key}"
        if text == NOT_JSON:
            damaged = text
        else:
            payload = json.loads(stored)
            payload[field] = json.loads(text)
            damaged = json.dumps(payload)
        await client.set(key, damaged)
    finally:
        await client.aclose()
