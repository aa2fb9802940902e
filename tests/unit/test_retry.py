"""Backoff, Retry and ``decide``: the retry policy as pure functions."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from conveyor.job import Status
from conveyor.retry import Backoff, Decision, Policy, Retry, decide


def half() -> float:
    """A deterministic stand-in for ``random.random``."""
    return 0.5


def const(r: float) -> Callable[[], float]:
    """A ``random.random`` stand-in that always answers ``r``."""
    return lambda: r


def test_backoff_is_exponential_without_jitter() -> None:
    """Retry n waits base * factor ** (n - 1)."""
    b = Backoff(base=1.0, factor=2.0, max=1000.0, jitter=False)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert Backoff(base=0.5, factor=3.0, jitter=False).delay(3) == 4.5


def test_backoff_is_capped() -> None:
    """No wait exceeds ``max``, however many retries came before."""
    b = Backoff(base=1.0, factor=2.0, max=10.0, jitter=False)
    assert b.delay(4) == 8.0
    assert b.delay(5) == 10.0
    assert b.delay(1_000_000) == 10.0


def test_backoff_with_a_steep_factor_does_not_overflow() -> None:
    """factor ** retries past the float range gives the cap, not an OverflowError."""
    assert Backoff(base=1.0, factor=10.0, max=60.0, jitter=False).delay(10_000) == 60.0
    assert Backoff(base=0.0, factor=10.0, jitter=False).delay(10_000) == 0.0


def test_backoff_retry_zero_or_less_waits_the_base() -> None:
    """A retry number below 1 is treated as the first retry."""
    b = Backoff(base=2.0, factor=3.0, jitter=False)
    assert b.delay(0) == b.delay(1) == 2.0


def test_full_jitter_scales_the_capped_wait_by_rand() -> None:
    """With jitter the wait is rand() * min(max, base * factor ** (n - 1))."""
    b = Backoff(base=1.0, factor=2.0, max=10.0, jitter=True)
    assert b.delay(3, rand=half) == 2.0
    assert b.delay(50, rand=half) == 5.0
    assert b.delay(50, rand=const(0.0)) == 0.0
    assert b.delay(50, rand=const(1.0)) == 10.0


def test_full_jitter_stays_within_the_cap() -> None:
    """For rand() in [0, 1), every wait is in [0, cap) at every retry number."""
    b = Backoff(base=0.1, factor=2.0, max=3.0, jitter=True)
    for n in range(1, 40):
        cap = min(3.0, 0.1 * 2.0 ** (n - 1))
        for r in (0.0, 0.25, 0.999_999):
            assert 0.0 <= b.delay(n, rand=const(r)) < cap


def test_jitter_is_on_by_default() -> None:
    """The default Backoff uses full jitter, base 1 s, factor 2, max 300 s."""
    b = Backoff()
    assert (b.base, b.factor, b.max, b.jitter) == (1.0, 2.0, 300.0, True)
    assert b.delay(20, rand=half) == 150.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": -1.0},
        {"max": -0.5},
        {"factor": 0.5},
        {"base": math.nan},
        {"factor": math.nan},
        {"max": math.nan},
        {"base": math.inf},
        {"max": math.inf},
    ],
)
def test_backoff_refuses_bad_settings(kwargs: dict[str, float]) -> None:
    """Negative, shrinking, NaN or infinite settings are a ValueError naming the rule."""
    with pytest.raises(ValueError, match="Backoff needs"):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_retry_carries_delay_and_reason() -> None:
    """Retry keeps its delay and reason; its message is the reason or a default."""
    assert Retry().delay is None
    assert str(Retry()) == "retry requested"
    r = Retry(delay=2.5, reason="rate limited")
    assert (r.delay, r.reason, str(r)) == (2.5, "rate limited", "rate limited")


@pytest.mark.parametrize("delay", [-1.0, math.nan, math.inf])
def test_retry_refuses_a_bad_delay(delay: float) -> None:
    """A negative, NaN or infinite delay is refused when the Retry is made."""
    with pytest.raises(ValueError, match="Retry delay"):
        Retry(delay=delay)


POLICY = Policy(retries=3, backoff=Backoff(base=1.0, factor=2.0, max=100.0, jitter=False))


def test_decide_retries_while_attempts_are_left() -> None:
    """A failed attempt with attempts left is scheduled again after the backoff."""
    exc = ValueError("boom")
    assert decide(POLICY, 1, 4, exc) == Decision(Status.SCHEDULED, 1.0)
    assert decide(POLICY, 2, 4, exc) == Decision(Status.SCHEDULED, 2.0)
    assert decide(POLICY, 3, 4, exc) == Decision(Status.SCHEDULED, 4.0)


def test_decide_fails_when_no_attempts_are_left() -> None:
    """The last attempt's failure fails the job (the dead-letter queue)."""
    assert decide(POLICY, 4, 4, ValueError()) == Decision(Status.FAILED)
    assert decide(POLICY, 1, 1, ValueError()) == Decision(Status.FAILED)
    assert decide(POLICY, 5, 4, ValueError()) == Decision(Status.FAILED)


