from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweep.errors import SpecError
from sweep.spec import (
    GridPoint,
    NpzProblem,
    Spec,
    apply_overrides,
    grid_points,
    load_spec,
    point_settings,
    spec_from_dict,
)

SHIPPED = Path(__file__).resolve().parent.parent / "studies" / "echo_first.toml"

TOP_DEFAULTS = {"name": '"t"', "repeats": "2"}
TABLE_DEFAULTS = {"problem": {"kind": '"echo-first"', "length": "20"}}


def study_text(top: dict[str, str | None] | None = None, **tables: dict[str, str | None] | None) -> str:
    """TOML text of a small valid study; values are raw TOML, None removes a key or a table."""
    top_values = {**TOP_DEFAULTS, **(top or {})}
    lines = [f"{key} = {value}" for key, value in top_values.items() if value is not None]
    merged: dict[str, dict[str, str | None] | None] = {name: dict(table) for name, table in TABLE_DEFAULTS.items()}
    for name, table in tables.items():
        merged[name] = None if table is None else {**(merged.get(name) or {}), **table}
    for name, table in merged.items():
        if table is None:
            continue
        lines.append(f"[{name}]")
        lines += [f"{key} = {value}" for key, value in table.items() if value is not None]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> Spec:
    return load_spec(write(tmp_path, text))


def spec_error(tmp_path: Path, text: str, match: str) -> str:
    with pytest.raises(SpecError, match=match) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    return message


def with_key(section: str, key: str, value: str) -> str:
    if section == "":
        return study_text(top={key: value})
    return study_text(**{section: {key: value}})


@pytest.mark.parametrize("key", ["foo", "lenght", "Units"])
@pytest.mark.parametrize("section", ["", "problem", "grid", "model", "training", "objective"])
def test_an_unknown_key_is_named_in_a_one_line_error(tmp_path: Path, section: str, key: str) -> None:
    dotted = f"{section}.{key}" if section else key
    spec_error(tmp_path, with_key(section, key, "1"), re.escape(f"unknown key '{dotted}'"))


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("", "repeats", '"30"'),
        ("", "repeats", "3.0"),
        ("", "seed", "true"),
        ("", "name", "3"),
        ("problem", "length", '"20"'),
        ("problem", "n_train", "1e3"),
        ("model", "units", "1.5"),
        ("training", "epochs", "2.0"),
        ("training", "batch_size", '"10"'),
        ("training", "learning_rate", '"fast"'),
        ("objective", "per", "1"),
    ],
)
def test_a_value_of_the_wrong_type_is_named(tmp_path: Path, section: str, key: str, value: str) -> None:
    dotted = f"{section}.{key}" if section else key
    spec_error(tmp_path, with_key(section, key, value), re.escape(f"'{dotted}' = "))


@pytest.mark.parametrize("flaw", ["empty", "duplicate", "not a list"])
@pytest.mark.parametrize(
    "setting, value",
    [
        ("lengths", "2"),
        ("modes", '"stateful"'),
        ("units", "5"),
        ("epochs", "3"),
        ("batch_size", "8"),
        ("learning_rate", "0.01"),
        ("optimizer", '"sgd"'),
    ],
)
def test_a_flawed_grid_list_is_named(tmp_path: Path, setting: str, value: str, flaw: str) -> None:
    text = {"empty": "[]", "duplicate": f"[{value}, {value}]", "not a list": value}[flaw]
    spec_error(tmp_path, study_text(grid={setting: text}), re.escape(f"'grid.{setting}' = "))


