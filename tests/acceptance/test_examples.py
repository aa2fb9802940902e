"""The examples the README shows run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_demo_runs_jobs_that_succeed_retry_and_fail(tmp_path: Path) -> None:
    """`make demo`'s script: a worker on SQLite, jobs succeeding, retrying and failing."""
    env = {**os.environ, "CONVEYOR_DEMO_DIR": str(tmp_path), "CONVEYOR_DEMO_EXIT": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "20 jobs succeeded" in out
    assert "failed for good: FileNotFoundError" in out
    assert "examples.tasks.import_report" in out  # in `conveyor failed list`
    assert "Traceback" not in out
