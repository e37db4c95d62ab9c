"""Hardened boundaries: absurd numbers, option errors, exit statuses, outputs and storages that
cannot be used. Each case is one line on stderr, a documented exit status and nothing written."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from sweep import study as studies
from sweep.errors import DataError, SpecError, StorageError
from sweep.problems import load_npz
from sweep.results import point_row, summarize
from sweep.spec import NpzProblem, grid_points, spec_from_dict
from tests.test_cli import sweep_cli, sweep_in_process


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


# Valid-looking numbers that are absurd


def test_a_range_of_a_billion_lengths_is_refused_before_it_is_built() -> None:
    spec = spec_from_dict({"name": "x", "problem": {"kind": "echo-first"}, "grid": {"lengths": {"start": 1, "stop": 1_000_000_000}}})
    started = time.perf_counter()
    with pytest.raises(SpecError, match="grid.lengths: 21 is longer than the sequence length 20"):
        grid_points(spec, 20)
    assert time.perf_counter() - started < 1.0


def npz_file(tmp_path: Path, **changes: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.normal(size=(8, 4, 1)), "y_train": np.array([0, 1] * 4),
        "x_test": rng.normal(size=(4, 4, 1)), "y_test": np.array([0, 1, 0, 1]),
    }
    arrays.update(changes)
    np.savez(tmp_path / "data.npz", **arrays)
    return tmp_path / "data.npz"


def load(path: Path, task: str = "classification"):
    return load_npz(NpzProblem(kind="npz", path=str(path), task=task))


def test_values_beyond_float32_are_refused_with_the_cause(tmp_path: Path) -> None:
    huge = np.full((8, 4, 1), 1e200)
    with pytest.raises(DataError, match="x_train holds values up to 1e\\+200, beyond float32.*rescale"):
        load(npz_file(tmp_path, x_train=huge))


def test_a_class_label_of_two_to_the_forty_is_refused(tmp_path: Path) -> None:
    labels = np.array([0, 2**40] * 4)
    with pytest.raises(DataError, match="means 1099511627777 classes, more than 10000"):
        load(npz_file(tmp_path, y_train=labels))


def test_boolean_labels_are_the_classes_false_and_true(tmp_path: Path) -> None:
    data = load(npz_file(tmp_path, y_train=np.array([False, True] * 4), y_test=np.array([True, False, True, False])))
    assert data.n_classes == 2
    assert data.y_train[:2, 0].tolist() == [0.0, 1.0]


def test_string_labels_in_an_npz_are_told_to_use_a_table(tmp_path: Path) -> None:
    with pytest.raises(DataError, match='targets must be numbers .*kind = "table"'):
        load(npz_file(tmp_path, y_train=np.array(["a", "b"] * 4)))


def test_a_test_class_never_seen_in_training_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="class 2 occurs in y_test but never in y_train"):
        load(npz_file(tmp_path, y_test=np.array([0, 1, 2, 1])))


@pytest.mark.parametrize("where", ["training", "grid"])
def test_an_infinite_learning_rate_is_refused(where: str) -> None:
    raw = {"name": "x", "problem": {"kind": "echo-first"}}
    if where == "training":
        raw["training"] = {"learning_rate": math.inf}
    else:
        raw["grid"] = {"learning_rate": [0.01, math.inf]}
    with pytest.raises(SpecError, match="learning_rate.* = inf: Input should be a finite number"):
        spec_from_dict(raw)


def test_an_accuracy_interval_stays_within_zero_and_one() -> None:
    scores = [1.0, 1.0, 0.9]
    unbounded = summarize(scores)
    assert unbounded["ci95_high"] > 1.0  # what Student's t gives with three repeats
    bounded = summarize(scores, metric="accuracy/sample")
    assert bounded["ci95_high"] == 1.0 and 0.0 <= bounded["ci95_low"] < bounded["mean"]
    assert summarize([0.01, 0.02, 0.2], metric="rmse/sample")["ci95_low"] == 0.0


def test_status_cuts_the_interval_that_an_earlier_version_stored(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'old.db'}", direction="maximize")
    trial = optuna.trial.create_trial(
        value=0.95, user_attrs={"key": "L=1 stateful", "metric": "accuracy/sample", "ci95_low": 0.85, "ci95_high": 1.0035}
    )
    study.add_trial(trial)
    row = point_row(study.trials[0])
    assert (row.ci95_low, row.ci95_high) == (0.85, 1.0)


# Exit statuses and the command line


def test_a_run_whose_every_point_failed_exits_3_with_the_way_out(tmp_path: Path, sqlite_url: str) -> None:
    study = tmp_path / "diverge.toml"
    study.write_text(
        'name = "diverge"\nrepeats = 2\n[problem]\nkind = "lag-echo"\nlength = 6\nlag = 1\nn_train = 20\nn_test = 10\n'
        '[grid]\nlengths = [3]\nmodes = ["stateful"]\n[model]\nunits = 3\n'
        '[training]\nepochs = 3\noptimizer = "sgd"\nlearning_rate = 1e12\n[objective]\nmetric = "rmse"\n'
    )
    done = sweep_cli("run", str(study), "--workers", "1", "--storage", sqlite_url)
    assert done.returncode == 3, done.stderr
    assert "1 grid point failed (reasons: sweep status diverge)" in done.stderr
    assert "sweep requeue diverge" in done.stderr


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["run", "STUDY", "--repeats", "0"], {}, "Invalid value for '--repeats'"),
        (["run", "STUDY", "--workers", "0"], {}, "Invalid value for '--workers'"),
        (["run", "STUDY", "--epochs", "two"], {}, "Invalid value for '--epochs'"),
        (["run", "STUDY"], {"SWEEP_WORKERS": "abc"}, "Invalid value for '--workers'"),
        (["dashboard", "--port", "0"], {}, "Invalid value for '--port'"),
        (["nope"], {}, "No such command 'nope'"),
        (["run"], {}, "Missing argument 'STUDY'"),
    ],
)
def test_an_option_error_is_one_line_and_exit_status_2(
    capsys, monkeypatch, tiny_study: Path, args: list[str], env: dict, fragment: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = [str(tiny_study) if arg == "STUDY" else arg for arg in args]
    code, out, err = sweep_in_process(capsys, monkeypatch, *args)
    assert code == 2
    line = one_error_line(err)
    assert fragment in line and line.endswith("--help")


@pytest.fixture
def finished_study(tmp_path: Path, sqlite_url: str) -> str:
    from tests.conftest import make_synthetic_study

    make_synthetic_study(sqlite_url)
    return sqlite_url


@pytest.mark.parametrize("target", ["missing/dir/report.html", "a-directory", "read-only/report.html"])
def test_a_report_that_cannot_be_written_is_one_line(capsys, monkeypatch, tmp_path: Path, finished_study: str, target: str) -> None:
    (tmp_path / "a-directory").mkdir()
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        code, _, err = sweep_in_process(capsys, monkeypatch, "report", "synthetic", "--storage", finished_study, "-o", str(tmp_path / target))
    finally:
        read_only.chmod(0o700)
    if target.startswith("read-only") and code == 0:
        pytest.skip("this user may write anywhere (root ignores directory permissions)")
    assert code == 1
    assert "cannot write the report to" in one_error_line(err)


# Storages that cannot be used


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
def test_an_in_memory_database_is_refused_in_one_line(url: str) -> None:
    with pytest.raises(StorageError, match="in-memory database.*use a file"):
        studies.open_storage(url)


def test_a_bad_heartbeat_setting_is_named_as_such_not_as_a_bad_url(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="heartbeat interval 0 s") as info:
        studies.open_storage(f"sqlite:///{tmp_path / 'x.db'}", heartbeat=studies.Liveness(heartbeat_interval=0, grace_period=5))
    assert "bad storage URL" not in str(info.value)
