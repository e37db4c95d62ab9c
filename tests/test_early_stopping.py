"""Early stopping: a repeat whose objective on the validation data stopped improving stops there,
frozen inside its pack, exactly as it would stop alone and as the same repeat trained for only
that many epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sweep import Study, spec_from_dict
from sweep.errors import SpecError
from sweep.train.jobs import PackJob
from sweep.data.problems import load_problem
from sweep.spec import LagEchoProblem, Validation
from sweep.train import set_dataset, train_job

PROBLEM = LagEchoProblem(kind="lag-echo", length=8, lag=3, n_train=60, n_test=20, seed=4)
SEEDS = (11, 12, 13, 14, 15, 16)


def job(mode: str, *, epochs: int = 8, patience: int = 1, is_fused: bool = True, seeds: tuple[int, ...] = SEEDS) -> PackJob:
    return PackJob(key=f"L=4 {mode}", length=4, mode=mode, units=4, epochs=epochs, batch_size=6, optimizer="adam",
                   learning_rate=0.02, repeats=tuple(range(len(seeds))), seeds=seeds, is_fused=is_fused,
                   objective="rmse/sample", patience=patience)


def test_patience_without_validation_data_is_refused_naming_the_fix() -> None:
    with pytest.raises(SpecError, match="set validation.fraction above 0, or validation.patience = 0"):
        spec_from_dict({"name": "p", "problem": {"kind": "echo-first"}, "validation": {"fraction": 0, "patience": 2}})


@pytest.mark.parametrize("mode", ["stateless", "stateful"])
def test_a_pack_stops_each_repeat_where_it_would_stop_alone(mode: str) -> None:
    set_dataset(load_problem(PROBLEM, Validation(fraction=0.25)))
    fused, alone = train_job(job(mode)), train_job(job(mode, is_fused=False))
    stops = [result.stopped_epoch for result in fused.results]
    assert stops == [result.stopped_epoch for result in alone.results]
    assert all(stop is None or stop < 8 for stop in stops)  # patience out at the last epoch is no stop
    assert any(stop is not None for stop in stops) and any(stop is None for stop in stops), stops  # both kinds
    for packed, single in zip(fused.results, alone.results):
        trained = packed.stopped_epoch or 8
        assert len(packed.loss_per_epoch) == len(packed.validation_per_epoch) == trained
        np.testing.assert_allclose(packed.loss_per_epoch, single.loss_per_epoch, atol=1e-5)
        np.testing.assert_allclose(packed.validation_per_epoch, single.validation_per_epoch, atol=1e-5)
        for name, score in packed.scores.items():
            assert score == pytest.approx(single.scores[name], abs=1e-5)
        if packed.stopped_epoch is not None:
            # It stopped because its score had not improved for `patience` epochs (lower rmse is better).
            assert packed.validation_per_epoch[-1] >= min(packed.validation_per_epoch[:-1])


def test_a_stopped_repeat_is_the_same_repeat_trained_for_only_its_epochs() -> None:
    set_dataset(load_problem(PROBLEM, Validation(fraction=0.25)))
    stopped = [result for result in train_job(job("stateful")).results if result.stopped_epoch is not None]
    assert stopped
    for result in stopped:
        plain = train_job(job("stateful", epochs=result.stopped_epoch, patience=0, is_fused=False,
                              seeds=(result.seed,))).results[0]
        np.testing.assert_allclose(result.loss_per_epoch, plain.loss_per_epoch, atol=1e-5)
        for name, score in result.scores.items():
            assert score == pytest.approx(plain.scores[name], abs=1e-5)


@pytest.mark.slow
def test_a_study_stores_where_each_repeat_stopped_and_counts_the_point_converged(tmp_path: Path) -> None:
    spec = spec_from_dict({
        "name": "patient", "repeats": 6,
        "problem": {"kind": "lag-echo", "length": 8, "lag": 3, "n_train": 60, "n_test": 20, "seed": 4},
        "grid": {"lengths": [4], "modes": ["stateful"]}, "model": {"units": 4},
        "training": {"epochs": 8, "batch_size": 6, "learning_rate": 0.05}, "objective": {"metric": "rmse"},
        "validation": {"fraction": 0.25, "patience": 1},
    })
    study = Study.create(spec, storage=f"sqlite:///{tmp_path / 's.db'}")
    study.run(workers=1)
    records = study.repeat_records()
    stopped = [record for record in records if "stopped_epoch" in record]
    assert stopped and all(len(r["loss_per_epoch"]) == len(r["validation_per_epoch"]) == r["stopped_epoch"] for r in stopped)
    trial = study.optuna_study.trials[0]
    assert trial.user_attrs["n_stopped_early"] == len(stopped)
    convergence = study.convergence()["L=4 stateful"]
    assert convergence.n_stopped_early == len(stopped)
    if 2 * len(stopped) >= len(records):
        assert not convergence.is_improving and "stopped early" in convergence.describe()
