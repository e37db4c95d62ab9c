"""The statistics of a grid point's repeat scores: what a finished point stores, and what any
view shows of a point's scores so far. NumPy and SciPy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sweep.metrics import metric as metric_of

__all__ = ["SUMMARY_KEYS", "summarize"]

SUMMARY_KEYS = ("n", "mean", "std", "sem", "ci95_low", "ci95_high", "median", "min", "max")


def summarize(
    scores: Sequence[float], confidence: float = 0.95, *, metric: str | None = None
) -> dict[str, float | int | None]:
    """n, mean, std (n - 1), standard error, a Student-t confidence interval, median, min, max.

    With `metric` (``"accuracy"`` or ``"accuracy/sample"``), the interval is cut to the values the
    metric can take: with few repeats near 1.0, Student's t would reach past an accuracy of 1.
    """
    values = np.asarray(scores, dtype=float)
    if not np.isfinite(values).all():  # a study stored by a version that let a diverged repeat count
        with np.errstate(all="ignore"):
            return _summary(values)
    return _summary(values, confidence, metric)


def _summary(values: np.ndarray, confidence: float = 0.95, metric: str | None = None) -> dict[str, float | int | None]:
    n = len(values)
    mean = float(values.mean())
    if n > 1:
        std = float(values.std(ddof=1))
        sem = std / math.sqrt(n)
        # Student's t quantile, as scipy.stats.t.interval computes it (to the last bit), from
        # scipy.special: scipy.stats takes 0.6 s to import, in every run's first finished point.
        from scipy.special import stdtrit

        half_width = float(stdtrit(n - 1, (1 + confidence) / 2)) * sem
        low, high = mean - half_width, mean + half_width
    else:
        std = sem = low = high = math.nan
    if metric is not None and math.isfinite(low):
        entry = metric_of(metric)
        if entry.holds(float(values.min()), float(values.max())):  # scores of that metric indeed
            low, high = entry.clip(float(low)), entry.clip(float(high))
    return dict(zip(SUMMARY_KEYS, (
        n, mean, _finite(std), _finite(sem), _finite(float(low)), _finite(float(high)),
        float(np.median(values)), float(values.min()), float(values.max()),
    )))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
