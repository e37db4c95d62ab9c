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

With early stopping, the repeats it stopped had stopped improving; the check reads the others,
and a point at least half of whose repeats stopped early has converged.

Pure NumPy and SciPy over stored curves: nothing here trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sweep.store.record import StoredPoint

__all__ = ["ALPHA", "DESCRIPTION", "MATERIAL_SHARE", "NOT_CONVERGED", "Convergence", "check", "point_convergence"]

ALPHA = 0.01
MATERIAL_SHARE = 0.1
NOT_CONVERGED = "not converged"
DESCRIPTION = (
    f"a point is {NOT_CONVERGED} when its repeats' learning curves (the objective on the validation data, or the "
    "training loss without a split) still improved over the last quarter of the epochs: significantly across the "
    f"repeats (one-sided Wilcoxon signed-rank test, p < {ALPHA:g}) and by at least "
    f"{MATERIAL_SHARE:.0%} of their median improvement over the whole run"
)


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
    n_repeats: int  # the repeats whose curves were read: those that trained every epoch
    n_stopped_early: int = 0  # repeats early stopping stopped: their validation score had stopped improving

    def describe(self) -> str:
        """One line: what improved, by how much, over which epochs, and what it means."""
        stops = f"; {self.n_stopped_early} repeats stopped early" if self.n_stopped_early else ""
        if not self.window:  # at least half the repeats stopped early
            return (
                f"converged: {self.n_stopped_early} of {self.n_repeats + self.n_stopped_early} repeats stopped early, "
                f"their {self.curve} no longer improving"
            )
        trend = f"{self.curve} {self.gain:+.3g} over the last {self.window} of {self.epochs} epochs (median of " \
            f"{self.n_repeats} repeats, Wilcoxon p={self.p_value:.2g}{stops})"
        if self.is_improving:
            return f"{NOT_CONVERGED}: {trend}; more epochs or units may change the ranking"
        return f"converged: {trend}"


def check(
    curves: Sequence[Sequence[float]], *, maximize: bool, curve: str, n_stopped_early: int = 0
) -> Convergence | None:
    """The check over repeats' curves, one value per epoch each; None where it cannot say (fewer
    than two epochs, curves of different lengths, or values that are not finite).

    `n_stopped_early` repeats besides them were stopped by early stopping, their score on the
    validation data no longer improving: where they are at least half, the point has converged."""
    if n_stopped_early and 2 * n_stopped_early >= len(curves) + n_stopped_early:
        return Convergence(
            is_improving=False, curve=curve, epochs=max((len(values) for values in curves), default=0), window=0,
            gain=0.0, total_gain=0.0, p_value=1.0, n_repeats=len(curves), n_stopped_early=n_stopped_early,
        )
    found = _check(curves, maximize=maximize, curve=curve)
    return replace(found, n_stopped_early=n_stopped_early) if found is not None else None


def _check(curves: Sequence[Sequence[float]], *, maximize: bool, curve: str) -> Convergence | None:
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
    from scipy import stats  # 0.9 s to import: every command would pay it to start

    result = stats.wilcoxon(gains, alternative="greater", zero_method="wilcox")
    return float(result.pvalue) if math.isfinite(result.pvalue) else 1.0


def point_convergence(point: StoredPoint, *, maximize: bool) -> Convergence | None:
    """The check over a point's repeats' curves: the objective on the validation data where
    every repeat stored it, else the training loss; None where the repeats stored neither, or
    the check cannot say."""
    if point.has_curves(validation=True):
        trained_on = [repeat for repeat in sorted(point.repeats) if not point.was_stopped_early(repeat)]
        return check(
            point.curves(validation=True, repeats=trained_on), maximize=maximize,
            curve=f"validation {point.metric or 'objective'}", n_stopped_early=len(point.repeats) - len(trained_on),
        )
    if point.has_curves():
        return check(point.curves(), maximize=False, curve="training loss")
    return None
