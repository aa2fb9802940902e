"""The plumbing brokers share (brokers/common.py) and the store consumer's own state."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from conveyor.brokers import from_url
from conveyor.brokers.base import HeartbeatReply, Lease, Outcome, WorkerInfo
from conveyor.brokers.common import (
    ForkGuard,
    Waiters,
    first_outcomes,
    heartbeat_reply,
    redact,
    refused_ids,
    split_url,
    whole_number,
)
from conveyor.brokers.session import StoreConsumer
from conveyor.errors import ConfigurationError
from conveyor.job import JobRecord, Status


def _out(job_id: str, token: int) -> Outcome:
    return Outcome(id=job_id, token=token, status=Status.SUCCEEDED, finished_at=1.0)


def test_redact_hides_the_password_only() -> None:
    """The password becomes ***; a URL without one is unchanged."""
    assert redact("postgresql://u:secret@h:5432/db?x=1") == "postgresql://u:***@h:5432/db?x=1"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_each_broker_says_where_it_is_without_a_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """location: an SQLite file's absolute path (a relative URL resolved where the process
    runs), a server's URL without its password, and memory for memory://."""
    monkeypatch.chdir(tmp_path)
    assert from_url("sqlite:///conveyor.db").location == str(tmp_path.resolve() / "conveyor.db")
    assert from_url("memory://").location == "memory"
    assert from_url("redis://:pw@h:6379/0?prefix=p").location == "redis://:***@h:6379/0?prefix=p"
    assert from_url("postgresql://u:pw@h/db").location == "postgresql://u:***@h/db"


def test_split_url_refuses_another_scheme_without_the_password() -> None:
    """The message names the broker and the example, never the password."""
    with pytest.raises(ConfigurationError, match=r"not a Redis URL.*\*\*\*.*redis://") as info:
        split_url("http://u:pw@h", ("redis",), name="Redis", example="redis://host")
    assert "pw" not in str(info.value)
    parts, options = split_url("redis://h?a=1&a=2&b=", ("redis",), name="Redis", example="")
    assert (parts.hostname, options) == ("h", [("a", "1"), ("a", "2"), ("b", "")])


def test_whole_number() -> None:
    """A whole number at least the minimum, or a message that names the option."""
    assert whole_number("u", "pool_size", "4", minimum=1) == 4
    for bad in ("0", "-1", "x", ""):
        with pytest.raises(ConfigurationError, match="pool_size"):
            whole_number("u", "pool_size", bad, minimum=1)


def test_a_repeated_outcome_is_sent_once_and_refused_once() -> None:
    """The first of two outcomes with one (id, token) is applied; the repeat is refused."""
    outcomes = [_out("a", 1), _out("a", 1), _out("b", 1), _out("c", 2)]
    assert first_outcomes(outcomes) == [outcomes[0], outcomes[2], outcomes[3]]
    assert refused_ids(outcomes, [("a", 1), ("c", 2)]) == ["a", "b"]


def test_heartbeat_reply() -> None:
    """Lost: not held under that token; cancel: held and asked to cancel."""
    leases = [Lease("a", 1), Lease("b", 1), Lease("c", 1)]
    reply = heartbeat_reply(leases, {("a", 1): False, ("b", 2): False, ("c", 1): True})
    assert reply == HeartbeatReply(lost=["b"], cancel=["c"])


def test_the_fork_guard_tells_a_child_once_it_abandons() -> None:
    """Not forked in the process that made it; after a (simulated) fork, until abandon()."""
    guard = ForkGuard()
    assert not guard.forked
    guard._pid = -1  # as the parent's pid looks from a child
    assert guard.forked
    guard.abandon(object())
    assert not guard.forked


async def test_waiters_wake_a_wait_on_another_loop_and_thread() -> None:
    """A notify from this loop wakes a waiter on another thread's loop for the same queue,
    and not one that waits for other queues."""
    waiters = Waiters()
    ready, done = threading.Event(), threading.Event()
    woken: list[str] = []

    async def wait(queue: str) -> None:
        with waiters.waiting([queue]) as waiter:
            ready.set()
            try:
                async with asyncio.timeout(10):
                    await waiter.event.wait()
                woken.append(queue)
            except TimeoutError:
                pass

    def other_thread() -> None:
        asyncio.run(wait("emails"))
        done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    await asyncio.to_thread(ready.wait, 10)
    with waiters.waiting(["reports"]) as mine:
        waiters.notify({"emails"})
        await asyncio.to_thread(done.wait, 10)
        assert not mine.event.is_set()
    thread.join()
    assert woken == ["emails"]


class _Store:
    """Steps whose claims run "elsewhere": each returns a future the test completes."""

    def __init__(self) -> None:
        self.claims: list[asyncio.Future[list[JobRecord]]] = []
        self.handed_back: list[Lease] = []
        self.waits = 0

    def claim_for(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float
    ) -> asyncio.Future[list[JobRecord]]:
        self.claims.append(asyncio.get_running_loop().create_future())
        return self.claims[-1]

    async def wait_for(self, queues: Sequence[str], timeout: float) -> None:
        self.waits += 1

    async def extend(
        self, worker: WorkerInfo, leases: Sequence[Lease], lease: float, now: float
    ) -> HeartbeatReply:
        return HeartbeatReply()

    async def record(self, outcomes: Sequence[Outcome]) -> list[str]:
        return []

    async def hand_back(self, leases: Sequence[Lease], now: float, delay: float = 0.0) -> None:
        self.handed_back.extend(leases)


def _running(job_id: str, lease_until: float) -> JobRecord:
    return JobRecord(id=job_id, task="t", status=Status.RUNNING, token=1, lease_until=lease_until)


async def _abandon_a_claim(store: _Store, consumer: StoreConsumer, jobs: list[JobRecord]) -> None:
    claiming = asyncio.create_task(consumer.claim(10, 0.0))
    await asyncio.sleep(0)  # the claim goes out
    claiming.cancel()
    await asyncio.gather(claiming, return_exceptions=True)
    assert claiming.cancelled()
    store.claims[-1].set_result(jobs)


async def test_the_next_claims_return_an_abandoned_claims_jobs_within_their_limit() -> None:
    """Up to ``limit`` per claim, without a claim of the store while some are held; a job
    whose lease has passed is dropped (the store recovers it); wait returns at once."""
    store = _Store()
    consumer = StoreConsumer(store, "w1", ["default"], 30.0)
    jobs = [_running("a", 100.0), _running("b", 100.0), _running("c", 5.0)]
    await _abandon_a_claim(store, consumer, jobs)
    assert [j.id for j in await consumer.claim(1, 10.0)] == ["a"]
    await consumer.wait(60.0)
    assert store.waits == 0
    assert len(store.claims) == 1
    claiming = asyncio.create_task(consumer.claim(5, 10.0))
    await asyncio.sleep(0)
    store.claims[-1].set_result([_running("d", 100.0)])
    assert [j.id for j in await claiming] == ["b", "d"]
    await consumer.close()
    assert store.handed_back == []


async def test_close_hands_back_an_abandoned_claims_jobs() -> None:
    """Jobs no caller received go back to the store; nothing else does."""
    store = _Store()
    consumer = StoreConsumer(store, "w1", ["default"], 30.0)
    await _abandon_a_claim(store, consumer, [_running("a", 100.0), _running("b", 100.0)])
    await consumer.close()
    assert store.handed_back == [Lease("a", 1), Lease("b", 1)]
