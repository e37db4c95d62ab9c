"""Candidate subsequence lengths read off the data: autocorrelation, partial autocorrelation,
periods, cross-correlation of the inputs with the target (both prewhitened by the input's own
autoregressive filter), and an autoregressive order, by statsmodels and SciPy.

A series that is not stationary (its unit root not rejected by the augmented Dickey-Fuller test,
its stationarity rejected by KPSS) is analysed by its differences, and the suggestion says so.
The covariances are statsmodels' over the training sequences' real steps laid one after another
with gaps of zeros between them, less their common mean, so that no pair of steps in two
sequences counts, divided by the number of real steps (the estimator of one series, whose
correlations stay within [-1, 1]); the PACF follows from them by Durbin-Levinson. A lag counts as
significant when the pooled value lies outside the band white noise would stay in, at a level
corrected for the number of lags looked at (Bonferroni), so that noise looked at over forty lags
does not suggest a length by chance. Periods are the periodogram's peaks that stand far above
the spectrum around them, each confirmed by a peak of the ACF at its lag, a harmonic folded into
the longer period it divides. The AR order is the median of BIC's choice over the longest
sequences.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage, signal
from statsmodels.tools.sm_exceptions import InterpolationWarning, ValueWarning
from statsmodels.tsa.ar_model import ar_select_order
from statsmodels.tsa.stattools import acovf, adfuller, ccovf, kpss, levinson_durbin

from sweep.data.problems import Dataset

__all__ = ["Correlogram", "Suggestion", "suggest", "target_periods"]

ALPHA = 0.05
MAX_LAGS = 100
# A periodogram ordinate of noise, over the median of the spectrum around it, exceeds r with
# probability 2^-r; a peak is a period when that chance, times the number of ordinates looked at
# (Bonferroni), is below this.
PERIOD_ALPHA = 0.01
MAX_PERIODS = 3


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
    period: int | None  # the strongest confirmed period (None: none)
    ar_order: int
    periods: list[int] = field(default_factory=list)  # every confirmed period, strongest first
    differenced: bool = False  # not stationary: the statistics are of its differences
    adf_p: float | None = None  # augmented Dickey-Fuller: small rejects a unit root
    kpss_p: float | None = None  # KPSS: small rejects stationarity

    def describe_stationarity(self) -> str:
        if self.adf_p is None or self.kpss_p is None:
            return f"{self.name}: too short to test for a unit root"
        tests = f"ADF p={self.adf_p:.2g}, KPSS p={self.kpss_p:.2g}"
        if self.differenced:
            return f"{self.name} is not stationary ({tests}): its differences are analysed"
        return f"{self.name} is taken as stationary ({tests})"


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


def suggest(dataset: Dataset, feature_names: list[str] | None = None, *, target_name: str | None = None) -> Suggestion:
    """Candidate lengths for `dataset`, from 1 to its sequence length.

    Regression with a target per step: the target's ACF and PACF, its periods, its AR order, and
    the lags at which each input correlates with the target (an input that is the target's own
    column, `target_name`, is left out: its correlation with the target is the ACF). Otherwise
    the inputs'.
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
            if name == target_name:
                continue
            # corr(target[t + k], input[t]): the input k steps before the target, both prewhitened.
            whitened_target, whitened_input = _prewhitened(target, [x[:, index] for x in inputs], n_lags)
            values, cross_band = _cross_correlation(whitened_target, whitened_input, n_lags)
            cross[name] = _rounded(values)
            lags = cross_lags[name] = [k for k in range(len(values)) if abs(values[k]) > cross_band[k]]
            if lags:
                _add(candidates, max(lags) + 1, f"{name} correlates with the target {max(lags)} steps later: last such lag + 1")
    else:
        short_lags = _reliable_lags(inputs, n_lags)
        correlograms = [_correlogram(name, [x[:, index] for x in inputs], short_lags) for index, name in enumerate(names)]
    for gram in correlograms:
        subject = "the target" if gram.name == "target" else gram.name
        of = f"{subject}'s differences" if gram.differenced else subject
        for rank, period in enumerate(gram.periods):
            what = "dominant period" if rank == 0 else "period"
            _add(candidates, period, f"{what} of {of} (a periodogram peak, confirmed by the ACF)")
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
    `first` k steps later with `second`): the sum of the products of the pairs of real steps over
    the number of real steps, the same at every lag. Dividing each lag by its own pairs instead
    would weigh far lags up and could make a set of covariances no series can have, and partial
    autocorrelations outside [-1, 1] (-28.9 was seen on an hourly temperature series); with one
    divisor the estimates are those of one series, bounded, as statsmodels' own (MLE) estimator.
    Also the number of pairs of real steps at each lag."""
    x, pairs = _gapped(first, n_lags)
    if second is None:
        products = acovf(x, adjusted=False, demean=False, fft=True, nlag=n_lags)
    else:
        y, _ = _gapped(second, n_lags)
        products = ccovf(x, y, adjusted=False, demean=False, fft=True)[: n_lags + 1]
    return products * len(x) / max(pairs[0], 1.0), pairs


def _bands(pairs: np.ndarray, n_lags: int) -> np.ndarray:
    """Per lag, the half-width of the band pooled white noise stays in, at level ALPHA corrected
    for `n_lags` looks (infinite where no pair of steps is that far apart)."""
    from scipy.stats import norm

    z = norm.ppf(1 - ALPHA / (2 * n_lags))
    return np.where(pairs > 0, z / np.sqrt(np.maximum(pairs, 1)), np.inf)


def _prewhitened(target: list[np.ndarray], series: list[np.ndarray], n_lags: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The target and an input, both passed through the autoregressive filter that turns the input
    into white noise (its AR order by BIC, its coefficients by Durbin-Levinson on its pooled
    covariance), so that a cross-correlation no longer smears the input's own memory over every
    lag: an input with lag-1 autocorrelation 0.95 that drives the target 3 steps later otherwise
    correlates with it at dozens of lags, and the white-noise band no longer holds."""
    order = _ar_order(series, n_lags)
    if order == 0:
        return target, series
    covariance, _ = _pooled_covariance(series, None, order)
    if covariance[0] <= 0:
        return target, series
    coefficients = levinson_durbin(covariance, nlags=order, isacov=True)[1]
    whitening = np.r_[1.0, -coefficients]

    def filtered(sequences: list[np.ndarray]) -> list[np.ndarray]:
        mean = np.mean(np.concatenate(sequences))
        return [signal.lfilter(whitening, [1.0], part - mean)[order:] for part in sequences if len(part) > order]

    return filtered(target), filtered(series)


