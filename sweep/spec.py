"""Study files: TOML in, one frozen, checked :class:`Spec` out, and the grid it defines.

Everything a user can get wrong in a study file is caught here, once, with a message that names
the key, the value, what was expected and how to fix it. Later stages trust the spec.
"""

from __future__ import annotations

import itertools
import stat
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from sweep.errors import SpecError
from sweep.metrics import is_maximized, metric_names
from sweep.metrics import metric as metric_entry

__all__ = [
    "GRID_SETTINGS",
    "GridPoint",
    "Spec",
    "Validation",
    "apply_overrides",
    "grid_points",
    "load_spec",
    "spec_from_dict",
]

MODES = ("stateless", "stateful")
# Model and training settings that a [grid] table may list to cross with the lengths and modes.
GRID_SETTINGS = ("units", "epochs", "batch_size", "learning_rate", "optimizer")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class EchoFirstProblem(_Strict):
    """Zeros except the first step, which is 1 in half of the sequences; the label is that value."""

    kind: Literal["echo-first"]
    length: int = Field(20, ge=1, le=100_000)
    n_train: int = Field(1000, ge=2)
    n_test: int = Field(200, ge=2)
    seed: int = 0


class LagEchoProblem(_Strict):
    """Many-to-many regression: the target at step t is the input at step t - lag."""

    kind: Literal["lag-echo"]
    length: int = Field(20, ge=1, le=100_000)
    lag: int = Field(5, ge=0)
    n_train: int = Field(1000, ge=1)
    n_test: int = Field(200, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _lag_fits(self) -> LagEchoProblem:
        if self.lag >= self.length:
            raise ValueError(
                f"lag {self.lag} must be shorter than the sequence length {self.length}; "
                f"set problem.lag below {self.length}"
            )
        return self


class NpzProblem(_Strict):
    """A user's own arrays: x_train, y_train, x_test, y_test in one .npz file, sequences of one
    length, or of their own lengths as concatenated steps with train_lengths and test_lengths."""

    kind: Literal["npz"]
    path: str
    task: Literal["classification", "regression"]
    standardize: bool = True
    # Object arrays of sequences need pickle, which can run code: only for files you made yourself.
    allow_pickle: bool = False


class TableProblem(_Strict):
    """A CSV or Parquet table with one row per step; a column names each row's sequence."""

    kind: Literal["table"]
    train: str
    test: str | None = None
    split: str | None = None
    test_fraction: float | None = Field(None, gt=0, lt=1)
    sequence: str
    order: str | None = None
    features: list[str] | None = None
    target: str
    target_per: Literal["sequence", "step"] = "sequence"
    task: Literal["classification", "regression"]
    standardize: bool = True
    seed: int = 0

    @model_validator(mode="after")
    def _one_way_to_test(self) -> TableProblem:
        given = [key for key in ("test", "split", "test_fraction") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                "the table problem needs exactly one of problem.test (a second file), problem.split "
                f"(a column of 'train' and 'test') or problem.test_fraction; got {', '.join(given) or 'none'}"
            )
        named = [self.sequence, self.target, *([self.order] if self.order else []), *([self.split] if self.split else [])]
        overlap = sorted(set(self.features or ()) & set(named))
        if overlap:
            raise ValueError(f"problem.features names {overlap[0]!r}, which is the sequence, order, split or target column; drop it")
        return self


class SeriesProblem(_Strict):
    """One or several long series in a CSV, Parquet or npz file: predict `horizon` steps ahead."""

    kind: Literal["series"]
    path: str
    target: str
    features: list[str] | None = None
    series: str | None = None
    order: str | None = None
    horizon: int = Field(1, ge=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    segments: int = Field(1, ge=1)
    standardize: bool = True
    # The seasonal naive baseline's season in steps; None: the period found in the training part.
    season: int | None = Field(None, ge=2)


Problem = Annotated[
    Union[EchoFirstProblem, LagEchoProblem, NpzProblem, TableProblem, SeriesProblem], Field(discriminator="kind")
]
PROBLEM_KINDS = ("echo-first", "lag-echo", "npz", "table", "series")
# Keys of a problem that name a file, relative to the study file.
PATH_KEYS = ("path", "train", "test")


class LengthRange(_Strict):
    """Every length from `start` to `stop`, both included, in steps of `step`."""

    start: int = Field(ge=1)
    stop: int = Field(ge=1)
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> LengthRange:
        if self.stop < self.start:
            raise ValueError(f"stop {self.stop} is below start {self.start}; swap them")
        return self


def _lengths_form(value: Any) -> str | None:
    """Which form of `grid.lengths` a value is, so that errors speak of that form alone."""
    if isinstance(value, str):
        return "factors"
    if isinstance(value, list):
        return "list"
    if isinstance(value, (dict, LengthRange)):
        return "range"
    return None


Lengths = Annotated[
    Union[
        Annotated[Literal["factors", "suggested", "factors+suggested"], Tag("factors")],
        Annotated[list[Annotated[int, Field(ge=1)]], Tag("list")],
        Annotated[LengthRange, Tag("range")],
    ],
    Discriminator(
        _lengths_form,
        custom_error_type="lengths_form",
        custom_error_message='give "factors", "suggested", "factors+suggested", a list of lengths, or a table {start, stop, step}',
    ),
]
UNION_TAGS = (*PROBLEM_KINDS, "factors", "list", "range")


Pair = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=2, max_length=2)]


