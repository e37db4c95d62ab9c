"""Learning curves: every repeat keeps its mean training loss per epoch, the fused pack as the
one-at-a-time network, and the report draws them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sweep import Study, spec_from_dict
from sweep.train.jobs import PackJob
from sweep.data.problems import load_problem
from sweep.report.html import write_html
from sweep.spec import LagEchoProblem
from sweep.train import set_dataset, train_job


@pytest.mark.parametrize("mode", ["stateless", "stateful"])
def test_a_pack_keeps_every_repeat_s_loss_per_epoch_as_it_is_alone(mode: str) -> None:
    set_dataset(load_problem(LagEchoProblem(kind="lag-echo", length=12, lag=2, n_train=60, n_test=20, seed=1)))
    common = dict(key=f"L=4 {mode}", length=4, mode=mode, units=5, epochs=3, batch_size=8, optimizer="adam",
                  learning_rate=0.01, repeats=(0, 1, 2), seeds=(7, 8, 9))
    fused, alone = train_job(PackJob(is_fused=True, **common)), train_job(PackJob(is_fused=False, **common))
    for packed, single in zip(fused.results, alone.results):
        assert len(packed.loss_per_epoch) == 3
        np.testing.assert_allclose(packed.loss_per_epoch, single.loss_per_epoch, atol=1e-5)
        assert packed.loss_per_epoch[-1] == packed.train_loss
    first, last = np.array([r.loss_per_epoch[0] for r in fused.results]), np.array([r.loss_per_epoch[-1] for r in fused.results])
    assert (last < first).all()  # the curves are of training that learns


@pytest.mark.slow
def test_a_study_stores_each_repeat_s_curve_and_the_report_draws_them(tmp_path: Path) -> None:
    spec = spec_from_dict({
        "name": "curves", "repeats": 2, "problem": {"kind": "echo-first", "length": 6, "n_train": 40, "n_test": 10},
        "grid": {"lengths": [3, 6], "modes": ["stateful"]}, "training": {"epochs": 4},
    })
    study = Study.create(spec, storage=f"sqlite:///{tmp_path / 's.db'}")
    study.run(workers=1)
    records = study.repeat_records()
    assert len(records) == 4 and all(len(record["loss_per_epoch"]) == 4 for record in records)
    page = write_html(study.report(), tmp_path / "report.html").read_text()
    assert '<section id="curves">' in page and "training loss per epoch" in page
    assert "mean loss_per_epoch" not in {name for name in study.optuna_study.trials[0].user_attrs}
