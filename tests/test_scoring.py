from __future__ import annotations

import math

import numpy as np
import pytest

from sweep.data.shaping import Chunks, chunk
from sweep.data.scoring import score_all


def last_steps(predictions: np.ndarray, values: list[list[list[float]]]) -> np.ndarray:
    """Write `values[sequence][chunk]` into the last step of every subsequence."""
    predictions = predictions.copy()
    predictions[:, :, -1] = np.array(values, dtype=float)
    return predictions


def binary_case() -> tuple[np.ndarray, Chunks]:
    chunks = chunk(np.zeros((2, 4, 1), np.float32), np.array([[1.0], [0.0]], np.float32), 2)
    noise = np.full((2, 2, 2, 1), 0.01)
    noise[1] = 0.99
    return last_steps(noise, [[[0.8], [0.9]], [[0.3], [0.6]]]), chunks


def test_scores_have_every_metric_in_both_scopes() -> None:
    predictions, chunks = binary_case()
    assert set(score_all(predictions, chunks, task="classification")) == {
        "accuracy/sample", "accuracy/sequence", "log_loss/sample", "log_loss/sequence",
    }
    regression = chunk(np.zeros((1, 2, 1), np.float32), np.zeros((1, 2, 1), np.float32), 1)
    assert set(score_all(np.zeros((1, 2, 1, 1)), regression, task="regression")) == {
        "rmse/sample", "rmse/sequence", "mae/sample", "mae/sequence",
    }


def test_binary_accuracy_counts_every_subsequence_per_sample_and_the_last_per_sequence() -> None:
    scores = score_all(*binary_case(), task="classification")
    assert scores["accuracy/sample"] == pytest.approx(3 / 4)
    assert scores["accuracy/sequence"] == pytest.approx(1 / 2)


def test_binary_log_loss_in_both_scopes() -> None:
    scores = score_all(*binary_case(), task="classification")
    sample = -(math.log(0.8) + math.log(0.9) + math.log(0.7) + math.log(0.4)) / 4
    sequence = -(math.log(0.9) + math.log(0.4)) / 2
    assert scores["log_loss/sample"] == pytest.approx(sample)
    assert scores["log_loss/sequence"] == pytest.approx(sequence)
    assert scores["log_loss/sample"] == pytest.approx(0.400367, abs=1e-6)
    assert scores["log_loss/sequence"] == pytest.approx(0.510826, abs=1e-6)


def test_a_padded_binary_sequence_scores_like_an_unpadded_one() -> None:
    predictions, _ = binary_case()
    padded = chunk(np.zeros((2, 3, 1), np.float32), np.array([[1.0], [0.0]], np.float32), 2)
    assert padded.is_padded
    assert score_all(predictions, padded, task="classification") == score_all(*binary_case(), task="classification")


def test_a_certain_wrong_prediction_has_a_finite_log_loss() -> None:
    chunks = chunk(np.zeros((2, 1, 1), np.float32), np.array([[1.0], [0.0]], np.float32), 1)
    scores = score_all(np.array([0.0, 1.0]).reshape(2, 1, 1, 1), chunks, task="classification")
    assert scores["accuracy/sample"] == 0.0
    assert scores["log_loss/sample"] == pytest.approx(-math.log(1e-7))


def test_perfect_binary_predictions_score_one_and_zero_loss() -> None:
    chunks = chunk(np.zeros((3, 4, 1), np.float32), np.array([[1.0], [0.0], [1.0]], np.float32), 2)
    predictions = np.broadcast_to(chunks.y[:, None, None, :], (3, 2, 2, 1)).astype(float)
    scores = score_all(predictions, chunks, task="classification")
    assert scores["accuracy/sample"] == scores["accuracy/sequence"] == 1.0
    assert scores["log_loss/sample"] == pytest.approx(0.0, abs=1e-6)


