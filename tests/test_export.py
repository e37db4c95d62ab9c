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
    from sweep.export import _keras

    study = run_study(tmp_path, variable_table(tmp_path))
    study.export(tmp_path / "model", point="L=3 stateful")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 12, 2)).astype(np.float32)
    mask = np.arange(12)[None, :] >= np.array([0, 3, 5, 7, 9])[:, None]
    np.savez(tmp_path / "inputs.npz", x=x, mask=mask)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", NO_SWEEP, str(tmp_path / "model" / "model.keras"), str(tmp_path / "inputs.npz"),
         str(tmp_path / "outputs.npy")], capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    expected = _keras.chunk_predictor(_keras.load_model(tmp_path / "model" / "model.keras"))(x[:, None], mask[:, None])
    np.testing.assert_allclose(np.load(tmp_path / "outputs.npy"), expected[:, 0], atol=1e-6)


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
    done = sweep_cli("export", "table", "--storage", postgres_url, "-o", "model", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "not at hand here" in done.stdout
    contract = read_contract(elsewhere / "model")
    assert contract.classes == ["high", "low"] and contract.features == ["a", "b"]


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
