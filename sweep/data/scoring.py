"""Skill of a trained network on the test data, in NumPy.

Two scopes:

* ``sample``: over the prepared samples, as the network is trained on them: every subsequence
  (targets per sequence) or every real step (targets per step);
* ``sequence``: once per whole sequence, from the prediction after its last subsequence (its
  last step). A stateless split sees only the last subsequence there.
"""

from __future__ import annotations

import numpy as np

from sweep.data.shaping import Chunks
from sweep.metrics import metric_names

__all__ = ["score_all"]

_EPSILON = 1e-7


def score_all(
    predictions: np.ndarray, chunks: Chunks, *, task: str, target_scale: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, float]:
    """Every metric of the task in both scopes, keyed ``"<metric>/<scope>"``.

    `predictions` has the layout of `chunks`: (n, k, L, outputs), probabilities for classification.
    Standardized regression targets are scored in their own units: `target_scale` is their mean
    and standard deviation.
    """
    # A network that blew up predicts infinities or NaN: its scores are then no finite numbers, the
    # worker fails the repeat as diverged, and NumPy need not warn of it on the terminal.
    with np.errstate(all="ignore"):
        if target_scale is not None:
            mean, std = target_scale
            predictions = predictions * std + mean
            chunks = Chunks(x=chunks.x, mask=chunks.mask, y=chunks.y * std + mean)
        scores: dict[str, float] = {}
        for scope in ("sample", "sequence"):
            predicted, target, weight = _select(predictions, chunks, scope)
            for metric in metric_names(task):
                scores[f"{metric}/{scope}"] = _metric(metric, predicted, target, weight)
    return scores


def _select(predictions: np.ndarray, chunks: Chunks, scope: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten predictions and targets of one scope into (items, outputs) with a weight per item."""
    n, k, length, n_out = predictions.shape
    if scope == "sequence":
        target = chunks.y[:, -1, -1] if chunks.is_per_step else chunks.y
        return predictions[:, -1, -1], target, np.ones(n)
    if chunks.is_per_step:
        return (
            predictions.reshape(-1, n_out),
            chunks.y.reshape(-1, chunks.y.shape[-1]),
            chunks.mask.reshape(-1).astype(float),
        )
    # One prediction per subsequence with a real step, after its last step, against its sequence's target.
    last = predictions[:, :, -1].reshape(n * k, n_out)
    return last, np.repeat(chunks.y, k, axis=0), chunks.mask.any(axis=2).reshape(n * k).astype(float)


def _metric(metric: str, predicted: np.ndarray, target: np.ndarray, weight: np.ndarray) -> float:
    if metric == "accuracy":
        per_item = (_labels(predicted) == target[:, 0]).astype(float)
    elif metric == "log_loss":
        per_item = -np.log(np.clip(_true_class_probability(predicted, target[:, 0]), _EPSILON, 1.0))
    elif metric == "rmse":
        return float(np.sqrt(_mean(np.mean((predicted - target) ** 2, axis=1), weight)))
    elif metric == "mae":
        per_item = np.mean(np.abs(predicted - target), axis=1)
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return _mean(per_item, weight)


def _labels(predicted: np.ndarray) -> np.ndarray:
    if predicted.shape[1] == 1:
        return (predicted[:, 0] > 0.5).astype(float)
    return predicted.argmax(axis=1).astype(float)


def _true_class_probability(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
    if predicted.shape[1] == 1:
        return np.where(labels > 0.5, predicted[:, 0], 1.0 - predicted[:, 0])
    return predicted[np.arange(len(labels)), labels.astype(int)]


def _mean(values: np.ndarray, weight: np.ndarray) -> float:
    return float(np.sum(values * weight) / np.sum(weight))
