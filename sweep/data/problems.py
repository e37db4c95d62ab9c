"""Sequence problems: the built-in ones, generated from a seed, and a user's own ``.npz`` arrays.

Every problem becomes a :class:`Dataset` of float32 inputs shaped ``(n, T, features)`` and targets
either per sequence, ``(n, outputs)``, or per step, ``(n, T, outputs)``. Sequences of different
lengths are stored padded at the front with zeros to the longest, T, with each one's own length.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sweep.errors import DataError
from sweep.data.shaping import padding_share
from sweep.spec import EchoFirstProblem, LagEchoProblem, NpzProblem, SeriesProblem, Spec, TableProblem, Validation

__all__ = ["DataSummary", "Dataset", "describe", "hold_out", "load_data", "load_problem", "real_steps", "standardize"]

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPZ_LENGTH_KEYS = ("train_lengths", "test_lengths")
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_CLASSES = 10_000
SERIES_COLUMN = "series"  # names the rows of a (series, steps) array in an npz series file
AnyProblem = EchoFirstProblem | LagEchoProblem | NpzProblem | TableProblem | SeriesProblem


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test arrays of one problem, checked, with what the network must output."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str  # "classification" or "regression"
    n_classes: int = 0  # classification only; 2 means one sigmoid output
    # Each sequence's own length, its last steps in x; all T where not given.
    train_lengths: np.ndarray = None  # type: ignore[assignment]
    test_lengths: np.ndarray = None  # type: ignore[assignment]
    # Regression targets are trained standardized; scores are given in their own units again.
    target_scale: tuple[np.ndarray, np.ndarray] | None = None
    # How the data were encoded, stored with the study: class names, standardization.
    encoding: dict = field(default_factory=dict)
    # Training sequences held out to rank the points on (see :func:`hold_out`); None: no split.
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    val_lengths: np.ndarray = None  # type: ignore[assignment]
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        for name, x in (("train_lengths", self.x_train), ("test_lengths", self.x_test), ("val_lengths", self.x_val)):
            if getattr(self, name) is None and x is not None:
                object.__setattr__(self, name, np.full(x.shape[0], x.shape[1], dtype=np.int64))
        digest = hashlib.sha256()
        arrays = [getattr(self, f"{axis}_{part}") for part in self.parts for axis in ("x", "y")]
        if self.has_variable_lengths:  # equal lengths keep earlier fingerprints
            arrays += [getattr(self, f"{part}_lengths") for part in self.parts]
        for array in arrays:
            digest.update(str((array.shape, array.dtype.str)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        object.__setattr__(self, "fingerprint", digest.hexdigest()[:16])

    @property
    def sequence_length(self) -> int:
        """The longest sequence's steps, T."""
        return int(self.x_train.shape[1])

    @property
    def has_variable_lengths(self) -> bool:
        steps = self.sequence_length
        return any(bool(np.any(getattr(self, f"{part}_lengths") != steps)) for part in self.parts)

    @property
    def has_validation(self) -> bool:
        return self.x_val is not None

    @property
    def parts(self) -> tuple[str, ...]:
        """The names of its parts, as its fields are suffixed: train, test and, held out, val."""
        return ("train", "test", "val") if self.has_validation else ("train", "test")

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def n_bytes(self) -> int:
        """The arrays' size in memory, as every worker process holds them."""
        return sum(int(getattr(self, f"{axis}_{part}").nbytes) for part in self.parts for axis in ("x", "y"))

    @property
    def is_per_step(self) -> bool:
        """True when there is a target at every step (many-to-many), not one per sequence."""
        return self.y_train.ndim == 3

    @property
    def n_outputs(self) -> int:
        if self.task == "classification":
            return 1 if self.n_classes == 2 else self.n_classes
        return int(self.y_train.shape[-1])


def load_data(spec: Spec) -> Dataset:
    """A study's data: its problem's, with the study's validation split held out."""
    return load_problem(spec.problem, spec.validation)


