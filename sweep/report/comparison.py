"""How a grid point is told apart from the best: the one comparison the report, the dashboard note
and the chosen-point sentence share."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ALPHA", "TEST_DESCRIPTION", "adjusted_p_values"]

ALPHA = 0.05
TEST_DESCRIPTION = (
    "two-sided Mann-Whitney U test of each point's repeat scores against the best point's, at equal repeat counts, "
    "p-values adjusted for the number of comparisons with the Benjamini-Hochberg procedure "
    f"(false discovery rate {ALPHA:g}); a point is distinguishable from the best when its adjusted p < {ALPHA:g}"
)


def adjusted_p_values(best: Sequence[float], others: Sequence[Sequence[float]]) -> list[float]:
    """Each of `others` against `best`, at equal repeat counts (the first repeats of the longer
    as many as the shorter has: a point a race stopped meets the best's first repeats), adjusted
    for the number of comparisons (Benjamini-Hochberg)."""
    from scipy import stats  # 0.9 s to import: every command would pay it to start

    raw = [_p_value(tuple(best[: len(other)]), tuple(other[: len(best)])) for other in others]
    return [float(p) for p in stats.false_discovery_control(raw, method="bh")] if raw else []


def _p_value(best: tuple[float, ...], other: tuple[float, ...]) -> float:
    if len(best) < 2 or len(other) < 2 or len(set(best) | set(other)) == 1:
        return 1.0  # nothing to tell apart: too few repeats, or every score the same
    from scipy import stats

    return float(stats.mannwhitneyu(best, other, alternative="two-sided").pvalue)
