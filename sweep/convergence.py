"""The capacity check: was a grid point's training still clearly improving when it stopped?

A point whose repeats were still getting better over their last epochs was stopped by the epoch
budget, not by what its subsequence length lets it learn; more epochs or units could then change
the ranking. The check reads each repeat's learning curve (the objective on the validation data
after each epoch, or its training loss where the study holds no validation data out):

* the window is the last quarter of the epochs, at least one;
* each repeat's gain is its change over the window, counted positive where it got better;
* the point is flagged when the gains are significantly above zero (a one-sided Wilcoxon
  signed-rank test across the repeats, p < ALPHA) and their median is at least MATERIAL_SHARE of
  the median gain over the whole run: a real trend, and not a negligible one.

Pure NumPy and SciPy over stored curves: nothing here trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["ALPHA", "MATERIAL_SHARE", "Convergence", "check"]

ALPHA = 0.01
MATERIAL_SHARE = 0.1


@dataclass(frozen=True)
class Convergence:
    """What the check found for one grid point."""

    is_improving: bool
    curve: str  # what was read: "validation accuracy/sample", "training loss", ...
    epochs: int
    window: int  # the last epochs compared
    gain: float  # the repeats' median change over the window, positive where better
    total_gain: float  # their median change from the first epoch to the last
    p_value: float
    n_repeats: int

    def describe(self) -> str:
        """One line: what improved, by how much, over which epochs, and what it means."""
        trend = f"{self.curve} {self.gain:+.3g} over the last {self.window} of {self.epochs} epochs (median of " \
            f"{self.n_repeats} repeats, Wilcoxon p={self.p_value:.2g})"
        if self.is_improving:
            return f"not converged: {trend}; more epochs or units may change the ranking"
        return f"converged: {trend}"


def check(curves: Sequence[Sequence[float]], *, maximize: bool, curve: str) -> Convergence | None:
    """The check over repeats' curves, one value per epoch each; None where it cannot say (fewer
    than two epochs, curves of different lengths, or values that are not finite)."""
    lengths = {len(values) for values in curves}
    if not curves or len(lengths) != 1 or lengths.pop() < 2:
        return None
    values = np.asarray(curves, dtype=float)
    if not np.isfinite(values).all():
        return None
    better = values if maximize else -values
    epochs = values.shape[1]
    window = max(1, round(epochs / 4))
    gains = better[:, -1] - better[:, -1 - window]
    gain, total_gain = float(np.median(gains)), float(np.median(better[:, -1] - better[:, 0]))
    p_value = _p_rising(gains)
    is_improving = p_value < ALPHA and gain > 0 and total_gain > 0 and gain >= MATERIAL_SHARE * total_gain
    return Convergence(
        is_improving=bool(is_improving), curve=curve, epochs=epochs, window=window,
        gain=gain if maximize else -gain, total_gain=total_gain if maximize else -total_gain,
        p_value=p_value, n_repeats=len(values),
    )


def _p_rising(gains: np.ndarray) -> float:
    """One-sided p-value that the gains lie above zero; 1 where none differs from zero."""
    if not np.any(gains != 0):
        return 1.0
    result = stats.wilcoxon(gains, alternative="greater", zero_method="wilcox")
    return float(result.pvalue) if math.isfinite(result.pvalue) else 1.0
