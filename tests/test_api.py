"""sweep from Python: a tiny study run from a notebook-like script and read back as records and
DataFrames, with the same guarantees as the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

import sweep
from sweep.store.protocol import study_spec


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def point_started(self, key: str, *, n_repeats: int, n_finished: int) -> None:
        self.events.append(("started", key, n_repeats, n_finished))

    def repeat_finished(self) -> None:
        self.events.append(("repeat",))

    def point_finished(self, key: str, *, is_complete: bool) -> None:
        self.events.append(("finished", key, is_complete))


@pytest.mark.slow
def test_a_tiny_study_runs_from_python_and_reads_back_as_dataframes(tiny_study: Path, sqlite_url: str, tmp_path: Path) -> None:
    spec = sweep.apply_overrides(sweep.load_spec(tiny_study), repeats=2)
    study = sweep.Study.create(spec, storage=sqlite_url)
    recorder = Recorder()

    outcome = study.run(workers=1, progress=recorder)

    assert outcome.n_trained == 4 and outcome.counts == {"done": 4, "running": 0, "waiting": 0, "failed": 0}
    assert [event[0] for event in recorder.events].count("repeat") == 8
    assert sorted(event[1] for event in recorder.events if event[0] == "finished") == sorted(p.key for p in study.points)

    points = study.dataframe()
    assert list(points["key"]) == [row.key for row in study.rows()]  # best first, as the table
    assert {"length", "mode", "state", "n", "mean", "std", "ci95_low", "ci95_high"} <= set(points.columns)
    assert (points["state"] == "done").all() and (points["n"] == 2).all()
    assert list(points["mean"]) == sorted(points["mean"], reverse=True)  # accuracy: maximized
    repeats = study.repeats_dataframe()
    assert len(repeats) == 8 and set(repeats["repeat"]) == {0, 1}
    means = repeats.groupby("key")["accuracy/sample"].mean()
    for key, mean in zip(points["key"], points["mean"]):
        assert means[key] == pytest.approx(mean)

    again = sweep.Study.open("tiny", storage=sqlite_url)  # another handle, as another notebook
    assert again.records() == study.records() and again.spec == study_spec(again.optuna_study)
    assert again.write_report(tmp_path / "tiny.html").read_text().count("<html") == 1
    from optuna_dashboard._note import get_note

    note = get_note(again.optuna_study)
    assert "Grid of 4 points: 4 done, 0 running, 0 waiting, 0 failed" in note  # kept up to date by the run


@pytest.mark.slow
def test_running_again_trains_nothing_and_listing_shows_the_study(tiny_study: Path, sqlite_url: str) -> None:
    spec = sweep.apply_overrides(sweep.load_spec(tiny_study), repeats=1)
    sweep.Study.create(spec, storage=sqlite_url).run(workers=1)
    outcome = sweep.Study.open("tiny", storage=sqlite_url).run(workers=1)
    assert outcome.n_trained == 0 and outcome.counts["done"] == 4
    (summary,) = sweep.list_studies(sqlite_url)
    assert summary.name == "tiny" and summary.is_sweep and summary.n_points == 4 and summary.best_key is not None


def test_bad_input_raises_one_clear_error_and_writes_nothing(tmp_path: Path, sqlite_url: str) -> None:
    with pytest.raises(sweep.SpecError, match="lengths"):
        sweep.spec_from_dict({"name": "x", "problem": {"kind": "echo-first", "length": 8}, "grid": {"lengths": [0]}})
    with pytest.raises(sweep.StorageError, match="no study database at"):
        sweep.Study.open("nope", storage=sqlite_url)
    assert sweep.list_studies(sqlite_url) == []
    assert list(tmp_path.iterdir()) == []  # reading created nothing


@pytest.mark.slow
def test_a_script_without_a_main_guard_runs_once_even_from_standard_input(tiny_study: Path, sqlite_url: str) -> None:
    # Worker processes are spawned; they must not run the caller's script again.
    import subprocess
    import sys

    script = (
        "import sweep\n"
        f"spec = sweep.apply_overrides(sweep.load_spec({str(tiny_study)!r}), repeats=1)\n"
        "print('started')\n"
        f"print(sweep.Study.create(spec, storage={sqlite_url!r}).run(workers=2).counts['done'])\n"
    )
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["started", "4"]


def test_the_data_are_described_before_anything_is_trained(tiny_study: Path) -> None:
    summary = sweep.describe_data(sweep.load_spec(tiny_study))
    assert (summary.train.n_sequences, summary.validation.n_sequences, summary.test.n_sequences) == (32, 8, 20)
    assert [(length, round(padding, 6)) for length, _, padding in summary.subsequences] == [(4, 0.0), (8, 0.0)]
