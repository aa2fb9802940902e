"""The systems the benchmark compares: one module per task queue, all with the same interface.

Every module defines ``SYSTEM``, a subclass of :class:`benchmarks.systems.base.System`. The
orchestrator (``benchmarks/run.py``) never imports a peer's module: it runs each in a
subprocess (``benchmarks/systems/driver.py``) with the Python of the venv that has the library,
so this package and ``base.py``/``driver.py`` use the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Spec:
    """One row of the table: which module runs it, on which backend, in which venv."""

    name: str
    module: str
    backend: str  # "memory", "sqlite", "redis" or "postgres"
    venv: str = ""  # "": the project venv (Conveyor); else a venv of the benchmark's own

    @property
    def peer(self) -> bool:
        """A library from PyPI, run from one of the benchmark's venvs."""
        return bool(self.venv)


CONVEYOR = "benchmarks.systems.conveyor_queue"
PEERS = "benchmarks.systems.peers"

VENVS = {"peers": "requirements-peers.txt", "redis5": "requirements-peers-redis5.txt"}

SYSTEMS: tuple[Spec, ...] = (
    Spec("conveyor-memory", CONVEYOR, "memory"),
    Spec("conveyor-sqlite", CONVEYOR, "sqlite"),
    Spec("conveyor-redis", CONVEYOR, "redis"),
    Spec("celery", f"{PEERS}.celery_queue", "redis", venv="peers"),
    Spec("rq", f"{PEERS}.rq_queue", "redis", venv="peers"),
    Spec("dramatiq", f"{PEERS}.dramatiq_queue", "redis", venv="peers"),
    Spec("arq", f"{PEERS}.arq_queue", "redis", venv="redis5"),
    Spec("taskiq", f"{PEERS}.taskiq_queue", "redis", venv="peers"),
    Spec("saq", f"{PEERS}.saq_queue", "redis", venv="redis5"),
    Spec("streaq", f"{PEERS}.streaq_queue", "redis", venv="peers"),
    Spec("huey", f"{PEERS}.huey_queue", "redis", venv="peers"),
    Spec("conveyor-postgres", CONVEYOR, "postgres"),
    Spec("pgqueuer", f"{PEERS}.pgqueuer_queue", "postgres", venv="peers"),
    Spec("procrastinate", f"{PEERS}.procrastinate_queue", "postgres", venv="peers"),
)
