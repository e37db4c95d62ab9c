"""Baselines and skill: the naive forecasts scored as the networks are, kept with the study, and
every view saying whether the winner beats them."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from sweep import Study, load_spec, spec_from_dict
from sweep.data.baselines import score_baselines
from sweep.data.problems import load_data
from sweep.metrics import metric
from sweep.report.skill import yardstick
from sweep.store import record

ROOT = Path(__file__).resolve().parent.parent


def test_skill_is_the_share_of_the_way_from_the_baseline_to_perfect() -> None:
    assert metric("accuracy").skill(0.75, 0.5) == pytest.approx(0.5)
    assert metric("accuracy").skill(0.5, 0.5) == 0.0
    assert metric("accuracy").skill(0.4, 0.5) == pytest.approx(-0.2)
    assert metric("rmse").skill(0.5, 2.0) == pytest.approx(0.75)
    assert metric("rmse").skill(4.0, 2.0) == pytest.approx(-1.0)
    assert metric("accuracy").skill(1.0, 1.0) is None and metric("mae").skill(0.0, 0.0) is None


def test_the_majority_class_of_the_training_part_scores_its_share() -> None:
    dataset = load_data(load_spec(ROOT / "studies" / "echo_first.toml"))
    (majority,) = score_baselines(dataset)
    labels = dataset.y_test[:, 0]
    assert majority.name == "majority class"
    # Balanced classes: the prior 0.5 rounds to class 0; its accuracy is the share of zeros.
    assert majority.scores["test"]["accuracy/sample"] == pytest.approx(float(np.mean(labels == 0)))
    assert majority.scores["test"]["log_loss/sample"] == pytest.approx(math.log(2), abs=1e-6)
    assert set(majority.scores) == {"validation", "test"}


def test_the_training_mean_is_scored_in_the_target_s_own_units(tmp_path: Path) -> None:
    spec = spec_from_dict({"name": "m", "problem": {"kind": "lag-echo", "length": 6, "lag": 2, "n_train": 40, "n_test": 20},
                           "objective": {"metric": "rmse"}, "validation": {"fraction": 0}})
    dataset = load_data(spec)
    (mean,) = score_baselines(dataset)
    target = dataset.y_train[:, :, 0].mean()
    expected = float(np.sqrt(np.mean((dataset.y_test[:, :, 0] - target) ** 2)))
    assert mean.name == "training mean" and mean.scores["test"]["rmse/sample"] == pytest.approx(expected, rel=1e-5)


def series_study(tmp_path: Path, values: np.ndarray, **changes) -> dict:
    pd.DataFrame({"t": np.arange(len(values)), "level": values}).to_csv(tmp_path / "series.csv", index=False)
    return {
        "name": "series", "repeats": 2,
        "problem": {"kind": "series", "path": str(tmp_path / "series.csv"), "target": "level", "order": "t",
                    "horizon": 1, "test_fraction": 0.2},
        "grid": {"lengths": [4], "modes": ["stateful"]}, "model": {"units": 2},
        "training": {"epochs": 1, "batch_size": 4}, "objective": {"metric": "rmse"}, **changes,
    }


def test_persistence_predicts_the_last_observed_value(tmp_path: Path) -> None:
    values = np.cumsum(np.random.default_rng(0).normal(size=200)) + 50
    dataset = load_data(spec_from_dict(series_study(tmp_path, values, validation={"fraction": 0})))
    baselines = {baseline.name: baseline for baseline in score_baselines(dataset, target="level")}
    # 199 steps have a target one step ahead; the test part is the last 40 of them (a fifth,
    # rounded up): inputs values[159:199], targets values[160:200].
    expected = float(np.sqrt(np.mean((values[160:200] - values[159:199]) ** 2)))
    assert baselines["persistence"].scores["test"]["rmse/sample"] == pytest.approx(expected, rel=1e-4)


def test_the_yardstick_is_the_best_baseline_on_the_data_points_are_ranked_on() -> None:
    baselines = {"training mean": {"validation": {"rmse/sample": 3.0}, "test": {"rmse/sample": 3.5}},
                 "persistence": {"validation": {"rmse/sample": 1.0}, "test": {"rmse/sample": 1.2}}}
    stick = yardstick(baselines, metric="rmse/sample", ranked_on="validation")
    assert (stick.name, stick.score, stick.test_score) == ("persistence", 1.0, 1.2)
    assert stick.is_beaten_by(0.9) and not stick.is_beaten_by(1.0)
    assert yardstick(None, metric="rmse/sample", ranked_on="validation") is None


def sweep_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.slow
def test_a_series_study_that_loses_to_persistence_says_so_everywhere(tmp_path: Path) -> None:
    """A random walk: nothing predicts it better than its last value, and one epoch of two units
    does far worse. Status, list, the report, the dashboard note and the API all say so."""
    values = np.cumsum(np.random.default_rng(1).normal(size=300)) + 100
    study = Study.create(spec_from_dict(series_study(tmp_path, values)), storage=f"sqlite:///{tmp_path / 's.db'}")
    study.run(workers=1)
    assert set(study.optuna_study.user_attrs[record.BASELINES]) == {"training mean", "persistence"}
    choice = study.chosen()
    assert choice.is_below_baseline and choice.yardstick.name == "persistence" and choice.skill < 0
    assert choice.describe().startswith("Below baseline: L=4 stateful scores rmse/sample")
    assert study.records()[0]["is_below_baseline"] and study.records()[0]["skill"] < 0
    url = f"sqlite:///{tmp_path / 's.db'}"
    status = sweep_cli("status", "series", "--storage", url, cwd=tmp_path).stdout
    assert "done: below baseline" in status and "Below baseline: L=4 stateful" in status
    assert "baselines (rmse/sample): training mean" in status and "persistence" in status
    assert "below baseline" in sweep_cli("list", "--storage", url, cwd=tmp_path).stdout
    page = study.write_report(tmp_path / "r.html").read_text()
    assert "Below baseline: L=4 stateful" in page and "done: below baseline" in page
    from sweep.report.dashboard import study_note

    assert "Below baseline: L=4 stateful" in study_note(study.report())


@pytest.mark.slow
def test_a_classifier_of_shuffled_labels_is_below_the_majority_class(tmp_path: Path) -> None:
    """Labels drawn at random, four in five of one class: the network learns nothing but the
    prior, and does not beat the majority class."""
    rng = np.random.default_rng(2)
    arrays = {f"x_{part}": rng.normal(size=(n, 6, 1)).astype(np.float32) for part, n in (("train", 100), ("test", 40))}
    arrays.update({f"y_{part}": (rng.random((n, 1)) < 0.2).astype(np.float32) for part, n in (("train", 100), ("test", 40))})
    np.savez(tmp_path / "noise.npz", **arrays)
    spec = spec_from_dict({
        "name": "noise", "repeats": 2, "problem": {"kind": "npz", "path": str(tmp_path / "noise.npz"), "task": "classification"},
        "grid": {"lengths": [3, 6], "modes": ["stateless"]}, "model": {"units": 2}, "training": {"epochs": 1},
    })
    study = Study.create(spec, storage=f"sqlite:///{tmp_path / 's.db'}")
    study.run(workers=1)
    assert all(row.is_below_baseline for row in study.rows())
    assert study.chosen().describe().startswith("Below baseline:")
    assert "majority class" in study.chosen().describe()


@pytest.mark.slow
def test_a_study_made_before_baselines_shows_none_without_its_data(tmp_path: Path) -> None:
    values = np.sin(np.arange(120) / 5)
    url = f"sqlite:///{tmp_path / 's.db'}"
    Study.create(spec_from_dict(series_study(tmp_path, values, repeats=1)), storage=url)
    # As a study made before baselines were kept: none stored.
    with sqlite3.connect(tmp_path / "s.db") as connection:
        connection.execute("DELETE FROM study_user_attributes WHERE key = ?", (record.BASELINES,))
    assert record.BASELINES not in optuna.load_study(study_name="series", storage=url).user_attrs
    (tmp_path / "series.csv").unlink()
    # The copy of the data the study keeps scores them on read, writing nothing.
    status = sweep_cli("status", "series", "--storage", url, cwd=tmp_path)
    assert status.returncode == 0 and "baselines (rmse/sample): training mean" in status.stdout
    assert record.BASELINES not in optuna.load_study(study_name="series", storage=url).user_attrs
    # A study made before data were kept, too, has neither.
    with sqlite3.connect(tmp_path / "s.db") as connection:
        connection.execute("DELETE FROM sweep_data_files")
    status = sweep_cli("status", "series", "--storage", url, cwd=tmp_path)
    assert status.returncode == 0 and "no baseline stored: skill cannot be measured" in status.stdout


def test_the_seasonal_naive_forecast_is_the_value_one_season_back(tmp_path: Path) -> None:
    """Predicting 1 step ahead, season 12: the forecast of values[t] is values[t - 12], read across
    the join of the training and test parts."""
    values = np.random.default_rng(3).normal(size=200) + 10
    dataset = load_data(spec_from_dict(series_study(tmp_path, values, validation={"fraction": 0})))
    baselines = {b.name: b for b in score_baselines(dataset, target="level", season=12)}
    # Targets of the test part: values[160:200]; one season back: values[148:188].
    expected = float(np.sqrt(np.mean((values[160:200] - values[148:188]) ** 2)))
    assert baselines["seasonal naive (12 steps)"].scores["test"]["rmse/sample"] == pytest.approx(expected, rel=1e-4)


def test_a_horizon_longer_than_the_season_looks_back_whole_seasons(tmp_path: Path) -> None:
    values = np.random.default_rng(4).normal(size=200)
    spec = spec_from_dict(series_study(tmp_path, values, validation={"fraction": 0.25}))
    spec = spec.model_copy(update={"problem": spec.problem.model_copy(update={"horizon": 5})})
    dataset = load_data(spec)
    (seasonal,) = [b for b in score_baselines(dataset, season=3, horizon=5) if b.name.startswith("seasonal")]
    # 195 framed steps: 39 test (values[161 + 5 - 1 ...]), targets values[t + 5]; two seasons (6) back.
    n_test = 39
    targets = values[200 - n_test :]
    expected = float(np.sqrt(np.mean((targets - values[200 - n_test - 6 : 200 - 6]) ** 2)))
    assert seasonal.scores["test"]["rmse/sample"] == pytest.approx(expected, rel=1e-4)
    assert set(seasonal.scores) == {"validation", "test"}


@pytest.mark.slow
def test_a_series_study_that_loses_to_seasonal_naive_says_so(tmp_path: Path) -> None:
    """A daily cycle of 24 steps, repeated almost exactly: last day's value at this hour is nearly
    perfect, and one epoch of two units is not. The season is found in the training part, stored
    in the baseline's name and shown; the chosen point is marked below it."""
    steps = np.arange(24 * 30)
    values = 10 + 5 * np.sin(2 * np.pi * steps / 24) + 0.05 * np.random.default_rng(5).normal(size=len(steps))
    study = Study.create(spec_from_dict(series_study(tmp_path, values)), storage=f"sqlite:///{tmp_path / 's.db'}")
    assert "seasonal naive (24 steps)" in study.optuna_study.user_attrs[record.BASELINES]
    study.run(workers=1)
    choice = study.chosen()
    assert choice.is_below_baseline and choice.yardstick.name == "seasonal naive (24 steps)"
    assert choice.describe().startswith("Below baseline:") and "seasonal naive (24 steps)" in choice.describe()
    status = sweep_cli("status", "series", "--storage", f"sqlite:///{tmp_path / 's.db'}", cwd=tmp_path).stdout
    assert "seasonal naive (24 steps)" in status and "done: below baseline" in status


def test_a_season_set_in_the_study_is_the_one_used(tmp_path: Path) -> None:
    values = np.random.default_rng(6).normal(size=300)
    data = series_study(tmp_path, values)
    data["problem"]["season"] = 7
    study = Study.create(spec_from_dict(data), storage=f"sqlite:///{tmp_path / 's.db'}")
    assert "seasonal naive (7 steps)" in study.optuna_study.user_attrs[record.BASELINES]
