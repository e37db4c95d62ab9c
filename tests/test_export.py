"""Handing back the winner: the weights each repeat is kept with, and an export folder whose plain
Keras model reproduces the repeat's stored scores, loads where sweep is not installed, and needs
nothing but the study's name and database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy

from sweep import Study, spec_from_dict
from sweep.errors import SweepError
from sweep.export.contract import read_contract
from sweep.export.exporting import reproduced_scores
from sweep.store import weights as kept

ROOT = Path(__file__).resolve().parent.parent


def echo_first(**changes) -> dict:
    return {
        "name": "echo", "repeats": 3,
        "problem": {"kind": "echo-first", "length": 8, "n_train": 60, "n_test": 30, "seed": 1},
        "grid": {"lengths": [2, 8], "modes": ["stateless", "stateful"]},
        "model": {"units": 4}, "training": {"epochs": 1, "batch_size": 10}, **changes,
    }


def lag_echo_decoupled() -> dict:
    return {
        "name": "decoupled", "repeats": 2,
        "problem": {"kind": "lag-echo", "length": 12, "lag": 3, "n_train": 40, "n_test": 20},
        "grid": {"pairs": [[2, 5], [4, 4]], "modes": ["stateless", "stateful"]},
        "model": {"units": 3}, "training": {"epochs": 1, "batch_size": 8}, "objective": {"metric": "rmse"},
    }


def variable_table(folder: Path) -> dict:
    """Sequences of 5 to 12 steps with string labels: padded at every length but 1."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(36):
        steps = 5 + index % 8
        level = rng.normal()
        for t in range(steps):
            rows.append({"id": f"s{index}", "t": t, "a": level + 0.3 * rng.normal(), "b": rng.normal(),
                         "label": "high" if level > 0 else "low"})
    pd.DataFrame(rows).to_csv(folder / "table.csv", index=False)
    return {
        "name": "table", "repeats": 2,
        "problem": {"kind": "table", "train": str(folder / "table.csv"), "sequence": "id", "order": "t",
                    "target": "label", "task": "classification", "features": ["a", "b"], "test_fraction": 0.25},
        "grid": {"lengths": [3, 12], "modes": ["stateless", "stateful"]},
        "model": {"units": 3}, "training": {"epochs": 1, "batch_size": 6},
    }


def series(folder: Path) -> dict:
    steps = np.arange(400)
    values = np.sin(2 * np.pi * steps / 20) + 0.1 * np.random.default_rng(1).normal(size=len(steps))
    pd.DataFrame({"t": steps, "level": values}).to_csv(folder / "series.csv", index=False)
    return {
        "name": "series", "repeats": 2,
        "problem": {"kind": "series", "path": str(folder / "series.csv"), "target": "level", "order": "t", "segments": 4},
        "grid": {"lengths": [5, 10], "modes": ["stateless", "stateful"]},
        "model": {"units": 3}, "training": {"epochs": 1, "batch_size": 2}, "objective": {"metric": "rmse"},
    }


def run_study(tmp_path: Path, data: dict, **run) -> Study:
    study = Study.create(spec_from_dict(data), storage=f"sqlite:///{tmp_path / 'studies.db'}")
    study.run(workers=1, **run)
    return study


def assert_reproduces(study: Study, folder: Path) -> None:
    """The saved model, loaded by Keras from disk, scores exactly what the repeat stored."""
    from sweep.export import _keras

    contract = read_contract(folder)
    model = _keras.load_model(folder / "model.keras")
    scores = reproduced_scores(contract, _keras.chunk_predictor(model), study._dataset_here())
    for name, stored in contract.scores["test"].items():
        assert scores[name] == pytest.approx(stored, abs=1e-5), name


@pytest.mark.slow
@pytest.mark.parametrize("make", [echo_first, lag_echo_decoupled, variable_table, series],
                         ids=["factor-lengths", "decoupled-k1-k2", "variable-lengths-table", "series"])
def test_every_point_s_export_reproduces_its_stored_test_scores(tmp_path: Path, make) -> None:
    data = make(tmp_path) if make in (variable_table, series) else make()
    study = run_study(tmp_path, data)
    for point in study.stored_points():
        folder = tmp_path / f"export-{point.number}"
        exported = study.export(folder, point=point.key)
        assert "reproduces the repeat's stored test scores" in exported.check
        assert_reproduces(study, folder)