def load_problem(problem: AnyProblem, validation: Validation | None = None) -> Dataset:
    """A problem's data; with `validation` on, part of the training sequences held out for it,
    before the standardization, whose statistics are then the remaining training data's alone."""
    fraction = validation.fraction if validation is not None else 0.0
    if isinstance(problem, EchoFirstProblem):
        dataset = echo_first(problem)
    elif isinstance(problem, LagEchoProblem):
        dataset = lag_echo(problem)
    elif isinstance(problem, TableProblem):
        dataset = load_table(problem)
    elif isinstance(problem, SeriesProblem):
        dataset = load_series(problem, validation_fraction=fraction)
    else:
        dataset = load_npz(problem)
    if fraction > 0 and not isinstance(problem, SeriesProblem):
        dataset = hold_out(dataset, validation)
    return standardize(dataset) if getattr(problem, "standardize", False) else dataset


def hold_out(dataset: Dataset, validation: Validation) -> Dataset:
    """The dataset with a seeded random `validation.fraction` of its training sequences moved,
    whole, to the validation data; the order of the rest is kept. With a class per sequence,
    each class gives its share (a stratified split), so that the validation data's classes are
    balanced as the training data's are, and every class keeps a training sequence."""
    n = len(dataset.x_train)
    n_held = round(n * validation.fraction)
    if not 1 <= n_held < n:
        raise DataError(
            f"validation.fraction {validation.fraction:g} of {n} training sequence{'s' if n != 1 else ''} holds out "
            f"{n_held}; it needs at least one held out and one left to train on: change validation.fraction, "
            "or set it to 0 to rank the points on the test data"
        )
    rng = np.random.default_rng(validation.seed)
    strata = [rng.permutation(group) for group in _strata(dataset)]
    quotas = [min(round(len(group) * validation.fraction), len(group) - 1) for group in strata]
    if sum(quotas):
        chosen = np.concatenate([group[:quota] for group, quota in zip(strata, quotas)])
    else:  # classes too small to give a share each: any sequences but each class's last
        spare = np.concatenate([group[1:] for group in strata])
        if not len(spare):
            raise DataError(
                f"validation.fraction {validation.fraction:g}: every class has one training sequence, none to hold out; "
                "set validation.fraction = 0 to rank the points on the test data"
            )
        chosen = rng.choice(spare, size=min(n_held, len(spare)), replace=False)
    held = np.zeros(n, dtype=bool)
    held[chosen] = True
    return dataclasses.replace(
        dataset,
        x_train=dataset.x_train[~held], y_train=dataset.y_train[~held], train_lengths=dataset.train_lengths[~held],
        x_val=dataset.x_train[held], y_val=dataset.y_train[held], val_lengths=dataset.train_lengths[held],
    )


def _strata(dataset: Dataset) -> list[np.ndarray]:
    """The training sequences' indices by class where each sequence has one; else all in one."""
    if dataset.task != "classification" or dataset.is_per_step:
        return [np.arange(len(dataset.x_train))]
    labels = dataset.y_train[:, 0]
    return [np.flatnonzero(labels == label) for label in np.unique(labels)]


def echo_first(problem: EchoFirstProblem) -> Dataset:
    rng = np.random.default_rng(problem.seed)
    x_train = _first_step_flags(rng, problem.n_train, problem.length)
    x_test = _first_step_flags(rng, problem.n_test, problem.length)
    return Dataset(
        x_train=x_train,
        y_train=x_train[:, 0, :].copy(),
        x_test=x_test,
        y_test=x_test[:, 0, :].copy(),
        task="classification",
        n_classes=2,
    )


