"""A study's data travel with it: a worker on a machine without the files trains from the copy the
study keeps in its database; files there that differ are never used over it; data over the cap
are said so at create, and a worker then reads shared files from --data-dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import sqlalchemy
from optuna.trial import TrialState

from sweep.api import Study
from sweep.data.files import cache_folder
from sweep.spec import load_spec


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        (tmp_path / "database").mkdir()
        return f"sqlite:///{tmp_path / 'database' / 'studies.db'}"
    return request.getfixturevalue("postgres_url")


def machine_a(tmp_path: Path) -> Path:
    """A folder with a table study: its train and test tables beside its study file."""
    folder = tmp_path / "machine-a"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for part, n in (("train", 24), ("test", 8)):
        rows = [{"id": f"{part}{i}", "t": t, "a": float(rng.normal()), "label": "x" if i % 2 else "y"}
                for i in range(n) for t in range(4)]
        pd.DataFrame(rows).to_csv(folder / f"{part}.csv", index=False)
    (folder / "travel.toml").write_text(
        'name = "travel"\nrepeats = 2\n[problem]\nkind = "table"\ntrain = "train.csv"\ntest = "test.csv"\n'
        'sequence = "id"\norder = "t"\ntarget = "label"\ntask = "classification"\nfeatures = ["a"]\n'
        '[grid]\nlengths = [2, 4]\nmodes = ["stateless"]\n[model]\nunits = 3\n[training]\nepochs = 1\nbatch_size = 8\n'
    )
    return folder


def sweep_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep", *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, **(env or {})})


def machine_b(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Another folder, with a cache of its own and none of the data files."""
    folder = tmp_path / "machine-b"
    folder.mkdir()
    return folder, {"SWEEP_CACHE_DIR": str(folder / "cache")}


def finished(url: str) -> list[optuna.trial.FrozenTrial]:
    trials = optuna.load_study(study_name="travel", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(t.user_attrs["n"] == 2 for t in trials)
    return trials


@pytest.mark.slow
def test_a_worker_on_a_machine_without_the_data_files_trains_from_the_kept_copy(tmp_path: Path, any_url: str) -> None:
    a = machine_a(tmp_path)
    created = sweep_cli("create", "travel.toml", "--storage", any_url, cwd=a)
    assert created.returncode == 0, created.stderr
    shutil.rmtree(a)  # machine B has only the study's name and URL
    b, env = machine_b(tmp_path)

    joined = sweep_cli("worker", "travel", "--storage", any_url, "--workers", "1", cwd=b, env=env)
    assert joined.returncode == 0, joined.stderr
    finished(any_url)
    fingerprint = optuna.load_study(study_name="travel", storage=any_url).user_attrs["data_fingerprint"]
    assert sorted(path.name for path in (b / "cache" / "data" / fingerprint).iterdir()) == ["test-test.csv", "train-train.csv"]
    # The report reads the kept copy too, through a folder it removes after.
    reported = sweep_cli("report", "travel", "--storage", any_url, "-o", "travel.html", cwd=b, env={"SWEEP_CACHE_DIR": str(b / "other")})
    assert reported.returncode == 0, reported.stderr
    assert not (b / "other").exists()


@pytest.mark.slow
def test_a_changed_file_here_is_never_used_over_the_kept_copy(tmp_path: Path, sqlite_url: str) -> None:
    a = machine_a(tmp_path)
    assert sweep_cli("create", "travel.toml", "--storage", sqlite_url, cwd=a).returncode == 0
    table = pd.read_csv(a / "train.csv")
    table.loc[0, "a"] += 1.0  # the same name, other contents
    table.to_csv(a / "train.csv", index=False)
    b, env = machine_b(tmp_path)

    joined = sweep_cli("worker", "travel", "--storage", sqlite_url, "--workers", "1", cwd=b, env=env)
    assert joined.returncode == 0, joined.stderr
    assert "the data files here differ from study 'travel''s" in joined.stderr
    assert "training on the copy the study keeps" in joined.stderr
    finished(sqlite_url)


@pytest.mark.slow
def test_data_over_the_cap_are_said_at_create_and_read_from_a_data_dir(tmp_path: Path, sqlite_url: str) -> None:
    a = machine_a(tmp_path)
    created = sweep_cli("create", "travel.toml", "--storage", sqlite_url, "--data-cap", "0.001", cwd=a)
    assert created.returncode == 0, created.stderr
    warning = [line for line in created.stderr.splitlines() if "data cap" in line or "--data-cap" in line]
    assert len(warning) == 1 and "over the 1 kB a study keeps in its database" in warning[0], created.stderr
    assert "--data-dir" in warning[0]
    shared = tmp_path / "shared"
    shutil.copytree(a, shared)
    shutil.rmtree(a)
    b, env = machine_b(tmp_path)

    refused = sweep_cli("worker", "travel", "--storage", sqlite_url, cwd=b, env=env)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "train.csv: no such data file on this machine, and study 'travel' keeps no copy" in refused.stderr
    assert "--data-dir" in refused.stderr
    joined = sweep_cli("worker", "travel", "--storage", sqlite_url, "--workers", "1", "--data-dir", str(shared), cwd=b, env=env)
    assert joined.returncode == 0, joined.stderr
    finished(sqlite_url)
    assert not (b / "cache").exists()


def test_deleting_a_study_drops_its_data_unless_another_study_shares_them(tmp_path: Path, sqlite_url: str) -> None:
    a = machine_a(tmp_path)
    spec = load_spec(a / "travel.toml")
    first = Study.create(spec, storage=sqlite_url)
    second = Study.create(spec.model_copy(update={"name": "travel-2"}), storage=sqlite_url)
    engine = sqlalchemy.create_engine(sqlite_url)
    count = sqlalchemy.text("SELECT count(*) FROM sweep_data_files")
    with engine.connect() as connection:
        assert connection.execute(count).scalar() == 2  # one copy of the two files, shared by both studies
    first.delete()
    with engine.connect() as connection:
        assert connection.execute(count).scalar() == 2
    second.delete()
    with engine.connect() as connection:
        assert connection.execute(count).scalar() == 0
    engine.dispose()


def test_a_bad_data_cap_gets_one_line(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sweep.errors import SpecError

    monkeypatch.setenv("SWEEP_DATA_CAP_MB", "lots")
    with pytest.raises(SpecError, match=r"\$SWEEP_DATA_CAP_MB is 'lots'; give it a number of megabytes"):
        Study.create(load_spec(machine_a(tmp_path) / "travel.toml"), storage=sqlite_url)


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWEEP_CACHE_DIR", str(tmp_path / "c"))
    assert cache_folder("abc") == tmp_path / "c" / "data" / "abc"
    monkeypatch.delenv("SWEEP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_folder("abc") == tmp_path / "x" / "sweep" / "data" / "abc"