def _cross_correlation(target: list[np.ndarray], series: list[np.ndarray], n_lags: int) -> tuple[np.ndarray, np.ndarray]:
    """corr(target[t + k], series[t]) at k = 0..n_lags, pooled; and its band."""
    covariance, pairs = _pooled_covariance(target, series, n_lags)
    scale = np.sqrt(_pooled_covariance(target, None, 0)[0][0] * _pooled_covariance(series, None, 0)[0][0])
    values = covariance / scale if scale > 0 else np.zeros_like(covariance)
    return values, _bands(pairs, n_lags)


def target_periods(dataset: Dataset) -> list[int]:
    """The periods of a per-step target in its training part, strongest first, found as
    :func:`suggest` finds them (a seasonal naive forecast's season when none is set)."""
    target = [steps[:, 0] for steps in _sequences(dataset.y_train, dataset.train_lengths)]
    n_lags = _reliable_lags(target, max(1, min(dataset.sequence_length - 1, MAX_LAGS)))
    sequences, n_lags, _ = _stationary(target, n_lags)
    covariance, pairs = _pooled_covariance(sequences, None, n_lags)
    if covariance[0] <= 0:
        return []
    return _periods(sequences, n_lags, (covariance / covariance[0], _bands(pairs, n_lags)))


def _stationary(sequences: list[np.ndarray], n_lags: int) -> tuple[list[np.ndarray], int, tuple]:
    """The sequences, or their differences where they are not stationary, the lags their
    length allows, and the unit-root tests' (differenced, ADF p, KPSS p)."""
    adf_p, kpss_p = _unit_root(sequences)
    differenced = adf_p is not None and adf_p > ALPHA and kpss_p < ALPHA
    if differenced:
        sequences = [np.diff(series) for series in sequences if len(series) > 1]
        n_lags = max(1, min(n_lags, max(len(series) for series in sequences) - 1))
    return sequences, n_lags, (differenced, adf_p, kpss_p)


def _correlogram(name: str, sequences: list[np.ndarray], n_lags: int) -> Correlogram:
    sequences, n_lags, (differenced, adf_p, kpss_p) = _stationary(sequences, n_lags)
    covariance, pairs = _pooled_covariance(sequences, None, n_lags)
    if covariance[0] <= 0:
        zeros = [1.0] + [0.0] * n_lags
        return Correlogram(name, zeros, zeros, [None] * (n_lags + 1), [], [], None, 0,
                           differenced=differenced, adf_p=adf_p, kpss_p=kpss_p)
    autocorrelation = covariance / covariance[0]
    partial = levinson_durbin(covariance, nlags=n_lags, isacov=True)[2]
    band = _bands(pairs, n_lags)
    significant_acf = [k for k in range(1, n_lags + 1) if abs(autocorrelation[k]) > band[k]]
    significant_pacf = [k for k in range(1, n_lags + 1) if abs(partial[k]) > band[k]]
    periods = _periods(sequences, n_lags, (autocorrelation, band))
    return Correlogram(
        name=name,
        acf=_rounded(autocorrelation),
        pacf=_rounded(partial),
        band=_rounded(band),
        significant_acf=significant_acf,
        significant_pacf=significant_pacf,
        period=periods[0] if periods else None,
        ar_order=_ar_order(sequences, n_lags),
        periods=periods,
        differenced=differenced,
        adf_p=adf_p,
        kpss_p=kpss_p,
    )