def _first_step_flags(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    x = np.zeros((n, length, 1), dtype=np.float32)
    ones = rng.choice(n, size=n // 2, replace=False)
    x[ones, 0, 0] = 1.0
    return x


def lag_echo(problem: LagEchoProblem) -> Dataset:
    rng = np.random.default_rng(problem.seed)
    x_train, y_train = _lagged_pairs(rng, problem.n_train, problem.length, problem.lag)
    x_test, y_test = _lagged_pairs(rng, problem.n_test, problem.length, problem.lag)
    return Dataset(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, task="regression")


def _lagged_pairs(rng: np.random.Generator, n: int, length: int, lag: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(0.0, 1.0, size=(n, length, 1)).astype(np.float32)
    y = np.zeros_like(x)
    y[:, lag:, :] = x[:, : length - lag, :]
    return x, y


def load_npz(problem: NpzProblem) -> Dataset:
    """Sequences of one length as (n, steps, features) arrays, or of their own lengths.

    Own lengths come in one of two layouts. The safe one: x_train holds every sequence's steps
    one after another, (total steps, features), and train_lengths (n,) their lengths; targets per
    step likewise, (total steps,) or (total steps, outputs); the same for the test arrays. Or, only
    with `allow_pickle` (pickle can run code: for files you made yourself), object arrays of
    (steps_i, features) arrays.
    """
    path = Path(problem.path)
    arrays = read_npz(path, (*NPZ_KEYS, *NPZ_LENGTH_KEYS), allow_pickle=problem.allow_pickle)
    missing = [key for key in NPZ_KEYS if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing array '{missing[0]}'; the file needs arrays named {', '.join(NPZ_KEYS)}")
    if any(key in arrays for key in NPZ_LENGTH_KEYS) or arrays["x_train"].dtype == object:
        return _variable_npz(arrays, task=problem.task, source=str(path))
    return check_arrays(arrays, task=problem.task, source=str(path))


def read_npz(path: Path, names: tuple[str, ...] | None = None, *, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """The arrays of an .npz file (those of `names` that it has, or all); one line for a file that
    is none, or that holds object arrays without `allow_pickle`."""
    try:
        archive = np.load(path, allow_pickle=allow_pickle)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: holds a single array, not an .npz archive; save the arrays with numpy.savez")
        with archive:
            return {name: archive[name] for name in archive.files if names is None or name in names}
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file; fix problem.path (relative to the study file)") from None
    except ValueError as error:
        if "Object arrays" in str(error):
            raise DataError(
                f"{path}: holds object arrays, which only pickle can load; save the sequences in the safe layout "
                "(x_train as every sequence's steps one after another, with train_lengths; see README) or set "
                "problem.allow_pickle = true for a file you made yourself"
            ) from None
        raise DataError(f"{path}: not a readable .npz file ({error}); save it with numpy.savez") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz file ({error}); save it with numpy.savez") from None


def _variable_npz(arrays: dict[str, np.ndarray], *, task: str, source: str) -> Dataset:
    """Sequences of their own lengths from either npz layout, padded at the front to the longest."""
    split = {}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.dtype == object:
            x, y, lengths = _concatenated(x, y, part=part, source=source)
        elif f"{part}_lengths" not in arrays:
            raise DataError(f"{source}: {part}_lengths is missing; give the lengths of the {part} sequences")
        else:
            lengths = arrays[f"{part}_lengths"]
        split[part] = _split_steps(x, y, lengths, part=part, source=source)
    steps = max(int(split[part][2].max()) for part in split)
    padded = {part: _padded_to(steps, *split[part]) for part in split}
    x_train, y_train, train_lengths = padded["train"]
    x_test, y_test, test_lengths = padded["test"]
    x_train, x_test = _inputs(x_train, "x_train", source), _inputs(x_test, "x_test", source)
    if y_train.ndim != y_test.ndim or y_train.shape[2:] != y_test.shape[2:]:
        raise DataError(f"{source}: y_train and y_test do not match; give both per sequence or both per step")
    y_train, y_test = (_finite_targets(y, name, source) for y, name in ((y_train, "y_train"), (y_test, "y_test")))
    n_classes = 0
    if task == "classification":  # the labels of real steps: padding is no class
        real = [real_steps(lengths, steps) if y.ndim == 3 else slice(None) for y, lengths in ((y_train, train_lengths), (y_test, test_lengths))]
        n_classes = _classes(y_train[real[0]], y_test[real[1]], source)
    return Dataset(
        x_train, y_train, x_test, y_test, task=task, n_classes=n_classes,
        train_lengths=train_lengths, test_lengths=test_lengths,
    )


def _concatenated(x: np.ndarray, y: np.ndarray, *, part: str, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object arrays of sequences as the safe layout: steps one after another, and lengths."""
    try:
        sequences = [np.asarray(sequence, dtype=np.float64) for sequence in x]
    except (TypeError, ValueError):
        raise DataError(f"{source}: x_{part} holds something other than arrays of numbers; give (steps, features) arrays") from None
    if any(sequence.ndim != 2 for sequence in sequences):
        raise DataError(f"{source}: every sequence in x_{part} must be a (steps, features) array")
    lengths = np.array([len(sequence) for sequence in sequences])
    if y.dtype == object:
        y = np.concatenate([np.asarray(target, dtype=np.float64) for target in y])
    return np.concatenate(sequences), y, lengths


def _split_steps(x: np.ndarray, y: np.ndarray, lengths: np.ndarray, *, part: str, source: str) -> tuple:
    """Concatenated steps (total, features) and targets as lists of sequences, checked."""
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer) or lengths.size == 0 or lengths.min() < 1:
        raise DataError(f"{source}: {part}_lengths must be a 1-D array of whole numbers of at least 1, one per sequence")
    if x.ndim != 2 or x.shape[0] != lengths.sum():
        raise DataError(
            f"{source}: x_{part} has shape {x.shape} but {part}_lengths add up to {int(lengths.sum())} steps; "
            f"x_{part} must be (total steps, features) with every sequence's steps one after another"
        )
    ends = np.cumsum(lengths)[:-1]
    if y.shape[0] == len(lengths):  # per sequence (the same as per step where every sequence is one step)
        if y.ndim > 2:
            raise DataError(f"{source}: y_{part} per sequence must be (sequences,) or (sequences, outputs)")
        return np.split(x, ends), y.reshape(len(lengths), -1), lengths
    if y.shape[0] != x.shape[0]:
        raise DataError(
            f"{source}: y_{part} has {y.shape[0]} rows; give one per sequence ({len(lengths)}) or one per step ({x.shape[0]})"
        )
    return np.split(x, ends), np.split(y.reshape(x.shape[0], -1), ends), lengths


def _padded_to(steps: int, x: list[np.ndarray], y: list[np.ndarray] | np.ndarray, lengths: np.ndarray) -> tuple:
    """Sequences padded at the front to `steps`: inputs, targets (per step padded too), lengths."""
    n, features = len(x), x[0].shape[1]
    padded = np.zeros((n, steps, features), np.float64)
    for i, sequence in enumerate(x):
        padded[i, steps - len(sequence) :] = sequence
    if isinstance(y, np.ndarray):
        return padded, y, lengths.astype(np.int64)
    targets = np.zeros((n, steps, y[0].shape[1]), np.float64)
    for i, sequence in enumerate(y):
        targets[i, steps - len(sequence) :] = sequence
    return padded, targets, lengths.astype(np.int64)


def _finite_targets(array: np.ndarray, name: str, source: str) -> np.ndarray:
    if array.dtype == bool:
        array = array.astype(np.float32)  # false and true: classes 0 and 1
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(
            f"{source}: {name} has dtype {array.dtype}; targets must be numbers (classes as 0, 1, ...), or use "
            'kind = "table", which takes class labels of any kind'
        )
    if not np.all(np.isfinite(array)):
        raise DataError(f"{source}: {name} must hold finite numbers; fill or drop NaN and infinite values")
    if np.abs(array).max(initial=0) > FLOAT32_MAX:
        raise DataError(f"{source}: {name} holds values beyond float32 (about 3.4e38) that training uses; rescale them")
    return array.astype(np.float32)


def load_table(problem: TableProblem) -> Dataset:
    from sweep.data import tables

    frame = tables.read_table(problem.train, key="problem.train")
    if problem.test is not None:
        train_frame, test_frame = frame, tables.read_table(problem.test, key="problem.test")
    else:
        train_frame, test_frame = tables.split_table(frame, problem, source=problem.train)
    features = problem.features or tables.default_features(train_frame, problem)
    test_source = problem.test or problem.train
    train = tables.table_sequences(train_frame, problem, features=features, source=problem.train)
    test = tables.table_sequences(test_frame, problem, features=features, source=test_source)
    if problem.task == "classification":
        train, test = tables.code_classes(train, test, train_source=problem.train, test_source=test_source)
    return _from_sequences(train, test, task=problem.task, features=features)


def load_series(problem: SeriesProblem, *, validation_fraction: float = 0.0) -> Dataset:
    """Long series split by time: the last `test_fraction` of each is its test sequence and, with
    `validation_fraction`, that share of the steps before it its validation sequence."""
    from sweep.data import tables

    if Path(problem.path).suffix.lower() == ".npz":
        frame = tables.series_frame(read_npz(Path(problem.path)), source=problem.path, series=problem.series or SERIES_COLUMN)
    else:
        frame = tables.read_table(problem.path, key="problem.path")
    features = problem.features or [problem.target]
    if problem.series is None and SERIES_COLUMN in frame.columns:
        problem = problem.model_copy(update={"series": SERIES_COLUMN})
    train, validation, test = tables.series_sequences(
        frame, problem, features=features, source=problem.path, validation_fraction=validation_fraction
    )
    return _from_sequences(train, test, task="regression", features=features, validation=validation)


def _from_sequences(train, test, *, task: str, features: list[str], validation=None) -> Dataset:
    """A :class:`Dataset` from the checked sequences of a table or series, labels coded, lengths kept."""
    parts = [train, test, *([validation] if validation is not None else [])]
    steps = max(part.x.shape[1] for part in parts)
    per_step = train.y.ndim == 3
    x = [_front_padded(part.x, steps) for part in parts]
    y = [(_front_padded(part.y, steps) if per_step else part.y).astype(np.float32) for part in parts]
    encoding: dict = {"features": list(features)}
    if task == "classification":
        encoding["classes"] = list(train.classes)
    held = {"x_val": x[2], "y_val": y[2], "val_lengths": validation.lengths} if validation is not None else {}
    return Dataset(
        x[0], y[0], x[1], y[1], task=task, n_classes=len(train.classes) if task == "classification" else 0,
        train_lengths=train.lengths, test_lengths=test.lengths, encoding=encoding, **held,
    )


def _front_padded(array: np.ndarray, steps: int) -> np.ndarray:
    if array.shape[1] == steps:
        return array
    padded = np.zeros((array.shape[0], steps, *array.shape[2:]), dtype=array.dtype)
    padded[:, steps - array.shape[1] :] = array
    return padded


def real_steps(lengths: np.ndarray, steps: int) -> np.ndarray:
    """(n, steps) True on each sequence's real steps, its last `lengths[i]`."""
    return np.arange(steps)[None, :] >= steps - np.asarray(lengths)[:, None]


def standardize(dataset: Dataset) -> Dataset:
    """Inputs, and regression targets, scaled to mean 0 and standard deviation 1 with statistics of
    the training data's real steps alone; padding stays zero. Targets are scored in their own units."""
    parts = dataset.parts
    steps = dataset.sequence_length
    real = {part: real_steps(getattr(dataset, f"{part}_lengths"), steps) for part in parts}
    mean, std = _moments(dataset.x_train[real["train"]])
    encoding = {**dataset.encoding, "input_mean": mean.tolist(), "input_std": std.tolist()}
    changes = {f"x_{part}": _scaled(getattr(dataset, f"x_{part}"), mean, std, real[part]) for part in parts}
    if dataset.task == "regression":
        if dataset.is_per_step:
            y_mean, y_std = _moments(dataset.y_train[real["train"]])
            changes.update({f"y_{part}": _scaled(getattr(dataset, f"y_{part}"), y_mean, y_std, real[part]) for part in parts})
        else:
            y_mean, y_std = _moments(dataset.y_train)
            changes.update({f"y_{part}": ((getattr(dataset, f"y_{part}") - y_mean) / y_std).astype(np.float32) for part in parts})
        changes["target_scale"] = (y_mean, y_std)
        encoding.update(target_mean=y_mean.tolist(), target_std=y_std.tolist())
    return dataclasses.replace(dataset, encoding=encoding, **changes)


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each column of (items, columns); a constant column keeps scale 1."""
    values = values.astype(np.float64)
    mean, std = values.mean(axis=0), values.std(axis=0)
    std[~(std > 1e-12)] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _scaled(array: np.ndarray, mean: np.ndarray, std: np.ndarray, real: np.ndarray) -> np.ndarray:
    return np.where(real[..., None], (array - mean) / std, 0.0).astype(np.float32)


def check_arrays(arrays: dict[str, np.ndarray], *, task: str, source: str) -> Dataset:
    """Check shapes, dtypes and values of user arrays and turn them into a :class:`Dataset`."""
    x_train = _inputs(arrays["x_train"], "x_train", source)
    x_test = _inputs(arrays["x_test"], "x_test", source)
    if x_test.shape[1:] != x_train.shape[1:]:
        raise DataError(
            f"{source}: x_test has shape {x_test.shape} but x_train {x_train.shape}; "
            "both need the same steps and features"
        )
    y_train = _targets(arrays["y_train"], "y_train", x_train, source)
    y_test = _targets(arrays["y_test"], "y_test", x_test, source)
    if y_train.ndim != y_test.ndim or y_train.shape[2:] != y_test.shape[2:]:
        raise DataError(f"{source}: y_train {y_train.shape} and y_test {y_test.shape} do not match; give both per sequence or both per step")
    n_classes = _classes(y_train, y_test, source) if task == "classification" else 0
    return Dataset(x_train, y_train, x_test, y_test, task=task, n_classes=n_classes)


def _inputs(array: np.ndarray, name: str, source: str) -> np.ndarray:
    if array.ndim != 3 or min(array.shape) < 1:
        raise DataError(f"{source}: {name} has shape {array.shape}; it must be (sequences, steps, features)")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(f"{source}: {name} has dtype {array.dtype}; it must be a real number type")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{source}: {name} contains NaN or infinite values; fill or drop them first")
    if np.abs(array).max() > FLOAT32_MAX:
        raise DataError(
            f"{source}: {name} holds values up to {np.abs(array).max():.3g}, beyond float32 (about 3.4e38) that "
            "training uses; rescale the data"
        )
    return array.astype(np.float32)


def _targets(array: np.ndarray, name: str, x: np.ndarray, source: str) -> np.ndarray:
    if array.shape[:1] != x.shape[:1]:
        raise DataError(f"{source}: {name} has {array.shape[0] if array.ndim else 0} rows but there are {x.shape[0]} sequences")
    if array.ndim == 1:
        array = array[:, None]
    elif array.ndim == 2 and array.shape[1] == x.shape[1] and array.shape[1] > 1:
        array = array[:, :, None]  # one value per step
    if array.ndim == 3 and array.shape[1] != x.shape[1]:
        raise DataError(f"{source}: {name} has {array.shape[1]} steps but the inputs have {x.shape[1]}")
    if array.ndim not in (2, 3):
        raise DataError(f"{source}: {name} has shape {array.shape}; give (n,), (n, outputs), (n, steps) or (n, steps, outputs)")
    return _finite_targets(array, name, source)


def _classes(y_train: np.ndarray, y_test: np.ndarray, source: str) -> int:
    labels = np.concatenate([y_train.ravel(), y_test.ravel()])
    if y_train.shape[-1] != 1 or np.any(labels < 0) or np.any(labels != np.round(labels)):
        raise DataError(
            f"{source}: classification targets must be one integer class label (0, 1, ...) per sequence or step"
        )
    n_classes = int(labels.max()) + 1
    if n_classes > MAX_CLASSES:
        raise DataError(
            f"{source}: a class label of {int(labels.max())} means {n_classes} classes, more than {MAX_CLASSES}; "
            'number the classes 0, 1, ... or use kind = "table", which numbers labels of any kind'
        )
    if np.unique(y_train).size < 2:
        raise DataError(f"{source}: the targets hold one class only; a classifier needs at least two")
    unseen = np.setdiff1d(np.unique(y_test), np.unique(y_train))
    if unseen.size:
        raise DataError(
            f"{source}: class {int(unseen[0])} occurs in y_test but never in y_train; the network could not "
            "learn it: drop those test sequences or add training examples of it"
        )
    return n_classes


@dataclass(frozen=True)
class SplitSummary:
    n_sequences: int
    length_min: int
    length_median: float
    length_max: int
    n_steps: int


@dataclass(frozen=True)
class DataSummary:
    """What `sweep data` shows: the data as training will see them, nothing trained."""

    task: str
    is_per_step: bool
    features: list[str]
    train: SplitSummary
    test: SplitSummary
    validation: SplitSummary | None  # None: no validation split
    # (label, training count, test count, and validation count where the study holds some out)
    classes: list[tuple[object, ...]]
    target_range: list[tuple[float, float, float]]  # regression: (min, mean, max) per output, own units
    subsequences: list[tuple[int, int, float]]  # (length, training subsequences, share of padding)
    is_standardized: bool


def describe(dataset: Dataset, lengths: list[int]) -> DataSummary:
    """Sequences, lengths, features, classes or target range, and each length's subsequences."""
    classes, target_range = [], []
    y_train = _real_targets(dataset, "train")
    if dataset.task == "classification":
        names = dataset.encoding.get("classes") or list(range(dataset.n_classes))
        counts = [np.bincount(_real_targets(dataset, part)[:, 0].astype(np.int64), minlength=len(names)) for part in dataset.parts]
        classes = [(name, *(int(count[i]) for count in counts)) for i, name in enumerate(names)]
    else:
        if dataset.target_scale is not None:
            mean, std = dataset.target_scale
            y_train = y_train * std + mean
        target_range = [(float(col.min()), float(col.mean()), float(col.max())) for col in y_train.T]
    features = dataset.encoding.get("features") or [f"x{i}" for i in range(dataset.n_features)]
    return DataSummary(
        task=dataset.task,
        is_per_step=dataset.is_per_step,
        features=list(features),
        train=_split_summary(dataset.train_lengths),
        test=_split_summary(dataset.test_lengths),
        validation=_split_summary(dataset.val_lengths) if dataset.has_validation else None,
        classes=classes,
        target_range=target_range,
        subsequences=[(length, *padding_share(dataset.train_lengths, length)) for length in lengths],
        is_standardized="input_mean" in dataset.encoding,
    )


def _split_summary(lengths: np.ndarray) -> SplitSummary:
    return SplitSummary(
        n_sequences=len(lengths),
        length_min=int(lengths.min()),
        length_median=float(np.median(lengths)),
        length_max=int(lengths.max()),
        n_steps=int(lengths.sum()),
    )


def _real_targets(dataset: Dataset, part: str) -> np.ndarray:
    """The targets that count, (items, outputs): one per sequence, or one per real step."""
    y = getattr(dataset, f"y_{part}")
    if not dataset.is_per_step:
        return y
    return y[real_steps(getattr(dataset, f"{part}_lengths"), y.shape[1])]
