"""The naive forecasts a network must beat, scored as the networks are.

A study scores them when it is made, with the same scorer, on the same validation and test parts as
its networks, in the units its metric is shown in, and keeps them, so that every machine and every
view has them without the data:

* classification: the training part's class frequencies as the prediction: its majority class
  for accuracy, its priors for log-loss (per sequence or per step, as the targets are);
* regression: the training part's mean target;
* long series whose inputs hold the target: persistence, the last observed value (the input at
  step t is the target's value `horizon` steps before the one predicted).

Each baseline is scored over whole sequences, one subsequence each: for targets per step and for
sequences of one length that is what the networks' "sample" scope counts too; with sequences of
different lengths and a target per sequence, a network's "sample" scope weighs a sequence by its
subsequences, the baseline's by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sweep.data.problems import Dataset, real_steps
from sweep.data.scoring import score_all
from sweep.data.shaping import chunk

__all__ = ["Baseline", "score_baselines"]


@dataclass(frozen=True)
class Baseline:
    """One naive forecast and its scores: every "<metric>/<scope>" on each part ("validation",
    "test")."""

    name: str
    scores: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {part: dict(scores) for part, scores in self.scores.items()}


def score_baselines(dataset: Dataset, *, target: str | None = None) -> list[Baseline]:
    """Every baseline that suits the data, scored on its validation part (where held out) and its
    test part. `target` names a series' target column, for persistence."""
    if dataset.task == "classification":
        predictors = {"majority class": _priors(dataset)}
    else:
        predictors = {"training mean": _training_mean(dataset)}
        persistence = _persistence(dataset, target)
        if persistence is not None:
            predictors["persistence"] = persistence
    parts = ("validation", "test") if dataset.has_validation else ("test",)
    return [
        Baseline(name=name, scores={part: _scored(dataset, part, predict) for part in parts})
        for name, predict in predictors.items()
    ]


def _scored(dataset: Dataset, part: str, predict) -> dict[str, float]:
    suffix = "val" if part == "validation" else part
    x, y, lengths = getattr(dataset, f"x_{suffix}"), getattr(dataset, f"y_{suffix}"), getattr(dataset, f"{suffix}_lengths")
    chunks = chunk(x, y, dataset.sequence_length, lengths)
    predictions = predict(x)[:, None]  # one subsequence per sequence: (n, 1, T, outputs)
    scale = dataset.target_scale if dataset.task == "regression" else None
    return score_all(predictions, chunks, task=dataset.task, target_scale=scale)


def _real_targets(dataset: Dataset) -> np.ndarray:
    """The training targets of real steps (per step) or of every sequence: (items, outputs)."""
    if dataset.is_per_step:
        return dataset.y_train[real_steps(dataset.train_lengths, dataset.sequence_length)]
    return dataset.y_train


def _priors(dataset: Dataset):
    labels = _real_targets(dataset)[:, 0].astype(int)
    counts = np.bincount(labels, minlength=max(dataset.n_classes, 2)).astype(float)
    priors = counts / counts.sum()
    # Two classes are one sigmoid output, the probability of class 1.
    output = priors[1:2] if dataset.n_classes <= 2 else priors
    return lambda x: np.broadcast_to(output, (*x.shape[:2], len(output))).astype(float)


def _training_mean(dataset: Dataset):
    mean = _real_targets(dataset).mean(axis=0)
    return lambda x: np.broadcast_to(mean, (*x.shape[:2], len(mean))).astype(float)


def _persistence(dataset: Dataset, target: str | None):
    """The target's own input at each step, in the target's (standardized) units; None where the
    inputs do not hold the target or the targets are not per step."""
    features = dataset.encoding.get("features") or []
    if target is None or target not in features or not dataset.is_per_step:
        return None
    index = features.index(target)
    input_mean = np.asarray(dataset.encoding.get("input_mean", [0.0] * len(features)))[index]
    input_std = np.asarray(dataset.encoding.get("input_std", [1.0] * len(features)))[index]
    target_mean, target_std = dataset.target_scale if dataset.target_scale is not None else (0.0, 1.0)

    def predict(x: np.ndarray) -> np.ndarray:
        value = x[:, :, index] * input_std + input_mean
        return ((value - np.asarray(target_mean).reshape(-1)[0]) / np.asarray(target_std).reshape(-1)[0])[..., None]

    return predict
