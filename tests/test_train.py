"""Real TensorFlow on tiny data: jobs as a worker runs them, fused and one model at a time."""

from __future__ import annotations

import math

import pytest

from sweep.train.jobs import PackJob
from sweep.data.problems import load_problem
from sweep.spec import EchoFirstProblem, LagEchoProblem

train = pytest.importorskip("sweep.train")


def job(**changes: object) -> PackJob:
    settings = dict(
        key="test", length=4, mode="stateful", units=4, epochs=1, batch_size=8,
        optimizer="adam", learning_rate=0.01, repeats=(0, 1), seeds=(3, 4), is_fused=True,
    )
    settings.update(changes)
    return PackJob(**settings)


def run(dataset, **changes: object):
    train.set_dataset(dataset)
    return train.train_job(job(**changes))


@pytest.fixture(scope="module")
def echo():
    return load_problem(EchoFirstProblem(kind="echo-first", length=8, n_train=32, n_test=16, seed=0))


@pytest.fixture(scope="module")
def lagged():
    return load_problem(LagEchoProblem(kind="lag-echo", length=9, lag=2, n_train=24, n_test=12, seed=0))


@pytest.mark.parametrize("is_fused", [True, False], ids=["fused", "one-by-one"])
@pytest.mark.parametrize("mode", ["stateless", "stateful"])
@pytest.mark.parametrize("length", [1, 3, 8])
def test_a_job_returns_every_metric_of_every_repeat_in_range(echo, mode: str, length: int, is_fused: bool) -> None:
    outcome = run(echo, mode=mode, length=length, is_fused=is_fused)
    assert outcome.failures == ()
    assert [(r.repeat, r.seed) for r in outcome.results] == [(0, 3), (1, 4)]
    for result in outcome.results:
        assert set(result.scores) == {"accuracy/sample", "accuracy/sequence", "log_loss/sample", "log_loss/sequence"}
        assert 0.0 <= result.scores["accuracy/sample"] <= 1.0 and 0.0 <= result.scores["accuracy/sequence"] <= 1.0
        assert all(math.isfinite(value) for value in result.scores.values())
        assert math.isfinite(result.train_loss)


def test_fused_and_one_by_one_give_the_same_scores_for_the_same_seeds(echo) -> None:
    fused = run(echo, seeds=(11, 12), epochs=2, is_fused=True)
    alone = run(echo, seeds=(11, 12), epochs=2, is_fused=False)
    for a, b in zip(fused.results, alone.results):
        assert a.scores == pytest.approx(b.scores, abs=1e-4)
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-4)


def test_the_same_seed_gives_the_same_result_and_another_seed_another(echo) -> None:
    first = run(echo, seeds=(11, 12), epochs=2)
    again = run(echo, seeds=(11, 12), epochs=2)
    other = run(echo, seeds=(13, 12), epochs=2)
    assert [r.train_loss for r in first.results] == [r.train_loss for r in again.results]
    assert other.results[0].train_loss != first.results[0].train_loss
    assert other.results[1].train_loss == first.results[1].train_loss  # repeats do not disturb each other


@pytest.mark.parametrize("mode", ["stateless", "stateful"])
def test_padded_many_to_many_regression_trains(lagged, mode: str) -> None:
    outcome = run(lagged, mode=mode, length=4)  # 9 steps: 3 padded
    for result in outcome.results:
        assert set(result.scores) == {"rmse/sample", "rmse/sequence", "mae/sample", "mae/sequence"}
        assert all(math.isfinite(value) and value >= 0 for value in result.scores.values())


@pytest.mark.parametrize("is_fused", [True, False], ids=["fused", "one-by-one"])
def test_a_diverging_repeat_is_reported_with_the_fix(lagged, is_fused: bool) -> None:
    outcome = run(lagged, optimizer="sgd", learning_rate=1e12, epochs=3, length=9, is_fused=is_fused)
    assert outcome.results == ()
    assert [repeat for repeat, _ in outcome.failures] == [0, 1]
    assert all("lower training.learning_rate" in reason for _, reason in outcome.failures)


@pytest.mark.slow
def test_echo_first_reproduces_the_reference_findings() -> None:
    """Whole sequence learns it, a stateless split into halves is stuck at 0.75, stateful halves recover."""
    data = load_problem(EchoFirstProblem(kind="echo-first", length=20, n_train=1000, n_test=200, seed=1))
    common = dict(units=10, epochs=5, batch_size=10, learning_rate=0.001, repeats=(0, 1, 2), seeds=(0, 1, 2))

    def mean_accuracy(length: int, mode: str) -> float:
        scores = [r.scores["accuracy/sample"] for r in run(data, length=length, mode=mode, **common).results]
        return sum(scores) / len(scores)

    assert mean_accuracy(20, "stateless") > 0.95
    assert abs(mean_accuracy(10, "stateless") - 0.75) < 0.02
    assert mean_accuracy(10, "stateful") > 0.95


@pytest.mark.slow
def test_an_xla_pack_with_a_smaller_last_batch_scores_as_one_by_one() -> None:
    """From XLA_MIN_UNITS units the full batches train compiled and the smaller last one does not."""
    from sweep.train._common import XLA_MIN_UNITS

    data = load_problem(EchoFirstProblem(kind="echo-first", length=6, n_train=24, n_test=8, seed=0))
    common = dict(units=XLA_MIN_UNITS, batch_size=7, length=3, mode="stateful", seeds=(11, 12), epochs=2)
    fused = run(data, is_fused=True, **common)
    alone = run(data, is_fused=False, **common)
    for a, b in zip(fused.results, alone.results):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


@pytest.mark.slow
def test_an_xla_network_serves_every_length_and_each_trains_as_one_by_one() -> None:
    """Under XLA one pack network, traced once, trains every subsequence length of the grid."""
    from sweep.train import _worker
    from sweep.train._common import XLA_MIN_UNITS

    data = load_problem(EchoFirstProblem(kind="echo-first", length=6, n_train=24, n_test=8, seed=0))
    train.set_dataset(data)
    for length in (2, 3, 6):
        common = dict(units=XLA_MIN_UNITS, batch_size=8, length=length, mode="stateful", seeds=(11, 12), epochs=1)
        fused = train.train_job(job(is_fused=True, **common))
        alone = train.train_job(job(is_fused=False, **common))
        for a, b in zip(fused.results, alone.results):
            assert a.scores == pytest.approx(b.scores, abs=1e-5)
    networks = [key for key in _worker._CACHE.entries if key[0] == "fused"]
    assert len(networks) == 1 and networks[0][1].length is None