def test_decide_passes_rand_to_the_backoff() -> None:
    """The injected rand reaches the jittered backoff."""
    policy = Policy(retries=2, backoff=Backoff(base=4.0, jitter=True))
    assert decide(policy, 1, 3, ValueError(), rand=half) == Decision(Status.SCHEDULED, 2.0)


def test_retry_without_delay_uses_the_backoff() -> None:
    """``raise Retry()`` waits what the task's backoff says."""
    assert decide(POLICY, 2, 4, Retry()) == Decision(Status.SCHEDULED, 2.0)


def test_retry_with_delay_uses_that_delay() -> None:
    """``raise Retry(delay=...)`` waits exactly that long, zero included."""
    assert decide(POLICY, 1, 4, Retry(delay=7.5)) == Decision(Status.SCHEDULED, 7.5)
    assert decide(POLICY, 1, 4, Retry(delay=0)) == Decision(Status.SCHEDULED, 0.0)


def test_retry_respects_max_attempts() -> None:
    """An explicit Retry on the last attempt fails the job all the same."""
    assert decide(POLICY, 4, 4, Retry(delay=1.0)) == Decision(Status.FAILED)


def test_retry_is_honoured_whatever_retry_on_says() -> None:
    """An explicit Retry retries even when retry_on or no_retry_on would not."""
    policy = Policy(retries=1, retry_on=(KeyError,), no_retry_on=(Exception,))
    assert decide(policy, 1, 2, Retry(delay=3.0)) == Decision(Status.SCHEDULED, 3.0)


def test_retry_on_limits_what_is_retried() -> None:
    """Only exceptions listed in retry_on (or their subclasses) are retried."""
    policy = Policy(retries=3, backoff=Backoff(jitter=False), retry_on=(OSError,))
    assert decide(policy, 1, 4, ConnectionError()).status is Status.SCHEDULED
    assert decide(policy, 1, 4, OSError()).status is Status.SCHEDULED
    assert decide(policy, 1, 4, ValueError()) == Decision(Status.FAILED)


def test_no_retry_on_wins_over_retry_on() -> None:
    """An exception in no_retry_on fails the job at once even if retry_on covers it."""
    policy = Policy(retries=3, retry_on=(Exception,), no_retry_on=(KeyError,))
    assert decide(policy, 1, 4, KeyError("k")) == Decision(Status.FAILED)
    assert decide(policy, 1, 4, IndexError()).status is Status.SCHEDULED


def test_base_exceptions_are_not_retried_by_default() -> None:
    """SystemExit or KeyboardInterrupt from a task is not an Exception: no retry."""
    assert decide(POLICY, 1, 4, SystemExit(1)) == Decision(Status.FAILED)
    assert decide(POLICY, 1, 4, KeyboardInterrupt()) == Decision(Status.FAILED)
