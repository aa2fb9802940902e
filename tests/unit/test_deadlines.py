"""The time limit on calls to a server: one timer for every call in flight, with the
semantics of ``asyncio.timeout`` for each call."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.brokers.deadlines import Deadlines


async def test_a_call_over_its_limit_raises_timeout_error() -> None:
    limits = Deadlines(0.05)
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError, match=r"no answer in 0\.05s"):
        await limits.run(asyncio.sleep(30))
    assert asyncio.get_running_loop().time() - started < 10
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_a_call_within_its_limit_returns_and_is_not_cancelled_later() -> None:
    limits = Deadlines(0.05)
    assert await limits.run(asyncio.sleep(0, result="answer")) == "answer"
    await asyncio.sleep(0.15)  # past the limit of the call above: its timer fires meanwhile
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_each_call_ends_at_its_own_limit() -> None:
    """The timer armed for the first call finds the second one not yet over: it is
    re-armed for it, and cancels nothing else."""
    limits = Deadlines(0.4)
    loop = asyncio.get_running_loop()
    first = asyncio.create_task(limits.run(asyncio.sleep(30)))
    await asyncio.sleep(0.2)  # (a stall of the machine under 0.2 s cannot end both at once)
    second_started = loop.time()
    second = asyncio.create_task(limits.run(asyncio.sleep(30)))
    quick = asyncio.create_task(limits.run(asyncio.sleep(0.05, result="quick")))
    with pytest.raises(TimeoutError):
        await first
    assert not second.done()
    assert await quick == "quick"
    with pytest.raises(TimeoutError):
        await second
    assert loop.time() - second_started >= 0.39


async def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    limits = Deadlines(30)
    call = asyncio.create_task(limits.run(asyncio.sleep(30)))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_a_call_with_a_shorter_limit_ends_at_it() -> None:
    """A limit of its own (a blocked wait that must end at a job's eta) earlier than the
    timer's: the timer is brought forward, and the slower call is left alone."""
    limits = Deadlines(30)
    slow = asyncio.create_task(limits.run(asyncio.sleep(60)))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError, match=r"no answer in 0\.05s"):
        await limits.run(asyncio.sleep(30), 0.05)
    assert 0.04 <= loop.time() - started < 10  # (uvloop keeps time in ms); not at the slow limit
    assert not slow.done()
    slow.cancel()


def test_it_moves_from_one_event_loop_to_the_next() -> None:
    """A broker used by one test's loop and then the next: its limits hold on each."""
    limits = Deadlines(0.05)

    async def over() -> None:
        with pytest.raises(TimeoutError):
            await limits.run(asyncio.sleep(30))

    async def within() -> None:
        assert await limits.run(asyncio.sleep(0, result=1)) == 1

    asyncio.run(within())  # leaves a timer armed on a loop that then closes
    asyncio.run(over())
    asyncio.run(over())


def test_outside_a_task_the_call_just_runs() -> None:
    """Stepped by hand from a loop's callback: there is no task to cancel, and no limit."""
    limits = Deadlines(0.05)

    async def answer() -> str:
        return "ran"

    loop = asyncio.new_event_loop()
    result: list[str] = []

    def step() -> None:
        coro = limits.run(answer())
        try:
            coro.send(None)
        except StopIteration as stop:
            result.append(stop.value)
        loop.stop()

    try:
        loop.call_soon(step)
        loop.run_forever()
    finally:
        loop.close()
    assert result == ["ran"]


def test_a_limit_ends_at_the_first_timer_under_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvloop counts time in ms and may run the timer a fraction of a ms before a limit by
    its clock: the call ends then, instead of re-arming the timer until the clock catches
    up (a busy loop of about 250 turns per limit, before this was fixed)."""
    uvloop = pytest.importorskip("uvloop")
    checks = 0
    check = Deadlines._check

    def counted(self: Deadlines, loop: asyncio.AbstractEventLoop) -> None:
        nonlocal checks
        checks += 1
        check(self, loop)

    monkeypatch.setattr(Deadlines, "_check", counted)

    async def main() -> None:
        limits = Deadlines(0.0104)  # not a whole number of ms
        for _ in range(5):
            with pytest.raises(TimeoutError):
                await limits.run(asyncio.sleep(30))

    uvloop.run(main())
    assert checks == 5
