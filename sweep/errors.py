"""The two families of errors.

:class:`SweepError` and its subclasses abort a command: the input or the environment is wrong and
nothing should be trained until it is fixed. Their message is one line that names the problem and
the fix; the CLI prints it and exits non-zero.

:class:`RepeatFailed` fails one grid point (a diverging network, say) and the sweep goes on.
"""

from __future__ import annotations

__all__ = ["DataError", "RepeatFailed", "SpecError", "StorageError", "SweepError"]


class SweepError(Exception):
    """A problem that stops the command; the message says how to fix it."""


class SpecError(SweepError):
    """A study file, or an override of one, is not valid."""


class DataError(SweepError):
    """The problem's data have the wrong shape, type or values."""


class StorageError(SweepError):
    """The study database cannot be reached, or holds something that does not fit."""


class RepeatFailed(Exception):
    """One repeat of a grid point could not produce a score; the point fails, the sweep goes on."""
