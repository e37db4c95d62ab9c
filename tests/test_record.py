"""The stored record: each upgrade of an older format on a record of that format, studies written
by the previous release read back and resumed, and every key named in one module."""

from __future__ import annotations

import ast
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

import sweep
from sweep.store import record
from sweep.store.record import read_point, upgraded_spec

FIXTURES = Path(__file__).parent / "fixtures"
PACKAGE = Path(sweep.__file__).parent


def trial(*, user_attrs: dict, state: TrialState = TrialState.COMPLETE, value: float | None = 0.9,
          scores: dict[int, float] | None = None, params: dict | None = None) -> optuna.trial.FrozenTrial:
    params = {"length": 4, "mode": "stateful"} if params is None else params
    return optuna.trial.create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None, params=params,
        distributions={"length": IntDistribution(1, 8), "mode": CategoricalDistribution(["stateless", "stateful"])}
        if params else {},
        user_attrs=user_attrs, intermediate_values=scores or {},
    )


# Each upgrade, on a record of the format it upgrades.


def test_a_trial_without_a_key_is_named_by_its_settings() -> None:
    assert read_point(trial(user_attrs={})).key == "L=4 stateful"


def test_a_point_stored_before_its_objective_takes_the_study_s() -> None:
    point = read_point(trial(user_attrs={"key": "L=4 stateful", "ci95_low": 0.8, "ci95_high": 1.0}), metric="accuracy/sample")
    assert point.metric == "accuracy/sample"


@pytest.mark.parametrize(("details", "ranked_on"), [
    ({"seed": 0, "accuracy/sample": 0.5}, "test"),
    ({"seed": 0, "accuracy/sample": 0.5, "validation/accuracy/sample": 0.7}, "validation"),
])
def test_a_point_stored_before_the_data_it_was_ranked_on_is_read_off_its_repeats(details: dict, ranked_on: str) -> None:
    stored = trial(state=TrialState.RUNNING, user_attrs={"key": "L=4 stateful", "repeat/0000": details}, scores={0: 0.5})
    assert read_point(stored).ranked_on == ranked_on


def test_a_point_stored_before_its_padding_share_gets_the_share_of_its_length() -> None:
    stored = trial(user_attrs={"key": "L=4 stateful"}, params={"length": 4, "mode": "stateful"})
    assert read_point(stored, sequence_length=6).padding_fraction == pytest.approx(2 / 8)
    assert read_point(stored).padding_fraction is None  # a study that stored no sequence length


def test_an_interval_stored_before_it_was_cut_to_the_metric_s_range_is_cut() -> None:
    stored = trial(user_attrs={"key": "L=4 stateful", "metric": "accuracy/sample", "ci95_low": 0.85, "ci95_high": 1.0035})
    point = read_point(stored)
    assert (point.summary["ci95_low"], point.summary["ci95_high"]) == (0.85, 1.0)


def test_a_record_in_today_s_format_passes_every_upgrade_unchanged() -> None:
    attrs = {
        "key": "L=4 stateful", "metric": "rmse/sample", "ranked_on": "validation", "padding_fraction": 0.25,
        "ci95_low": 0.1, "ci95_high": 0.3, "n": 2, "mean": 0.2,
        "repeat/0000": {"seed": 1, "rmse/sample": 0.2, "validation/rmse/sample": 0.1},
    }
    raw = {"number": 0, "state": TrialState.COMPLETE, "value": 0.2, "params": {"length": 4, "mode": "stateful"},
           "scores": (0.1,), "repeats": {0: attrs["repeat/0000"]}, "attrs": dict(attrs)}
    context = record._Context(metric="accuracy/sample", sequence_length=6)
    for _, step in record.POINT_UPGRADES:
        raw = step(raw, context)
    assert raw["attrs"] == attrs


@pytest.mark.parametrize(("stored", "expected"), [
    ({"problem": {"kind": "npz", "path": "x.npz", "task": "regression"}},
     {"problem": {"kind": "npz", "path": "x.npz", "task": "regression", "standardize": False},
      "validation": {"fraction": 0.0}}),
    ({"problem": {"kind": "echo-first"}}, {"problem": {"kind": "echo-first"}, "validation": {"fraction": 0.0}}),
    ({"problem": {"kind": "echo-first"}, "validation": {"fraction": 0.2, "seed": 0, "patience": 0}},
     {"problem": {"kind": "echo-first"}, "validation": {"fraction": 0.2, "seed": 0, "patience": 0}}),
])
def test_a_stored_spec_gets_the_defaults_its_version_had(stored: dict, expected: dict) -> None:
    assert upgraded_spec(stored) == expected


# Studies written by the previous release (tests/fixtures/make_release_studies.py made them).


def release_database(tmp_path: Path) -> str:
    database = tmp_path / "release.db"
    with sqlite3.connect(database) as connection:
        connection.executescript((FIXTURES / "release_studies.sql").read_text())
    return f"sqlite:///{database}"


def status_of(name: str, url: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sweep", "status", name, "--storage", url],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def released_status() -> dict[str, str]:
    text = (FIXTURES / "release_status.txt").read_text()
    parts = [part for part in text.split("== ") if part]
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in parts}


