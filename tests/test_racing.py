"""Racing: the test's error rate and power on simulated scores (no training), the stages, the
study-file keys, and a raced study end to end against the same study without racing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from sweep import Study, spec_from_dict
from sweep.report.dashboard import study_note
from sweep.errors import SpecError
from sweep.run.racing import Race
from sweep.spec import apply_overrides

STAGES = (5, 10, 20)


def race_of(n_points: int, *, alpha: float = 0.05, maximize: bool = True) -> Race:
    return Race(stages=STAGES, repeats=30, alpha=alpha, n_points=n_points, maximize=maximize)


def simulate(race: Race, scores: dict[str, np.ndarray]) -> dict[str, int]:
    """One race as the runner runs it: at each stage every point still racing is judged in turn,
    a stopped point leaving the race at once. Returns the repeats each point trained."""
    racing = dict(scores)
    trained = {}
    for stage in race.stages:
        for key in list(racing):
            contenders = {name: values[:stage] for name, values in racing.items()}
            if race.judge(key, contenders).is_stopped:
                trained[key] = stage
                del racing[key]
    return {**trained, **{key: race.repeats for key in racing}}


@pytest.mark.slow
def test_a_point_as_good_as_the_leader_is_stopped_at_most_at_the_stated_rate() -> None:
    """Four points with the same score distribution, 2,000 races: each is stopped in at most
    alpha of them, looks and comparisons with the others included."""
    rng = np.random.default_rng(0)
    race = race_of(4)
    stops = np.zeros(4)
    n_races = 2000
    for _ in range(n_races):
        trained = simulate(race, {f"p{i}": rng.normal(0.8, 0.05, 30) for i in range(4)})
        stops += [trained[f"p{i}"] < 30 for i in range(4)]
    rates = stops / n_races
    assert rates.max() <= race.alpha, rates


def test_a_clearly_worse_point_stops_at_the_first_stage() -> None:
    rng = np.random.default_rng(1)
    race = race_of(4, maximize=False)  # scores are losses: lower is better
    first_stage = 0
    for _ in range(500):
        scores = {f"p{i}": rng.normal(1.0, 0.1, 30) for i in range(3)}
        scores["worse"] = rng.normal(1.5, 0.1, 30)
        trained = simulate(race, scores)
        first_stage += trained["worse"] == STAGES[0]
    assert first_stage / 500 >= 0.95


def test_scores_that_never_vary_stop_only_when_the_deals_say_so() -> None:
    """Two repeats of 0.9 against two of 1.0 are no evidence (a third of the deals of those four
    scores put the two 0.9s together); five of 0.5 against ten of 1.0 are, and equal ones never."""
    race = race_of(3)
    assert not race.judge("bad", {"best": [1.0, 1.0], "bad": [0.9, 0.9]}).is_stopped
    assert race.judge("bad", {"best": [1.0, 1.0], "bad": [0.9, 0.9]}).p_value >= 0.25
    verdict = race.judge("bad", {"best": [1.0] * 5, "bad": [0.5] * 5, "tied": [1.0] * 5})
    assert verdict.is_stopped and verdict.leader in ("best", "tied")
    assert not race.judge("tied", {"best": [1.0] * 5, "tied": [1.0] * 5}).is_stopped


def test_every_machine_reaches_the_same_verdict() -> None:
    race = race_of(3)
    contenders = {"a": [0.8, 0.9, 0.85, 0.7, 0.9], "b": [0.7, 0.75, 0.8, 0.6, 0.7], "c": [0.9, 0.8, 0.8, 0.85, 0.9]}
    assert race.judge("b", contenders) == race.judge("b", dict(reversed(list(contenders.items()))))


def test_the_leader_is_judged_at_the_point_s_own_stage_against_points_that_reached_it() -> None:
    """A point with 5 repeats meets the first 5 of a point with 10; one with 3 takes no part."""
    race = race_of(3, maximize=False)
    contenders = {"ahead": [1.0, 1.1, 0.9, 1.0, 1.0, 9, 9, 9, 9, 9], "here": [2.0, 2.1, 1.9, 2.0, 2.05], "behind": [0.0, 0.0, 0.0]}
    verdict = race.judge("here", contenders)
    assert verdict.stage == 5 and verdict.leader == "ahead" and verdict.is_stopped


def test_stages_and_targets() -> None:
    race = race_of(4)
    assert [race.target(n) for n in (0, 3, 5, 10, 19, 20, 25)] == [5, 5, 10, 20, 20, 30, 30]
    assert [race.is_boundary(n) for n in (0, 5, 7, 20, 30)] == [False, True, False, True, False]
    assert race.threshold == pytest.approx(0.05 / 3)  # alpha over the looks


def racing_spec(name: str = "raced", racing: dict | None = None) -> dict:
    return {
        "name": name, "repeats": 6, "problem": {"kind": "echo-first", "length": 6, "n_train": 100, "n_test": 40},
        "grid": {"lengths": [1, 6], "modes": ["stateless", "stateful"]},
        "training": {"epochs": 3, "batch_size": 10, "learning_rate": 0.05}, "model": {"units": 6},
        **({"racing": racing} if racing is not None else {}),
    }


@pytest.mark.parametrize(
    "racing, named",
    [
        ({"stages": [3, 2]}, "must increase"),
        ({"stages": []}, "the list is empty"),
        ({"stages": [1]}, "'racing.stages.0' = 1"),
        ({"stages": [3, 6]}, "must stay below repeats (6)"),
        ({"alpha": 0.7}, "'racing.alpha' = 0.7"),
        ({"stage": [3]}, "unknown key 'racing.stage'"),
    ],
)
def test_flawed_racing_settings_are_named(racing: dict, named: str) -> None:
    with pytest.raises(SpecError, match=named.replace("(", r"\(").replace(")", r"\)")):
        spec_from_dict(racing_spec(racing=racing))


def test_fewer_repeats_on_the_command_line_keep_the_stages_below_them() -> None:
    spec = spec_from_dict({**racing_spec(racing={"stages": [2, 4]}), "repeats": 10})
    assert apply_overrides(spec, repeats=3).racing.stages == [2]
    assert apply_overrides(spec, repeats=2).racing is None


@pytest.mark.slow
def test_a_raced_study_stops_the_worse_point_and_trains_the_rest_as_without_racing(tmp_path: Path) -> None:
    """Stateless L = 1 on echo-first cannot see the flag: stopped at 3 of 6 repeats. Every other
    point trains its 6, and every repeat, the stopped point's 3 included, scores as it does in the
    same study without racing, each repeat trained alone on the reference Keras path (same
    seeds, so the same networks)."""
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    raced = Study.create(spec_from_dict(racing_spec(racing={"stages": [3]})), storage=storage)
    assert raced.run(workers=1).n_trained == 4  # points finished, not stages visited
    plain = Study.create(spec_from_dict(racing_spec(name="plain")), storage=storage)
    plain.run(workers=1, reference=True)
    raced_points = {p.key: p for p in raced.stored_points()}
    plain_points = {p.key: p for p in plain.stored_points()}
    stopped = raced_points["L=1 stateless"]
    assert len(stopped.scores) == 3 and stopped.stopped.startswith("stopped at 3 repeats: worse than")
    assert all(len(p.scores) == 6 and not p.stopped for key, p in raced_points.items() if key != "L=1 stateless")
    for key, point in raced_points.items():
        np.testing.assert_allclose(point.scores, plain_points[key].scores[: len(point.scores)], atol=1e-5)
    trials = {t.user_attrs["key"]: t for t in optuna.load_study(study_name="raced", storage=storage).trials}
    assert trials["L=1 stateless"].user_attrs["stopped_at"] == 3
    assert trials["L=1 stateless"].state == optuna.trial.TrialState.COMPLETE
    assert "- L=1 stateless: stopped at 3 repeats: worse than" in study_note(raced.report())
    assert "stopped at 3 repeats" in dict((row.key, row.note) for row in raced.rows())["L=1 stateless"]


@pytest.mark.slow
def test_two_machines_race_one_study_each_repeat_trained_once(postgres_url: str, tmp_path: Path) -> None:
    """Two workers share a raced study on PostgreSQL: stages go back to the queue and either
    machine may train the next one, yet every point ends with exactly its repeats, each trained
    once, and the worse point stops at the stage."""
    study_file = tmp_path / "raced.toml"
    raw = racing_spec(racing={"stages": [3]})
    study_file.write_text(_toml(raw))
    created = subprocess.run([sys.executable, "-m", "sweep", "create", str(study_file), "--storage", postgres_url],
                             capture_output=True, text=True, timeout=300)
    assert created.returncode == 0, created.stderr
    machines = [
        subprocess.Popen([sys.executable, "-m", "sweep", "worker", "raced", "--storage", postgres_url, "--workers", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for machine in machines:
        _, err = machine.communicate(timeout=600)
        assert machine.returncode == 0, err
    trials = optuna.load_study(study_name="raced", storage=postgres_url).get_trials()
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for trial in trials:
        expected = 3 if trial.user_attrs.get("stopped_at") else 6
        assert sorted(trial.intermediate_values) == list(range(expected)), trial.user_attrs["key"]
        assert trial.user_attrs["n"] == expected and len(trial.user_attrs["seeds"]) == expected
    assert [t.user_attrs["key"] for t in trials if t.user_attrs.get("stopped_at")] == ["L=1 stateless"]


def _toml(raw: dict) -> str:
    """A study dict as TOML text: JSON writes TOML's strings, numbers and lists alike."""
    lines = [f"{key} = {json.dumps(item)}" for key, item in raw.items() if not isinstance(item, dict)]
    for table, items in raw.items():
        if isinstance(items, dict):
            lines.append(f"[{table}]")
            lines += [f"{key} = {json.dumps(item)}" for key, item in items.items()]
    return "\n".join(lines) + "\n"