@pytest.mark.parametrize(
    "section, key, value, named",
    [
        ("", "repeats", "0", "'repeats' = 0"),
        ("", "repeats", "-3", "'repeats' = -3"),
        ("", "name", '""', "'name'"),
        ("", "name", '"two words"', "'name'"),
        ("problem", "length", "0", "'problem.length' = 0"),
        ("problem", "n_train", "1", "'problem.n_train' = 1"),
        ("model", "units", "0", "'model.units' = 0"),
        ("training", "batch_size", "0", "'training.batch_size' = 0"),
        ("training", "learning_rate", "0.0", "'training.learning_rate' = 0.0"),
        ("training", "optimizer", '"adamw"', "'training.optimizer' = 'adamw'"),
        ("grid", "lengths", "[0]", "'grid.lengths.0' = 0"),
        ("grid", "lengths", "[3, 0]", "'grid.lengths.1' = 0"),
        ("grid", "lengths", '"divisors"', "'grid.lengths' = 'divisors'"),
        ("grid", "modes", '["batch"]', "'grid.modes.0' = 'batch'"),
        ("grid", "learning_rate", "[0.1, 0.0]", "'grid.learning_rate.1' = 0.0"),
        ("grid", "optimizer", '["adamw"]', "'grid.optimizer.0' = 'adamw'"),
        ("objective", "metric", '"f1"', "'objective.metric' = 'f1'"),
        ("objective", "per", '"batch"', "'objective.per' = 'batch'"),
    ],
)
def test_a_value_out_of_range_is_named(tmp_path: Path, section: str, key: str, value: str, named: str) -> None:
    spec_error(tmp_path, with_key(section, key, value), re.escape(named))


@pytest.mark.parametrize(
    "tables, named",
    [
        ({"objective": {"metric": '"rmse"'}}, "objective.metric 'rmse' does not suit a classification problem"),
        ({"objective": {"metric": '"mae"'}}, "objective.metric 'mae' does not suit a classification problem"),
        (
            {"problem": {"kind": '"lag-echo"', "length": "8", "lag": "2"}, "objective": {"metric": '"accuracy"'}},
            "objective.metric 'accuracy' does not suit a regression problem",
        ),
        (
            {"problem": {"kind": '"npz"', "length": None, "path": '"d.npz"', "task": '"regression"'}},
            "objective.metric 'accuracy' does not suit a regression problem",
        ),
        ({"problem": {"kind": '"lag-echo"', "length": "8", "lag": "8"}, "objective": {"metric": '"rmse"'}}, "problem.lag"),
        ({"problem": {"kind": '"lag-echo"', "length": "8", "lag": "9"}, "objective": {"metric": '"rmse"'}}, "problem.lag"),
        ({"grid": {"lengths": "{start = 9, stop = 3}"}}, "'grid.lengths'"),
        ({"grid": {"lengths": "{start = 0, stop = 3}"}}, "'grid.lengths.start' = 0"),
        ({"grid": {"lengths": "{start = 1, stop = 3, step = 0}"}}, "'grid.lengths.step' = 0"),
    ],
    ids=["rmse-echo", "mae-echo", "accuracy-lag", "accuracy-npz-regression", "lag-equal", "lag-longer",
         "range-reversed", "range-zero", "range-step-zero"],
)
def test_settings_that_contradict_each_other_are_named(tmp_path: Path, tables: dict, named: str) -> None:
    spec_error(tmp_path, study_text(**tables), re.escape(named))


@pytest.mark.parametrize(
    "text, named",
    [
        (study_text(top={"name": None}), "missing key 'name'"),
        (study_text(problem=None), "missing key 'problem'"),
        (study_text(problem={"kind": None}), "'problem.kind' must be one of"),
        (study_text(problem={"kind": '"sine"'}), "'problem.kind' must be one of 'echo-first', 'lag-echo', 'npz', 'table', 'series' (got 'sine')"),
        (study_text(problem={"kind": '"npz"', "length": None, "task": '"regression"'}), "missing key 'problem.path'"),
        ('name = "t"\nproblem = 5\n', "'problem' = 5"),
    ],
    ids=["name", "problem", "kind", "unknown-kind", "npz-path", "problem-not-a-table"],
)
def test_a_missing_or_unknown_part_is_named(tmp_path: Path, text: str, named: str) -> None:
    spec_error(tmp_path, text, re.escape(named))


@pytest.mark.parametrize("text", ["name = \n", "name = 't'\n[problem\n", "name = 't'\nname = 'u'\n", "[grid]\nlengths = [1,\n"])
def test_invalid_toml_is_one_line_naming_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError, match=re.escape(f"{path}: not valid TOML")) as info:
        load_spec(path)
    assert "\n" not in str(info.value)
    assert "line" in str(info.value)