def test_the_default_export_is_the_chosen_point_s_median_repeat(tmp_path: Path) -> None:
    study = run_study(tmp_path, echo_first(repeats=5))
    exported = study.export(tmp_path / "model")
    chosen = study.chosen()
    point = next(p for p in study.stored_points() if p.key == chosen.key)
    ranked = sorted((-details["validation/accuracy/sample"], repeat) for repeat, details in point.repeats.items())
    assert exported.contract.point == chosen.key
    assert exported.contract.repeat == ranked[2][1]  # the third of five
    assert f"repeat {ranked[2][1]}, whose validation accuracy/sample" in exported.describe()
    assert "median of the point's 5 repeats" in exported.describe()
    contract = json.loads((tmp_path / "model" / "sweep.json").read_text())
    assert contract["format"] == 1 and contract["window"]["length"] == point.length
    assert contract["seed"] == point.repeats[contract["repeat"]]["seed"]
    assert "keras.models.load_model" in (tmp_path / "model" / "README.md").read_text()


def test_a_reference_run_keeps_weights_that_reproduce_its_scores(tmp_path: Path) -> None:
    study = run_study(tmp_path, echo_first(repeats=2), reference=True)
    for point in study.stored_points():
        study.export(tmp_path / point.key.replace(" ", "_"), point=point.key, repeat=1)
        assert_reproduces(study, tmp_path / point.key.replace(" ", "_"))


NO_SWEEP = """
import sys
sys.modules["sweep"] = None  # import sweep fails
try:
    import sweep
except ImportError:
    pass
else:
    raise SystemExit("sweep was importable")
import numpy as np, keras
arrays = np.load(sys.argv[2])
model = keras.models.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict({"x": arrays["x"], "mask": arrays["mask"]}, verbose=0))
"""


def test_model_keras_opens_with_keras_alone_and_gives_the_same_outputs(tmp_path: Path) -> None:
    """A user with Keras and the README alone: sequences padded at the front, standardized with
    sweep.json's numbers, fed whole to the stateful point's model in a process where sweep cannot
    be imported; the last step's output is sweep predict's probability of class 1."""
    study = run_study(tmp_path, variable_table(tmp_path))
    study.export(tmp_path / "model", point="L=3 stateful")
    contract = json.loads((tmp_path / "model" / "sweep.json").read_text())
    frame = pd.read_csv(tmp_path / "table.csv")
    names = list(dict.fromkeys(frame["id"]))
    steps = frame.groupby("id").size().max()
    mean, std = np.array(contract["standardization"]["input_mean"]), np.array(contract["standardization"]["input_std"])
    x = np.zeros((len(names), steps, 2), np.float32)
    mask = np.zeros((len(names), steps), bool)
    for row, name in enumerate(names):
        values = frame[frame["id"] == name].sort_values("t")[contract["features"]].to_numpy()
        x[row, steps - len(values) :] = (values - mean) / std
        mask[row, steps - len(values) :] = True
    np.savez(tmp_path / "inputs.npz", x=x, mask=mask)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", NO_SWEEP, str(tmp_path / "model" / "model.keras"), str(tmp_path / "inputs.npz"),
         str(tmp_path / "outputs.npy")], capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    predicted = sweep_load(tmp_path / "model").predict(frame)
    assert predicted["id"].tolist() == names
    second_class = contract["classes"][1]
    np.testing.assert_allclose(np.load(tmp_path / "outputs.npy")[:, -1, 0], predicted[f"p_{second_class}"], atol=1e-6)


def test_weights_are_kept_per_repeat_once_and_dropped_with_the_study(tmp_path: Path) -> None:
    study = run_study(tmp_path, echo_first(repeats=2))
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'studies.db'}")
    with engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text("SELECT trial_id, repeat FROM sweep_weights")).all()
    assert len(rows) == len(set(rows)) == 4 * 2
    study.delete()
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT count(*) FROM sweep_weights")).scalar() == 0