def three_class_case() -> tuple[np.ndarray, Chunks]:
    chunks = chunk(np.zeros((3, 4, 1), np.float32), np.array([[0.0], [2.0], [1.0]], np.float32), 2)
    predictions = last_steps(
        np.full((3, 2, 2, 3), 1 / 3),
        [
            [[0.5, 0.3, 0.2], [0.2, 0.7, 0.1]],
            [[0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],
            [[0.6, 0.3, 0.1], [0.25, 0.5, 0.25]],
        ],
    )
    return predictions, chunks


def test_three_class_accuracy_uses_the_most_probable_class() -> None:
    scores = score_all(*three_class_case(), task="classification")
    assert scores["accuracy/sample"] == pytest.approx(4 / 6)
    assert scores["accuracy/sequence"] == pytest.approx(2 / 3)


def test_three_class_log_loss_uses_the_true_class_probability() -> None:
    scores = score_all(*three_class_case(), task="classification")
    sample = -sum(math.log(p) for p in (0.5, 0.2, 0.8, 0.4, 0.3, 0.5)) / 6
    sequence = -sum(math.log(p) for p in (0.2, 0.4, 0.5)) / 3
    assert scores["log_loss/sample"] == pytest.approx(sample)
    assert scores["log_loss/sequence"] == pytest.approx(sequence)


def per_step_regression(wild: float) -> tuple[np.ndarray, Chunks]:
    x = np.arange(1, 11, dtype=np.float32).reshape(2, 5, 1)
    chunks = chunk(x, 10 * x, 2)
    errors = np.array([[1, 0, 0, 0, -2], [0, 0, 3, 0, 0]], dtype=float)
    predictions = np.zeros((2, 6, 1))
    predictions[:, 1:, 0] = 10 * x[..., 0] + errors
    predictions[:, 0, 0] = wild
    return predictions.reshape(2, 3, 2, 1), chunks


def test_per_step_rmse_and_mae_count_only_real_steps() -> None:
    scores = score_all(*per_step_regression(wild=0.0), task="regression")
    assert scores["rmse/sample"] == pytest.approx(math.sqrt((1 + 4 + 9) / 10))
    assert scores["mae/sample"] == pytest.approx((1 + 2 + 3) / 10)


def test_per_step_sequence_scope_scores_the_last_step() -> None:
    scores = score_all(*per_step_regression(wild=0.0), task="regression")
    assert scores["rmse/sequence"] == pytest.approx(math.sqrt(4 / 2))
    assert scores["mae/sequence"] == pytest.approx(2 / 2)


@pytest.mark.parametrize("wild", [-1e6, 1e6, 1e12])
def test_a_wild_prediction_on_a_padded_step_does_not_count(wild: float) -> None:
    predictions, chunks = per_step_regression(wild)
    assert not chunks.mask[:, 0, 0].any()
    assert score_all(predictions, chunks, task="regression") == pytest.approx(
        score_all(*per_step_regression(wild=0.0), task="regression")
    )


def test_rmse_averages_the_outputs_of_a_step_first() -> None:
    y = np.array([[[1.0, 2.0], [3.0, 4.0]]], np.float32)
    chunks = chunk(np.zeros((1, 2, 1), np.float32), y, 2)
    predictions = (y + np.array([[[1.0, 3.0], [0.0, 0.0]]])).reshape(1, 1, 2, 2)
    scores = score_all(predictions, chunks, task="regression")
    assert scores["rmse/sample"] == pytest.approx(math.sqrt((5 + 0) / 2))
    assert scores["mae/sample"] == pytest.approx((2 + 0) / 2)
    assert scores["rmse/sequence"] == scores["mae/sequence"] == 0.0


def test_per_sequence_regression_scores_each_subsequence_end() -> None:
    chunks = chunk(np.zeros((2, 4, 1), np.float32), np.array([[1.0], [3.0]], np.float32), 2)
    predictions = last_steps(np.full((2, 2, 2, 1), 99.0), [[[2.0], [1.0]], [[3.0], [5.0]]])
    scores = score_all(predictions, chunks, task="regression")
    assert scores["rmse/sample"] == pytest.approx(math.sqrt((1 + 0 + 0 + 4) / 4))
    assert scores["mae/sample"] == pytest.approx((1 + 0 + 0 + 2) / 4)
    assert scores["rmse/sequence"] == pytest.approx(math.sqrt((0 + 4) / 2))
    assert scores["mae/sequence"] == pytest.approx((0 + 2) / 2)


def test_per_step_class_labels_ignore_the_padded_step() -> None:
    y = np.array([[[1.0], [0.0], [1.0]]], np.float32)
    chunks = chunk(np.zeros((1, 3, 1), np.float32), y, 2)
    predictions = np.array([0.0, 0.9, 0.2, 0.4]).reshape(1, 2, 2, 1)
    scores = score_all(predictions, chunks, task="classification")
    assert scores["accuracy/sample"] == pytest.approx(2 / 3)
    assert scores["log_loss/sample"] == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3)
    assert scores["accuracy/sequence"] == 0.0


def test_a_shorter_sequence_is_scored_on_its_own_subsequences_only() -> None:
    """Sequence 1 has 2 steps of 4: its first chunk is padding alone, and no sample is scored there."""
    predictions, _ = binary_case()
    predictions = last_steps(predictions, [[[0.8], [0.9]], [[0.0], [0.6]]])  # 0.0 would count as right
    shorter = chunk(np.zeros((2, 4, 1), np.float32), np.array([[1.0], [0.0]], np.float32), 2, np.array([4, 2]))
    scores = score_all(predictions, shorter, task="classification")
    assert scores["accuracy/sample"] == pytest.approx(2 / 3)
    assert scores["log_loss/sample"] == pytest.approx(-(math.log(0.8) + math.log(0.9) + math.log(0.4)) / 3)
    assert scores["accuracy/sequence"] == pytest.approx(1 / 2)