def test_a_missing_study_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(SpecError, match=re.escape(f"{path}: no such study file")) as info:
        load_spec(path)
    assert "\n" not in str(info.value)


def test_a_directory_is_not_a_study_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the study file"):
        load_spec(tmp_path)



def test_a_study_file_that_is_not_utf8_gives_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(study_text(top={"description": '"caf\xe9"'}).encode("latin-1"))
    with pytest.raises(SpecError, match=re.escape(str(path))):
        load_spec(path)


@pytest.mark.parametrize(
    "lengths, named",
    [
        ("[0]", "greater than or equal to 1"),
        ("{start = 9, stop = 3}", "stop 3 is below start 9"),
        ("{start = 1, stop = 3, stpe = 1}", "grid.lengths.stpe"),
    ],
    ids=["zero-length", "range-reversed", "range-misspelled"],
)
def test_a_bad_grid_lengths_message_says_what_is_wrong(tmp_path: Path, lengths: str, named: str) -> None:
    spec_error(tmp_path, study_text(grid={"lengths": lengths}), re.escape(named))



def test_a_metric_mismatch_is_reported_at_its_key_without_echoing_the_study(tmp_path: Path) -> None:
    text = study_text(top={"description": '"a long description of this study"'}, objective={"metric": '"rmse"'})
    message = spec_error(tmp_path, text, "objective.metric")
    assert "(top level)" not in message
    assert "a long description" not in message


@pytest.mark.parametrize("sequence_length, lengths, too_long", [(20, "[5, 30]", 30), (4, "[5]", 5), (6, "{start = 2, stop = 9, step = 3}", 8)])
def test_a_length_beyond_the_sequence_is_named_by_grid_points(tmp_path: Path, sequence_length: int, lengths: str, too_long: int) -> None:
    spec = load_text(tmp_path, study_text(grid={"lengths": lengths}))
    with pytest.raises(SpecError, match=re.escape(f"grid.lengths: {too_long} is longer than the sequence length {sequence_length}")) as info:
        grid_points(spec, sequence_length)
    assert "\n" not in str(info.value)


def test_the_shipped_study_loads_with_twelve_unique_points() -> None:
    spec = load_spec(SHIPPED)
    points = grid_points(spec, spec.problem.length)
    assert spec.name == "echo-first"
    assert len(points) == 12
    assert len({point.key for point in points}) == 12
    assert sorted({point.length for point in points}) == [1, 2, 4, 5, 10, 20]
    assert {point.mode for point in points} == {"stateless", "stateful"}


def test_a_length_range_includes_its_stop(tmp_path: Path) -> None:
    spec = load_text(tmp_path, study_text(grid={"lengths": "{start = 3, stop = 9, step = 3}", "modes": '["stateful"]'}))
    assert [point.length for point in grid_points(spec, 20)] == [3, 6, 9]


def test_a_length_range_step_defaults_to_one(tmp_path: Path) -> None:
    spec = load_text(tmp_path, study_text(grid={"lengths": "{start = 4, stop = 6}", "modes": '["stateful"]'}))
    assert [point.length for point in grid_points(spec, 20)] == [4, 5, 6]


def test_an_explicit_length_list_is_sorted(tmp_path: Path) -> None:
    spec = load_text(tmp_path, study_text(grid={"lengths": "[10, 2, 5]", "modes": '["stateless"]'}))
    assert [point.length for point in grid_points(spec, 20)] == [2, 5, 10]


def test_points_are_ordered_by_length_then_mode(tmp_path: Path) -> None:
    spec = load_text(tmp_path, study_text(grid={"lengths": "[4, 2]"}))
    assert [(p.length, p.mode) for p in grid_points(spec, 8)] == [
        (2, "stateless"), (2, "stateful"), (4, "stateless"), (4, "stateful"),
    ]


def test_crossing_units_doubles_the_points_and_applies_the_value(tmp_path: Path) -> None:
    plain = load_text(tmp_path, study_text(grid={"lengths": "[2, 4]"}, model={"units": "7"}))
    crossed = load_text(tmp_path, study_text(grid={"lengths": "[2, 4]", "units": "[5, 10]"}, model={"units": "7"}))
    points = grid_points(crossed, 8)
    assert len(points) == 2 * len(grid_points(plain, 8))
    assert len({point.key for point in points}) == len(points)
    assert sorted({point_settings(crossed, point)["units"] for point in points}) == [5, 10]
    assert {point_settings(plain, point)["units"] for point in grid_points(plain, 8)} == {7}


