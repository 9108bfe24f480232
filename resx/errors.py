"""User-facing errors.

A `ResxError` is a mistake the user can fix (a bad name, path, option or file). The CLI prints its
message as one line and exits non-zero, without a traceback. Anything else is a bug and keeps its traceback.
"""


class ResxError(Exception):
    """A problem with the user's input, shown as one line: what was wrong and what is allowed."""


class TrainingDiverged(ResxError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(ResxError):
    """The user pressed Ctrl-C (or the scheduler sent SIGTERM); a checkpoint was written and the run can be resumed.
    The exit code is the shell's for that signal: 130 for SIGINT, 143 for SIGTERM."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class OutputError(ResxError):
    """A file could not be written (a full disk, a quota, permissions taken away mid-run): a fault outside the
    user's input, shown as one line naming the file and the cause. A training run marks itself `failed` (where its
    run_info.json can still be written) and keeps its last good checkpoint (every file is written atomically)."""


def note_interrupt(exc: BaseException, note: str) -> None:
    """Attach to a KeyboardInterrupt (Ctrl-C, or SIGTERM outside training) what the interrupted command kept and
    what running it again does; the CLI prints it in the interruption's one line."""
    exc.resx_note = note  # type: ignore[attr-defined]


def interrupt_note(exc: BaseException) -> str | None:
    return getattr(exc, "resx_note", None)
