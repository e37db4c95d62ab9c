"""How a grid point's missing repeats become jobs for the workers: fused packs sized to keep every
worker busy, and a seed for each repeat that is the same on every machine and every run."""

from __future__ import annotations

import hashlib

from sweep.spec import GridPoint, Spec, point_settings
from sweep.train.jobs import PackJob

__all__ = ["MAX_PACK_PARAMETERS", "pack_jobs", "repeat_seed", "split_into_packs"]

# A pack's weights, gradients and optimizer slots should stay in a core's cache: on 2 workers, 100
# units trained 1.3x faster per repeat in packs of 3 (about 120,000 parameters) than in packs of
# 15, and 1.2x faster than one at a time (benchmarks/fused_vs_reference.py). Small networks,
# where only per-step overhead counts, are not split.
MAX_PACK_PARAMETERS = 128_000


def repeat_seed(study_seed: int, key: str, repeat: int) -> int:
    """A seed for one repeat of one grid point, the same on every machine and every run."""
    digest = hashlib.sha256(f"{study_seed}|{key}|{repeat}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def pack_jobs(
    spec: Spec, point: GridPoint, repeats: list[int], *, n_features: int, n_workers: int, is_fused: bool
) -> list[PackJob]:
    """The repeats as fused packs (see :func:`split_into_packs`), or one job each unfused."""
    settings = point_settings(spec, point)
    if is_fused and spec.racing is not None:
        packs = _stage_packs(repeats, spec.repeats, n_workers=n_workers, units=settings["units"], n_features=n_features)
    elif is_fused:
        packs = split_into_packs(repeats, n_workers=n_workers, units=settings["units"], n_features=n_features)
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
            **settings,
        )
        for pack in packs
    ]


def split_into_packs(repeats: list[int], *, n_workers: int, units: int, n_features: int) -> list[list[int]]:
    """Split `repeats` into packs of nearly equal size, as few as keep every worker busy, the same
    number for each worker so that all finish together, and none over MAX_PACK_PARAMETERS."""
    if not repeats:
        return []
    n_parameters = 4 * units * (units + n_features + 1) + units + 1
    largest = max(1, MAX_PACK_PARAMETERS // n_parameters)
    n_rounds = -(-len(repeats) // (largest * n_workers))
    n_packs = min(len(repeats), n_rounds * n_workers)
    return [repeats[index::n_packs] for index in range(n_packs)]


def _stage_packs(repeats: list[int], n_repeats: int, *, n_workers: int, units: int, n_features: int) -> list[list[int]]:
    """A race's stage in packs of the size the full count would use, as few as hold it: a stage
    of 5 of 30 repeats is one pack of 5 rather than packs of 3 and 2, so that the stages of a
    point share few pack sizes (each new one is traced again, and compiled again under XLA)."""
    whole = split_into_packs(list(range(n_repeats)), n_workers=n_workers, units=units, n_features=n_features)
    size = max(len(pack) for pack in whole)
    n_packs = -(-len(repeats) // size)
    return [repeats[index::n_packs] for index in range(n_packs)]
