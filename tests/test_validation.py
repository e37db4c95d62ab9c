"""The validation split: held out by whole sequence and seeded, the objective that ranks the points
measured on it after every epoch (fused as alone), the chosen point's test score reported apart,
and studies made before the split resumed without it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from sweep import Study, apply_overrides, load_spec, spec_from_dict
from sweep.store import protocol, record
from sweep.errors import DataError, SpecError, StorageError
from sweep.train.jobs import PackJob
from sweep.data.problems import Dataset, hold_out, load_problem
from sweep.store.record import read_point
from sweep.spec import EchoFirstProblem, LagEchoProblem, SeriesProblem, TableProblem, Validation
from sweep.train import set_dataset, train_job

ECHO = EchoFirstProblem(kind="echo-first", length=6, n_train=50, n_test=20, seed=3)
LAG = LagEchoProblem(kind="lag-echo", length=6, lag=1, n_train=50, n_test=20, seed=3)  # every sequence its own


def rows_of(array: np.ndarray) -> list[bytes]:
    return sorted(row.tobytes() for row in array)


def test_whole_sequences_are_held_out_by_a_seed_and_the_rest_keep_their_order() -> None:
    whole = load_problem(LAG)
    split = load_problem(LAG, Validation(fraction=0.2, seed=4))
    assert (len(split.x_train), len(split.x_val)) == (40, 10)
    # Every sequence is in exactly one part, whole, with its own target.
    assert rows_of(np.concatenate([split.x_train, split.x_val])) == rows_of(whole.x_train)
    pairs = {x.tobytes(): y.tobytes() for x, y in zip(whole.x_train, whole.y_train)}
    assert all(pairs[x.tobytes()] == y.tobytes() for x, y in zip(split.x_val, split.y_val))
    kept = [next(i for i, row in enumerate(whole.x_train) if np.array_equal(row, x)) for x in split.x_train]
    assert kept == sorted(kept)
    np.testing.assert_array_equal(split.x_test, whole.x_test)  # the test data are untouched
    again, other = load_problem(LAG, Validation(fraction=0.2, seed=4)), load_problem(LAG, Validation(fraction=0.2, seed=5))
    assert again.fingerprint == split.fingerprint and other.fingerprint != split.fingerprint


def test_each_class_gives_its_share_so_the_validation_data_are_balanced_as_the_training_data() -> None:
    split = load_problem(EchoFirstProblem(kind="echo-first", length=4, n_train=1000, n_test=10), Validation())
    assert split.y_val.sum() == 100 and len(split.y_val) == 200  # the reference table's 50:50, exactly


def classes_of(sizes: list[int]) -> Dataset:
    labels = np.repeat(np.arange(len(sizes)), sizes).astype(np.float32)[:, None]
    x = np.random.default_rng(0).normal(size=(len(labels), 3, 1)).astype(np.float32)
    return Dataset(x_train=x, y_train=labels, x_test=x[:2], y_test=labels[:2], task="classification",
                   n_classes=len(sizes))


@pytest.mark.parametrize("sizes, fraction", [([10, 10, 1], 0.6), ([2] * 10, 0.2), ([1, 1, 1, 5], 0.5)])
def test_no_class_is_held_out_whole(sizes: list[int], fraction: float) -> None:
    for seed in range(20):
        split = hold_out(classes_of(sizes), Validation(fraction=fraction, seed=seed))
        assert set(split.y_train[:, 0]) == set(range(len(sizes))), (seed, split.y_val[:, 0])
        assert len(split.y_val) >= 1


def test_with_the_split_off_the_data_and_their_fingerprint_are_as_before() -> None:
    assert load_problem(ECHO, Validation(fraction=0)).fingerprint == load_problem(ECHO).fingerprint
    assert not load_problem(ECHO, Validation(fraction=0)).has_validation


@pytest.mark.parametrize("fraction, n_train", [(0.01, 20), (0.99, 20)])
def test_a_split_that_leaves_either_part_empty_is_refused_naming_the_fix(fraction: float, n_train: int) -> None:
    problem = LagEchoProblem(kind="lag-echo", length=4, lag=1, n_train=n_train, n_test=4)
    with pytest.raises(DataError, match="validation.fraction .* set it to 0"):
        load_problem(problem, Validation(fraction=fraction))


@pytest.mark.parametrize("table, message", [
    ({"fraction": 1.0}, "validation.fraction"),
    ({"fraction": -0.1}, "validation.fraction"),
    ({"share": 0.2}, "unknown key 'validation.share'"),
])
def test_bad_validation_settings_are_refused_with_the_key(table: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec_from_dict({"name": "v", "problem": {"kind": "echo-first"}, "validation": table})


def test_standardization_uses_the_remaining_training_data_alone(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [{"seq": f"s{i}", "t": t, "a": rng.normal(i, 1.0), "y": float(i % 2)} for i in range(20) for t in range(5)]
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    problem = TableProblem(kind="table", train=str(tmp_path / "d.csv"), test_fraction=0.2, sequence="seq", order="t",
                           features=["a"], target="y", task="classification")
    data = load_problem(problem, Validation(fraction=0.25, seed=1))
    assert data.has_validation
    # Inputs standardized with the statistics of the training part: mean 0, sd 1 there, not over the held-out part.
    np.testing.assert_allclose([data.x_train.mean(), data.x_train.std()], [0.0, 1.0], atol=1e-5)
    assert abs(data.x_val.mean()) > 1e-3


def test_a_series_holds_out_the_steps_just_before_its_test_part(tmp_path: Path) -> None:
    pd.DataFrame({"time": np.arange(60), "v": np.arange(60, dtype=float)}).to_csv(tmp_path / "s.csv", index=False)
    problem = SeriesProblem(kind="series", path=str(tmp_path / "s.csv"), target="v", order="time", test_fraction=0.2,
                            segments=2, standardize=False)
    data = load_problem(problem, Validation(fraction=0.25))
    # 59 framed steps: the last 12 are the test; a quarter of the 47 before, 12, is the validation; 35 train in 2 segments.
    test_steps = data.x_test[0, -data.test_lengths[0]:, 0]
    val_steps = data.x_val[0, -data.val_lengths[0]:, 0]
    train_steps = np.concatenate([data.x_train[i, -n:, 0] for i, n in enumerate(data.train_lengths)])
    np.testing.assert_array_equal(train_steps, np.arange(35))
    np.testing.assert_array_equal(val_steps, np.arange(35, 47))
    np.testing.assert_array_equal(test_steps, np.arange(47, 59))
    assert data.train_lengths.tolist() == [18, 17]


@pytest.mark.parametrize("mode", ["stateless", "stateful"])
def test_a_pack_keeps_every_repeat_s_validation_curve_as_it_is_alone(mode: str) -> None:
    set_dataset(load_problem(LagEchoProblem(kind="lag-echo", length=12, lag=2, n_train=60, n_test=20, seed=1), Validation()))
    common = dict(key=f"L=4 {mode}", length=4, mode=mode, units=5, epochs=3, batch_size=8, optimizer="adam",
                  learning_rate=0.01, repeats=(0, 1, 2), seeds=(7, 8, 9), objective="rmse/sample")
    fused, alone = train_job(PackJob(is_fused=True, **common)), train_job(PackJob(is_fused=False, **common))
    for packed, single in zip(fused.results, alone.results):
        assert len(packed.validation_per_epoch) == 3
        np.testing.assert_allclose(packed.validation_per_epoch, single.validation_per_epoch, atol=1e-5)
        assert packed.validation_per_epoch[-1] == packed.validation_scores["rmse/sample"]
        assert set(packed.validation_scores) == set(packed.scores)
    first = np.array([r.validation_per_epoch[0] for r in fused.results])
    last = np.array([r.validation_per_epoch[-1] for r in fused.results])
    assert (last < first).all()  # the validation error falls as the networks learn


def test_the_validation_data_are_scored_exactly_as_the_test_data_are() -> None:
    data = load_problem(LagEchoProblem(kind="lag-echo", length=8, lag=1, n_train=30, n_test=12, seed=2))
    set_dataset(dataclasses.replace(data, x_val=data.x_test, y_val=data.y_test, val_lengths=data.test_lengths))
    for is_fused in (True, False):
        result = train_job(PackJob(key="L=4 stateful", length=4, mode="stateful", units=3, epochs=2, batch_size=6,
                                   optimizer="adam", learning_rate=0.01, repeats=(0, 1), seeds=(1, 2), is_fused=is_fused,
                                   objective="mae/sequence"))
        for repeat in result.results:
            assert repeat.validation_scores == repeat.scores


def tiny_spec(tmp_path: Path, **changes) -> dict:
    raw = {"name": "val", "repeats": 2, "problem": {"kind": "echo-first", "length": 6, "n_train": 40, "n_test": 20},
           "grid": {"lengths": [3, 6], "modes": ["stateful"]}, "model": {"units": 3}, "training": {"epochs": 1}}
    return {**raw, **changes}


def test_points_are_ranked_on_the_validation_data_and_the_test_scores_are_kept_apart(tmp_path: Path) -> None:
    study = Study.create(spec_from_dict(tiny_spec(tmp_path)), storage=f"sqlite:///{tmp_path / 's.db'}")
    study.run(workers=1)
    for trial in study.optuna_study.trials:
        repeats = record.finished_repeats(trial)
        validation = [repeats[i]["validation/accuracy/sample"] for i in sorted(repeats)]
        test = [repeats[i]["accuracy/sample"] for i in sorted(repeats)]
        assert [trial.intermediate_values[i] for i in sorted(repeats)] == validation
        assert trial.value == pytest.approx(np.mean(validation))
        assert trial.user_attrs["test"]["mean"] == pytest.approx(np.mean(test))
        assert trial.user_attrs["ranked_on"] == "validation"
        assert all(len(repeats[i]["validation_per_epoch"]) == 1 for i in repeats)
    choice = study.chosen()
    best = study.stored_points()[0]
    assert (choice.key, choice.ranked_on, choice.test) == (best.key, "validation", best.test_summary)
    assert "the test data played no part in choosing it" in choice.describe()


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_status_gives_the_chosen_point_s_test_score_and_says_why(tmp_path: Path) -> None:
    study_file = tmp_path / "v.toml"
    study_file.write_text(
        'name = "v"\nrepeats = 2\n[problem]\nkind = "echo-first"\nlength = 6\nn_train = 40\nn_test = 20\n'
        '[grid]\nlengths = [6]\nmodes = ["stateful"]\n[model]\nunits = 3\n[training]\nepochs = 1\n'
    )
    done = run_cli("run", str(study_file), "--storage", f"sqlite:///{tmp_path / 's.db'}", "--workers", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "accuracy per sample on the validation data" in out
    test_mean = Study.open("v", storage=f"sqlite:///{tmp_path / 's.db'}").stored_points()[0].test_summary["mean"]
    assert "chosen on the validation data: L=6 stateful" in out and f"Its test score, {test_mean:.4g}" in out
    assert "played no part in choosing it" in out


def test_with_the_split_off_the_points_are_ranked_on_the_test_data_and_it_says_so(tmp_path: Path) -> None:
    study = Study.create(spec_from_dict(tiny_spec(tmp_path, validation={"fraction": 0})), storage=f"sqlite:///{tmp_path / 's.db'}")
    study.run(workers=1)
    trial = study.optuna_study.trials[0]
    repeats = record.finished_repeats(trial)
    assert [trial.intermediate_values[i] for i in sorted(repeats)] == [repeats[i]["accuracy/sample"] for i in sorted(repeats)]
    assert not any(name.startswith("validation") for details in repeats.values() for name in details)
    assert "test" not in trial.user_attrs
    assert "chosen on the test data" in study.chosen().describe() and "flatters it" in study.chosen().describe()


def strip_validation(study: Study) -> None:
    """Make the stored study look like one stored before the split existed."""
    raw = json.loads(study.optuna_study.user_attrs[record.SPEC])
    del raw["validation"]
    study.optuna_study.set_user_attr(record.SPEC, json.dumps(raw, sort_keys=True))


def test_a_study_made_before_the_split_resumes_from_its_file_without_it(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study_file = tmp_path / "old.toml"
    study_file.write_text(
        'name = "old"\nrepeats = 2\n[problem]\nkind = "echo-first"\nlength = 6\nn_train = 40\nn_test = 20\n'
        '[grid]\nlengths = [3, 6]\nmodes = ["stateful"]\n[model]\nunits = 3\n[training]\nepochs = 1\n'
    )
    old_spec = load_spec(study_file).model_copy(update={"validation": Validation(fraction=0)})
    strip_validation(Study.create(old_spec, storage=storage))
    # The file leaves validation to its default (on), yet the old study resumes as it was made.
    resumed = Study.create(apply_overrides(load_spec(study_file), repeats=2), storage=storage)
    assert not resumed.spec.validation.is_on
    resumed.run(workers=1)
    assert Study.open("old", storage=storage).spec.validation.fraction == 0
    assert all("validation/accuracy/sample" not in d for t in resumed.optuna_study.trials for d in record.finished_repeats(t).values())
    # Data too few to split (2 training sequences) resume too: the split is off before they are loaded.
    tiny_file = tmp_path / "tiny.toml"
    tiny_file.write_text(study_file.read_text().replace('name = "old"', 'name = "tiny"').replace("n_train = 40", "n_train = 2"))
    strip_validation(Study.create(load_spec(tiny_file).model_copy(update={"validation": Validation(fraction=0)}), storage=storage))
    with pytest.raises(DataError, match="holds out 0"):
        Study.create(load_spec(tiny_file).model_copy(update={"name": "new"}), storage=storage)  # a new study splits
    assert not Study.create(load_spec(tiny_file), storage=storage).spec.validation.is_on
    # A file that asks for a split itself is another study, refused by name.
    with study_file.open("a") as file:
        file.write("[validation]\nfraction = 0.25\n")
    with pytest.raises(Exception, match="validation.fraction = 0.0, not 0.25"):
        Study.create(load_spec(study_file), storage=storage)


def test_a_point_still_running_reports_its_test_mean_so_far(tmp_path: Path) -> None:
    details = [{"seed": i, "accuracy/sample": test, "validation/accuracy/sample": val}
               for i, (test, val) in enumerate([(0.5, 0.9), (0.7, 0.8)])]
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING, params={"length": 3, "mode": "stateful"},
        distributions={"length": optuna.distributions.IntDistribution(1, 6),
                       "mode": optuna.distributions.CategoricalDistribution(["stateful"])},
        user_attrs={"key": "L=3 stateful", **{f"repeat/{i:04d}": d for i, d in enumerate(details)}},
        intermediate_values={0: 0.9, 1: 0.8},
    )
    point = read_point(trial, metric="accuracy/sample")
    assert point.ranked_on == "validation" and point.test_mean == pytest.approx(0.6)


def test_a_study_of_a_newer_format_is_refused_with_the_fix(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = Study.create(spec_from_dict(tiny_spec(tmp_path)), storage=storage)
    study.optuna_study.set_user_attr(record.MARKER, record.FORMAT_VERSION + 1)
    with pytest.raises(StorageError, match="made by a newer sweep .* upgrade sweep"):
        Study.open("val", storage=storage)


def test_the_records_give_an_unfinished_point_s_test_mean_so_far(tmp_path: Path) -> None:
    study = Study.create(spec_from_dict(tiny_spec(tmp_path)), storage=f"sqlite:///{tmp_path / 's.db'}")
    trial = protocol.claim_next(study.optuna_study)
    details = {"seed": 1, "seconds": 0.1, "accuracy/sample": 0.4, "validation/accuracy/sample": 0.9}
    protocol.record_repeat(trial, repeat=0, score=0.9, details=details)
    running = next(record for record in study.records() if record["state"] == "running")
    assert running["mean"] == pytest.approx(0.9) and running["test_mean"] == pytest.approx(0.4)
