"""Run the real ``conveyor`` command as subprocesses against an SQLite file in a temp dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]

TASKS = textwrap.dedent(
    '''
    """Tasks the acceptance tests run; they talk back through files in MARKS."""
    import asyncio
    import os
    import pathlib
    import time

    import conveyor

    app = conveyor.Conveyor()
    MARKS = pathlib.Path(os.environ["MARKS"])
    if os.environ.get("SLOW_IMPORT"):  # a large app still loading
        (MARKS / "importing").write_text("")
        time.sleep(float(os.environ["SLOW_IMPORT"]))


    @app.task
    def add(x: int, y: int) -> int:
        return x + y


    @app.task(retries=3)
    async def hold(name: str, seconds: float) -> str:
        """Say it started, then hold for `seconds` -- unless an earlier attempt started."""
        first = not (MARKS / f"{name}.started").exists()
        (MARKS / f"{name}.started").write_text(str(os.getpid()))
        if first:
            await asyncio.sleep(seconds)
        (MARKS / f"{name}.done").write_text(str(os.getpid()))
        return f"{name} by {os.getpid()}"


    @app.task
    async def sleepy(name: str, seconds: float) -> str:
        (MARKS / f"{name}.started").write_text(str(os.getpid()))
        await asyncio.sleep(seconds)
        return name


    @app.task(retries=0)
    async def brief(n: int, seconds: float = 0.005) -> int:
        """A few milliseconds of work: the SIGKILL storm's jobs."""
        await asyncio.sleep(seconds)
        return n


    @app.task(retries=0)
    async def pill() -> None:
        """Kills the worker process that runs it, every time: a poison pill."""
        os._exit(1)


    @app.task
    def boom(message: str) -> None:
        raise ValueError(message)


    @app.task(timeout=0.3)
    def stuck(name: str, seconds: float) -> None:
        """A sync task stuck in C past its timeout: no bytecode runs to take the interrupt."""
        (MARKS / f"{name}.started").write_text(str(os.getpid()))
        time.sleep(seconds)


    @app.task
    async def blocker(name: str, seconds: float) -> str:
        """An async task that blocks its worker's event loop (the mistake it must survive)."""
        (MARKS / f"{name}.started").write_text(str(os.getpid()))
        time.sleep(seconds)
        return f"{name} by {os.getpid()}"


    if os.environ.get("SIGTERM_AT_EXIT"):
        import atexit
        import signal

        @atexit.register
        def sigterm_at_exit() -> None:
            """What a SIGTERM would do during the rest of the interpreter's teardown."""
            ignored = signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
            (MARKS / "sigterm-at-exit").write_text("ignored" if ignored else "not ignored")
    '''
)


class Env:
    """A temp dir with a tasks module, an SQLite broker URL and helpers to run the CLI."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marks = root / "marks"
        self.marks.mkdir()
        (root / "acc_tasks.py").write_text(TASKS)
        self.url = f"sqlite:///{root / 'conveyor.db'}"
        self.env = {
            **os.environ,
            "CONVEYOR_URL": self.url,
            "CONVEYOR_APP": "acc_tasks:app",
            "MARKS": str(self.marks),
            # This checkout's conveyor, not whichever one the venv has installed.
            "PYTHONPATH": os.pathsep.join([str(root), str(CHECKOUT)]),
        }
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []

    def cli(
        self, *args: str, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``conveyor ARGS`` to completion (in the temp dir, or ``cwd``)."""
        done = subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            env=self.env, cwd=cwd or self.root, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"conveyor {args} exited {done.returncode}: {done.stderr}")
        return done

    def worker(self, *args: str) -> subprocess.Popen[str]:
        """Start ``conveyor worker acc_tasks:app ARGS`` with its log in a file."""
        log = self.root / f"worker{len(self.procs)}.log"
        self.logs.append(log)
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "worker", "acc_tasks:app", *args],
                env=self.env, cwd=self.root, text=True, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def log(self, index: int = -1) -> str:
        """The output of a worker started by :meth:`worker`."""
        return self.logs[index].read_text()

    def job(self, job_id: str) -> dict[str, object]:
        """One job as ``conveyor job ID --json`` prints it."""
        import json

        data: dict[str, object] = json.loads(self.cli("job", job_id, "--json").stdout)
        return data

    def enqueue(self, name: str, *args: str) -> str:
        """Enqueue through the CLI; returns the job id."""
        return self.cli("enqueue", name, *args).stdout.strip()

    def cleanup(self) -> None:
        """Kill whatever is still running."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()


def run_past_a_damaged_job(env: Env, ids: list[str], bad: str) -> list[dict[str, object]]:
    """Run a burst worker over ``ids``, of which ``bad`` is damaged in the store: it fails
    alone with a decode error, the others succeed, and the listings show it. Returns
    ``failed list --json``."""
    worker = env.worker("--burst")
    assert worker.wait(timeout=60) == 0
    statuses = [env.job(i)["status"] for i in ids]
    assert statuses == ["failed" if i == bad else "succeeded" for i in ids]
    for command in (["jobs", "--status", "failed"], ["failed", "list"]):
        listed = env.cli(*command).stdout
        assert bad in listed
        assert "conveyor.DecodeError" in listed
    failed: list[dict[str, object]] = json.loads(env.cli("failed", "list", "--json").stdout)
    assert [j["id"] for j in failed] == [bad]
    return failed


def eventually(predicate: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``predicate`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """A fresh broker, tasks module and process list; kills leftovers afterwards."""
    e = Env(tmp_path)
    yield e
    e.cleanup()
