"""Retry policy: backoff, explicit retries and the decision of what a failure leads to (pure)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import msgspec

from conveyor.job import Status


class Backoff(msgspec.Struct, frozen=True):
    """Exponential backoff, capped, with full jitter by default.

    The n-th retry waits ``min(max, base * factor ** (n - 1))`` seconds, or with jitter a
    uniformly random time between 0 and that (the "full jitter" of AWS's analysis, which
    spreads a thundering herd of retries best).
    """

    base: float = 1.0
    factor: float = 2.0
    max: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        finite = all(math.isfinite(v) for v in (self.base, self.factor, self.max))
        if not finite or self.base < 0 or self.max < 0 or self.factor < 1:
            raise ValueError(
                f"Backoff needs finite base >= 0, max >= 0 and factor >= 1, got {self!r}"
            )

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        exponent = max(retry - 1, 0)
        if self.base == 0:
            return 0.0
        try:
            cap = min(self.max, self.base * self.factor**exponent)
        except OverflowError:  # a huge retry count: the cap applies
            cap = self.max
        return rand() * cap if self.jitter else cap


class Retry(Exception):
    """Raise inside a task to ask for a retry, after ``delay`` seconds or the task's backoff.

    The retry still counts against the task's ``retries``; when none are left the job fails.
    """

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        if delay is not None and not (math.isfinite(delay) and delay >= 0):
            raise ValueError(f"Retry delay must be a finite number of seconds >= 0, got {delay}")
        self.delay = delay
        self.reason = reason


class Policy(msgspec.Struct, frozen=True):
    """A task's retry settings. ``retries`` counts retries after the first attempt."""

    retries: int = 0
    backoff: Backoff = Backoff()
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    no_retry_on: tuple[type[BaseException], ...] = ()


class Decision(msgspec.Struct, frozen=True):
    """What a failed attempt leads to: ``scheduled`` again after ``delay``, or ``failed``."""

    status: Status
    delay: float = 0.0


def decide(
    policy: Policy,
    attempts: int,
    max_attempts: int,
    exc: BaseException,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """Decide the outcome of attempt number ``attempts`` (1-based) that raised ``exc``."""
    if attempts >= max_attempts:
        return Decision(Status.FAILED)
    if isinstance(exc, Retry):
        delay = exc.delay if exc.delay is not None else policy.backoff.delay(attempts, rand)
        return Decision(Status.SCHEDULED, delay)
    if isinstance(exc, policy.no_retry_on) or not isinstance(exc, policy.retry_on):
        return Decision(Status.FAILED)
    return Decision(Status.SCHEDULED, policy.backoff.delay(attempts, rand))
