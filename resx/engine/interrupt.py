"""Ctrl-C during training: finish the current step, write a checkpoint, then stop.

A KeyboardInterrupt raised between two Python lines of the SGD update would leave the weights half-updated.
So the first SIGINT only sets a flag that the training loop checks between steps; a second one interrupts at once.
"""

from __future__ import annotations

import signal
import threading


class DeferredInterrupt:
    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if self.requested:  # second Ctrl-C: give up waiting
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "DeferredInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
