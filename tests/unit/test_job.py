"""Statuses, the lifecycle's allowed transitions and job ids."""

from __future__ import annotations

import itertools
import threading

import pytest

from conveyor.job import (
    FINISHED,
    PENDING,
    TRANSITIONS,
    UNFINISHED,
    JobRecord,
    Status,
    can_move,
    initial_status,
    new_id,
)

S = Status

# The lifecycle diagram of DESIGN.md, edge by edge.
DESIGN_EDGES = {
    (S.SCHEDULED, S.QUEUED),  # eta reached
    (S.QUEUED, S.RUNNING),  # claimed
    (S.RUNNING, S.SUCCEEDED),  # returns
    (S.RUNNING, S.SCHEDULED),  # raises, attempts left (eta = backoff)
    (S.RUNNING, S.FAILED),  # raises, none left; or lease expired with none left
    (S.RUNNING, S.QUEUED),  # lease expired (worker died); or handed back at shutdown
    (S.SCHEDULED, S.CANCELLED),
    (S.QUEUED, S.CANCELLED),
    (S.RUNNING, S.CANCELLED),
    (S.FAILED, S.QUEUED),  # redriven from the dead-letter queue
    # claim(): "make due scheduled jobs queued; take up to limit" in one atomic step, so a
    # due scheduled job goes scheduled -> queued -> running without being seen as queued.
    (S.SCHEDULED, S.RUNNING),
}


def test_status_values_are_the_documented_strings() -> None:
    """Status is a str enum with the six names of DESIGN.md."""
    assert [s.value for s in Status] == [
        "scheduled",
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ]
    assert Status("queued") is Status.QUEUED
    assert isinstance(Status.FAILED, str)
    assert str(Status.FAILED) == "failed"


def test_finished_pending_and_unfinished_partition_the_statuses() -> None:
    """Finished, pending and running split the statuses with no overlap."""
    assert {s for s in Status if s.finished} == FINISHED == {S.SUCCEEDED, S.FAILED, S.CANCELLED}
    assert {S.SCHEDULED, S.QUEUED} == PENDING
    assert PENDING | {S.RUNNING} == UNFINISHED
    assert not FINISHED & UNFINISHED
    assert set(Status) == FINISHED | UNFINISHED


def test_transitions_table_is_the_design_lifecycle() -> None:
    """The table allows exactly the moves of the lifecycle diagram."""
    table = {(src, dst) for src, dsts in TRANSITIONS.items() for dst in dsts}
    assert table == DESIGN_EDGES
    assert set(TRANSITIONS) == set(Status)


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(Status, Status)))
def test_can_move_follows_the_table(src: Status, dst: Status) -> None:
    """can_move answers True for the design's edges and False for every other pair."""
    assert can_move(src, dst) is ((src, dst) in DESIGN_EDGES)


def test_finished_jobs_only_move_by_redrive() -> None:
    """Succeeded and cancelled are final; failed can only be redriven to queued."""
    for src in (S.SUCCEEDED, S.CANCELLED):
        assert not any(can_move(src, dst) for dst in Status)
    assert [dst for dst in Status if can_move(S.FAILED, dst)] == [S.QUEUED]


def test_no_status_moves_to_itself() -> None:
    """A transition always changes the status."""
    assert not any(can_move(s, s) for s in Status)


def test_initial_status_depends_on_the_eta() -> None:
    """A job due later starts scheduled, one due now or earlier starts queued."""
    assert initial_status(eta=101.0, now=100.0) is S.SCHEDULED
    assert initial_status(eta=100.0, now=100.0) is S.QUEUED
    assert initial_status(eta=0.0, now=100.0) is S.QUEUED


def test_job_record_defaults() -> None:
    """A bare record is a queued job of the default queue with one attempt allowed."""
    r = JobRecord(id="x", task="t")
    assert (r.queue, r.status, r.priority, r.attempts, r.max_attempts) == (
        "default",
        S.QUEUED,
        0,
        0,
        1,
    )
    assert (r.args, r.kwargs, r.key, r.error, r.token) == ([], {}, None, None, 0)


def test_new_id_is_26_lowercase_hex_digits() -> None:
    """An id is 26 characters of lowercase hex."""
    job_id = new_id()
    assert len(job_id) == 26
    assert set(job_id) <= set("0123456789abcdef")


def test_new_ids_strictly_increase_within_a_process() -> None:
    """Ids made one after another sort in the order they were made, even in a tight loop."""
    ids = [new_id() for _ in range(10_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))


def test_new_ids_are_unique_across_threads() -> None:
    """Ids made at once by several threads never collide."""
    made: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(new_id() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for out in made for i in out]
    assert len(set(everything)) == len(everything) == 20_000
    for out in made:
        assert out == sorted(out)
