"""Errors a user can act on.

Every error rsbench raises on purpose derives from :class:`RsbenchError`; the entry point prints
its message without a traceback, because the message already says which file is wrong and
what was expected.
"""

from __future__ import annotations

import re
from typing import ClassVar


class RsbenchError(Exception):
    """Base class: a problem with the user's input, not a bug in rsbench."""


class ConfigError(RsbenchError):
    """The composed configuration is inconsistent (task vs dataset, unknown name, ...)."""


class DataError(RsbenchError):
    """A dataset is missing, in the wrong layout, or holds a corrupt/invalid file."""


class WeightsError(RsbenchError):
    """A checkpoint is missing or does not fit the model."""


class CheckpointError(RsbenchError):
    """A run's own resume checkpoint (``last.ckpt``) cannot be read: the message names it and says how to restart."""


class RunInterrupted(BaseException):
    """The run was stopped by a signal (SIGTERM from a scheduler, Ctrl-C): its state was saved and
    the same command resumes it. A BaseException, like KeyboardInterrupt, so nothing catches it
    as a failure; the process exits with the shell's code for the signal (143, 130)."""

    CODES: ClassVar[dict[str, int]] = {"SIGTERM": 143, "SIGINT": 130, "SIGUSR1": 138, "SIGUSR2": 140}

    def __init__(self, signame: str) -> None:
        super().__init__(f"interrupted by {signame}; rerun the same command to resume from the last checkpoint")
        self.signame = signame
        self.exit_code = self.CODES.get(signame, 1)


class LeaderboardError(RsbenchError):
    """The leaderboard could not be written (e.g. the results folder is not writable); never a run's failure."""


# -- the text of an error, as records, summaries and the leaderboard show it ----------------------------------

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
#: torch's ``ExceptionWrapper.reraise`` text for an exception raised in a DataLoader worker (or pin-memory thread)
_WRAPPED = re.compile(r"Caught (?P<name>\w+) in (?P<where>[^\n]+?)\.\s*\nOriginal Traceback \(most recent call last\):\n"
                      r"(?P<tb>.*)", re.DOTALL)


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (rich and Lightning colour some messages)."""
    return _ANSI.sub("", text)


def unwrap_worker_message(message: str) -> tuple[str, str] | None:
    """(original exception type name, original message) of torch's "Caught DataError in DataLoader worker
    process 1. Original Traceback …" text, or None when ``message`` is not one."""
    m = _WRAPPED.match(message)
    if not m:
        return None
    name, lines = m["name"], m["tb"].rstrip("\n").splitlines()
    head = re.compile(rf"^(?:[\w.]+\.)?{re.escape(name)}(?::\s?(?P<msg>.*))?$")
    for i in range(len(lines) - 1, -1, -1):  # the last unindented "module.Name: message" line starts it
        hit = head.match(lines[i])
        if hit:
            return name, "\n".join([hit["msg"] or "", *lines[i + 1:]]).strip()
    return name, (lines[-1].strip() if lines else "")


def error_text(exc: BaseException) -> str:
    """``Type: message`` of ``exc`` for a record or a summary: colour codes stripped, a DataLoader worker's
    wrapped exception given as the original one (its type and message, which name the file)."""
    name, msg = type(exc).__name__, strip_ansi(str(exc))
    unwrapped = unwrap_worker_message(msg)
    if unwrapped:
        name, msg = unwrapped
    return f"{name}: {msg}" if msg else name


def unwrap_worker_error(exc: BaseException) -> BaseException:
    """The original exception (same type, original message) for one torch re-raised from a DataLoader worker;
    ``exc`` itself otherwise."""
    unwrapped = unwrap_worker_message(strip_ansi(str(exc)))
    if not unwrapped:
        return exc
    try:
        new = type(exc)(unwrapped[1])
    except Exception:  # noqa: BLE001 — a type whose constructor takes other arguments keeps its text
        return exc
    new.__cause__ = exc
    return new


def first_line(text: str | None) -> str:
    lines = strip_ansi(text or "").strip().splitlines()
    return lines[0].strip() if lines else ""
