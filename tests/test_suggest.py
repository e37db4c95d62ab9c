"""Lengths suggested by the data: what statsmodels' statistics find in series whose structure is
known, the command that shows them, and a grid that sweeps them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweep import Study, load_spec, spec_from_dict
from sweep.api import suggest_lengths
from sweep.errors import SpecError
from sweep.data.problems import Dataset, load_problem
from sweep.report.html import write_html
from tests.conftest import collect
from sweep.spec import LagEchoProblem
from sweep.data.suggest import suggest
from tests.test_cli import sweep_in_process


def series_dataset(series: np.ndarray, segments: int) -> Dataset:
    """A series cut into contiguous training segments, the task to predict its next value."""
    x = series[:-1].reshape(segments, -1, 1).astype(np.float32)
    y = series[1:].reshape(segments, -1, 1).astype(np.float32)
    lengths = np.full(segments, x.shape[1])
    return Dataset(x_train=x, y_train=y, x_test=x[:1], y_test=y[:1], task="regression", n_classes=0,
                   train_lengths=lengths, test_lengths=lengths[:1])


@pytest.mark.parametrize("lag", [3, 10, 25])
def test_on_lag_echo_a_suggested_length_covers_the_lag(lag: int) -> None:
    dataset = load_problem(LagEchoProblem(kind="lag-echo", length=40, lag=lag, n_train=300, n_test=20, seed=2))
    suggestion = suggest(dataset)
    assert lag + 1 in suggestion.lengths
    assert any("correlates with the target" in reason for reason in suggestion.candidates[lag + 1])


@pytest.mark.parametrize("period", [7, 12, 24])
def test_a_seasonal_series_suggests_its_period(period: int) -> None:
    rng = np.random.default_rng(period)
    steps = np.arange(period * 40 + 1)
    series = np.sin(2 * np.pi * steps / period) + 0.5 * rng.standard_normal(len(steps))
    suggestion = suggest(series_dataset(series, segments=4))
    assert suggestion.correlograms[0].period == period
    assert any(reason.startswith("dominant period of the target") for reason in suggestion.candidates[period])


def test_white_noise_suggests_no_length() -> None:
    """The band, corrected for the lags looked at, keeps noise from suggesting lengths by chance."""
    series = np.random.default_rng(4).standard_normal(2001)
    suggestion = suggest(series_dataset(series, segments=4))
    assert suggestion.candidates == {}


def test_an_autoregressive_series_suggests_its_order() -> None:
    rng = np.random.default_rng(5)
    series = np.zeros(3001)
    for t in range(3, len(series)):
        series[t] = 0.5 * series[t - 1] - 0.3 * series[t - 3] + rng.standard_normal()
    suggestion = suggest(series_dataset(series, segments=3))
    gram = suggestion.correlograms[0]
    assert gram.ar_order == 3 and gram.significant_pacf[-1] == 3
    assert "AR order of the target by BIC" in suggestion.candidates[3]
    assert "last significant PACF lag of the target + 1" in suggestion.candidates[4]


def test_sweep_suggest_prints_each_length_with_its_reason_and_writes_nothing(capsys, monkeypatch, tmp_path: Path) -> None:
    study = tmp_path / "lag.toml"
    study.write_text('name = "lag"\n[problem]\nkind = "lag-echo"\nlength = 30\nlag = 6\nn_train = 200\n[objective]\nmetric = "rmse"\n')
    monkeypatch.chdir(tmp_path)
    code, out, err = sweep_in_process(capsys, monkeypatch, "suggest", str(study))
    assert code == 0, err
    assert "x0 correlates with the target 6 steps later: last such lag + 1" in out
    assert "ACF" in out and "PACF" in out
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lag.toml"]


def lag_spec(lengths: str, lag: int = 6) -> object:
    return spec_from_dict({
        "name": "suggested", "repeats": 1,
        "problem": {"kind": "lag-echo", "length": 30, "lag": lag, "n_train": 200, "n_test": 20},
        "grid": {"lengths": lengths, "modes": ["stateful"]}, "objective": {"metric": "rmse"},
    })


def test_a_grid_of_suggested_lengths_stores_them_with_their_reasons(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = Study.create(lag_spec("factors+suggested"), storage=storage)
    suggested = [c["length"] for c in study.optuna_study.user_attrs["suggestion"]["candidates"]]
    assert 7 in suggested
    factors = [1, 2, 3, 5, 6, 10, 15, 30]
    assert [p.length for p in study.points] == sorted(set(factors) | set(suggested))
    report = collect(study.optuna_study, study.spec, 30)
    # The cross-correlation is why 7 is there (a PACF at lag 6 of the target, whose first 6 steps
    # are zeros, may join it near the band's edge).
    assert report.suggestion["candidates"][suggested.index(7)]["reasons"][0] == (
        "x0 correlates with the target 6 steps later: last such lag + 1"
    )
    page = write_html(report, tmp_path / "report.html").read_text()
    assert "<li>L=7: x0 correlates with the target 6 steps later: last such lag + 1" in page
    assert "Lengths suggested by the data" in page and "target PACF" in page


def test_suggested_lengths_when_the_data_suggest_none_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    spec = spec_from_dict({
        "name": "flat", "repeats": 1, "problem": {"kind": "echo-first", "length": 12, "n_train": 50},
        "grid": {"lengths": "suggested"},
    })
    with pytest.raises(SpecError, match='the data suggest no length .* give "factors" or a list of lengths instead'):
        Study.create(spec, storage=f"sqlite:///{tmp_path / 's.db'}")
    assert not (tmp_path / "s.db").exists()


@settings(max_examples=40, deadline=None)
@given(
    ar=st.lists(st.floats(-0.99, 0.99), min_size=0, max_size=3),
    ma=st.lists(st.floats(-0.99, 0.99), min_size=0, max_size=2),
    n_sequences=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_every_correlation_printed_is_within_minus_one_and_one(ar: list, ma: list, n_sequences: int, seed: int) -> None:
    """ARMA series of any (stable or not) coefficients, pooled over a few sequences of their own
    lengths: every ACF, PACF and cross-correlation suggest prints is a correlation."""
    from statsmodels.tsa.arima_process import arma_generate_sample

    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 80, size=n_sequences)
    steps = int(lengths.max())
    x = np.zeros((n_sequences, steps, 1), dtype=np.float32)
    for row, length in enumerate(lengths):
        sample = arma_generate_sample(np.r_[1, -np.asarray(ar)], np.r_[1, ma], nsample=int(length), scale=1.0,
                                      distrvs=rng.standard_normal)
        x[row, steps - length:, 0] = np.clip(sample, -1e6, 1e6)
    dataset = Dataset(x, x.copy(), x[:1], x[:1].copy(), task="regression", train_lengths=lengths,
                      test_lengths=lengths[:1])
    suggestion = suggest(dataset)
    values = [v for gram in suggestion.correlograms for v in (*gram.acf, *gram.pacf) if v is not None]
    values += [v for series in suggestion.cross.values() for v in series if v is not None]
    assert all(-1 - 1e-9 <= v <= 1 + 1e-9 for v in values), min(values, key=lambda v: -abs(v))


# Series whose answers are known (the list): periods, differencing, orders.


def test_white_noise_has_no_period_and_is_stationary() -> None:
    series = np.random.default_rng(10).standard_normal(2001)
    gram = suggest(series_dataset(series, segments=4)).correlograms[0]
    assert gram.periods == [] and not gram.differenced


def test_a_random_walk_is_differenced_and_has_no_period() -> None:
    series = np.cumsum(np.random.default_rng(11).standard_normal(2001))
    suggestion = suggest(series_dataset(series, segments=4))
    gram = suggestion.correlograms[0]
    assert gram.differenced and gram.periods == []
    assert "not stationary" in gram.describe_stationarity() and "differences are analysed" in gram.describe_stationarity()
    assert all(-1 <= value <= 1 for value in (*gram.acf, *gram.pacf) if value is not None)


def test_a_near_unit_root_with_a_daily_cycle_suggests_24() -> None:
    """AR(1) with phi 0.995, as an hourly temperature's lag-1 autocorrelation is, plus a 24-step
    cycle: the cycle's length is among the candidates (the 12-step harmonic folded into it)."""
    rng = np.random.default_rng(12)
    n = 24 * 200 + 1
    level = np.zeros(n)
    for t in range(1, n):
        level[t] = 0.995 * level[t - 1] + rng.standard_normal()
    steps = np.arange(n)
    series = level + 3 * np.sin(2 * np.pi * steps / 24) + np.sin(2 * np.pi * steps / 12)
    suggestion = suggest(series_dataset(series, segments=20))
    assert 24 in suggestion.correlograms[0].periods and 12 not in suggestion.correlograms[0].periods
    assert 24 in suggestion.lengths


