"""Candidate subsequence lengths read off the data: autocorrelation, partial autocorrelation,
cross-correlation of the inputs with the target, and an autoregressive order, all by statsmodels.

The covariances are statsmodels' over the training sequences' real steps laid one after another
with gaps of zeros between them, less their common mean, so that no pair of steps in two
sequences counts, each lag divided by its own number of pairs; the PACF follows from them by
Durbin-Levinson. A lag counts as significant when the pooled value lies outside the band
white noise would stay in, at a level corrected for the number of lags looked at (Bonferroni),
so that noise looked at over forty lags does not suggest a length by chance. The AR order is the
median of BIC's choice over the longest sequences.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from statsmodels.tools.sm_exceptions import ValueWarning
from statsmodels.tsa.ar_model import ar_select_order
from statsmodels.tsa.stattools import acovf, ccovf, levinson_durbin

from sweep.data.problems import Dataset

__all__ = ["Correlogram", "Suggestion", "suggest"]

ALPHA = 0.05
MAX_LAGS = 100


@dataclass(frozen=True)
class Correlogram:
    """The ACF and PACF of one series (a feature or the target), lags 0..n, with the band inside
    which a value is not significant."""

    name: str
    acf: list[float]
    pacf: list[float]
    band: list[float | None]  # per lag (None where no two steps are that far apart)
    significant_acf: list[int]
    significant_pacf: list[int]
    period: int | None
    ar_order: int


@dataclass(frozen=True)
class Suggestion:
    """Candidate lengths, each with its reasons, and the correlograms they were read from."""

    candidates: dict[int, list[str]]
    correlograms: list[Correlogram]
    cross: dict[str, list[float]] = field(default_factory=dict)  # input name -> CCF with the target
    cross_band: list[float | None] = field(default_factory=list)
    cross_lags: dict[str, list[int]] = field(default_factory=dict)  # input name -> lags beyond the band
    n_steps: int = 0

    @property
    def lengths(self) -> list[int]:
        return sorted(self.candidates)

    def to_dict(self) -> dict:
        """Plain values, to store with the study (JSON)."""
        data = asdict(self)
        data["candidates"] = [{"length": n, "reasons": r} for n, r in sorted(self.candidates.items())]
        return data


def suggest(dataset: Dataset, feature_names: list[str] | None = None) -> Suggestion:
    """Candidate lengths for `dataset`, from 1 to its sequence length.

    Regression with a target per step: the target's ACF and PACF, its dominant period, its AR
    order, and the lags at which each input correlates with the target. Otherwise the inputs'.
    """
    names = feature_names or [f"x{i}" for i in range(dataset.n_features)]
    inputs = _sequences(dataset.x_train, dataset.train_lengths)
    n_lags = max(1, min(dataset.sequence_length - 1, MAX_LAGS))
    candidates: dict[int, list[str]] = {}
    cross: dict[str, list[float]] = {}
    cross_band: list[float] = []
    cross_lags: dict[str, list[int]] = {}
    if dataset.task == "regression" and dataset.is_per_step:
        target = [steps[:, 0] for steps in _sequences(dataset.y_train, dataset.train_lengths)]
        correlograms = [_correlogram("target", target, _reliable_lags(target, n_lags))]
        for index, name in enumerate(names):
            # corr(target[t + k], input[t]): the input k steps before the target.
            values, cross_band = _cross_correlation(target, [x[:, index] for x in inputs], n_lags)
            cross[name] = _rounded(values)
            lags = cross_lags[name] = [k for k in range(len(values)) if abs(values[k]) > cross_band[k]]
            if lags:
                _add(candidates, max(lags) + 1, f"{name} correlates with the target {max(lags)} steps later: last such lag + 1")
    else:
        short_lags = _reliable_lags(inputs, n_lags)
        correlograms = [_correlogram(name, [x[:, index] for x in inputs], short_lags) for index, name in enumerate(names)]
    for gram in correlograms:
        subject = "the target" if gram.name == "target" else gram.name
        if gram.period:
            _add(candidates, gram.period, f"dominant period of {subject}")
        if gram.significant_pacf:
            _add(candidates, gram.significant_pacf[-1] + 1, f"last significant PACF lag of {subject} + 1")
        if gram.ar_order:
            _add(candidates, gram.ar_order, f"AR order of {subject} by BIC")
    kept = {n: reasons for n, reasons in candidates.items() if 1 <= n <= dataset.sequence_length}
    n_steps = int(np.sum(dataset.train_lengths))
    return Suggestion(
        candidates=kept, correlograms=correlograms, cross=cross, cross_band=_rounded(cross_band),
        cross_lags=cross_lags, n_steps=n_steps,
    )


def _sequences(values: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Every sequence's real steps (the last `lengths[i]` of row i), (steps, n) each."""
    return [row[len(row) - n :].astype(np.float64) for row, n in zip(values, np.asarray(lengths))]


def _reliable_lags(sequences: list[np.ndarray], n_lags: int) -> int:
    """The lags worth an ACF and PACF: those at which at least half the steps have a partner, as
    statsmodels asks of one series (lags up to half its length); further out the PACF's estimate
    rests on too few pairs and wanders."""
    lengths = np.array([len(series) for series in sequences])
    pairs = np.array([np.maximum(lengths - k, 0).sum() for k in range(n_lags + 1)])
    return max(1, int(np.nonzero(pairs >= pairs[0] / 2)[0].max()))


