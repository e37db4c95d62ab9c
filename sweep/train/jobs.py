"""The plain, picklable work that crosses between the main process and the workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PackJob", "PackResult", "RepeatResult"]


@dataclass(frozen=True)
class PackJob:
    """Some repeats of one grid point: everything a worker needs besides the study's data.

    With `is_fused`, the repeats train together as one computation; without, one after another
    on the reference Keras path. `length` is the forward length k1, `backward` the backward k2.
    """

    key: str
    length: int
    mode: str
    units: int
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    repeats: tuple[int, ...]
    seeds: tuple[int, ...]
    is_fused: bool = True
    backward: int | None = None  # decoupled TBPTT's k2 (None: k2 = length)
    # The score ("<metric>/<scope>") followed on the validation data after every epoch (None: no
    # learning curve on them, and no early stopping).
    objective: str | None = None
    # Early stopping: a repeat stops once that score has not improved for this many epochs (0: never).
    patience: int = 0
    # Send each repeat's final weights back with its scores (the study keeps them for export).
    keep_weights: bool = False
    # The bytes the pack may take beyond the worker's own (None: unbounded); prediction goes
    # through the sequences a few at a time within it.
    memory_bytes: int | None = None


@dataclass(frozen=True)
class RepeatResult:
    """One finished repeat: every metric in both scopes on the test data (and on the validation
    data, where the study holds some out), the time, and its learning curves: the mean training
    loss of every epoch and the objective on the validation data after it."""

    repeat: int
    seed: int
    scores: dict[str, float]
    seconds: float
    loss_per_epoch: tuple[float, ...]
    validation_scores: dict[str, float] = field(default_factory=dict)
    validation_per_epoch: tuple[float, ...] = ()
    stopped_epoch: int | None = None  # early stopping: the epoch it stopped at (None: it never ran out of patience)
    # Its final weights (those its scores were measured with), as a Keras LSTM's get_weights() and
    # then a Dense head's list them; empty where the job did not keep them.
    weights: tuple[Any, ...] = ()

    @property
    def train_loss(self) -> float:
        """The mean training loss of the last epoch."""
        return self.loss_per_epoch[-1]


@dataclass(frozen=True)
class PackResult:
    """What a worker sends back for a pack: finished repeats, why any others failed, and the
    worker process's peak resident memory so far (MB; 0 where unknown)."""

    results: tuple[RepeatResult, ...]
    failures: tuple[tuple[int, str], ...] = ()
    peak_memory_mb: float = 0.0
    process: int = 0
