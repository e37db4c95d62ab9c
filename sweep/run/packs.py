"""How a grid point's missing repeats become jobs for the workers: fused packs sized to keep every
worker busy, and a seed for each repeat that is the same on every machine and every run."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sweep.train.memory import MemoryBudgetError, largest_pack, readable_bytes, repeat_training_bytes
from sweep.spec import GridPoint, Spec, point_settings
from sweep.train.jobs import PackJob

__all__ = ["MAX_PACK_PARAMETERS", "PackMemory", "check_memory", "pack_jobs", "repeat_seed", "split_into_packs"]

# A pack's weights, gradients and optimizer slots should stay in a core's cache: on 2 workers, 100
# units trained 1.3x faster per repeat in packs of 3 (about 120,000 parameters) than in packs of
# 15, and 1.2x faster than one at a time (benchmarks/fused_vs_reference.py). Small networks,
# where only per-step overhead counts, are not split.
MAX_PACK_PARAMETERS = 128_000


def repeat_seed(study_seed: int, key: str, repeat: int) -> int:
    """A seed for one repeat of one grid point, the same on every machine and every run."""
    digest = hashlib.sha256(f"{study_seed}|{key}|{repeat}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class PackMemory:
    """What sizes packs by memory: the bytes each worker's packs may take, and the data's shape."""

    budget: int
    n_features: int
    n_outputs: int
    longest: int  # steps of the longest sequence: no window is longer

    def per_repeat(self, spec: Spec, point: GridPoint) -> int:
        """What one repeat of the point keeps while it trains."""
        settings = point_settings(spec, point)
        return self.repeat_bytes(window=_window(point), batch_size=settings["batch_size"], units=settings["units"])

    def repeat_bytes(self, *, window: int, batch_size: int, units: int) -> int:
        """What one repeat keeps while it trains on batches of `batch_size` windows of `window` steps."""
        return repeat_training_bytes(
            batch_size=batch_size, window=min(self.longest, window), units=units,
            n_features=self.n_features, n_outputs=self.n_outputs,
        )

    def most_repeats(self, spec: Spec, point: GridPoint) -> int:
        """The most repeats of the point that one pack may hold."""
        return largest_pack(self.per_repeat(spec, point), self.budget)


def _window(point: GridPoint) -> int:
    """The steps a point backpropagates through at once: a stateless window of k2 steps, a stateful
    chunk of k1, reaching back over k2 where that is longer."""
    if point.mode == "stateless":
        return point.backward or point.length
    return max(point.length, point.backward or point.length)


def check_memory(spec: Spec, points: Sequence[GridPoint], memory: PackMemory) -> None:
    """MemoryBudgetError, before anything trains, where one repeat of the grid's most demanding
    point does not fit in a worker's budget: naming it, what it needs, and what to change."""
    if not points:
        return
    point = max(points, key=lambda point: memory.per_repeat(spec, point))
    needed = memory.per_repeat(spec, point)
    if needed > memory.budget:
        raise MemoryBudgetError(
            f"one repeat of {point.key} needs about {readable_bytes(needed)} to train (batches of "
            f"{point_settings(spec, point)['batch_size']} windows of {min(memory.longest, _window(point)):,} steps), "
            f"over the {readable_bytes(memory.budget)} a worker may use; raise --memory-per-worker "
            "(or $SWEEP_MEMORY_PER_WORKER), run fewer --workers, or lower training.batch_size"
        )


def pack_jobs(
    spec: Spec, point: GridPoint, repeats: list[int], *, n_features: int, n_workers: int, is_fused: bool,
    memory: PackMemory | None = None,
) -> list[PackJob]:
    """The repeats as fused packs (see :func:`split_into_packs`), no larger than `memory` holds,
    or one job each unfused."""
    settings = point_settings(spec, point)
    most = memory.most_repeats(spec, point) if memory is not None else None
    shape = dict(n_workers=n_workers, units=settings["units"], n_features=n_features, most=most)
    if is_fused and spec.racing is not None:
        packs = _stage_packs(repeats, spec.repeats, **shape)
    elif is_fused:
        packs = split_into_packs(repeats, **shape)
    else:
        packs = [[repeat] for repeat in repeats]
    return [
        PackJob(
            key=point.key,
            length=point.length,
            backward=point.backward,
            mode=point.mode,
            repeats=tuple(pack),
            seeds=tuple(repeat_seed(spec.seed, point.key, repeat) for repeat in pack),
            is_fused=is_fused,
            objective=spec.metric,
            patience=spec.validation.patience,
            keep_weights=spec.keep_weights != "none",
            memory_bytes=memory.budget if memory is not None else None,
            **settings,
        )
        for pack in packs
    ]


def split_into_packs(
    repeats: list[int], *, n_workers: int, units: int, n_features: int, most: int | None = None
) -> list[list[int]]:
    """Split `repeats` into packs of nearly equal size, as few as keep every worker busy, the same
    number for each worker so that all finish together, none over MAX_PACK_PARAMETERS, and none
    of more than `most` repeats (what a worker's memory holds)."""
    if not repeats:
        return []
    n_parameters = 4 * units * (units + n_features + 1) + units + 1
    largest = max(1, min(MAX_PACK_PARAMETERS // n_parameters, len(repeats) if most is None else most))
    n_rounds = -(-len(repeats) // (largest * n_workers))
    n_packs = min(len(repeats), n_rounds * n_workers)
    return [repeats[index::n_packs] for index in range(n_packs)]


def _stage_packs(
    repeats: list[int], n_repeats: int, *, n_workers: int, units: int, n_features: int, most: int | None
) -> list[list[int]]:
    """A race's stage in packs of the size the full count would use, as few as hold it: a stage
    of 5 of 30 repeats is one pack of 5 rather than packs of 3 and 2, so that the stages of a
    point share few pack sizes (each new one is traced again, and compiled again under XLA)."""
    whole = split_into_packs(list(range(n_repeats)), n_workers=n_workers, units=units, n_features=n_features, most=most)
    size = max(len(pack) for pack in whole)
    n_packs = -(-len(repeats) // size)
    return [repeats[index::n_packs] for index in range(n_packs)]