def table(shown: str) -> list[dict[str, str]]:
    """The results table's rows as {column: cell}, wrapped cells joined."""
    lines = shown.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    columns = [cell.strip() for cell in header.strip("┃").split("┃")]
    rows: list[dict[str, str]] = []
    for line in lines:
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[0] or not rows:  # a new row; a blank first cell continues the row above
            rows.append(dict(zip(columns, cells)))
        else:
            rows[-1] = {column: f"{rows[-1][column]} {cell}".strip() for column, cell in zip(columns, cells)}
    return rows


def prose(shown: str) -> str:
    """Every line but the table's, in one line."""
    return " ".join(" ".join(line.split()) for line in shown.splitlines() if line and line[0] not in "┏┃┡│└")


def _cut_like(cell: str, old: str) -> str:
    """A cell cut with an ellipsis, as the whole old one if it begins it."""
    return old if cell.endswith("…") and old.startswith(cell[:-1].rstrip()) else cell


def _without_baseline(cell: str) -> str:
    """A state cell without the note on the baseline that the release could not make."""
    return cell.replace(": below baseline; ", ": ").replace(": below baseline", "")


@pytest.mark.slow
def test_studies_of_the_previous_release_show_the_same_tables(tmp_path: Path) -> None:
    """Every cell the release showed is shown again, and every line it printed; since then each
    table has a skill column and the output its baselines, scored on read where the data are at
    hand (these problems are generated), and the point the race stopped ranks below every point
    that trained its full count, where the release ranked it by its mean over 2 repeats."""
    url = release_database(tmp_path)
    for name, shown in released_status().items():
        now = status_of(name, url, tmp_path)
        old_rows, new_rows = table(shown), table(now)
        kept = [{column: _without_baseline(row[column]) for column in old_rows[0] if column != "#"} for row in new_rows]
        old = [{column: cell for column, cell in row.items() if column != "#"} for row in old_rows]
        # A state too long for its column is cut to one line now, ending in an ellipsis.
        old_by_point = {row["point"]: row for row in old}
        kept = [{column: _cut_like(cell, old_by_point.get(row["point"], {}).get(column, "")) for column, cell in row.items()}
                for row in kept]
        if name == "release-raced":
            assert sorted(map(str, kept)) == sorted(map(str, old))
            assert [row["point"] for row in new_rows][4:] == ["L=10 stateful", "L=1 stateless"]
        else:
            assert kept == old, name
        for line in shown.splitlines():  # each printed line, wrapped where it was, is printed again
            if line.strip() and line[0] not in "┏┃┡│└":
                assert " ".join(line.split()) in prose(now), (name, line)
        assert "baselines (" in now and "skill" in new_rows[0]


@pytest.mark.slow
def test_a_study_of_the_previous_release_resumes_where_it_stopped(tmp_path: Path) -> None:
    url = release_database(tmp_path)
    before = {point.key: point for point in sweep.Study.open("release-partial", storage=url).stored_points()}
    outcome = sweep.Study.open("release-partial", storage=url).run(workers=1)
    assert outcome.counts == {"done": 6, "running": 0, "waiting": 0, "failed": 0}
    after = {point.key: point for point in sweep.Study.open("release-partial", storage=url).stored_points()}
    assert after["L=2 stateless"].scores == before["L=2 stateless"].scores  # finished: untouched
    assert after["L=2 stateful"].scores[:2] == before["L=2 stateful"].scores  # its two repeats kept
    assert all(len(point.scores) == 3 for point in after.values())
    assert "chosen on the test data" in status_of("release-partial", url, tmp_path)


def test_the_release_fixture_is_a_study_database(tmp_path: Path) -> None:
    url = release_database(tmp_path)
    summaries = {summary.name: summary for summary in sweep.list_studies(url)}
    assert sorted(summaries) == ["release-diverged", "release-partial", "release-raced"]
    assert summaries["release-raced"].best_key == "L=10 stateless"
    assert summaries["release-diverged"].counts == {"done": 0, "running": 0, "waiting": 0, "failed": 2}


# One module names the record.

# Words the record stores under the names other modules give them: the grid's parameters
# ("length", "mode", spec.GridPoint's) and the data's parts ("test", the data's own).
SHARED_WORDS = {"length", "mode", "test"}


def string_literals(path: Path) -> set[str]:
    """A module's string constants, leaving out docstrings, __all__ and the text of f-strings."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node, clean=False):
            skipped.add(id(node.body[0].value))
        if isinstance(node, ast.JoinedStr):
            skipped.update(id(part) for part in node.values)
        if isinstance(node, ast.Assign) and any(getattr(target, "id", "") == "__all__" for target in node.targets):
            skipped.update(id(element) for element in ast.walk(node.value))
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped}


def test_every_record_key_is_a_literal_in_the_record_module_alone() -> None:
    keys = {value for name, value in vars(record).items() if name.isupper() and isinstance(value, str)}
    keys -= SHARED_WORDS | {record.DIVERGED, record.ERRORED}  # values, not keys
    for path in PACKAGE.rglob("*.py"):
        if path.name == "record.py" and path.parent.name == "store":
            continue
        assert not keys & string_literals(path), f"{path.relative_to(PACKAGE)} names a record key itself"


def test_only_the_metric_table_decides_the_direction() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if path.name != "metrics.py":
            assert '"maximize"' not in text and "MAXIMIZE" not in text, path.relative_to(PACKAGE)