def test_point_settings_keep_the_spec_values_that_are_not_crossed(tmp_path: Path) -> None:
    spec = load_text(tmp_path, study_text(grid={"lengths": "[2]", "learning_rate": "[0.1, 0.5]"}, training={"epochs": "4"}))
    for point in grid_points(spec, 8):
        settings = point_settings(spec, point)
        assert settings["epochs"] == 4
        assert settings["learning_rate"] == dict(point.settings)["learning_rate"]


def test_several_crossed_settings_give_the_full_product(tmp_path: Path) -> None:
    text = study_text(grid={"lengths": "[2, 4]", "modes": '["stateful"]', "units": "[5, 10]", "optimizer": '["adam", "sgd", "rmsprop"]'})
    points = grid_points(load_text(tmp_path, text), 8)
    assert len(points) == 2 * 2 * 3
    assert len({point.key for point in points}) == 12


def test_overrides_change_repeats_and_epochs(tmp_path: Path) -> None:
    spec = load_text(tmp_path, study_text(grid={"epochs": "[2, 3]"}))
    changed = apply_overrides(spec, repeats=3, epochs=1)
    assert changed.repeats == 3
    assert changed.training.epochs == 1
    assert changed.grid.epochs is None
    assert changed.problem == spec.problem


def test_overrides_of_none_change_nothing(tmp_path: Path) -> None:
    spec = load_text(tmp_path, study_text())
    assert apply_overrides(spec, repeats=None, epochs=None, name=None) == spec


@pytest.mark.parametrize("overrides, named", [({"repeats": 0}, "'repeats' = 0"), ({"epochs": 0}, "'training.epochs' = 0"), ({"name": "a b"}, "'name'")])
def test_an_invalid_override_is_a_spec_error(tmp_path: Path, overrides: dict, named: str) -> None:
    spec = load_text(tmp_path, study_text())
    with pytest.raises(SpecError, match=re.escape(f"command line: {named}")):
        apply_overrides(spec, **overrides)


def test_a_point_comes_back_from_its_params(tmp_path: Path) -> None:
    text = study_text(grid={"lengths": "[2, 4]", "units": "[5, 10]", "learning_rate": "[0.1, 0.01]", "batch_size": "[4]"})
    for point in grid_points(load_text(tmp_path, text), 8):
        assert GridPoint.from_params(point.params) == point


@pytest.mark.parametrize(
    "metric, direction",
    [("accuracy", "maximize"), ("log_loss", "minimize"), ("rmse", "minimize"), ("mae", "minimize")],
)
def test_the_direction_follows_the_metric(tmp_path: Path, metric: str, direction: str) -> None:
    problem = {"kind": '"echo-first"'} if metric in ("accuracy", "log_loss") else {"kind": '"lag-echo"', "lag": "2"}
    spec = load_text(tmp_path, study_text(problem=problem, objective={"metric": f'"{metric}"'}))
    assert spec.direction == direction


@pytest.mark.parametrize(
    "tables",
    [
        {},
        {"grid": {"lengths": "{start = 2, stop = 8, step = 2}", "learning_rate": "[0.1, 1]", "optimizer": '["sgd"]'}},
        {"problem": {"kind": '"lag-echo"', "lag": "3"}, "objective": {"metric": '"mae"', "per": '"sequence"'}},
        {"problem": {"kind": '"npz"', "length": None, "path": '"data/x.npz"', "task": '"classification"'}},
    ],
    ids=["defaults", "range-and-crossed", "lag-echo", "npz"],
)
def test_a_spec_round_trips_through_json(tmp_path: Path, tables: dict) -> None:
    spec = load_text(tmp_path, study_text(**tables))
    assert spec_from_dict(spec.model_dump(mode="json")) == spec


