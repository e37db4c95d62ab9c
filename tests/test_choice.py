"""An honest choice: a point a race stopped never ranks above, or is chosen over, a point that
trained its full count; a score that is no finite number is a failure, never a result."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from sweep import Study, spec_from_dict
from sweep.data.problems import load_data
from sweep.report.choice import chosen_point
from sweep.report.dashboard import study_note
from sweep.run.racing import Verdict
from sweep.spec import grid_points
from sweep.store import protocol, record
from sweep.store.connection import open_storage
from sweep.store.record import read_point

RACED = {
    "name": "raced", "repeats": 4,
    "problem": {"kind": "echo-first", "length": 4, "n_train": 20, "n_test": 10},
    "grid": {"lengths": [2, 4], "modes": ["stateful"]},
    "racing": {"stages": [2]},
}
# The race stopped L=2 at 2 repeats, both 1.0, against L=4's first two (also 1.0, by a verdict
# made up for the test); L=4 then trained its 4 and ended lower, at 0.85. By its mean over the
# repeats it trained, the stopped point looks the better one.
SCORES = {"L=2 stateful": [1.0, 1.0], "L=4 stateful": [1.0, 1.0, 0.7, 0.7]}


def make_raced_study(url: str) -> optuna.Study:
    """A raced study as the runner stores it, through the record's own writers."""
    spec = spec_from_dict(RACED)
    dataset = load_data(spec)
    points = {point.key: point for point in grid_points(spec, dataset.sequence_length)}
    study = protocol.create_or_resume(
        open_storage(url), spec, fingerprint=dataset.fingerprint, points=list(points.values()),
        sequence_length=dataset.sequence_length,
    )
    while (trial := protocol.claim_next(study)) is not None:
        point = protocol.suggest_point(trial, spec, list(points.values()))
        for repeat, score in enumerate(SCORES[point.key]):
            details = {"seed": repeat, "seconds": 0.1, "accuracy/sample": score, "validation/accuracy/sample": score}
            protocol.record_repeat(trial, repeat=repeat, score=score, details=details)
        stop = Verdict(stage=2, leader="L=4 stateful", p_value=0.001, threshold=0.05) if point.key == "L=2 stateful" else None
        summary = record.point_summary(
            protocol.stored_repeats(trial), spec=spec, dataset=dataset, point=point, wall_seconds=1.0, stop=stop,
        )
        protocol.finish_trial(study, trial, summary=summary, value=summary["mean"])
    return study


def sweep_cli(*args: str, cwd: Path, columns: int = 200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweep", *args], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, "COLUMNS": str(columns)},
    )


