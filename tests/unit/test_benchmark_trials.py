"""How the benchmark turns the trials of a workload into the one figure it reports."""

from __future__ import annotations

from typing import Any

from benchmarks.harness import another_trial, combine, delay_stats
from benchmarks.report import COLUMNS, cell


def batch(rate: float, cpu: float = 40.0) -> dict[str, Any]:
    """A complete drain trial."""
    return {"jobs": 100, "done": 100, "complete": True, "jobs_per_s": rate, "cpu_us_per_job": cpu}


def test_a_batch_reports_its_median_trial_whole() -> None:
    out = combine("drain", [batch(300, cpu=30), batch(100, cpu=10), batch(200, cpu=20)])
    assert (out["jobs_per_s"], out["cpu_us_per_job"]) == (200, 20)  # one trial's figures
    assert out["trials"] == 3
    assert out["trial_jobs_per_s"] == [300, 100, 200]  # in the order they ran


def test_of_two_trials_the_slower_is_reported() -> None:
    assert combine("io", [batch(300), batch(100)])["jobs_per_s"] == 100


def test_a_failed_or_incomplete_last_trial_is_the_result() -> None:
    incomplete = {"jobs": 100, "done": 40, "complete": False}
    out = combine("drain", [batch(300), incomplete])
    assert (out["done"], out["complete"], out["trials"]) == (40, False, 2)
    assert combine("drain", [{"error": "the workers exited"}]) == {
        "error": "the workers exited",
        "trials": 1,
    }


def test_latency_pools_the_jobs_of_every_trial() -> None:
    fast = [0.5] * 99 + [1.0]
    slow = [0.7] * 99 + [9.0]
    trials = [
        {"jobs": 100, "done": 100, "complete": True, "cpu_us_per_job": 100.0, "delays_ms": d}
        | delay_stats(d)
        for d in (fast, slow)
    ]
    out = combine("latency", trials)
    assert out == out | delay_stats(fast + slow)
    assert (out["jobs"], out["done"], out["cpu_us_per_job"], out["trials"]) == (200, 200, 100, 2)
    assert out["trial_p99_ms"] == [trials[0]["p99_ms"], trials[1]["p99_ms"]]
    assert "delays_ms" not in out  # the raw delays stay out of the results file


def test_delay_stats_need_two_delays() -> None:
    assert delay_stats([1.0]) == {}
    assert delay_stats([1.0, 3.0])["p50_ms"] == 2.0


def test_a_workload_gets_trials_while_they_fit_the_budget() -> None:
    assert another_trial([], most=3, budget=30.0)
    assert another_trial([batch(100) | {"trial_s": 9.0}], most=3, budget=30.0)
    two = [batch(100) | {"trial_s": 9.0}, batch(100) | {"trial_s": 12.0}]
    assert not another_trial(two, most=3, budget=30.0)  # 21 s + another 12 s is over
    assert another_trial(two, most=3, budget=33.0)
    assert not another_trial([batch(100) | {"trial_s": 1.0}] * 3, most=3, budget=30.0)


def test_no_trial_follows_a_failed_or_incomplete_one() -> None:
    assert not another_trial([{"error": "the workers exited", "trial_s": 1.0}], 3, 30.0)
    incomplete = {"jobs": 100, "done": 40, "complete": False, "trial_s": 1.0}
    assert not another_trial([incomplete], 3, 30.0)


def test_a_failed_system_shows_error_only_in_the_workloads_asked_for() -> None:
    failed: dict[str, Any] = {"name": "x", "error": "round 2: boom", "workloads": ["latency"]}
    failed["latency"] = combine("latency", [{"error": "the workers exited"}])
    cells = {c.workload: cell(failed, c, None) for c in COLUMNS}
    assert cells == {"drain": "-", "latency": "error", "io": "-"}
    del failed["latency"]  # it failed before its first trial ended
    assert cell(failed, COLUMNS[2], None) == "error"
    del failed["workloads"]  # a results file from before the field: every workload was asked
    assert {cell(failed, c, None) for c in COLUMNS} == {"error"}
