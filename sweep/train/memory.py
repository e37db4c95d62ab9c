"""How much memory a pack of repeats takes, and how much each worker process may give its packs.

Backpropagation through a subsequence keeps every step's activations until the update: a pack
of P repeats trained on batches of B windows of W steps keeps about P x B x W x units x
:data:`TRAINING_BYTES` bytes, whatever the parameter count. Long sequences make that the largest
part of a worker's memory; packs are therefore as large as a worker's budget holds, and no
larger. Predicting (scoring after every epoch and at the end) keeps less per step but runs over
whole sequences, so it goes through them a few at a time within a fixed share.

The budget, ``memory_per_worker``, is what a worker's packs may take on top of what every worker
holds anyway: TensorFlow's runtime, about :data:`WORKER_BASE` bytes, and the study's data.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from sweep.errors import SweepError

__all__ = [
    "MEMORY_ENV",
    "PREDICTION_BYTES",
    "TRAINING_BYTES",
    "WORKER_BASE",
    "MemoryBudgetError",
    "default_memory_per_worker",
    "largest_pack",
    "memory_from_environment",
    "parse_memory",
    "prediction_rows",
    "readable_bytes",
    "repeat_training_bytes",
]

MEMORY_ENV = "SWEEP_MEMORY_PER_WORKER"
MB = 1024**2
# Bytes kept per unit, step and window of a batch while a repeat trains: gate inputs and
# activations, cell and hidden states, and the gradient's temporaries. Measured on 1,344-step
# windows, 32 units, batches of 16: 46 MB per repeat of a pack (72 would give 49.5).
TRAINING_BYTES = 72
# Bytes kept per unit and step of a sequence while a pack predicts it (11-23 measured).
PREDICTION_BYTES = 24
# Prediction needs no more than this for full speed: batches of sequences beyond it go no faster.
PREDICTION_CAP = 256 * MB
# What a worker holds before its first pack: TensorFlow's runtime (0.73 GB measured, two cores).
WORKER_BASE = 750 * MB
# Of the memory the machine (or its container) has available, the share left to the workers.
AVAILABLE_SHARE = 0.8
# The least a default budget gives: a machine short of memory still trains, in small packs.
SMALLEST_DEFAULT = 256 * MB


class MemoryBudgetError(SweepError):
    """A worker's memory budget cannot hold one repeat of a grid point, or is no budget at all."""


def repeat_training_bytes(*, batch_size: int, window: int, units: int, n_features: int, n_outputs: int) -> int:
    """What one repeat of a pack keeps while it trains: activations for backpropagation, and its
    weights with their gradients and the optimizer's two slots."""
    parameters = 4 * units * (units + n_features + 1) + (units + 1) * n_outputs
    return batch_size * window * units * TRAINING_BYTES + 4 * parameters * 4


def largest_pack(per_repeat: int, budget: int) -> int:
    """How many repeats of `per_repeat` bytes a budget holds; 0 when not even one."""
    return budget // max(1, per_repeat)


def prediction_rows(*, n_repeats: int, steps: int, units: int, budget: int | None, most: int) -> int:
    """How many sequences (or windows) of `steps` steps a pack predicts at once: as many as fit
    in the prediction's share of the budget, at least one, at most `most` (all `most` without a budget)."""
    if budget is None:
        return most
    share = min(PREDICTION_CAP, budget)
    per_row = max(1, n_repeats * steps * units * PREDICTION_BYTES)
    return max(1, min(most, share // per_row))


def default_memory_per_worker(n_workers: int, *, data_bytes: int) -> int:
    """A share of the memory this machine (or its container) has available, for each worker,
    less what every worker holds anyway; at least SMALLEST_DEFAULT."""
    available = available_memory()
    if available is None:
        return 2 * 1024 * MB  # nothing to read: a budget that a laptop can give
    share = int(available * AVAILABLE_SHARE) // max(1, n_workers)
    return max(SMALLEST_DEFAULT, share - WORKER_BASE - data_bytes)


def available_memory() -> int | None:
    """The memory free for new work: the kernel's MemAvailable, or a container's limit less its
    use where that is less; None where neither can be read."""
    candidates = [value for value in (_meminfo_available(), _cgroup_room()) if value is not None]
    return min(candidates) if candidates else None


def _meminfo_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    found = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def _cgroup_room() -> int | None:
    """cgroup v2's memory.max less memory.current, else v1's limit less usage; None without a limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit, usage = Path(limit_file).read_text().strip(), Path(usage_file).read_text().strip()
        except OSError:
            continue
        if limit.isdigit() and usage.isdigit() and int(limit) < 1 << 60:  # v1 says "no limit" with a huge number
            return max(0, int(limit) - int(usage))
    return None


_UNITS = {"": MB, "k": 1024, "kb": 1024, "m": MB, "mb": MB, "g": 1024 * MB, "gb": 1024 * MB}


def parse_memory(text: str | int | float, *, what: str = "--memory-per-worker") -> int:
    """Bytes from "500MB", "2 GB", "1.5g" or a bare number of megabytes; MemoryBudgetError, with
    the fix, for anything else."""
    if isinstance(text, bool):
        raise MemoryBudgetError(f"{what} takes an amount such as 500MB or 2GB, not {text!r}")
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]b?)?\s*", str(text), re.IGNORECASE)
    if found is None:
        raise MemoryBudgetError(f"{what} takes an amount such as 500MB or 2GB, not {text!r}")
    amount = float(found.group(1)) * _UNITS[(found.group(2) or "").lower()]
    if not math.isfinite(amount) or amount < MB:
        raise MemoryBudgetError(f"{what} must be at least 1MB, not {text!r}")
    return int(amount)


def memory_from_environment() -> int | None:
    """The budget $SWEEP_MEMORY_PER_WORKER sets, or None where it is unset."""
    value = os.environ.get(MEMORY_ENV)
    return parse_memory(value, what=f"${MEMORY_ENV}") if value else None


def readable_bytes(size: int) -> str:
    if size >= 1024 * MB:
        return f"{size / (1024 * MB):.1f} GB"
    return f"{size / MB:.1f} MB" if size < 10 * MB else f"{size / MB:.0f} MB"