# The share of races in which a point as good as the leader is stopped, for continuous and
# discrete scores: at most alpha, give or take three standard errors of the simulation itself.

SCORE_DRAWS = {
    "continuous": lambda rng: rng.normal(0.8, 0.05, 30),
    "accuracy on 20 samples": lambda rng: rng.binomial(20, 0.8, 30) / 20,
    "accuracy on 200 samples": lambda rng: rng.binomial(200, 0.9, 30) / 200,
    "ties (accuracy 1.0 in most repeats)": lambda rng: rng.binomial(20, 0.97, 30) / 20,
}


@pytest.mark.slow
@pytest.mark.parametrize("n_points", [2, 5])
@pytest.mark.parametrize("draw", list(SCORE_DRAWS), ids=list(SCORE_DRAWS))
def test_races_of_equal_points_stop_one_in_at_most_alpha_of_them(draw: str, n_points: int) -> None:
    rng = np.random.default_rng(7)
    race = race_of(n_points, alpha=0.1)
    n_races = 400
    n_stopping = sum(
        min(simulate(race, {f"p{i}": SCORE_DRAWS[draw](rng) for i in range(n_points)}).values()) < 30
        for _ in range(n_races)
    )
    tolerance = 3 * np.sqrt(race.alpha * (1 - race.alpha) / n_races)
    assert n_stopping / n_races <= race.alpha + tolerance, n_stopping / n_races


