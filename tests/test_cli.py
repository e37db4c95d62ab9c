"""The sweep command, end to end: a real run on a tiny study read back with Optuna, and bad input."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from sweep.cli import main


def sweep_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweep", *args], capture_output=True, text=True, cwd=cwd, timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )


def sweep_in_process(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["sweep", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.slow
def test_run_finishes_the_grid_and_stores_every_repeat(tiny_study: Path, sqlite_url: str) -> None:
    done = sweep_cli("run", str(tiny_study), "--workers", "2", "--storage", sqlite_url)
    assert done.returncode == 0, done.stderr
    assert "4 done, 0 running, 0 waiting, 0 failed" in done.stdout
    for key in ("L=4 stateless", "L=4 stateful", "L=8 stateless", "L=8 stateful"):
        assert key in done.stdout

    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    trials = study.get_trials()
    assert sorted(t.user_attrs["key"] for t in trials) == ["L=4 stateful", "L=4 stateless", "L=8 stateful", "L=8 stateless"]
    for trial in trials:
        assert trial.state == TrialState.COMPLETE
        assert sorted(trial.intermediate_values) == [0, 1, 2]
        scores = [trial.intermediate_values[step] for step in range(3)]
        assert trial.value == pytest.approx(np.mean(scores))
        assert trial.user_attrs["scores"] == pytest.approx(scores)
        assert trial.user_attrs["n"] == 3
        assert trial.user_attrs["std"] == pytest.approx(np.std(scores, ddof=1))
        assert trial.user_attrs["ci95_low"] <= trial.value <= trial.user_attrs["ci95_high"]
        assert len(set(trial.user_attrs["seeds"])) == 3
        assert trial.params == {"length": trial.user_attrs["length"], "mode": trial.user_attrs["mode"]}
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE

    again = sweep_cli("run", "tiny", "--storage", sqlite_url)
    assert again.returncode == 0, again.stderr
    assert len(optuna.load_study(study_name="tiny", storage=sqlite_url).get_trials()) == 4

    status = sweep_cli("status", "tiny", "--storage", sqlite_url)
    assert status.returncode == 0 and "4 done" in status.stdout
    listing = sweep_cli("list", "--storage", sqlite_url)
    assert listing.returncode == 0 and "tiny" in listing.stdout


@pytest.mark.slow
def test_the_default_storage_is_sweep_db_in_the_working_directory(tiny_study: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env_free = sweep_cli("run", str(tiny_study), "--repeats", "1", "--workers", "1", cwd=work)
    assert env_free.returncode == 0, env_free.stderr
    assert (work / "sweep.db").exists()
    # Every connection is closed as the command ends: the write-ahead log is back in the file.
    assert not list(work.glob("sweep.db-*"))
    assert [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{work / 'sweep.db'}")] == ["tiny"]


def break_study(path: Path, old: str, new: str) -> Path:
    path.write_text(path.read_text().replace(old, new, 1))
    return path


BAD_STUDIES = [
    ("unknown key", 'units = 4', 'units = 4\nunits_typo = 3', "unknown key 'model.units_typo'"),
    ("broken toml", '[grid]', '[grid', "not valid TOML"),
    ("length longer than the sequence", "lengths = [4, 8]", "lengths = [4, 9]", "9 is longer than the sequence length 8"),
    ("zero repeats", "repeats = 3", "repeats = 0", "repeats"),
    ("empty grid", "lengths = [4, 8]", "lengths = []", "empty"),
    ("wrong type", "units = 4", 'units = "four"', "model.units"),
    ("metric for another task", 'metric = "accuracy"', 'metric = "rmse"', "does not suit a classification problem"),
]


@pytest.mark.parametrize(("what", "old", "new", "message"), BAD_STUDIES, ids=[case[0] for case in BAD_STUDIES])
def test_a_bad_study_file_gets_one_line_and_writes_nothing(
    capsys, monkeypatch, tiny_study: Path, sqlite_url: str, tmp_path: Path, what: str, old: str, new: str, message: str
) -> None:
    break_study(tiny_study, old, new)
    code, _, err = sweep_in_process(capsys, monkeypatch, "run", str(tiny_study), "--storage", sqlite_url)
    assert code == 1
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "studies.db").exists()


def test_bad_data_gets_one_line_and_writes_nothing(capsys, monkeypatch, tmp_path: Path, sqlite_url: str) -> None:
    x = np.zeros((6, 5, 1))
    x[2, 3, 0] = np.nan
    np.savez(tmp_path / "data.npz", x_train=x, y_train=np.zeros(6), x_test=np.zeros((4, 5, 1)), y_test=np.zeros(4))
    study = tmp_path / "mine.toml"
    study.write_text('name = "mine"\n[problem]\nkind = "npz"\npath = "data.npz"\ntask = "regression"\n[objective]\nmetric = "rmse"\n')
    code, _, err = sweep_in_process(capsys, monkeypatch, "run", str(study), "--storage", sqlite_url)
    assert code == 1 and "x_train contains NaN" in err and err.count("\n") == 1
    assert not (tmp_path / "studies.db").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg://nobody@127.0.0.1:1/nothing", "cannot reach the study database"),
        ("nosuchdb://somewhere/x", "bad storage URL"),
        ("sqlite:////no/such/directory/x.db", "cannot reach the study database"),
    ],
)
def test_an_unusable_storage_gets_one_line(capsys, monkeypatch, tiny_study: Path, url: str, message: str) -> None:
    code, _, err = sweep_in_process(capsys, monkeypatch, "run", str(tiny_study), "--storage", url)
    assert code == 1 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_an_unknown_study_name_lists_the_known_ones(capsys, monkeypatch, sqlite_url: str) -> None:
    optuna.create_study(study_name="other", storage=sqlite_url)
    code, _, err = sweep_in_process(capsys, monkeypatch, "status", "missing", "--storage", sqlite_url)
    assert code == 1 and "no study named 'missing'" in err and "other" in err


@pytest.mark.slow
def test_changed_settings_do_not_mix_into_an_existing_study(capsys, monkeypatch, tiny_study: Path, sqlite_url: str) -> None:
    first = sweep_cli("run", str(tiny_study), "--repeats", "1", "--workers", "1", "--storage", sqlite_url)
    assert first.returncode == 0, first.stderr
    before = optuna.load_study(study_name="tiny", storage=sqlite_url).get_trials()
    code, _, err = sweep_in_process(capsys, monkeypatch, "run", str(tiny_study), "--repeats", "2", "--storage", sqlite_url)
    assert code == 1 and "already exists with repeats = 1, not 2" in err and "--name" in err
    after = optuna.load_study(study_name="tiny", storage=sqlite_url).get_trials()
    assert [(t.number, t.state, t.intermediate_values) for t in after] == [(t.number, t.state, t.intermediate_values) for t in before]


def test_a_study_not_made_by_sweep_is_left_alone(capsys, monkeypatch, tiny_study: Path, sqlite_url: str) -> None:
    foreign = optuna.create_study(study_name="tiny", storage=sqlite_url)
    foreign.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    code, _, err = sweep_in_process(capsys, monkeypatch, "run", str(tiny_study), "--storage", sqlite_url)
    assert code == 1 and "was not made by sweep" in err
    stored = optuna.load_study(study_name="tiny", storage=sqlite_url)
    assert len(stored.trials) == 2 and stored.user_attrs == {}


def test_a_password_file_fills_in_the_password_a_url_leaves_out(monkeypatch, tmp_path: Path) -> None:
    from sweep.store.connection import storage_url

    secret = tmp_path / "db_password.txt"
    secret.write_text("s3cr/et@\n")
    monkeypatch.setenv("SWEEP_STORAGE_PASSWORD_FILE", str(secret))
    assert storage_url("postgresql+psycopg://sweep@db:5432/sweep") == "postgresql+psycopg://sweep:s3cr%2Fet%40@db:5432/sweep"
    assert storage_url("postgresql+psycopg://sweep:given@db/sweep") == "postgresql+psycopg://sweep:given@db/sweep"
    assert storage_url("sqlite:///sweep.db") == "sqlite:///sweep.db"


def test_a_missing_password_file_gets_one_line(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWEEP_STORAGE_PASSWORD_FILE", str(tmp_path / "absent.txt"))
    code, _, err = sweep_in_process(capsys, monkeypatch, "list", "--storage", "postgresql+psycopg://sweep@127.0.0.1/x")
    assert code == 1 and "cannot read the database password file" in err and "absent.txt" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_create_enqueues_the_grid_once_and_trains_nothing(capsys, monkeypatch, tiny_study: Path, sqlite_url: str) -> None:
    for _ in range(2):
        code, out, _ = sweep_in_process(capsys, monkeypatch, "create", str(tiny_study), "--storage", sqlite_url, "--name", "t2")
        assert code == 0 and "0 done, 4 waiting" in out and "sweep worker t2" in out
    trials = optuna.load_study(study_name="t2", storage=sqlite_url).get_trials()
    assert len(trials) == 4 and {t.state for t in trials} == {TrialState.WAITING}


@pytest.mark.parametrize("command", [["list"], ["status", "t3"], ["report", "t3", "-o", "t3.html"]])
def test_a_database_error_after_the_storage_opened_names_the_database(
    capsys, monkeypatch, tiny_study: Path, sqlite_url: str, command: list[str], tmp_path: Path
) -> None:
    """A study database damaged by hand (a table of Optuna's dropped) opens, then fails deep inside
    Optuna: the one line still says which database, not just that one failed."""
    sweep_in_process(capsys, monkeypatch, "create", str(tiny_study), "--storage", sqlite_url, "--name", "t3")
    database = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TABLE trial_values")
    monkeypatch.chdir(tmp_path)
    code, _, err = sweep_in_process(capsys, monkeypatch, *command, "--storage", sqlite_url)
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: ") and str(Path(database).resolve()) in err and "trial_values" in err, err


def test_the_command_line_starts_without_the_statistics_libraries() -> None:
    """scipy.stats and statsmodels take over a second to import; only suggestions, baselines of
    series and finished points need them, so every command does not pay for them to start."""
    import subprocess
    import sys

    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, sweep.cli; print(sorted({'scipy.stats', 'scipy.signal', 'statsmodels'} & set(sys.modules)))"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert loaded.stdout.strip() == "[]"
