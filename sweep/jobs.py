"""The plain, picklable work that crosses between the main process and the workers."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RepeatJob", "RepeatResult"]


@dataclass(frozen=True)
class RepeatJob:
    """One repeat of one grid point: everything a worker needs besides the study's data."""

    key: str
    length: int
    mode: str
    units: int
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    repeat: int
    seed: int


@dataclass(frozen=True)
class RepeatResult:
    """What a worker sends back: every metric in both scopes, the final training loss, the time."""

    repeat: int
    seed: int
    scores: dict[str, float]
    train_loss: float
    seconds: float
