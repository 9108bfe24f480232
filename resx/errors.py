"""User-facing errors.

A `ResxError` is a mistake the user can fix (a bad name, path, option or file). The CLI prints its
message as one line and exits non-zero, without a traceback. Anything else is a bug and keeps its traceback.
"""


class ResxError(Exception):
    """A problem with the user's input, shown as one line: what was wrong and what is allowed."""


class TrainingDiverged(ResxError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(ResxError):
    """The user pressed Ctrl-C; a checkpoint was written and the run can be resumed."""

    exit_code = 130
