"""The naive forecasts a network must beat, scored as the networks are.

A study scores them when it is made, with the same scorer, on the same validation and test parts as
its networks, in the units its metric is shown in, and keeps them, so that every machine and every
view has them without the data:

* classification: the training part's class frequencies as the prediction: its majority class
  for accuracy, its priors for log-loss (per sequence or per step, as the targets are);
* regression: the training part's mean target;
* long series whose inputs hold the target: persistence, the last observed value (the input at
  step t is the target's value `horizon` steps before the one predicted);
* long series with a season (set, or the period found in the training part): the seasonal naive
  forecast, the value one season before the one predicted (whole seasons back, as many as the
  horizon needs), read from each series' own history: its training and validation steps come
  before its validation and test steps in time.

Each baseline is scored over whole sequences, one subsequence each: for targets per step and for
sequences of one length that is what the networks' "sample" scope counts too; with sequences of
different lengths and a target per sequence, a network's "sample" scope weighs a sequence by its
subsequences, the baseline's by one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sweep.data.problems import Dataset, real_steps
from sweep.data.scoring import score_all
from sweep.data.shaping import chunk

__all__ = ["Baseline", "score_baselines", "seasonal_name"]

# A baseline's predictions for one part ("train", "val" or "test"), shaped as its targets are.
Predictor = Callable[[str], np.ndarray]


@dataclass(frozen=True)
class Baseline:
    """One naive forecast and its scores: every "<metric>/<scope>" on each part ("validation",
    "test")."""

    name: str
    scores: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {part: dict(scores) for part, scores in self.scores.items()}


def score_baselines(
    dataset: Dataset, *, target: str | None = None, season: int | None = None, horizon: int = 1
) -> list[Baseline]:
    """Every baseline that suits the data, scored on its validation part (where held out) and its
    test part. `target` names a series' target column, for persistence; `season` a long series'
    season in steps and `horizon` how far ahead it is predicted, for the seasonal naive forecast."""
    if dataset.task == "classification":
        predictors = {"majority class": _priors(dataset)}
    else:
        predictors = {"training mean": _training_mean(dataset)}
        persistence = _persistence(dataset, target)
        if persistence is not None:
            predictors["persistence"] = persistence
        seasonal = _seasonal_naive(dataset, season, horizon) if season else None
        if seasonal is not None:
            predictors[seasonal_name(season)] = seasonal
    parts = ("validation", "test") if dataset.has_validation else ("test",)
    return [
        Baseline(name=name, scores={part: _scored(dataset, part, predict) for part in parts})
        for name, predict in predictors.items()
    ]


def seasonal_name(season: int) -> str:
    """The seasonal naive baseline's name, which shows its season wherever it is shown."""
    return f"seasonal naive ({season} steps)"


def _scored(dataset: Dataset, part: str, predict: Predictor) -> dict[str, float]:
    suffix = _suffix(part)
    x, y, lengths = getattr(dataset, f"x_{suffix}"), getattr(dataset, f"y_{suffix}"), getattr(dataset, f"{suffix}_lengths")
    chunks = chunk(x, y, dataset.sequence_length, lengths)
    predictions = predict(suffix)[:, None]  # one subsequence per sequence: (n, 1, T, outputs)
    scale = dataset.target_scale if dataset.task == "regression" else None
    return score_all(predictions, chunks, task=dataset.task, target_scale=scale)


def _suffix(part: str) -> str:
    return "val" if part == "validation" else part


def _constant(dataset: Dataset, output: np.ndarray) -> Predictor:
    """The same prediction at every step of every sequence of a part."""
    return lambda part: np.broadcast_to(output, (*getattr(dataset, f"x_{part}").shape[:2], len(output))).astype(float)


def _real_targets(dataset: Dataset) -> np.ndarray:
    """The training targets of real steps (per step) or of every sequence: (items, outputs)."""
    if dataset.is_per_step:
        return dataset.y_train[real_steps(dataset.train_lengths, dataset.sequence_length)]
    return dataset.y_train


def _priors(dataset: Dataset) -> Predictor:
    labels = _real_targets(dataset)[:, 0].astype(int)
    counts = np.bincount(labels, minlength=max(dataset.n_classes, 2)).astype(float)
    priors = counts / counts.sum()
    # Two classes are one sigmoid output, the probability of class 1.
    return _constant(dataset, priors[1:2] if dataset.n_classes <= 2 else priors)


def _training_mean(dataset: Dataset) -> Predictor:
    return _constant(dataset, _real_targets(dataset).mean(axis=0))


def _persistence(dataset: Dataset, target: str | None) -> Predictor | None:
    """The target's own input at each step, in the target's (standardized) units; None where the
    inputs do not hold the target or the targets are not per step."""
    features = dataset.encoding.get("features") or []
    if target is None or target not in features or not dataset.is_per_step:
        return None
    index = features.index(target)
    input_mean = np.asarray(dataset.encoding.get("input_mean", [0.0] * len(features)))[index]
    input_std = np.asarray(dataset.encoding.get("input_std", [1.0] * len(features)))[index]
    target_mean, target_std = dataset.target_scale if dataset.target_scale is not None else (0.0, 1.0)

    def predict(part: str) -> np.ndarray:
        value = getattr(dataset, f"x_{part}")[:, :, index] * input_std + input_mean
        return ((value - np.asarray(target_mean).reshape(-1)[0]) / np.asarray(target_std).reshape(-1)[0])[..., None]

    return predict


def _seasonal_naive(dataset: Dataset, season: int, horizon: int) -> Predictor | None:
    """The target's value whole seasons before each step, at least `horizon` back (known when the
    forecast is made), from each series' own history; None where the targets are not per step or
    a series' history is shorter than that."""
    if not dataset.is_per_step or len(dataset.y_train) % len(dataset.y_test):
        return None
    back = season * -(-horizon // season)
    predicted = {part: np.zeros_like(getattr(dataset, f"y_{part}")) for part in dataset.parts if part != "train"}
    n_series = len(dataset.y_test)
    segments = len(dataset.y_train) // n_series
    for series in range(n_series):
        # A series' parts in time order: its training segments, its validation and its test steps.
        rows = [("train", series * segments + s) for s in range(segments)]
        rows += [(part, series) for part in ("val", "test") if part in predicted]
        pieces = [_real_rows(dataset, part, row) for part, row in rows]
        timeline = np.concatenate(pieces)
        start = 0
        for (part, row), piece in zip(rows, pieces):
            if part != "train":
                if start < back:
                    return None
                predicted[part][row, len(predicted[part][row]) - len(piece) :] = timeline[start - back : start - back + len(piece)]
            start += len(piece)
    return lambda part: predicted[part]


def _real_rows(dataset: Dataset, part: str, row: int) -> np.ndarray:
    """One sequence's targets at its real steps, (steps, outputs)."""
    length = int(getattr(dataset, f"{part}_lengths")[row])
    targets = getattr(dataset, f"y_{part}")[row]
    return targets[len(targets) - length :]