def test_a_point_the_race_stopped_is_never_chosen_over_one_that_trained_its_full_count(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    make_raced_study(url)
    study = Study.open("raced", storage=url)
    assert study.chosen().key == "L=4 stateful" and study.chosen().n == 4
    assert [row.key for row in study.rows()] == ["L=4 stateful", "L=2 stateful"]
    assert study.records()[0]["key"] == "L=4 stateful"
    report = study.report()
    assert [point.key for point in report.finished_points] == ["L=4 stateful", "L=2 stateful"]
    assert report.choice.key == "L=4 stateful"
    note = study_note(report)
    assert "**Best point: L=4 stateful**" in note and "chosen on the validation data: L=4 stateful" in note


@pytest.mark.slow
def test_status_list_and_report_agree_on_the_honest_choice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    make_raced_study(url)
    status = sweep_cli("status", "raced", "--storage", url, cwd=tmp_path)
    ranked = [line for line in status.stdout.splitlines() if line.startswith("│ 1 ") or line.startswith("│ 2 ")]
    assert "L=4 stateful" in ranked[0] and "L=2 stateful" in ranked[1] and "stopped at 2 repeats" in ranked[1]
    assert "chosen on the validation data: L=4 stateful" in status.stdout
    listing = sweep_cli("list", "--storage", url, cwd=tmp_path)
    assert "L=4 stateful" in listing.stdout and "L=2 stateful" not in listing.stdout
    assert sweep_cli("report", "raced", "--storage", url, "-o", str(tmp_path / "r.html"), cwd=tmp_path).returncode == 0
    page = (tmp_path / "r.html").read_text()
    assert 'id="chosen"' in page and "chosen on the validation data: L=4 stateful" in page
    first_row = page.split('<table id="points">')[1].split("</tr>")[1]
    assert "L=4 stateful" in first_row


def test_the_report_compares_a_stopped_point_at_its_own_repeat_count() -> None:
    from sweep.report.summary import PointStats, compare_to_best

    def stats(key: str, scores: list[float]) -> PointStats:
        return PointStats(number=0, key=key, length=1, mode="stateful", group="stateful", state="done",
                          scores=tuple(scores), summary={}, is_padded=False, padding_fraction=0.0, wall_seconds=None)

    # The best's first two repeats equal the stopped point's two: nothing to tell apart there,
    # though its last two would make them look different.
    best = stats("best", [0.5, 0.6, 0.9, 0.9])
    stopped = stats("stopped", [0.5, 0.6])
    compared = compare_to_best([best, stopped])
    assert compared[1].p_value == 1.0


def finished(key: str, mean: float, *, stopped_at: int | None = None) -> optuna.trial.FrozenTrial:
    attrs = {"key": key, "metric": "rmse/sample", "ci95_low": 0.0, "ci95_high": 1.0, "n": 3}
    if stopped_at is not None:
        attrs.update(stopped_at=stopped_at, stop_leader="x", stop_p_value=0.001, stop_threshold=0.01)
    return optuna.trial.create_trial(value=mean, user_attrs=attrs)


def test_a_mean_that_is_no_number_is_never_ranked_or_chosen() -> None:
    points = sorted(
        (read_point(finished("inf", math.inf)), read_point(finished("ok", 0.5)), read_point(finished("-inf", -math.inf))),
        key=lambda point: record.rank(point, maximize=False),
    )
    assert [point.key for point in points][0] == "ok"  # -inf is no better an rmse than inf
    assert chosen_point(points).key == "ok"
    assert chosen_point([read_point(finished("inf", math.inf))]) is None


def test_where_every_finished_point_was_stopped_the_sentence_says_so() -> None:
    points = [read_point(finished("late", 0.4, stopped_at=10)), read_point(finished("early", 0.1, stopped_at=5))]
    points.sort(key=lambda point: record.rank(point, maximize=False))
    assert [point.key for point in points] == ["late", "early"]  # the later stage first, whatever the mean
    choice = chosen_point(points)
    assert choice.key == "late" and "no grid point finished its full count" in choice.describe()
    assert "no result to report" in choice.describe()


BLOW_UP = """
name = "blow-up"
repeats = 2
[problem]
kind = "lag-echo"
length = 6
lag = 1
n_train = 10
n_test = 10
[grid]
lengths = [6]
modes = ["stateless", "stateful"]
[model]
units = 4
[training]
epochs = 1
batch_size = 8
optimizer = "sgd"
learning_rate = 1e30
[objective]
metric = "rmse"
"""


@pytest.mark.slow
def test_networks_that_blow_up_on_their_last_update_fail_and_nothing_is_chosen(tmp_path: Path) -> None:
    """One update of sgd at a huge rate: the loss measured before it is finite, the network after
    it predicts infinities. Each point fails as diverged, run exits non-zero, nothing is chosen,
    and NumPy says nothing on the terminal."""
    (tmp_path / "blow.toml").write_text(BLOW_UP)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    done = sweep_cli("run", "blow.toml", "--workers", "1", "--storage", url, cwd=tmp_path)
    assert done.returncode != 0
    assert "chosen" not in done.stdout and "Warning" not in done.stderr, done.stderr
    trials = optuna.load_study(study_name="blow-up", storage=url).trials
    assert [trial.state for trial in trials] == [optuna.trial.TrialState.FAIL] * 2
    assert all(trial.user_attrs["fail_kind"] == "diverged" for trial in trials)
    # Named by the score: the training loss stayed finite (it would be named first).
    assert all("score became" in trial.user_attrs["fail_reason"] for trial in trials)
    requeued = sweep_cli("requeue", "blow-up", "--storage", url, cwd=tmp_path)
    assert "not requeued, since the same settings and seeds would diverge again" in requeued.stdout
    # At 100 columns each failed point is one line, its reason cut; --point gives it whole.
    status = sweep_cli("status", "blow-up", "--storage", url, cwd=tmp_path, columns=100).stdout
    assert max(len(line) for line in status.splitlines()) <= 100
    failed_rows = [line for line in status.splitlines() if "│ failed:" in line]
    assert len(failed_rows) == 2 and all(line.rstrip(" │-").endswith("…") or "…" in line for line in failed_rows)
    assert 'one in full: sweep status blow-up --point "KEY"' in status
    whole = sweep_cli("status", "blow-up", "--point", "L=6 stateful", "--storage", url, cwd=tmp_path, columns=100).stdout
    reason = trials[1].user_attrs["fail_reason"]
    assert reason in " ".join(whole.split()) or reason in whole


def points_of(scores: dict[str, list[float]], *, maximize: bool = True) -> list:
    """Finished points with these repeat scores, ranked as a study's are."""
    points = []
    for number, (key, values) in enumerate(scores.items()):
        length = int(key.split()[0].removeprefix("L="))
        trial = optuna.trial.create_trial(
            value=sum(values) / len(values), params={"length": length, "mode": key.split()[1]},
            distributions={"length": optuna.distributions.IntDistribution(1, 20),
                           "mode": optuna.distributions.CategoricalDistribution(["stateless", "stateful"])},
            user_attrs={"key": key, "metric": "accuracy/sample", "ci95_low": 0.0, "ci95_high": 1.0, "n": len(values)},
            intermediate_values=dict(enumerate(values)),
        )
        trial.number = number
        points.append(read_point(trial))
    return sorted(points, key=lambda point: record.rank(point, maximize=maximize))


def test_points_that_tie_are_named_with_the_rule_that_picked_one() -> None:
    """Three points at 1.0 tie; the shortest length is chosen, whatever the grid's order; a point
    close below them is counted as not significantly worse, a clearly worse one is not."""
    points = points_of({
        "L=10 stateful": [1.0] * 6, "L=5 stateful": [1.0] * 6, "L=20 stateful": [1.0] * 6,
        "L=4 stateful": [1.0, 1.0, 1.0, 1.0, 1.0, 0.95], "L=1 stateless": [0.5] * 6,
    })
    choice = chosen_point(points)
    assert choice.key == "L=5 stateful"
    assert choice.tied == ("L=10 stateful", "L=20 stateful")
    assert choice.n_not_worse == 1
    sentence = choice.describe()
    assert "It ties with 2 other points at 1 (L=10 stateful, L=20 stateful)" in sentence
    assert "the one with the shortest forward length k1 is chosen" in sentence
    assert "1 more not significantly worse" in sentence


def test_a_point_alone_at_the_top_names_no_tie() -> None:
    choice = chosen_point(points_of({"L=5 stateful": [1.0] * 6, "L=1 stateless": [0.5] * 6}))
    assert choice.tied == () and "ties" not in choice.describe()


def test_a_reason_is_shown_as_written_never_read_as_markup(tmp_path: Path) -> None:
    """A failure's text comes from an exception or a database: '[red]' in it is shown, not obeyed."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    spec = spec_from_dict(RACED)
    study = protocol.create_or_resume(open_storage(url), spec, fingerprint="f", points=grid_points(spec, 4), sequence_length=4)
    protocol.fail_trial(study, protocol.claim_next(study), "[0, 1] [red]x[/red]")
    table = sweep_cli("status", "raced", "--storage", url, cwd=tmp_path)
    whole = sweep_cli("status", "raced", "--point", "L=2 stateful", "--storage", url, cwd=tmp_path)
    assert "failed: [0, 1] [red]x[/red]" in table.stdout
    assert "[0, 1] [red]x[/red]" in whole.stdout
