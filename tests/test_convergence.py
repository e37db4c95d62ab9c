"""The capacity check: a point still clearly improving over its last epochs is flagged "not
converged" in status, the report and the dashboard note; a settled one, or noise, is not."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sweep import Study, spec_from_dict
from sweep.report.convergence import ALPHA, check
from sweep.report.dashboard import study_note
from sweep.report.html import write_html

EPOCHS = np.arange(1, 13)


def noisy(curve: np.ndarray, n: int = 20, sd: float = 0.01, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return (curve[None, :] + rng.normal(0, sd, (n, len(curve)))).tolist()


def test_a_validation_score_still_rising_is_flagged_and_one_that_levelled_off_is_not() -> None:
    rising = check(noisy(0.5 + 0.03 * EPOCHS), maximize=True, curve="accuracy")
    levelled = check(noisy(0.9 - 0.4 * np.exp(-EPOCHS)), maximize=True, curve="accuracy")
    assert rising.is_improving and rising.gain > 0 and rising.p_value < ALPHA
    assert rising.window == 3 and rising.epochs == 12
    assert not levelled.is_improving
    assert "not converged" in rising.describe() and "more epochs or units" in rising.describe()
    assert levelled.describe().startswith("converged")


def test_a_loss_still_falling_is_flagged_when_lower_is_better() -> None:
    falling = check(noisy(1.0 - 0.05 * EPOCHS), maximize=False, curve="rmse")
    assert falling.is_improving and falling.gain < 0  # told in the curve's own units: it fell
    assert not check(noisy(1.0 - 0.05 * EPOCHS), maximize=True, curve="rmse").is_improving  # the wrong way is no gain


def test_noise_alone_is_flagged_at_most_at_about_the_test_s_error_rate() -> None:
    flagged = [check(noisy(np.full(12, 0.7), n=30, sd=0.02, seed=seed), maximize=True, curve="a").is_improving
               for seed in range(300)]
    # A flat curve has no whole-run gain in half the draws; of the rest, p < ALPHA in about ALPHA.
    assert np.mean(flagged) <= 3 * ALPHA


def test_a_trend_too_small_beside_the_run_s_progress_is_not_flagged() -> None:
    # Nearly all of the gain came early; the last quarter adds 2% of it, consistently but immaterially.
    curve = np.concatenate([np.linspace(0.5, 0.98, 9), [0.981, 0.982, 0.9830]])
    assert not check(noisy(curve, sd=0.0001), maximize=True, curve="a").is_improving


@pytest.mark.parametrize("curves", [[[0.5]] * 10, [[0.5, 0.6], [0.5]], [[0.5, float("nan")]] * 10, []])
def test_the_check_says_nothing_where_it_cannot(curves: list) -> None:
    assert check(curves, maximize=True, curve="a") is None


def still_learning() -> dict:
    """A lag-echo point whose error is still falling steadily after 12 epochs."""
    return {
        "name": "short", "repeats": 8, "seed": 0,
        "problem": {"kind": "lag-echo", "length": 8, "lag": 2, "n_train": 100, "n_test": 20, "seed": 1},
        "grid": {"lengths": [8], "modes": ["stateful"]}, "model": {"units": 4},
        "training": {"epochs": 12, "batch_size": 10, "learning_rate": 0.02}, "objective": {"metric": "rmse"},
    }


def settled() -> dict:
    """An echo-first point every repeat of which is right on every validation sequence by epoch 3."""
    return {
        "name": "settled", "repeats": 8, "seed": 0,
        "problem": {"kind": "echo-first", "length": 6, "n_train": 100, "n_test": 20, "seed": 1},
        "grid": {"lengths": [3], "modes": ["stateful"]}, "model": {"units": 4},
        "training": {"epochs": 5, "batch_size": 10, "learning_rate": 0.01},
    }


@pytest.mark.slow
def test_status_the_report_and_the_dashboard_note_flag_a_point_cut_short_and_not_a_settled_one(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    short = Study.create(spec_from_dict(still_learning()), storage=storage)
    done = Study.create(spec_from_dict(settled()), storage=storage)
    for study in (short, done):
        study.run(workers=2)
    assert short.convergence()["L=8 stateful"].is_improving
    assert not done.convergence()["L=3 stateful"].is_improving
    for study, flagged, key in ((short, True, "L=8 stateful"), (done, False, "L=3 stateful")):
        status = subprocess.run([sys.executable, "-m", "sweep", "status", study.name, "--storage", storage],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path,
                                env={**os.environ, "COLUMNS": "200"})
        out = " ".join(status.stdout.split())
        assert ("done: not converged" in out) is flagged
        assert (f"{key}: not converged: validation" in out) is flagged
        page = write_html(study.report(), tmp_path / f"{study.name}.html").read_text()
        assert (f"Not converged: {key}" in page) is flagged
        assert '<section id="validation_curves">' in page
        assert bool(re.search(f"{key} \\(not converged\\)", page)) is flagged
        assert (f"- {key}: not converged" in study_note(study.report())) is flagged