@pytest.mark.slow
def test_equal_points_beside_a_worse_one_keep_the_rate() -> None:
    """Three points as good as one another and a clearly worse fourth: the worse one stops, and
    one of the three equal ones is stopped in at most alpha of the races."""
    rng = np.random.default_rng(8)
    race = race_of(4, alpha=0.1)
    n_races, n_stopping, worse_stopped = 400, 0, 0
    for _ in range(n_races):
        scores = {f"p{i}": rng.normal(0.8, 0.05, 30) for i in range(3)}
        scores["worse"] = rng.normal(0.6, 0.05, 30)
        trained = simulate(race, scores)
        n_stopping += min(trained[f"p{i}"] for i in range(3)) < 30
        worse_stopped += trained["worse"] < 30
    assert n_stopping / n_races <= race.alpha + 3 * np.sqrt(race.alpha * (1 - race.alpha) / n_races)
    assert worse_stopped == n_races


def test_the_old_rule_would_fail_the_simulation() -> None:
    """What the simulation guards against: a one-sided Welch t-test at alpha / (stages x (points -
    1)) against a leader the data chose stops an equal point in far more than alpha of races."""
    from scipy import stats

    rng = np.random.default_rng(9)
    n_points, alpha, n_races = 5, 0.1, 300
    threshold = alpha / (len(STAGES) * (n_points - 1))
    stopping = 0
    for _ in range(n_races):
        scores = rng.normal(0.8, 0.05, (n_points, 30))
        for stage in STAGES:
            means = scores[:, :stage].mean(axis=1)
            leader = int(means.argmax())
            p = [stats.ttest_ind(scores[i, :stage], scores[leader, :stage], equal_var=False, alternative="less").pvalue
                 for i in range(n_points) if i != leader]
            if min(p) < threshold:
                stopping += 1
                break
    assert stopping / n_races > alpha + 3 * np.sqrt(alpha * (1 - alpha) / n_races)