def _laid_end_to_end(sequences: list[np.ndarray]) -> np.ndarray:
    """The sequences one after another, each less its mean: a long series' segments are its
    pieces in order again; independent sequences make a series whose joins are no trend."""
    return np.concatenate([series - series.mean() for series in sequences if len(series)])


def _unit_root(sequences: list[np.ndarray]) -> tuple[float | None, float | None]:
    """p-values of the augmented Dickey-Fuller test (null: a unit root) and of KPSS (null:
    stationary around a level) on the training steps end to end; None, None where too short."""
    series = np.concatenate([series for series in sequences if len(series)])
    if len(series) < 20 or np.std(series) == 0:
        return None, None
    with warnings.catch_warnings():
        # KPSS reports p-values beyond its table's ends as the ends, with a warning.
        warnings.simplefilter("ignore", (InterpolationWarning, RuntimeWarning, UserWarning))
        adf_p = float(adfuller(series, autolag="AIC", result_object=False)[1])
        kpss_p = float(kpss(series, regression="c", nlags="auto", result_object=False)[1])
    return adf_p, kpss_p


def _periods(sequences: list[np.ndarray], n_lags: int, correlogram: tuple[np.ndarray, np.ndarray]) -> list[int]:
    """The periods of the series, strongest first: periodogram peaks that stand above the median
    of the spectrum around them by more than noise would (PERIOD_ALPHA, Bonferroni over the
    ordinates), each confirmed by the ACF (`correlogram`: its values and band) or by the ACF of
    the series' differences (a cycle survives differencing; a slow wander that hides it in the
    ACF does not), at most MAX_PERIODS, a period that divides a longer one folded into it."""
    series = _laid_end_to_end(sequences)
    if len(series) < 16 or np.std(series) == 0:
        return []
    changes = [np.diff(part) for part in sequences if len(part) > 2]
    covariance, pairs = _pooled_covariance(changes, None, n_lags)
    correlograms = [correlogram]
    if covariance[0] > 0:
        correlograms.append((covariance / covariance[0], _bands(pairs, n_lags)))
    frequencies, power = signal.periodogram(series, detrend="constant")
    frequencies, power = frequencies[1:], power[1:]
    # Half the spectrum around each ordinate: wide enough that a broad peak does not raise its own
    # background, reflected at the ends so that the ends' background is not their own.
    background = ndimage.median_filter(power, size=max(11, len(power) // 2) | 1, mode="reflect")
    ratio = power / np.maximum(background, np.finfo(float).tiny)
    threshold = np.log2(len(power) / PERIOD_ALPHA)
    is_peak = (ratio > threshold) & (power >= np.roll(power, 1)) & (power >= np.roll(power, -1))
    found: list[int] = []
    for index in np.argsort(-ratio):
        period = int(round(1 / frequencies[index]))
        confirmed = any(_acf_confirms(period, values, band) for values, band in correlograms)
        if is_peak[index] and len(found) < MAX_PERIODS and period not in found and confirmed:
            found.append(period)
    return _folded(found)


def _acf_confirms(period: int, autocorrelation: np.ndarray, band: np.ndarray) -> bool:
    """Whether the ACF rises from half a period to a full one (at the period or a lag next to it)
    by more than twice its band: a cycle, not a slow trend or noise."""
    if not 2 <= period < len(autocorrelation) - 1:
        return False
    full = max(autocorrelation[period - 1 : period + 2])
    return bool(full - autocorrelation[max(1, round(period / 2))] > 2 * band[period])


def _folded(periods: list[int]) -> list[int]:
    """The periods less those that divide a longer one found (a peak at 12 beside one at 24 is the
    24-step cycle's harmonic), in their order."""
    def is_harmonic(period: int) -> bool:
        return any(other > period and abs(other / period - round(other / period)) < 0.05 for other in periods)

    return [period for period in periods if not is_harmonic(period)]


def _rounded(values) -> list[float]:
    return [round(float(v), 6) if np.isfinite(v) else None for v in values]


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
