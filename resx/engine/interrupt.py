"""Ctrl-C or SIGTERM during training: finish the current step, write a checkpoint, then stop.

A KeyboardInterrupt raised between two Python lines of the SGD update would leave the weights half-updated.
So the first SIGINT or SIGTERM (what `timeout`, SLURM and `kill` send at a job's time limit) only sets a flag that
the training loop checks between steps; a second one interrupts at once, except in worker processes, which
their parent may signal on top of the terminal or the scheduler (see `never_escalate`).
"""

from __future__ import annotations

import os
import signal
import threading
import time

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_escalate = True
# A hook for tests of killed and interrupted runs, so that they never depend on the machine's speed:
# RESX_PAUSE_AT="ITERATION" (or "RUN:ITERATION", RUN a run's name) makes training stop after that iteration's step,
# write the file named by RESX_PAUSE_MARKER, and wait there (at most PAUSE_SECONDS) until it is signalled.
PAUSE_AT = "RESX_PAUSE_AT"
PAUSE_MARKER = "RESX_PAUSE_MARKER"
PAUSE_SECONDS = 600.0


def _pause_spec() -> tuple[str | None, int] | None:
    text = os.environ.get(PAUSE_AT)
    if not text:
        return None
    name, _, iteration = text.rpartition(":")
    return (name or None), int(iteration)


def never_escalate() -> None:
    """In this process a repeated signal only repeats the request (worker processes of engine/processes.py)."""
    global _escalate
    _escalate = False


class DeferredInterrupt:
    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}
        self._pause = _pause_spec()

    def pause_point(self, name: str, iteration: int) -> None:
        """The test hook (see PAUSE_AT): a no-op unless the environment asks for a pause at this run's iteration."""
        if self._pause is None or iteration != self._pause[1] or self._pause[0] not in (None, name):
            return
        self._pause = None  # once
        marker = os.environ.get(PAUSE_MARKER)
        if marker:
            from resx.atomic import write_text_atomic

            write_text_atomic(marker, f"{name} {iteration} {os.getpid()}\n")
        deadline = time.monotonic() + PAUSE_SECONDS
        while not self.requested and time.monotonic() < deadline:
            time.sleep(0.01)

    def _handler(self, signum, frame) -> None:
        if self.requested and _escalate:  # second Ctrl-C: give up waiting
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> "DeferredInterrupt":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
