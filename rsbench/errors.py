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
