"""The newer surface attacked input by input: tables, long series, `sweep data` and `sweep suggest`,
decoupled k1/k2 keys, racing and validation settings. Every bad input gets one line naming the
setting or file at fault and the fix, exit status 1, no traceback, and no database or file written;
an input that is odd but valid (rows out of order, gaps in the order column) is read as meant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_cli import sweep_in_process

ROWS = [{"id": f"s{i}", "t": t, "a": float(i + t), "label": "x" if i % 2 else "y"} for i in range(8) for t in range(4)]


def table_study(table: str, *, features: str = '["a"]', extra: str = "") -> str:
    return (
        f'name = "attack"\nrepeats = 2\n[problem]\nkind = "table"\ntrain = "{table}"\ntest_fraction = 0.25\n'
        f'sequence = "id"\norder = "t"\ntarget = "label"\ntask = "classification"\nfeatures = {features}\n{extra}'
        '[grid]\nlengths = [2]\nmodes = ["stateless"]\n'
    )


def write_table(folder: Path, name: str, frame: pd.DataFrame | None = None, text: str | bytes | None = None) -> str:
    path = folder / name
    if frame is not None:
        frame.to_parquet(path, index=False) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    elif isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text or "")
    return name


def good() -> pd.DataFrame:
    return pd.DataFrame(ROWS)


def mixed() -> pd.DataFrame:
    frame = good().astype({"a": object})
    frame.loc[3, "a"] = "high"
    return frame


def duplicate_header() -> str:
    return "id,t,a,a,label\n" + "".join(f"s{i},{t},1,2,{'x' if i % 2 else 'y'}\n" for i in range(8) for t in range(4))


def latin_1() -> bytes:
    return ("id,t,a,label\n" + "".join(f"s{i},{t},1,{'é' if i % 2 else 'y'}\n" for i in range(8) for t in range(4))).encode("latin-1")


# (name, file, how to make it, extra study keys or features, what the one line must say)
TABLES = [
    ("empty file", "t.csv", lambda: dict(text=""), {}, "the file is empty; problem.train needs a header row"),
    ("header only", "t.csv", lambda: dict(text="id,t,a,label\n"), {}, "the table has a header but no rows"),
    ("one row", "t.csv", lambda: dict(frame=good().iloc[:1]), {}, "leave none for training at test_fraction 0.25"),
    ("one class", "t.csv", lambda: dict(frame=good().assign(label="x")), {}, "the training targets hold one class only ('x')"),
    ("one class, parquet", "t.parquet", lambda: dict(frame=good().assign(label="x")), {}, "hold one class only"),
    ("all-NaN feature", "t.csv", lambda: dict(frame=good().assign(a=np.nan)), {}, "column 'a' is empty or NaN in sequence 's0'"),
    ("infinite feature", "t.csv", lambda: dict(frame=good().assign(a=np.inf)), {}, "column 'a' is infinite or too large for float32"),
    ("infinite feature, parquet", "t.parquet", lambda: dict(frame=good().assign(a=np.inf)), {}, "infinite or too large"),
    ("mixed types", "t.csv", lambda: dict(frame=mixed()), {}, "column 'a' is not numeric"),
    ("duplicate column names", "t.csv", lambda: dict(text=duplicate_header()), {}, "the header names column 'a' twice"),
    ("bytes that are not UTF-8", "t.csv", lambda: dict(text=latin_1()), {}, "not a readable csv table ('utf-8' codec"),
    ("missing target", "t.csv", lambda: dict(frame=good().drop(columns=["label"])), {}, "no column 'label' (columns: 'id', 't', 'a')"),
    ("missing target values", "t.csv", lambda: dict(frame=good().assign(label=lambda f: f["label"].where(f.index != 5))), {},
     "target 'label' is empty in sequence 's1'"),
    ("features name the target", "t.csv", lambda: dict(frame=good()), {"features": '["a", "label"]'},
     "problem.features names 'label', which is the sequence, order, split or target column; drop it"),
    ("features name the sequence", "t.csv", lambda: dict(frame=good()), {"features": '["a", "id"]'}, "problem.features names 'id'"),
    ("unknown feature", "t.csv", lambda: dict(frame=good()), {"features": '["a", "b"]'}, "no column 'b'"),
    ("no such file", "missing.csv", lambda: None, {}, "no such data file; fix problem.train"),
    ("not a table", "t.json", lambda: dict(text="{}"), {}, "problem.train must be a .csv or .parquet file"),
    ("order with empty values", "t.csv", lambda: dict(frame=good().assign(t=lambda f: f["t"].where(f.index != 2))), {},
     "column 't' has empty values"),
    ("sequence with empty names", "t.csv", lambda: dict(frame=good().assign(id=lambda f: f["id"].where(f.index != 4))), {},
     "row 5 has no value in column 'id'"),
]


def check_refused(code: int, out: str, err: str, message: str, folder: Path) -> None:
    lines = err.strip().splitlines()
    assert code == 1, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "Traceback" not in err
    assert not [path.name for path in folder.iterdir() if path.suffix in (".db", ".html", ".lock")]


@pytest.mark.parametrize("name,file,make,changes,message", TABLES, ids=[case[0] for case in TABLES])
@pytest.mark.parametrize("command", ["data", "suggest", "run"])
def test_a_bad_table_is_one_line_for_every_command(
    capsys, monkeypatch, tmp_path: Path, command: str, name: str, file: str, make, changes: dict, message: str
) -> None:
    made = make()
    if made is not None:
        write_table(tmp_path, file, **made)
    (tmp_path / "s.toml").write_text(table_study(file, **changes))
    monkeypatch.chdir(tmp_path)
    check_refused(*sweep_in_process(capsys, monkeypatch, command, "s.toml"), message, tmp_path)


@pytest.mark.parametrize("frame", [
    good().sample(frac=1, random_state=0),  # rows in any order: the order column sorts them
    good().assign(t=lambda f: f["t"] * 3 + 100),  # gaps in the order column: an order, not a clock
], ids=["unsorted rows", "gaps in the order column"])
def test_rows_out_of_order_or_with_gaps_read_as_meant(capsys, monkeypatch, tmp_path: Path, frame: pd.DataFrame) -> None:
    from sweep import describe_data, load_spec

    frame.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "s.toml").write_text(table_study("t.csv"))
    from sweep.data.problems import load_data

    summary = describe_data(load_spec(tmp_path / "s.toml"))
    assert summary.features == ["a"]

    dataset = load_data(load_spec(tmp_path / "s.toml"))
    # Every sequence's inputs rise step by step (a = i + t): in order, whatever the file's order.
    for part in ("train", "test", "val"):
        x = getattr(dataset, f"x_{part}")
        if x is not None:
            assert np.all(np.diff(x[:, :, 0], axis=1) > 0)


def series_study(path: str, **problem: object) -> str:
    keys = {"kind": "series", "path": path, "target": "v", "order": "t", **problem}
    lines = "\n".join(f"{key} = {value!r}".replace("'", '"') for key, value in keys.items())
    return f'name = "s"\nrepeats = 2\n[problem]\n{lines}\n[grid]\nlengths = [2]\nmodes = ["stateful"]\n[objective]\nmetric = "rmse"\n'


def series_file(folder: Path, values: np.ndarray, name: str = "v.csv") -> str:
    pd.DataFrame({"t": np.arange(len(values)), "v": values}).to_csv(folder / name, index=False)
    return name


NOISE = np.random.default_rng(0).normal(size=500)
WITH_NAN = np.where(np.arange(200) == 50, np.nan, np.sin(np.arange(200) / 3))
SERIES = [
    ("shorter than order + horizon", [1.0, 2.0], {}, "has 2 steps, too few for horizon 1; lower problem.horizon"),
    ("three points", [1.0, 2.0, 3.0], {}, "has 0 training steps"),
    ("NaN inside", WITH_NAN, {}, "column 'v' is empty or NaN in sequence 'series'"),
    ("horizon 0", NOISE, {"horizon": 0}, "'problem.horizon' = 0: Input should be greater than or equal to 1"),
    ("horizon negative", NOISE, {"horizon": -3}, "'problem.horizon' = -3"),
    ("test_fraction 0", NOISE, {"test_fraction": 0}, "'problem.test_fraction' = 0: Input should be greater than 0"),
    ("test_fraction 1", NOISE, {"test_fraction": 1}, "'problem.test_fraction' = 1: Input should be less than 1"),
    ("test_fraction above 1", NOISE, {"test_fraction": 1.5}, "'problem.test_fraction' = 1.5"),
    ("more segments than steps", NOISE, {"segments": 1000}, "for 1000 segments; lower problem.segments"),
    ("season 1", NOISE, {"season": 1}, "'problem.season' = 1: Input should be greater than or equal to 2"),
]


@pytest.mark.parametrize("name,values,changes,message", SERIES, ids=[case[0] for case in SERIES])
@pytest.mark.parametrize("command", ["data", "suggest"])
def test_a_bad_series_is_one_line(capsys, monkeypatch, tmp_path: Path, command: str, name: str, values, changes, message) -> None:
    (tmp_path / "s.toml").write_text(series_study(series_file(tmp_path, np.asarray(values, float)), **changes))
    monkeypatch.chdir(tmp_path)
    check_refused(*sweep_in_process(capsys, monkeypatch, command, "s.toml"), message, tmp_path)


@pytest.mark.parametrize("values", [NOISE, np.ones(200)], ids=["white noise", "a constant"])
def test_suggest_on_series_with_nothing_to_find_says_so_and_writes_nothing(
    capsys, monkeypatch, tmp_path: Path, values: np.ndarray
) -> None:
    (tmp_path / "s.toml").write_text(series_study(series_file(tmp_path, values)))
    monkeypatch.chdir(tmp_path)
    code, out, err = sweep_in_process(capsys, monkeypatch, "data", "s.toml")
    assert code == 0 and err == "", err
    code, out, err = sweep_in_process(capsys, monkeypatch, "suggest", "s.toml")
    assert code == 0 and err == "" and "target: no period; AR order by BIC 0" in out
    assert "no length suggested: nothing in the data stands out of the noise" in " ".join(out.split())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["s.toml", "v.csv"]


LAG_ECHO = 'name = "d"\nrepeats = {repeats}\n[problem]\nkind = "lag-echo"\nlength = 12\nlag = 2\nn_train = 20\nn_test = 10\n[grid]\n{grid}\n[objective]\nmetric = "rmse"\n{extra}\n'
SETTINGS = [
    ("k2 beyond the length", "pairs = [[2, 20]]", "", 4, "grid.pairs: [2, 20] reaches past the sequence length 12"),
    ("k2 = 0", "pairs = [[2, 0]]", "", 4, "'grid.pairs.0.1' = 0: Input should be greater than or equal to 1"),
    ("backward 0", "lengths = [2]\nbackward = [0]", "", 4, "'grid.backward.0' = 0"),
    ("racing stage 0", "lengths = [2]", "[racing]\nstages = [0]", 4, "'racing.stages.0' = 0: Input should be greater than or equal to 2"),
    ("racing stage negative", "lengths = [2]", "[racing]\nstages = [-1]", 4, "'racing.stages.0' = -1"),
    ("racing stage at repeats", "lengths = [2]", "[racing]\nstages = [4]", 4, "racing.stages [4] must stay below repeats (4)"),
    ("racing with one repeat", "lengths = [2]", "[racing]\nstages = [2]", 1, "must stay below repeats (1)"),
    ("racing alpha 0", "lengths = [2]", "[racing]\nstages = [2]\nalpha = 0", 4, "'racing.alpha' = 0: Input should be greater than 0"),
    ("racing alpha above 1", "lengths = [2]", "[racing]\nstages = [2]\nalpha = 1.5", 4, "'racing.alpha' = 1.5"),
    ("validation 1", "lengths = [2]", "[validation]\nfraction = 1", 4, "'validation.fraction' = 1: Input should be less than 1"),
    ("validation negative", "lengths = [2]", "[validation]\nfraction = -0.1", 4, "'validation.fraction' = -0.1"),
    ("validation that holds out everything", "lengths = [2]", "[validation]\nfraction = 0.99", 1,
     "validation.fraction 0.99 of 20 training sequences holds out 20"),
    ("patience negative", "lengths = [2]", "[validation]\npatience = -1", 4, "'validation.patience' = -1"),
]


@pytest.mark.parametrize("name,grid,extra,repeats,message", SETTINGS, ids=[case[0] for case in SETTINGS])
def test_a_bad_grid_racing_or_validation_setting_is_one_line(
    capsys, monkeypatch, tmp_path: Path, name: str, grid: str, extra: str, repeats: int, message: str
) -> None:
    (tmp_path / "s.toml").write_text(LAG_ECHO.format(repeats=repeats, grid=grid, extra=extra))
    monkeypatch.chdir(tmp_path)
    for command in ("data", "run"):
        check_refused(*sweep_in_process(capsys, monkeypatch, command, "s.toml"), message, tmp_path)


# The Python API misused, and storage faults -----------------------------------------------------------

API_MISUSE = [
    ("load_spec of a number", lambda sweep, url: sweep.load_spec(42), "load_spec takes the path of a study file"),
    ("spec_from_dict of a string", lambda sweep, url: sweep.spec_from_dict("x"), "a study is a table of keys (a dict"),
    ("create from a string", lambda sweep, url: sweep.Study.create("a spec", storage=url), "Study.create takes a Spec"),
    ("a storage of the wrong type", lambda sweep, url: sweep.Study.open("x", storage=42), "storage must be a database URL"),
    ("open a study that does not exist", lambda sweep, url: sweep.Study.open("x", storage=url), "no study database at"),
    ("a bad override", lambda sweep, url: sweep.apply_overrides(sweep.spec_from_dict(LAG_ECHO_DICT), repeats=0),
     "'repeats' = 0"),
]
LAG_ECHO_DICT = {"name": "d", "problem": {"kind": "lag-echo", "length": 12}, "objective": {"metric": "rmse"}}


@pytest.mark.parametrize("name,call,message", API_MISUSE, ids=[case[0] for case in API_MISUSE])
def test_the_python_api_misused_raises_one_sweep_error(tmp_path: Path, name: str, call, message: str) -> None:
    import sweep

    with pytest.raises(sweep.SweepError) as raised:
        call(sweep, f"sqlite:///{tmp_path / 'none.db'}")
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert not list(tmp_path.iterdir())


def test_listing_a_database_that_does_not_exist_lists_nothing_and_makes_nothing(tmp_path: Path) -> None:
    import sweep

    assert sweep.list_studies(f"sqlite:///{tmp_path / 'none.db'}") == []
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("workers", [0, -1, "2", 1.5, True])
def test_run_with_a_bad_worker_count_is_refused_before_anything_trains(tmp_path: Path, workers) -> None:
    import sweep

    study = sweep.Study.create(sweep.spec_from_dict({**LAG_ECHO_DICT, "repeats": 1}), storage=f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(sweep.SweepError, match="workers must be a whole number of at least 1"):
        study.run(workers=workers)
    assert study.counts()["waiting"] == len(study.stored_points())


@pytest.mark.parametrize("url,message", [
    ("postgresql+psycopg://postgres@127.0.0.1:5432/no_such_database",
     'cannot use the study database postgresql+psycopg://postgres@127.0.0.1:5432/no_such_database'),
    ("postgresql+psycopg://nobody:secret@127.0.0.1:5432/test", "cannot log in to the study database"),
    ("postgresql+psycopg://postgres@127.0.0.1:5999/test", "Connection refused"),
], ids=["a database that does not exist", "a wrong user and password", "a wrong port"])
def test_a_storage_fault_names_what_failed_and_hides_the_password(capsys, monkeypatch, url: str, message: str) -> None:
    code, out, err = sweep_in_process(capsys, monkeypatch, "list", "--storage", url)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and message in lines[0], lines
    assert "secret" not in err and "Traceback" not in err
    if "no_such_database" in url:
        assert "create that database first" in lines[0]
    if "nobody" in url:
        assert "fix the user in the URL" in lines[0] and "nobody:***@" in lines[0]


# Commands on odd studies: a name Optuna allows and sweep does not, every point failed, one repeat,
# a name that does not exist ---------------------------------------------------------------------

ODD_NAME = '<b onclick="x">it\'s</b>'
DIVERGING = {"name": "div", "repeats": 2, "problem": {"kind": "lag-echo", "length": 8, "lag": 2, "n_train": 20, "n_test": 10},
             "grid": {"lengths": [2, 4], "modes": ["stateful"]}, "training": {"epochs": 1, "learning_rate": 1e30},
             "objective": {"metric": "rmse"}}


def test_a_study_name_with_html_and_quotes_is_refused_in_the_study_file(capsys, monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(LAG_ECHO.format(repeats=2, grid="lengths = [2]", extra="").replace('name = "d"', 'name = "<b>it\'s</b>"'))
    monkeypatch.chdir(tmp_path)
    check_refused(*sweep_in_process(capsys, monkeypatch, "run", "s.toml"), "'name' = \"<b>it's</b>\"", tmp_path)


@pytest.mark.parametrize("command", [["status"], ["report"], ["requeue"], ["delete", "--yes"], ["worker"], ["export", "-o", "m"]])
def test_every_command_on_an_optuna_study_with_an_html_name_refuses_it_and_leaves_it(capsys, monkeypatch, tmp_path: Path, command) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name=ODD_NAME, storage=url).enqueue_trial({"x": 1})
    monkeypatch.chdir(tmp_path)
    code, out, err = sweep_in_process(capsys, monkeypatch, command[0], ODD_NAME, *command[1:], "--storage", url)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "was not made by sweep" in lines[0] and '<b onclick="x">' in lines[0], lines
    assert len(optuna.load_study(study_name=ODD_NAME, storage=url).trials) == 1
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob("*.html"))
    code, out, err = sweep_in_process(capsys, monkeypatch, "list", "--storage", url)
    rows = [line.split("│") for line in out.splitlines() if line.startswith("│")]
    name, shown_as = "".join(cells[1].strip() for cells in rows), " ".join(cells[7].strip() for cells in rows).split()
    assert code == 0 and name.replace(" ", "") == ODD_NAME.replace(" ", "") and shown_as == ["not", "a", "sweep", "study"]


def test_every_command_on_a_study_whose_every_point_failed(capsys, monkeypatch, tmp_path: Path) -> None:
    """A learning rate of 1e30: every repeat diverges (its scores are no numbers)."""
    import sweep

    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.chdir(tmp_path)
    study = sweep.Study.create(sweep.spec_from_dict(DIVERGING), storage=url)
    outcome = study.run(workers=1)
    assert outcome.counts == {"done": 0, "running": 0, "waiting": 0, "failed": 2}
    code, out, err = sweep_in_process(capsys, monkeypatch, "run", "div", "--storage", url, "--workers", "1")
    assert code == 3 and "2 grid points failed" in err
    code, out, err = sweep_in_process(capsys, monkeypatch, "status", "div", "--storage", url)
    assert code == 0 and out.count("failed: L=") == 2 and "diverged" not in err
    assert all(len(line) <= 100 for line in out.splitlines())
    code, out, err = sweep_in_process(capsys, monkeypatch, "requeue", "div", "--storage", url)
    assert code == 0 and "not requeued, since the same settings and seeds would diverge again" in out
    code, out, err = sweep_in_process(capsys, monkeypatch, "report", "div", "--storage", url, "-o", "r.html")
    assert code == 0 and (tmp_path / "r.html").exists()
    code, out, err = sweep_in_process(capsys, monkeypatch, "export", "div", "--storage", url, "-o", "m")
    assert code == 1 and "has no finished point to export yet" in err and not (tmp_path / "m").exists()
    code, out, err = sweep_in_process(capsys, monkeypatch, "delete", "div", "--storage", url, "--yes")
    assert code == 0
    code, out, err = sweep_in_process(capsys, monkeypatch, "status", "div", "--storage", url)
    assert code == 1 and "no study named 'div'" in err


@pytest.mark.parametrize("command", [["status"], ["report"], ["requeue"], ["delete", "--yes"], ["worker"], ["export", "-o", "m"]])
def test_every_command_on_a_name_that_does_not_exist_is_one_line(capsys, monkeypatch, tmp_path: Path, command) -> None:
    import sweep

    url = f"sqlite:///{tmp_path / 's.db'}"
    sweep.Study.create(sweep.spec_from_dict({**LAG_ECHO_DICT, "repeats": 1}), storage=url)
    monkeypatch.chdir(tmp_path)
    code, out, err = sweep_in_process(capsys, monkeypatch, command[0], "nope", *command[1:], "--storage", url)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "no study named 'nope'" in lines[0], lines


def test_a_traceback_is_printed_only_when_asked(capsys, monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(series_study(series_file(tmp_path, np.asarray([1.0, 2.0]))))
    monkeypatch.chdir(tmp_path)
    code, out, err = sweep_in_process(capsys, monkeypatch, "data", "s.toml")
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, out, err = sweep_in_process(capsys, monkeypatch, "data", "s.toml", "--debug")
    assert code == 1 and "Traceback (most recent call last)" in err and "DataError" in err
    assert err.strip().splitlines()[-1].startswith("error: ") and "too few for horizon 1" in err
