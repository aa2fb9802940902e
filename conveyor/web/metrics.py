"""``GET /metrics``: a snapshot in the Prometheus text exposition format (version 0.0.4).

Counters and histograms are the sums over every worker process (see ``monitor.py``); gauges
are read from the broker at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator

from conveyor.brokers.base import BUCKETS, TaskStats
from conveyor.job import Status
from conveyor.web.monitor import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _head(name: str, kind: str, help_text: str) -> Iterator[str]:
    yield f"# HELP {name} {help_text}"
    yield f"# TYPE {name} {kind}"


def _histogram(name: str, queue: str, task: str, counts: list[int], total: float) -> Iterator[str]:
    running = 0
    for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
        running += n
        le = "+Inf" if bound == float("inf") else repr(bound)
        yield f"{name}_bucket{_labels(queue=queue, task=task, le=le)} {running}"
    yield f"{name}_sum{_labels(queue=queue, task=task)} {_number(total)}"
    yield f"{name}_count{_labels(queue=queue, task=task)} {running}"


def _tasks(snap: Snapshot) -> list[tuple[str, str, TaskStats]]:
    width = len(BUCKETS) + 1
    return [
        (queue, task, stats)
        for queue in sorted(snap.totals)
        for task, stats in sorted(snap.totals[queue].items())
        if len(stats.run) == width and len(stats.wait) == width
    ]


def render(snap: Snapshot) -> str:
    """The exposition text of ``snap``."""
    lines: list[str] = []
    add = lines.append
    lines += _head("conveyor_broker_up", "gauge", "1 when the broker answered this scrape.")
    add("conveyor_broker_up 1")

    lines += _head("conveyor_queue_jobs", "gauge", "Jobs in the broker per queue and status.")
    for queue in sorted(snap.counts):
        for status in Status:
            n = snap.counts[queue].get(status, 0)
            add(f"conveyor_queue_jobs{_labels(queue=queue, status=status.value)} {n}")

    lines += _head("conveyor_queue_paused", "gauge", "1 when the queue is paused.")
    for queue in snap.queue_names():
        add(f"conveyor_queue_paused{_labels(queue=queue)} {int(queue in snap.paused)}")

    live = snap.live_workers()
    running = sum(per.get(Status.RUNNING, 0) for per in snap.counts.values())
    lines += _head("conveyor_jobs_running", "gauge", "Jobs running now.")
    add(f"conveyor_jobs_running {running}")
    lines += _head("conveyor_workers", "gauge", "Live workers (heartbeat within their lease).")
    add(f"conveyor_workers {len(live)}")
    lines += _head("conveyor_worker_slots", "gauge", "Jobs the live workers can run at once.")
    add(f"conveyor_worker_slots {sum(w.concurrency for w in live)}")

    tasks = _tasks(snap)
    lines += _head(
        "conveyor_jobs_total",
        "counter",
        "Attempts ended per queue, task and outcome (succeeded, failed for good, retried, "
        "cancelled), summed over workers.",
    )
    for queue, task, s in tasks:
        for outcome, n in (
            ("succeeded", s.succeeded),
            ("failed", s.failed),
            ("retried", s.retried),
            ("cancelled", s.cancelled),
        ):
            add(f"conveyor_jobs_total{_labels(queue=queue, task=task, outcome=outcome)} {n}")

    lines += _head("conveyor_job_run_seconds", "histogram", "How long attempts ran.")
    for queue, task, s in tasks:
        lines += _histogram("conveyor_job_run_seconds", queue, task, s.run, s.run_sum)
    lines += _head(
        "conveyor_job_wait_seconds",
        "histogram",
        "How long due jobs waited for a worker (start minus eta).",
    )
    for queue, task, s in tasks:
        lines += _histogram("conveyor_job_wait_seconds", queue, task, s.wait, s.wait_sum)
    return "\n".join(lines) + "\n"


def render_down(error: str) -> str:
    """The exposition text when the broker did not answer."""
    lines = list(_head("conveyor_broker_up", "gauge", "1 when the broker answered this scrape."))
    lines.append("conveyor_broker_up 0")
    return f"# broker unavailable: {_escape(error)}\n" + "\n".join(lines) + "\n"
