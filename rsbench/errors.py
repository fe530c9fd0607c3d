"""Errors a user can act on.

Every error rsbench raises on purpose derives from :class:`RsbenchError`; the entry point prints
its message without a traceback, because the message already says which file is wrong and
what was expected.
"""


class RsbenchError(Exception):
    """Base class: a problem with the user's input, not a bug in rsbench."""


class ConfigError(RsbenchError):
    """The composed configuration is inconsistent (task vs dataset, unknown name, ...)."""


class DataError(RsbenchError):
    """A dataset is missing, in the wrong layout, or holds a corrupt/invalid file."""


class WeightsError(RsbenchError):
    """A checkpoint is missing or does not fit the model."""


class RunInterrupted(BaseException):
    """The run was stopped by a signal (SIGTERM from a scheduler, Ctrl-C): its state was saved and
    the same command resumes it. A BaseException, like KeyboardInterrupt, so nothing catches it
    as a failure; the process exits with the shell's code for the signal (143, 130)."""

    CODES = {"SIGTERM": 143, "SIGINT": 130}

    def __init__(self, signame: str) -> None:
        super().__init__(f"interrupted by {signame}; rerun the same command to resume from the last checkpoint")
        self.signame = signame
        self.exit_code = self.CODES.get(signame, 1)
