"""Sequence problems: the built-in ones, generated from a seed, and a user's own ``.npz`` arrays.

Every problem becomes a :class:`Dataset` of float32 inputs shaped ``(n, T, features)`` and targets
either per sequence, ``(n, outputs)``, or per step, ``(n, T, outputs)``.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sweep.errors import DataError
from sweep.spec import EchoFirstProblem, LagEchoProblem, NpzProblem

__all__ = ["Dataset", "load_problem"]

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test arrays of one problem, checked, with what the network must output."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str  # "classification" or "regression"
    n_classes: int = 0  # classification only; 2 means one sigmoid output
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(str((array.shape, array.dtype.str)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        object.__setattr__(self, "fingerprint", digest.hexdigest()[:16])

    @property
    def sequence_length(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def is_per_step(self) -> bool:
        """True when there is a target at every step (many-to-many), not one per sequence."""
        return self.y_train.ndim == 3

    @property
    def n_outputs(self) -> int:
        if self.task == "classification":
            return 1 if self.n_classes == 2 else self.n_classes
        return int(self.y_train.shape[-1])


def load_problem(problem: EchoFirstProblem | LagEchoProblem | NpzProblem) -> Dataset:
    if isinstance(problem, EchoFirstProblem):
        return echo_first(problem)
    if isinstance(problem, LagEchoProblem):
        return lag_echo(problem)
    return load_npz(problem)


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
    path = Path(problem.path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: holds a single array, not an .npz archive; save the four arrays with numpy.savez")
        with archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise DataError(
                    f"{path}: missing array '{missing[0]}'; the file needs arrays named {', '.join(NPZ_KEYS)}"
                )
            arrays = {key: archive[key] for key in NPZ_KEYS}
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file; fix problem.path (relative to the study file)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz file ({error}); save it with numpy.savez") from None
    return check_arrays(arrays, task=problem.task, source=str(path))


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
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        raise DataError(f"{source}: {name} must hold finite numbers; fill or drop NaN and infinite values")
    return array.astype(np.float32)


def _classes(y_train: np.ndarray, y_test: np.ndarray, source: str) -> int:
    labels = np.concatenate([y_train.ravel(), y_test.ravel()])
    if y_train.shape[-1] != 1 or np.any(labels < 0) or np.any(labels != np.round(labels)):
        raise DataError(
            f"{source}: classification targets must be one integer class label (0, 1, ...) per sequence or step"
        )
    n_classes = int(labels.max()) + 1
    if np.unique(labels).size < 2:
        raise DataError(f"{source}: the targets hold one class only; a classifier needs at least two")
    return n_classes
