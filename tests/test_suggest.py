"""Lengths suggested by the data: what statsmodels' statistics find in series whose structure is
known, the command that shows them, and a grid that sweeps them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sweep import Study, spec_from_dict
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
    assert "dominant period of the target" in suggestion.candidates[period]


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
    assert report.suggestion["candidates"][suggested.index(7)]["reasons"] == [
        "x0 correlates with the target 6 steps later: last such lag + 1"
    ]
    page = write_html(report, tmp_path / "report.html").read_text()
    assert "<li>L=7: x0 correlates with the target 6 steps later: last such lag + 1</li>" in page
    assert "Lengths suggested by the data" in page and "target PACF" in page


def test_suggested_lengths_when_the_data_suggest_none_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    spec = spec_from_dict({
        "name": "flat", "repeats": 1, "problem": {"kind": "echo-first", "length": 12, "n_train": 50},
        "grid": {"lengths": "suggested"},
    })
    with pytest.raises(SpecError, match='the data suggest no length .* give "factors" or a list of lengths instead'):
        Study.create(spec, storage=f"sqlite:///{tmp_path / 's.db'}")
    assert not (tmp_path / "s.db").exists()