def test_an_ar2_series_suggests_order_2() -> None:
    rng = np.random.default_rng(13)
    series = np.zeros(4001)
    for t in range(2, len(series)):
        series[t] = 0.5 * series[t - 1] - 0.4 * series[t - 2] + rng.standard_normal()
    gram = suggest(series_dataset(series, segments=4)).correlograms[0]
    assert gram.ar_order == 2


def test_a_sine_of_period_17_in_noise_suggests_17() -> None:
    rng = np.random.default_rng(14)
    steps = np.arange(17 * 60 + 1)
    series = np.sin(2 * np.pi * steps / 17) + rng.standard_normal(len(steps))
    suggestion = suggest(series_dataset(series, segments=4))
    assert suggestion.correlograms[0].periods == [17] and 17 in suggestion.lengths


def test_the_sunspot_cycle_is_about_eleven_years() -> None:
    spec = load_spec(Path(__file__).resolve().parent.parent / "studies" / "sunspots.toml")
    suggestion = suggest_lengths(spec)
    gram = suggestion.correlograms[0]
    assert gram.period is not None and 10 <= gram.period <= 12, gram.periods
    assert "sunspots" not in suggestion.cross  # the target's own column is no input to correlate


def test_an_input_with_long_memory_is_prewhitened_before_it_is_cross_correlated() -> None:
    """An AR(1) input (phi 0.95) that drives the target 3 steps later: raw, it correlates with the
    target at dozens of lags; prewhitened, at lag 3 alone, and the candidate is 4."""
    rng = np.random.default_rng(15)
    n, segments = 4000, 4
    driver = np.zeros(n)
    for t in range(1, n):
        driver[t] = 0.95 * driver[t - 1] + rng.standard_normal()
    target = np.r_[np.zeros(3), driver[:-3]] + 0.5 * rng.standard_normal(n)
    x = np.stack([driver], axis=-1)[: n - n % segments].reshape(segments, -1, 1).astype(np.float32)
    y = target[: n - n % segments].reshape(segments, -1, 1).astype(np.float32)
    lengths = np.full(segments, x.shape[1])
    dataset = Dataset(x_train=x, y_train=y, x_test=x[:1], y_test=y[:1], task="regression", train_lengths=lengths, test_lengths=lengths[:1])
    suggestion = suggest(dataset, ["driver"])
    assert suggestion.cross_lags["driver"] == [3]
    assert any("driver correlates with the target 3 steps later" in reason for reason in suggestion.candidates[4])