def test_keep_weights_chosen_keeps_the_chosen_point_s_alone(tmp_path: Path) -> None:
    study = run_study(tmp_path, echo_first(repeats=2, keep_weights="chosen"))
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'studies.db'}")
    count, size = kept.stored_size(engine, study_id=study.optuna_study._study_id)
    assert count == 2 and size > 0
    study.export(tmp_path / "model")
    other = next(p.key for p in study.stored_points() if p.key != study.chosen().key)
    with pytest.raises(SweepError, match="no weights are kept for .* --refit"):
        study.export(tmp_path / "other", point=other)
    assert not (tmp_path / "other").exists()


def test_keep_weights_none_keeps_none_and_export_says_how_to_get_a_model(tmp_path: Path) -> None:
    study = run_study(tmp_path, echo_first(repeats=2, keep_weights="none"))
    with pytest.raises(SweepError, match="keeps 'none'.*--refit"):
        study.export(tmp_path / "model")
    assert not (tmp_path / "model").exists()
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'studies.db'}")
    assert kept.stored_size(engine, study_id=study.optuna_study._study_id) == (0, 0)


def sweep_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})


def test_bad_export_requests_get_one_line_and_write_nothing(tmp_path: Path) -> None:
    run_study(tmp_path, echo_first(repeats=2))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    cases = {
        ("-o", "full"): "full exists and is not an empty folder",
        ("-o", "m1", "--point", "L=3 stateful"): "has no point 'L=3 stateful'",
        ("-o", "m2", "--repeat", "7"): "has no finished repeat 7; its repeats are numbered 0 to 1",
    }
    for args, message in cases.items():
        done = sweep_cli("export", "echo", "--storage", url, *args, cwd=tmp_path)
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("studies")) == ["full"]
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_a_postgresql_study_exports_from_another_folder_without_its_data(tmp_path: Path, postgres_url: str) -> None:
    made, elsewhere = tmp_path / "made", tmp_path / "elsewhere"
    made.mkdir(), elsewhere.mkdir()
    variable_table(made)
    (made / "study.toml").write_text(TABLE_STUDY)
    assert sweep_cli("run", "study.toml", "--storage", postgres_url, "--workers", "1", cwd=made).returncode == 0
    shutil.rmtree(made)
    # The data the study keeps check the export here too.
    done = sweep_cli("export", "table", "--storage", postgres_url, "-o", "model", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "it reproduces the repeat's stored test scores" in done.stdout
    contract = read_contract(elsewhere / "model")
    assert contract.classes == ["high", "low"] and contract.features == ["a", "b"]
    # A study that keeps no data (over the cap, or made before data were kept) exports unchecked.
    engine = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM sweep_data_files")
    engine.dispose()
    done = sweep_cli("export", "table", "--storage", postgres_url, "-o", "unchecked", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "not at hand here" in done.stdout


TABLE_STUDY = """
name = "table"
repeats = 2
[problem]
kind = "table"
train = "table.csv"
sequence = "id"
order = "t"
target = "label"
task = "classification"
features = ["a", "b"]
test_fraction = 0.25
[grid]
lengths = [3, 12]
modes = ["stateful"]
[model]
units = 3
[training]
epochs = 1
batch_size = 6
"""


def test_the_report_and_the_dashboard_note_say_how_to_export_the_chosen_point(tmp_path: Path) -> None:
    from sweep.report.dashboard import study_note

    study = run_study(tmp_path, echo_first(repeats=2))
    page = study.write_report(tmp_path / "r.html").read_text()
    assert "<code>sweep export echo -o echo-model</code>" in page
    assert "`sweep export echo -o echo-model`" in study_note(study.report())


# Predictions --------------------------------------------------------------------------------------


def test_predictions_on_a_table_s_test_part_reproduce_the_stored_test_accuracy(tmp_path: Path) -> None:
    """Variable lengths with string labels: the padded stateless point and the whole-sequence
    stateful one each get the stored accuracy over whole sequences back from `sweep predict`."""
    from sweep.data import tables
    from sweep.spec import TableProblem

    study = run_study(tmp_path, variable_table(tmp_path))
    frame = pd.read_csv(tmp_path / "table.csv")
    _, test_rows = tables.split_table(frame, TableProblem(**study.spec.problem.model_dump()), source="t")
    test_rows.to_csv(tmp_path / "test.csv", index=False)
    truth = test_rows.groupby("id", sort=False)["label"].first()
    for key in ("L=3 stateless", "L=12 stateful"):
        folder = tmp_path / key.replace(" ", "_")
        exported = study.export(folder, point=key)
        done = sweep_cli("predict", str(folder), "test.csv", "-o", "p.csv", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        predicted = pd.read_csv(tmp_path / "p.csv")
        assert list(predicted.columns) == ["id", "prediction", "p_high", "p_low"]
        assert np.allclose(predicted["p_high"] + predicted["p_low"], 1.0)
        accuracy = float(np.mean(predicted.set_index("id")["prediction"] == truth.loc[predicted["id"]].to_numpy()))
        assert accuracy == pytest.approx(exported.contract.scores["test"]["accuracy/sequence"], abs=1e-9), key


def test_predictions_on_a_series_test_part_reproduce_the_stored_rmse(tmp_path: Path) -> None:
    """400 steps, one ahead: the test origins are rows 319..398 (the last fifth of the 399 with a
    target); each row's forecast is for the next row's value, in the series' own units."""
    study = run_study(tmp_path, series(tmp_path))
    frame = pd.read_csv(tmp_path / "series.csv")
    for key in ("L=5 stateless", "L=10 stateful"):
        exported = study.export(tmp_path / key.replace(" ", "_"), point=key)
        predicted = sweep_load(tmp_path / key.replace(" ", "_")).predict(frame.iloc[319:399])
        assert list(predicted.columns) == ["origin", "horizon", "prediction"]
        assert predicted["origin"].tolist() == list(range(319, 399)) and set(predicted["horizon"]) == {1}
        rmse = float(np.sqrt(np.mean((predicted["prediction"].to_numpy() - frame["level"].to_numpy()[320:400]) ** 2)))
        assert rmse == pytest.approx(exported.contract.scores["test"]["rmse/sample"], rel=1e-5), key


def test_predictions_on_arrays_reproduce_the_stored_scores(tmp_path: Path) -> None:
    """Built-in problems predict from an npz holding x: echo-first per sequence, lag-echo per step
    (decoupled TBPTT(2, 5) stateful, and k1 = k2 = 4 stateless)."""
    echo = run_study(tmp_path / "echo" if (tmp_path / "echo").mkdir() is None else tmp_path, echo_first())
    dataset = echo._dataset_here()
    np.savez(tmp_path / "echo.npz", x=dataset.x_test)
    exported = echo.export(tmp_path / "echo-model", point="L=2 stateful")
    predicted = sweep_load(tmp_path / "echo-model").predict(tmp_path / "echo.npz")
    assert list(predicted.columns) == ["sequence", "prediction", "p_0", "p_1"]
    accuracy = float(np.mean(predicted["prediction"].to_numpy() == dataset.y_test[:, 0]))
    assert accuracy == pytest.approx(exported.contract.scores["test"]["accuracy/sequence"], abs=1e-9)

    (tmp_path / "lag").mkdir()
    lag = run_study(tmp_path / "lag", lag_echo_decoupled())
    dataset = lag._dataset_here()
    for key in ("k1=2 k2=5 stateful", "k1=4 k2=4 stateless"):
        exported = lag.export(tmp_path / key.replace(" ", "_"), point=key)
        predicted = sweep_load(tmp_path / key.replace(" ", "_")).predict({"x": dataset.x_test})
        assert list(predicted.columns) == ["sequence", "step", "prediction"]
        rmse = float(np.sqrt(np.mean((predicted["prediction"].to_numpy() - dataset.y_test.reshape(-1)) ** 2)))
        assert rmse == pytest.approx(exported.contract.scores["test"]["rmse/sample"], rel=1e-5), key


def sweep_load(folder: Path):
    import sweep

    loaded = sweep.load_export(folder)
    assert loaded.model.name == "sweep_lstm"
    return loaded


def test_bad_prediction_input_gets_one_line_and_writes_nothing(tmp_path: Path) -> None:
    study = run_study(tmp_path, variable_table(tmp_path))
    study.export(tmp_path / "model", point="L=3 stateful")
    frame = pd.read_csv(tmp_path / "table.csv")
    frame.drop(columns=["b"]).to_csv(tmp_path / "no_b.csv", index=False)
    frame.assign(a=frame["a"].where(frame.index != 5)).to_csv(tmp_path / "nan.csv", index=False)
    np.savez(tmp_path / "arrays.npz", x=np.zeros((2, 4, 2)))
    (tmp_path / "newer").mkdir()
    shutil.copy(tmp_path / "model" / "model.keras", tmp_path / "newer")
    contract = json.loads((tmp_path / "model" / "sweep.json").read_text())
    (tmp_path / "newer" / "sweep.json").write_text(json.dumps({**contract, "format": 99}))
    cases = {
        ("model", "no_b.csv", "-o", "p.csv"): "no column 'b'",
        ("model", "nan.csv", "-o", "p.csv"): "column 'a' is empty or NaN in sequence 's1'",
        ("model", "missing.csv", "-o", "p.csv"): "no such data file",
        ("model", "arrays.npz", "-o", "p.csv"): ".npz",
        ("table.csv", "table.csv", "-o", "p.csv"): "is not an export",
        ("newer", "table.csv", "-o", "p.csv"): "has format 99, newer than this sweep reads (1); upgrade sweep",
        ("model", "table.csv", "-o", "p.txt"): "name a .csv file",
    }
    for args, message in cases.items():
        done = sweep_cli("predict", *args, cwd=tmp_path)
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert not (tmp_path / "p.csv").exists() and not (tmp_path / "p.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".p.")]


# Refits -------------------------------------------------------------------------------------------


def test_a_refit_with_one_seed_gives_the_same_network_twice(tmp_path: Path) -> None:
    study = run_study(tmp_path, echo_first(repeats=2, keep_weights="none"))
    first = study.export(tmp_path / "a", refit=True, seed=7)
    second = study.export(tmp_path / "b", refit=True, seed=7)
    other = study.export(tmp_path / "c", refit=True, seed=8, refit_on="all")
    assert first.contract.repeat is None and first.contract.refit == {
        "seed": 7, "trained_on": "the training part", "epochs": 1, "stopped_epoch": None,
    }
    assert "reproduces the refit's stored test scores" in first.check
    assert other.contract.refit["trained_on"] == "the training and validation parts"
    assert "validation" not in other.contract.scores
    x = study._dataset_here().x_test
    predictions = [sweep_load(tmp_path / name).predict({"x": x}) for name in "abc"]
    pd.testing.assert_frame_equal(predictions[0], predictions[1])
    assert not np.allclose(predictions[0]["p_1"], predictions[2]["p_1"])


def test_a_study_of_the_previous_release_exports_by_refit_or_says_why_not(tmp_path: Path) -> None:
    from tests.test_record import release_database

    url = release_database(tmp_path)
    done = sweep_cli("export", "release-raced", "--storage", url, "-o", "kept", cwd=tmp_path)
    assert done.returncode == 1 and "no weights are kept for L=10 stateless" in done.stderr and "--refit" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "kept").exists()
    done = sweep_cli("export", "release-raced", "--storage", url, "-o", "refit", "--refit", "--seed", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "a refit of L=10 stateless with seed 3 on the training part" in done.stdout
    assert read_contract(tmp_path / "refit").refit["seed"] == 3


def test_refit_and_repeat_together_is_one_line(tmp_path: Path) -> None:
    run_study(tmp_path, echo_first(repeats=2))
    done = sweep_cli("export", "echo", "--storage", f"sqlite:///{tmp_path / 'studies.db'}", "-o", "m", "--refit", "--repeat", "1",
                     cwd=tmp_path)
    assert done.returncode == 1 and "--repeat and --refit exclude each other" in done.stderr
    assert not (tmp_path / "m").exists()


def user_test_part(study: Study) -> tuple[Any, Any]:
    """The study's test part in the form its problem takes, and the true targets in predict's row order."""
    from sweep.data import tables
    from sweep.spec import TableProblem

    problem, dataset = study.spec.problem, study._dataset_here()
    if problem.kind == "table":
        frame = tables.read_table(problem.train, key="train")
        _, rows = tables.split_table(frame, TableProblem(**problem.model_dump()), source="t")
        if problem.target_per == "step":
            ordered = rows.sort_values([problem.sequence, problem.order], kind="stable")
            truth = ordered.set_index([problem.sequence, problem.order])[problem.target]
        else:
            truth = rows.groupby(problem.sequence, sort=False)[problem.target].first()
        return rows, truth
    if problem.kind == "series":
        frame = tables.read_table(problem.path, key="path")
        framed = len(frame) - problem.horizon
        n_test = int(np.ceil(framed * problem.test_fraction))
        return frame.iloc[framed - n_test : framed], frame[problem.target].to_numpy()[framed - n_test + problem.horizon :]
    # Built-in problems are not standardized: their arrays are what a user would hold.
    real = dataset.y_test.reshape(-1) if dataset.is_per_step else dataset.y_test[:, 0]
    if dataset.task == "classification":
        real = real.astype(int)  # the class index is the label of a built-in problem
    return {"x": dataset.x_test, "lengths": dataset.test_lengths}, real


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(path.name for path in (ROOT / "studies").glob("*.toml")))
def test_predict_on_each_example_s_test_part_gives_back_the_stored_test_score(tmp_path: Path, example: str) -> None:
    """Every study in studies/, two repeats of one epoch: the chosen point's export, predicting
    on the test part as a user holds it, scores what the repeat stored."""
    import sweep

    spec = sweep.apply_overrides(sweep.load_spec(ROOT / "studies" / example), repeats=2, epochs=1)
    study = Study.create(spec, storage=f"sqlite:///{tmp_path / 'studies.db'}")
    study.run(workers=2)
    exported = study.export(tmp_path / "model")
    data, truth = user_test_part(study)
    predicted = sweep_load(tmp_path / "model").predict(data)["prediction"].to_numpy()
    truth = np.asarray(truth)
    metric = study.spec.objective.metric
    scope = "sample" if exported.contract.target == "per step" else "sequence"
    if metric == "accuracy" or metric == "log_loss":
        score = float(np.mean(predicted.astype(str) == truth.astype(str)))
        assert score == pytest.approx(exported.contract.scores["test"][f"accuracy/{scope}"], abs=1e-9)
    else:
        errors = predicted.astype(float) - truth.astype(float)
        score = float(np.sqrt(np.mean(errors**2))) if metric == "rmse" else float(np.mean(np.abs(errors)))
        assert score == pytest.approx(exported.contract.scores["test"][f"{metric}/{scope}"], rel=1e-5)


def test_predictions_on_a_standardized_npz_study_come_back_in_the_target_s_units(tmp_path: Path) -> None:
    """kind = "npz" standardizes inputs and targets: predict takes raw x (and lengths) and gives
    the target in its own units, whose error over whole sequences is the one stored."""
    rng = np.random.default_rng(4)
    arrays = {}
    for part, n in (("train", 60), ("test", 24)):
        lengths = rng.integers(3, 10, size=n)
        pieces = [rng.normal(loc=50.0, scale=10.0, size=(length, 2)).astype(np.float32) for length in lengths]
        targets = [[piece[-3:, 0].mean() * 2 + 100] for piece in pieces]
        arrays.update({f"x_{part}": np.concatenate(pieces), f"y_{part}": np.array(targets, np.float32), f"{part}_lengths": lengths})
    np.savez(tmp_path / "data.npz", **arrays)
    study = run_study(tmp_path, {
        "name": "npz", "repeats": 2, "problem": {"kind": "npz", "path": str(tmp_path / "data.npz"), "task": "regression"},
        "grid": {"lengths": [3, 9], "modes": ["stateless", "stateful"]}, "model": {"units": 3},
        "training": {"epochs": 1, "batch_size": 8}, "objective": {"metric": "mae"},
    })
    for key in ("L=3 stateless", "L=9 stateful"):
        exported = study.export(tmp_path / key.replace(" ", "_"), point=key)
        assert exported.contract.standardization["target_mean"]
        predicted = sweep_load(tmp_path / key.replace(" ", "_")).predict(
            {"x": arrays["x_test"], "lengths": arrays["test_lengths"]}
        )
        error = float(np.mean(np.abs(predicted["prediction"].to_numpy() - arrays["y_test"][:, 0])))
        assert error == pytest.approx(exported.contract.scores["test"]["mae/sequence"], rel=1e-5), key
