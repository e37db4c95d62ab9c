"""Real TensorFlow on tiny data: one repeat at a time, as a worker runs it."""

from __future__ import annotations

import math

import pytest

from sweep.errors import RepeatFailed
from sweep.jobs import RepeatJob
from sweep.problems import load_problem
from sweep.spec import EchoFirstProblem, LagEchoProblem

train = pytest.importorskip("sweep.train")


def job(**changes: object) -> RepeatJob:
    settings = dict(
        key="test", length=4, mode="stateful", units=4, epochs=1, batch_size=8,
        optimizer="adam", learning_rate=0.01, repeat=0, seed=3,
    )
    settings.update(changes)
    return RepeatJob(**settings)


@pytest.fixture(scope="module")
def echo():
    return load_problem(EchoFirstProblem(kind="echo-first", length=8, n_train=32, n_test=16, seed=0))


@pytest.fixture(scope="module")
def lagged():
    return load_problem(LagEchoProblem(kind="lag-echo", length=9, lag=2, n_train=24, n_test=12, seed=0))


@pytest.mark.parametrize("mode", ["stateless", "stateful"])
@pytest.mark.parametrize("length", [1, 3, 4, 8])
def test_a_repeat_returns_every_metric_in_range(echo, mode: str, length: int) -> None:
    result = train.train_repeat(job(mode=mode, length=length), echo)
    assert set(result.scores) == {"accuracy/sample", "accuracy/sequence", "log_loss/sample", "log_loss/sequence"}
    assert all(0.0 <= result.scores[name] <= 1.0 for name in ("accuracy/sample", "accuracy/sequence"))
    assert all(math.isfinite(value) for value in result.scores.values())
    assert result.seed == 3 and math.isfinite(result.train_loss)


def test_the_same_seed_gives_the_same_scores_and_another_seed_other_weights(echo) -> None:
    first = train.train_repeat(job(seed=11, epochs=2), echo)
    again = train.train_repeat(job(seed=11, epochs=2), echo)
    other = train.train_repeat(job(seed=12, epochs=2), echo)
    assert first.scores == again.scores
    assert first.train_loss == again.train_loss
    assert other.train_loss != first.train_loss


@pytest.mark.parametrize("mode", ["stateless", "stateful"])
def test_padded_many_to_many_regression_trains(lagged, mode: str) -> None:
    result = train.train_repeat(job(mode=mode, length=4), lagged)  # 9 steps: 3 padded
    assert set(result.scores) == {"rmse/sample", "rmse/sequence", "mae/sample", "mae/sequence"}
    assert all(math.isfinite(value) and value >= 0 for value in result.scores.values())


def test_a_diverging_repeat_fails_with_the_fix(lagged) -> None:
    with pytest.raises(RepeatFailed, match="lower training.learning_rate"):
        train.train_repeat(job(optimizer="sgd", learning_rate=1e12, epochs=3, length=9), lagged)


@pytest.mark.slow
def test_echo_first_reproduces_the_reference_findings() -> None:
    """Whole sequence learns it, a stateless split into halves is stuck at 0.75, stateful halves recover."""
    data = load_problem(EchoFirstProblem(kind="echo-first", length=20, n_train=1000, n_test=200, seed=1))
    common = dict(units=10, epochs=5, batch_size=10, learning_rate=0.001)

    def mean_accuracy(length: int, mode: str) -> float:
        scores = [
            train.train_repeat(job(length=length, mode=mode, seed=seed, **common), data).scores["accuracy/sample"]
            for seed in range(3)
        ]
        return sum(scores) / len(scores)

    assert mean_accuracy(20, "stateless") > 0.95
    assert abs(mean_accuracy(10, "stateless") - 0.75) < 0.02
    assert mean_accuracy(10, "stateful") > 0.95