def test_the_shipped_study_round_trips_through_json() -> None:
    spec = load_spec(SHIPPED)
    assert spec_from_dict(spec.model_dump(mode="json")) == spec


def test_an_npz_path_is_relative_to_the_study_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "studies").mkdir()
    monkeypatch.chdir(tmp_path)
    text = study_text(problem={"kind": '"npz"', "length": None, "path": '"../data/x.npz"', "task": '"classification"'})
    spec = load_spec(write(tmp_path / "studies", text))
    assert isinstance(spec.problem, NpzProblem)
    assert Path(spec.problem.path) == (tmp_path / "data" / "x.npz").resolve()


def test_an_absolute_npz_path_is_kept(tmp_path: Path) -> None:
    target = (tmp_path / "elsewhere" / "x.npz").resolve()
    text = study_text(problem={"kind": '"npz"', "length": None, "path": f"'{target}'", "task": '"regression"'}, objective={"metric": '"rmse"'})
    spec = load_spec(write(tmp_path, text))
    assert Path(spec.problem.path) == target


def test_backward_lengths_cross_the_forward_lengths_and_name_both(tmp_path: Path) -> None:
    spec = load_text(tmp_path, study_text(grid={"lengths": "[4, 2]", "backward": "[8, 2]", "modes": '["stateful"]'}))
    points = grid_points(spec, 20)
    assert [(p.length, p.backward) for p in points] == [(2, 2), (2, 8), (4, 2), (4, 8)]
    assert [p.key for p in points][:2] == ["k1=2 k2=2 stateful", "k1=2 k2=8 stateful"]
    assert points[1].params == {"length": 2, "backward": 8, "mode": "stateful"}
    assert [p.is_decoupled for p in points] == [False, True, True, True]
    assert all(GridPoint.from_params(p.params) == p for p in points)


def test_explicit_pairs_give_exactly_those_points(tmp_path: Path) -> None:
    spec = load_text(tmp_path, study_text(grid={"pairs": "[[10, 10], [10, 40], [5, 20]]", "modes": '["stateful"]'}))
    assert [p.key for p in grid_points(spec, 40)] == ["k1=10 k2=10 stateful", "k1=10 k2=40 stateful", "k1=5 k2=20 stateful"]


def test_a_grid_without_backward_lengths_keeps_its_points_and_keys(tmp_path: Path) -> None:
    points = grid_points(load_text(tmp_path, study_text(grid={"lengths": "[5]"})), 20)
    assert [p.key for p in points] == ["L=5 stateless", "L=5 stateful"]
    assert points[0].params == {"length": 5, "mode": "stateless"}


@pytest.mark.parametrize(
    "grid, named",
    [
        ({"backward": "[0]"}, "'grid.backward.0' = 0"),
        ({"backward": "[]"}, "'grid.backward' = []: the list is empty"),
        ({"backward": "[3, 3]"}, "repeats a value"),
        ({"pairs": "[[3]]"}, "'grid.pairs.0'"),
        ({"pairs": "[[3, 0]]"}, "'grid.pairs.0.1' = 0"),
        ({"pairs": "[[3, 4], [3, 4]]"}, "repeats a value"),
        ({"pairs": "[[3, 4]]", "backward": "[2]"}, "grid.pairs lists [forward, backward] lengths itself"),
        ({"pairs": "[[3, 4]]", "lengths": "[2]"}, "drop grid.lengths and grid.backward"),
    ],
)
def test_flawed_backward_lengths_are_named(tmp_path: Path, grid: dict, named: str) -> None:
    spec_error(tmp_path, study_text(grid=grid), re.escape(named))


@pytest.mark.parametrize(
    "grid, named",
    [({"lengths": "[4]", "backward": "[5, 30]"}, "grid.backward: [4, 30]"), ({"pairs": "[[30, 2]]"}, "grid.pairs: [30, 2]")],
)
def test_a_backward_length_beyond_the_sequence_is_named_by_grid_points(tmp_path: Path, grid: dict, named: str) -> None:
    spec = load_text(tmp_path, study_text(grid=grid))
    with pytest.raises(SpecError, match=re.escape(f"{named} reaches past the sequence length 20; keep both lengths from 1 to 20")):
        grid_points(spec, 20)