def _gapped(sequences: list[np.ndarray], n_lags: int) -> tuple[np.ndarray, np.ndarray]:
    """The sequences, less their common mean, one after another with `n_lags` zeros between
    them: a product of two steps more than `n_lags` apart, or in two sequences, is then zero.
    Also the number of pairs of real steps at each lag, 0..n_lags."""
    mean = np.mean(np.concatenate(sequences))
    gap = np.zeros(n_lags)
    laid = np.concatenate([part for series in sequences for part in (series - mean, gap)])
    lengths = np.array([len(series) for series in sequences])
    pairs = np.array([np.maximum(lengths - k, 0).sum() for k in range(n_lags + 1)], dtype=np.float64)
    return laid, pairs


def _pooled_covariance(first: list[np.ndarray], second: list[np.ndarray] | None, n_lags: int) -> tuple[np.ndarray, np.ndarray]:
    """The covariance at lags 0..n_lags pooled over the sequences (of `first` with itself, or of
    `first` k steps later with `second`), the mean product over the pairs of real steps."""
    x, pairs = _gapped(first, n_lags)
    if second is None:
        products = acovf(x, adjusted=False, demean=False, fft=True, nlag=n_lags)
    else:
        y, _ = _gapped(second, n_lags)
        products = ccovf(x, y, adjusted=False, demean=False, fft=True)[: n_lags + 1]
    safe = np.maximum(pairs, 1.0)
    return products * len(x) / safe, pairs


def _bands(pairs: np.ndarray, n_lags: int) -> np.ndarray:
    """Per lag, the half-width of the band pooled white noise stays in, at level ALPHA corrected
    for `n_lags` looks (infinite where no pair of steps is that far apart)."""
    from scipy.stats import norm

    z = norm.ppf(1 - ALPHA / (2 * n_lags))
    return np.where(pairs > 0, z / np.sqrt(np.maximum(pairs, 1)), np.inf)


def _cross_correlation(target: list[np.ndarray], series: list[np.ndarray], n_lags: int) -> tuple[np.ndarray, np.ndarray]:
    """corr(target[t + k], series[t]) at k = 0..n_lags, pooled; and its band."""
    covariance, pairs = _pooled_covariance(target, series, n_lags)
    scale = np.sqrt(_pooled_covariance(target, None, 0)[0][0] * _pooled_covariance(series, None, 0)[0][0])
    values = covariance / scale if scale > 0 else np.zeros_like(covariance)
    return values, _bands(pairs, n_lags)


def _correlogram(name: str, sequences: list[np.ndarray], n_lags: int) -> Correlogram:
    covariance, pairs = _pooled_covariance(sequences, None, n_lags)
    if covariance[0] <= 0:
        zeros = [1.0] + [0.0] * n_lags
        return Correlogram(name, zeros, zeros, [None] * (n_lags + 1), [], [], None, 0)
    autocorrelation = covariance / covariance[0]
    partial = levinson_durbin(covariance, nlags=n_lags, isacov=True)[2]
    band = _bands(pairs, n_lags)
    significant_acf = [k for k in range(1, n_lags + 1) if abs(autocorrelation[k]) > band[k]]
    significant_pacf = [k for k in range(1, n_lags + 1) if abs(partial[k]) > band[k]]
    return Correlogram(
        name=name,
        acf=_rounded(autocorrelation),
        pacf=_rounded(partial),
        band=_rounded(band),
        significant_acf=significant_acf,
        significant_pacf=significant_pacf,
        period=_dominant_period(autocorrelation, band),
        ar_order=_ar_order(sequences, n_lags),
    )


def _rounded(values) -> list[float]:
    return [round(float(v), 6) if np.isfinite(v) else None for v in values]


def _dominant_period(autocorrelation: np.ndarray, band: np.ndarray) -> int | None:
    """A cycle's length: the first significant peak of the ACF, after the ACF first fell inside
    the band, that rises at least half as high as the highest such peak (a periodic series peaks
    at every multiple of its period, nearly as high). None when the ACF never comes back."""
    below = np.nonzero(autocorrelation[1:] < band[1:])[0]
    if len(below) == 0:
        return None
    start = int(below[0]) + 1
    peaks = [
        k for k in range(max(start, 2), len(autocorrelation) - 1)
        if autocorrelation[k] > band[k] and autocorrelation[k] >= autocorrelation[k - 1] and autocorrelation[k] >= autocorrelation[k + 1]
    ]
    if not peaks:
        return None
    highest = max(autocorrelation[k] for k in peaks)
    return next(k for k in peaks if autocorrelation[k] >= highest / 2)


def _ar_order(sequences: list[np.ndarray], n_lags: int, n_longest: int = 20) -> int:
    """The median over the longest sequences of the autoregressive order BIC prefers (0: none)."""
    orders = []
    for series in sorted(sequences, key=len, reverse=True)[:n_longest]:
        most = min(n_lags, len(series) // 4)
        if most < 1 or np.std(series) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (ValueWarning, RuntimeWarning, UserWarning))
            lags = ar_select_order(series, maxlag=most, ic="bic").ar_lags
        orders.append(int(max(lags)) if lags else 0)
    return int(np.median(orders)) if orders else 0


def _add(candidates: dict[int, list[str]], length: int, reason: str) -> None:
    candidates.setdefault(int(length), []).append(reason)
