"""The two families of errors.

:class:`SweepError` and its subclasses abort a command: the input or the environment is wrong and
nothing should be trained until it is fixed. Their message is one line that names the problem and
the fix; the CLI prints it and exits non-zero.

A repeat that cannot produce a score (a diverging network, say) is not an exception: the worker
reports it with the repeat's results (:class:`~sweep.train.jobs.PackResult`), its grid point fails with
the reason stored, and the sweep goes on.
"""

from __future__ import annotations

__all__ = ["DataError", "EmptyDatabaseError", "SpecError", "StorageError", "SweepError", "first_line"]


class SweepError(Exception):
    """A problem that stops the command; the message says how to fix it."""


class SpecError(SweepError):
    """A study file, or an override of one, is not valid."""


class DataError(SweepError):
    """The problem's data have the wrong shape, type or values."""


class StorageError(SweepError):
    """The study database cannot be reached, or holds something that does not fit."""


class EmptyDatabaseError(StorageError):
    """A database with no tables at all, opened to read studies: it holds none."""


def first_line(error: BaseException) -> str:
    """What an error says, in one line (its class's name where it says nothing), to quote in ours."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
