"""Ctrl-C or SIGTERM during training: finish the current step, write a checkpoint, then stop.

A KeyboardInterrupt raised between two Python lines of the SGD update would leave the weights half-updated.
So the first SIGINT or SIGTERM (what `timeout`, SLURM and `kill` send at a job's time limit) only sets a flag that
the training loop checks between steps; a second one interrupts at once, except in worker processes, which
their parent may signal on top of the terminal or the scheduler (see `never_escalate`).
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_escalate = True


def never_escalate() -> None:
    """In this process a repeated signal only repeats the request (worker processes of engine/processes.py)."""
    global _escalate
    _escalate = False


class DeferredInterrupt:
    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

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
