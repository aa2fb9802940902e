"""``--processes N``: start N worker processes, replace any that dies, forward signals."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("conveyor.supervisor")

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Linux: a child gets SIGTERM if the supervisor dies, even by SIGKILL, so no orphan
    # worker keeps running unsupervised.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Supervisor:
    """Keeps ``processes`` copies of ``command`` running until told to stop.

    Children run in their own session, so a terminal's Ctrl-C reaches only the supervisor,
    which forwards it once per press: the first stops them gracefully, the second at once.
    """

    def __init__(self, command: Sequence[str], processes: int) -> None:
        self.command = list(command)
        self.processes = processes
        self.children: list[subprocess.Popen[bytes] | None] = [None] * processes
        self.restarts = 0
        self._signals: list[int] = []  # filled by the signal handler

    def _spawn(self, slot: int) -> None:
        # preexec_fn is unsafe only with threads; the supervisor runs none.
        child = subprocess.Popen(
            self.command,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        self.children[slot] = child
        log.info("supervisor: worker process %d started (slot %d)", child.pid, slot)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _forward(self, signum: int) -> None:
        for child in self.children:
            if child is not None and child.poll() is None:
                child.send_signal(signum)

    def run(self) -> int:
        """Supervise until a signal stops the children; returns the exit code."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        started = [0.0] * self.processes
        for slot in range(self.processes):
            self._spawn(slot)
            started[slot] = time.monotonic()
        stopping = False
        while True:
            while self._signals:
                sig = self._signals.pop(0)
                stopping = True
                log.warning("supervisor: got %s, forwarding", signal.Signals(sig).name)
                self._forward(sig)
            alive = 0
            for slot, child in enumerate(self.children):
                if child is None or child.poll() is None:
                    alive += child is not None
                    continue
                if stopping or child.returncode == 0:
                    # Exit code 0 is a worker that finished (--burst, or a stop it was
                    # sent): only a crash or a kill is replaced.
                    self.children[slot] = None
                    continue
                self.restarts += 1
                lived = time.monotonic() - started[slot]
                log.error(
                    "supervisor: worker process %d exited with %s after %.1fs; replacing it",
                    child.pid, child.returncode, lived,
                )  # fmt: skip
                # A process that dies at once (bad import, broker down) is restarted with a
                # pause, so a crash loop does not spin.
                if lived < 2.0:
                    time.sleep(min(1.0, 0.2 * (self.restarts)))
                self._spawn(slot)
                started[slot] = time.monotonic()
                alive += 1
            if alive == 0:
                return 0
            time.sleep(0.05)


def supervise(command: Sequence[str], processes: int) -> int:
    """Run a :class:`Supervisor`; the entry point for ``conveyor worker --processes N``."""
    return Supervisor(command, processes).run()


def child_command(argv: Sequence[str]) -> list[str]:
    """The command line of one worker process: this program, the same arguments, one process."""
    return [sys.executable, "-m", "conveyor", *argv, "--processes", "1"]
