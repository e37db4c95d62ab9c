"""Staying alive on a shared study: heartbeats for a claimed point, and retries of storage writes.

A worker that holds a point records a heartbeat every few seconds in the study's storage. When a
machine dies, its heartbeats stop, and after the grace period any other worker fails the point as
stale and puts a copy back in the queue with the repeats already finished (Optuna's
``RetryHeartbeatStaleTrialCallback`` with ``inherit_intermediate_values``), so only the missing
repeats are trained again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import optuna
import sqlalchemy.exc

from sweep.errors import StorageError
from sweep.optuna_private import record_heartbeat
from sweep.storage import describe_database_error, is_permanent_database_error

__all__ = ["Heartbeat", "retrying"]

T = TypeVar("T")
log = logging.getLogger("sweep")

# Errors a dropped connection or a restarting server produce; Optuna wraps SQLAlchemy's own.
TRANSIENT = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15, 30, 30, 30)  # about two minutes in all


class Heartbeat:
    """Records a trial's heartbeat every `interval` seconds on a thread, until stopped.

    Optuna's own heartbeat thread dies at the first database error, and the trial then looks
    dead to every other worker; this one logs the error and beats again at the next interval.
    """

    def __init__(self, trial: optuna.Trial, *, interval: float) -> None:
        self._trial = trial
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial.number}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while True:
            try:
                record_heartbeat(self._trial)
            except Exception as error:  # noqa: BLE001 (any failure: beat again next time)
                log.warning("heartbeat of trial %s not recorded (%s); trying again", self._trial.number, error)
            if self._stop.wait(self._interval):
                return


def retrying(action: Callable[[], T], *, what: str, delays: tuple[float, ...] = RETRY_DELAYS) -> T:
    """Run a storage write, retrying through transient database errors; give up with a clear line."""
    for delay in (*delays, None):
        try:
            return action()
        except TRANSIENT as error:
            if is_permanent_database_error(error):
                raise StorageError(describe_database_error(error)) from None
            if delay is None:
                raise StorageError(
                    f"lost the study database while {what} ({_first_line(error)}); the finished repeats are "
                    "stored, run the same command again once the database is back"
                ) from None
            log.warning("database error while %s (%s); retrying in %s s", what, _first_line(error), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