class Grid(_Strict):
    lengths: Lengths = "factors"
    # Decoupled TBPTT(k1, k2): `lengths` are the forward lengths k1, `backward` the lengths k2 the
    # gradient goes back, crossed with them; or `pairs` lists [k1, k2] pairs instead of both.
    backward: list[Annotated[int, Field(ge=1)]] | None = None
    pairs: list[Pair] | None = None
    modes: list[Literal["stateless", "stateful"]] = Field(default_factory=lambda: list(MODES))
    units: list[Annotated[int, Field(ge=1)]] | None = None
    epochs: list[Annotated[int, Field(ge=1)]] | None = None
    batch_size: list[Annotated[int, Field(ge=1)]] | None = None
    learning_rate: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = None
    optimizer: list[Literal["adam", "sgd", "rmsprop"]] | None = None

    @field_validator("lengths", "backward", "pairs", "modes", "units", "epochs", "batch_size", "learning_rate", "optimizer")
    @classmethod
    def _non_empty_unique(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("the list is empty; give at least one value")
            if len({repr(item) for item in value}) != len(value):
                raise ValueError(f"{value} repeats a value; list each value once")
        return value

    @model_validator(mode="after")
    def _pairs_alone(self) -> Grid:
        if self.pairs is not None and (self.backward is not None or self.lengths != "factors"):
            raise ValueError(
                "grid.pairs lists [forward, backward] lengths itself; drop grid.lengths and grid.backward, "
                "or drop grid.pairs and cross grid.lengths with grid.backward"
            )
        return self


class Model(_Strict):
    units: int = Field(10, ge=1, le=4096)


class Training(_Strict):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(10, ge=1)
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(0.001, gt=0, allow_inf_nan=False)


class Objective(_Strict):
    metric: Literal["accuracy", "log_loss", "rmse", "mae"] = "accuracy"
    per: Literal["sample", "sequence"] = "sample"


class Validation(_Strict):
    """Training sequences held out to choose on: the objective that ranks the points (and that a
    race compares) is measured on them, so that the test data only score the chosen point."""

    # The share of the training sequences held out; 0 turns the split off (then points are
    # ranked on the test data, as studies made before the split were).
    fraction: float = Field(0.2, ge=0, lt=1, allow_inf_nan=False)
    seed: int = 0
    # Early stopping: a repeat whose objective on the validation data has not improved for this
    # many epochs stops there, its weights as they are (0: every repeat trains every epoch).
    patience: int = Field(0, ge=0)

    @property
    def is_on(self) -> bool:
        return self.fraction > 0

    @model_validator(mode="after")
    def _patience_needs_data(self) -> Validation:
        if self.patience and not self.is_on:
            raise ValueError(
                f"validation.patience = {self.patience} stops repeats on the validation data, and validation.fraction = 0 "
                "holds none out; set validation.fraction above 0, or validation.patience = 0"
            )
        return self


class Racing(_Strict):
    """Repeats in stages; a point shown worse than the leader at a stage stops there."""

    stages: list[Annotated[int, Field(ge=2)]] = Field(default_factory=lambda: [5, 10, 20])
    alpha: float = Field(0.05, gt=0, lt=0.5)

    @field_validator("stages")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("the list is empty; give the repeat counts at which a point may stop, e.g. [5, 10, 20]")
        if any(later <= earlier for earlier, later in zip(value, value[1:])):
            raise ValueError(f"{value} must increase; list the repeat counts in order, each once")
        return value


class Spec(_Strict):
    """A whole study: what to learn, which grid to search, how to train, how to score."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    repeats: int = Field(30, ge=1, le=10_000)
    seed: int = 0
    problem: Problem
    grid: Grid = Field(default_factory=Grid)
    model: Model = Field(default_factory=Model)
    training: Training = Field(default_factory=Training)
    objective: Objective = Field(default_factory=Objective)
    validation: Validation = Field(default_factory=Validation)
    racing: Racing | None = None
    # Which repeats' trained weights the study keeps, for `sweep export`: every repeat's, the
    # chosen point's alone (the others' are dropped once the grid is done), or none (export refits).
    keep_weights: Literal["all", "chosen", "none"] = "all"

    @model_validator(mode="after")
    def _stages_below_repeats(self) -> Spec:
        if self.racing is not None and self.racing.stages[-1] >= self.repeats:
            raise ValueError(
                f"racing.stages {self.racing.stages} must stay below repeats ({self.repeats}): a point that is "
                "not stopped trains all its repeats; lower the stages or raise repeats"
            )
        return self

    @model_validator(mode="after")
    def _metric_fits_task(self) -> Spec:
        task = problem_task(self.problem)
        allowed = metric_names(task)
        if self.objective.metric not in allowed:
            raise ValueError(
                f"objective.metric {self.objective.metric!r} does not suit a {task} problem; "
                f"use one of {', '.join(allowed)}"
            )
        return self

    @property
    def is_maximized(self) -> bool:
        """Whether a higher objective is better (the metric table says: sweep.metrics)."""
        return is_maximized(self.objective.metric)

    @property
    def direction(self) -> str:
        """Optuna's word for it."""
        return metric_entry(self.objective.metric).direction

    @property
    def metric(self) -> str:
        """The objective as its scores are keyed: ``"<metric>/<scope>"``."""
        return f"{self.objective.metric}/{self.objective.per}"

    @property
    def ranked_on(self) -> str:
        """The data the points are ranked on: "validation", or "test" with the split off."""
        return "validation" if self.validation.is_on else "test"


def problem_task(problem: EchoFirstProblem | LagEchoProblem | NpzProblem | TableProblem | SeriesProblem) -> str:
    if isinstance(problem, (NpzProblem, TableProblem)):
        return problem.task
    return "classification" if isinstance(problem, EchoFirstProblem) else "regression"


@dataclass(frozen=True)
class GridPoint:
    """One trial of the study: a subsequence length, a state mode and any crossed settings.

    `length` is the forward length k1, the steps between two weight updates; `backward`, when the
    grid lists it, is k2, the steps the gradient goes back (None: plain TBPTT, k2 = k1).
    """

    length: int
    mode: str
    settings: tuple[tuple[str, Any], ...] = ()
    backward: int | None = None

    @property
    def key(self) -> str:
        extras = "".join(f" {name}={value}" for name, value in self.settings)
        lengths = f"L={self.length}" if self.backward is None else f"k1={self.length} k2={self.backward}"
        return f"{lengths} {self.mode}{extras}"

    @property
    def params(self) -> dict[str, Any]:
        backward = {} if self.backward is None else {"backward": self.backward}
        return {"length": self.length, **backward, "mode": self.mode, **dict(self.settings)}

    @property
    def is_decoupled(self) -> bool:
        """Whether the gradient goes back another number of steps than the forward length."""
        return self.backward is not None and self.backward != self.length

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GridPoint:
        settings = tuple((name, params[name]) for name in GRID_SETTINGS if name in params)
        backward = int(params["backward"]) if params.get("backward") is not None else None
        return cls(length=int(params["length"]), mode=str(params["mode"]), settings=settings, backward=backward)


def uses_suggestion(grid: Grid) -> bool:
    """Whether the grid's lengths come (partly) from the data's suggestion (see sweep.data.suggest)."""
    return isinstance(grid.lengths, str) and "suggested" in grid.lengths


def grid_lengths(grid: Grid, sequence_length: int, suggested: list[int] | None = None) -> list[int]:
    """The subsequence lengths of the grid for sequences of `sequence_length` steps, checked.

    `suggested` are the lengths the data suggest, for a grid whose lengths name them."""
    lengths = grid.lengths
    if isinstance(lengths, str):
        factors = [n for n in range(1, sequence_length + 1) if sequence_length % n == 0]
        if not uses_suggestion(grid):
            return factors
        if not suggested:
            raise SpecError(
                f'grid.lengths = "{lengths}": the data suggest no length (see sweep.data.suggest); '
                'give "factors" or a list of lengths instead'
            )
        chosen = set(suggested) | (set(factors) if lengths == "factors+suggested" else set())
        return sorted(n for n in chosen if 1 <= n <= sequence_length)
    if isinstance(lengths, LengthRange):
        # The first length past the sequence, found before the list is made: a stop of a billion
        # would need gigabytes for it.
        first_over = lengths.start + lengths.step * max(0, -(-(sequence_length + 1 - lengths.start) // lengths.step))
        values = [first_over] if first_over <= lengths.stop else list(range(lengths.start, lengths.stop + 1, lengths.step))
    else:
        values = sorted(lengths)
    too_long = [n for n in values if n > sequence_length]
    if too_long:
        raise SpecError(
            f"grid.lengths: {too_long[0]} is longer than the sequence length {sequence_length}; "
            f"use lengths from 1 to {sequence_length}"
        )
    return values


def grid_length_pairs(grid: Grid, sequence_length: int, suggested: list[int] | None = None) -> list[tuple[int, int | None]]:
    """The (forward, backward) lengths of the grid, checked; backward None where the grid gives none."""
    if grid.pairs is not None:
        pairs = [(int(forward), int(backward)) for forward, backward in grid.pairs]
    elif grid.backward is not None:
        forward_lengths = grid_lengths(grid, sequence_length, suggested)
        pairs = [(forward, backward) for forward in forward_lengths for backward in sorted(grid.backward)]
    else:
        return [(forward, None) for forward in grid_lengths(grid, sequence_length, suggested)]
    key = "grid.pairs" if grid.pairs is not None else "grid.backward"
    for forward, backward in pairs:
        longest = max(forward, backward)
        if longest > sequence_length:
            raise SpecError(
                f"{key}: [{forward}, {backward}] reaches past the sequence length {sequence_length}; "
                f"keep both lengths from 1 to {sequence_length}"
            )
    return pairs


def grid_points(spec: Spec, sequence_length: int, suggested: list[int] | None = None) -> list[GridPoint]:
    """Every grid point, in a stable order: lengths (forward, then backward), modes, crossed settings.

    `suggested` are the lengths the data suggest, for a grid whose lengths name them."""
    crossed = [(name, getattr(spec.grid, name)) for name in GRID_SETTINGS if getattr(spec.grid, name)]
    combos = itertools.product(*(values for _, values in crossed))
    settings = [tuple(zip((name for name, _ in crossed), combo)) for combo in combos]
    return [
        GridPoint(length=length, mode=mode, settings=extra, backward=backward)
        for length, backward in grid_length_pairs(spec.grid, sequence_length, suggested)
        for mode in spec.grid.modes
        for extra in settings
    ]


def point_settings(spec: Spec, point: GridPoint) -> dict[str, Any]:
    """Model and training settings of one grid point: the spec's, with the point's crossed ones."""
    settings: dict[str, Any] = {**spec.model.model_dump(), **spec.training.model_dump()}
    settings.update(point.settings)
    return settings


def load_spec(path: str | Path) -> Spec:
    """Read and check a study file. Raises :class:`SpecError` with one line naming the fix."""
    if not isinstance(path, (str, Path)):
        raise SpecError(f"load_spec takes the path of a study file (a str or Path), not {type(path).__name__}")
    path = Path(path)
    try:
        _check_is_a_small_file(path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such study file; check the path (shipped ones are in studies/)") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text; save the study file as UTF-8") from None
    except OSError as error:
        raise SpecError(f"{path}: cannot read the study file ({error.strerror})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: not valid TOML ({error}); fix the syntax there") from None
    except RecursionError:
        raise SpecError(f"{path}: arrays or tables nested too deep to read; a study file needs a few levels at most") from None
    problem = raw.get("problem")
    if isinstance(problem, dict) and problem.get("kind") in ("npz", "table", "series"):
        # A data path in a study file is relative to the file, so a study runs from any directory.
        for key in PATH_KEYS:
            if isinstance(problem.get(key), str):
                problem[key] = str((path.parent / problem[key]).resolve())
    return spec_from_dict(raw, source=str(path))


# A study file is a few hundred bytes; anything near this is not one.
MAX_STUDY_FILE_BYTES = 1_000_000


def _check_is_a_small_file(path: Path) -> None:
    """Refuse what is not a regular file of modest size before reading it: a FIFO would block the
    read forever, and a link to /dev/zero would fill the memory."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise SpecError(f"{path}: cannot read the study file (not a regular file); give the path of a .toml study file")
    size = path.stat().st_size
    if size > MAX_STUDY_FILE_BYTES:
        raise SpecError(f"{path}: {size} bytes is too large for a study file (at most {MAX_STUDY_FILE_BYTES}); check the path")


def spec_from_dict(raw: Mapping[str, Any], *, source: str = "study") -> Spec:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{source}: a study is a table of keys (a dict, as a study file holds), not {type(raw).__name__}")
    try:
        return Spec.model_validate(dict(raw))
    except ValidationError as error:
        raise SpecError(f"{source}: {_describe(error)}") from None


def apply_overrides(spec: Spec, **overrides: Any) -> Spec:
    """The spec with command-line overrides (``repeats``, ``epochs``, ``name``) applied and checked.

    Keys the study file left out stay left out (see :func:`is_given`)."""
    raw = spec.model_dump(mode="json", exclude_unset=True)
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "epochs":
            raw.setdefault("training", {})["epochs"] = value
            raw.setdefault("grid", {})["epochs"] = None
        elif key == "repeats" and spec.racing is not None:
            # A quick look with fewer repeats keeps the stages below them, or races no more.
            raw["repeats"] = value
            stages = [stage for stage in spec.racing.stages if isinstance(value, int) and stage < value]
            raw["racing"] = {**raw["racing"], "stages": stages} if stages else None
        else:
            raw[key] = value
    return spec_from_dict(raw, source="command line")


def is_given(spec: Spec, key: str) -> bool:
    """Whether the study file set a top-level table itself, rather than leaving it to its default."""
    return key in spec.model_fields_set


def _describe(error: ValidationError) -> str:
    """One line for the first problem pydantic found, phrased as key, value, expectation, fix."""
    first = error.errors()[0]
    location = [str(part) for part in first["loc"] if not _is_union_tag(part)]
    key = ".".join(location) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{key}'; remove it or check its spelling against the study-file reference in README.md"
    if kind == "missing":
        return f"missing key '{key}'; add it (see the study-file reference in README.md)"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        kinds = ", ".join(f"'{kind}'" for kind in PROBLEM_KINDS)
        return f"'{key}.kind' must be one of {kinds} (got {first.get('input', {}).get('kind')!r})"
    message = first["msg"].removeprefix("Value error, ")
    if not location:
        return message  # checks across keys name their keys themselves
    if isinstance(first.get("input"), dict):
        return f"'{key}': {message}"  # a whole table: its contents would bury the message
    return f"'{key}' = {first.get('input')!r}: {message}"


def _is_union_tag(part: Any) -> bool:
    return part in UNION_TAGS or str(part).startswith(("list[", "literal[", "function-"))


def describe_spec(spec: Spec) -> Iterator[tuple[str, str]]:
    """(setting, value) pairs that summarise a spec for tables and reports."""
    yield "problem", ", ".join(f"{k}={v}" for k, v in spec.problem.model_dump().items())
    yield "grid", ", ".join(f"{k}={v}" for k, v in spec.grid.model_dump(mode="json").items() if v is not None)
    yield "repeats", str(spec.repeats)
    yield "objective", f"{spec.objective.metric} per {spec.objective.per} ({spec.direction})"
    yield "model", ", ".join(f"{k}={v}" for k, v in spec.model.model_dump().items())
    yield "training", ", ".join(f"{k}={v}" for k, v in spec.training.model_dump().items())
    yield "validation", _describe_validation(spec.validation)
    if spec.racing is not None:
        yield "racing", f"stages {spec.racing.stages} of {spec.repeats} repeats, alpha {spec.racing.alpha:g}"


def _describe_validation(validation: Validation) -> str:
    if not validation.is_on:
        return "off: the test data rank the points"
    held = f"{validation.fraction:.0%} of the training sequences (seed {validation.seed}) rank the points"
    if not validation.patience:
        return held
    return f"{held}; a repeat stops after {validation.patience} epochs without improving there"
