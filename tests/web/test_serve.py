"""`conveyor serve` as a real process beside real worker processes: the metrics add up what
every worker process did, and the server stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

pytestmark = pytest.mark.slow

TASKS = textwrap.dedent(
    """
    import conveyor

    app = conveyor.Conveyor()


    @app.task
    def add(x: int, y: int) -> int:
        return x + y
    """
)


def _until(check: object, what: str, timeout: float = 30.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    pause = 0.01
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by the test; killed if still running at the end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_sums_the_metrics_of_every_worker_process(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """Two worker processes on two queues; /metrics and /api/stats count both."""
    (tmp_path / "web_tasks.py").write_text(TASKS)
    env = {
        **os.environ,
        "CONVEYOR_URL": f"sqlite:///{tmp_path / 'c.db'}",
        # This checkout's conveyor, not whichever one the venv has installed.
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[2])]),
    }
    env.pop("CONVEYOR_API_TOKEN", None)
    port = free_port()
    with (tmp_path / "serve.log").open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "serve", "web_tasks:app", "--port", str(port)],
            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    procs.append(server)
    for queue in ["a", "b"]:
        worker = [sys.executable, "-m", "conveyor", "worker", "web_tasks:app", "-Q", queue]
        procs.append(
            subprocess.Popen(
                [*worker, "--lease", "0.6"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(base + "/healthz").status_code in (200, 503)
        except httpx.HTTPError:
            return False

    _until(up, "the server to answer")
    assert f"dashboard at http://127.0.0.1:{port}/" in (tmp_path / "serve.log").read_text()
    with httpx.Client(base_url=base) as http:
        for i in range(8):
            body = {"task": "web_tasks.add", "args": [i, i], "queue": "ab"[i % 2]}
            assert http.post("/api/jobs", json=body).status_code == 202

        def counted() -> bool:
            text = http.get("/metrics").text
            done = re.findall(
                r'conveyor_jobs_total\{queue="(a|b)",.*outcome="succeeded"\} (\d+)', text
            )
            return sorted(done) == [("a", "4"), ("b", "4")]

        _until(counted, "both worker processes' counters in /metrics")
        workers = http.get("/api/workers").json()["workers"]
        assert sorted(w["queues"][0] for w in workers) == ["a", "b"]
        assert len({w["pid"] for w in workers}) == 2
        assert http.get("/healthz").json() == {"status": "ok", "problems": []}
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
