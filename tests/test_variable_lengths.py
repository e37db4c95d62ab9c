"""Sequences of different lengths: padding never leaks into training or scores, packs stay exact."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.data import shaping
from sweep.train.jobs import PackJob
from sweep.data.problems import Dataset
from sweep.train import set_dataset, train_job
from tests.test_fused import assert_repeats_match, train_both

LENGTHS = np.array([3, 20, 7, 12, 5, 16, 9, 20, 4, 11, 14, 6, 18, 8, 10, 13, 19, 2, 15, 17, 6, 9, 12, 20])
TOLERANCE = 1e-5


def variable(*, padded_to: int, per_step: bool = False) -> Dataset:
    """24 sequences of 2 to 20 steps, 16 to train and 8 to test, stored padded at the front to
    `padded_to` steps. The same sequences whatever the padding."""
    rng = np.random.default_rng(4)
    n = len(LENGTHS)
    x = np.zeros((n, padded_to, 2), np.float32)
    y_steps = np.zeros((n, padded_to, 1), np.float32)
    labels = np.zeros((n, 1), np.float32)
    for i, steps in enumerate(LENGTHS):
        values = rng.normal(size=(steps, 2)).astype(np.float32)
        x[i, padded_to - steps :] = values
        y_steps[i, padded_to - steps :, 0] = np.cumsum(values[:, 0]) / np.sqrt(np.arange(1, steps + 1))
        labels[i] = float(values[0, 0] > 0)
    y = y_steps if per_step else labels
    return Dataset(
        x_train=x[:16], y_train=y[:16], x_test=x[16:], y_test=y[16:],
        task="regression" if per_step else "classification", n_classes=0 if per_step else 2,
        train_lengths=LENGTHS[:16], test_lengths=LENGTHS[16:],
    )


def trained_as_a_job(dataset: Dataset, *, mode: str, is_fused: bool):
    set_dataset(dataset)
    job = PackJob(key="variable", length=5, mode=mode, units=4, epochs=2, batch_size=4, optimizer="adam",
                  learning_rate=0.01, repeats=(0, 1), seeds=(21, 22), is_fused=is_fused)
    return train_job(job)


@pytest.mark.parametrize("is_fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("mode", ["stateless", "stateful"])
@pytest.mark.parametrize("per_step", [False, True], ids=["per-sequence", "per-step"])
@pytest.mark.slow
def test_padding_to_20_or_to_40_steps_gives_the_same_scores(mode: str, is_fused: bool, per_step: bool) -> None:
    short = trained_as_a_job(variable(padded_to=20, per_step=per_step), mode=mode, is_fused=is_fused)
    long = trained_as_a_job(variable(padded_to=40, per_step=per_step), mode=mode, is_fused=is_fused)
    assert short.failures == long.failures == ()
    for a, b in zip(short.results, long.results):
        assert a.scores == pytest.approx(b.scores, abs=TOLERANCE)
        assert a.train_loss == pytest.approx(b.train_loss, abs=TOLERANCE)


@pytest.mark.parametrize("mode", ["stateless", "stateful"])
@pytest.mark.slow
def test_padding_to_20_or_to_40_steps_gives_the_same_weights_and_predictions(mode: str) -> None:
    """At L = 5, 40 steps add 4 chunks of padding alone before every sequence."""
    (fused_20, alone_20, _), (fused_40, alone_40, _) = (
        train_both(variable(padded_to=steps), length=5, mode=mode, batch_size=4) for steps in (20, 40)
    )
    for repeat, (one, other) in enumerate(zip(alone_20, alone_40)):
        for a, b in zip(fused_20.get_weights(repeat), fused_40.get_weights(repeat)):
            np.testing.assert_allclose(a, b, atol=TOLERANCE)
        for a, b in zip(one.get_weights(), other.get_weights()):
            np.testing.assert_allclose(a, b, atol=TOLERANCE)
    test_20, test_40 = (_test_chunks(variable(padded_to=steps), mode) for steps in (20, 40))
    predictions_20 = fused_20.predict(test_20.x, test_20.mask).numpy()
    predictions_40 = fused_40.predict(test_40.x, test_40.mask).numpy()
    if mode == "stateful":  # the real steps are the last 4 chunks of the 8
        predictions_40, test_40 = predictions_40[:, :, 4:], shaping.Chunks(test_40.x[:, 4:], test_40.mask[:, 4:], test_40.y)
    np.testing.assert_array_equal(test_20.mask, test_40.mask)
    np.testing.assert_allclose(predictions_20[:, test_20.mask], predictions_40[:, test_40.mask], atol=TOLERANCE)


def _test_chunks(dataset: Dataset, mode: str) -> shaping.Chunks:
    chunks = shaping.chunk(dataset.x_test, dataset.y_test, 5, dataset.test_lengths)
    return shaping.stateless(chunks) if mode == "stateless" else chunks


@pytest.mark.parametrize("mode", ["stateless", "stateful"])
@pytest.mark.parametrize("per_step", [False, True], ids=["per-sequence", "per-step"])
@pytest.mark.slow
def test_a_variable_length_pack_trains_each_repeat_as_it_trains_alone(mode: str, per_step: bool) -> None:
    dataset = variable(padded_to=20, per_step=per_step)
    fused, alone, train = train_both(dataset, length=5, mode=mode, batch_size=4)
    assert train.is_padded and (mode == "stateless" or len(set(train.spans)) == 4)
    assert_repeats_match(fused, alone, _test_chunks(dataset, mode))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["stateless", "stateful"])
@pytest.mark.parametrize("length", [1000, 10_000])
def test_sequences_of_10000_steps_train_in_both_modes(mode: str, length: int) -> None:
    rng = np.random.default_rng(0)
    lengths = np.array([10_000, 6_000, 9_000, 10_000, 7_500])
    x = np.zeros((5, 10_000, 1), np.float32)
    y = np.zeros((5, 10_000, 1), np.float32)
    for i, steps in enumerate(lengths):
        values = rng.uniform(size=steps).astype(np.float32)
        x[i, 10_000 - steps :, 0] = values
        y[i, 10_000 - steps + 1 :, 0] = values[:-1]
    set_dataset(Dataset(x_train=x[:4], y_train=y[:4], x_test=x[4:], y_test=y[4:], task="regression",
                        train_lengths=lengths[:4], test_lengths=lengths[4:]))
    job = PackJob(key="long", length=length, mode=mode, units=8, epochs=1, batch_size=2, optimizer="adam",
                  learning_rate=0.01, repeats=(0, 1), seeds=(1, 2))
    outcome = train_job(job)
    assert outcome.failures == ()
    assert all(0 < result.scores["rmse/sample"] < 1 for result in outcome.results)
