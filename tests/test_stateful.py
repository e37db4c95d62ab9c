"""Stateful TBPTT anchored to Keras's own stateful LSTM, and told apart from stateless by behaviour.

The fused pack is checked against sweep's one-model-at-a-time network elsewhere; here both are
checked against a model built the plain way: ``LSTM(stateful=True)`` with a fixed batch of B
sequences, ``train_on_batch`` on each sequence's consecutive subsequences in the same rows, and
``reset_states()`` after a sequence's last subsequence. Keras keeps the state in variables, so it
carries over from one subsequence to the next and no gradient flows back through it: exactly what
truncated BPTT means, written by someone else.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from sweep.data import shaping
from sweep.train.jobs import PackJob
from sweep.data.problems import Dataset, load_problem
from sweep.spec import LagEchoProblem
from sweep.train import FusedNetwork, KerasNetwork, set_dataset, train_job
from sweep.train._common import Architecture, initial_weights

SEEDS = (5, 61)
BATCH = 4
LENGTH = 4
UNITS = 5
LEARNING_RATE = 0.01
TOLERANCE = 1e-5


def sequences(*, steps: int, per_step: bool, is_variable: bool = False) -> Dataset:
    """16 training and 8 test sequences of two features, never exactly zero on a real step.

    Keras's ``Masking`` layer finds padding by its value, so real steps must differ from the
    zeros that front padding adds. Per sequence: is the first step's first feature large (two
    classes). Per step: the previous step's first feature (regression), so every subsequence
    but the first needs the state carried into it. Variable: each sequence between 2 and
    `steps` steps long, stored padded at the front to `steps`.
    """
    rng = np.random.default_rng(8)
    lengths = rng.integers(2, steps + 1, size=24) if is_variable else np.full(24, steps)
    x = rng.uniform(0.1, 1.0, size=(24, steps, 2)).astype(np.float32)
    x[np.arange(steps)[None, :] < steps - lengths[:, None]] = 0.0
    first = x[np.arange(24), steps - lengths]
    if per_step:
        y = np.zeros((24, steps, 1), np.float32)
        y[:, 1:, 0] = x[:, :-1, 0]
    else:
        y = (first[:, 0] > 0.55).astype(np.float32)[:, None]
    return Dataset(
        x_train=x[:16], y_train=y[:16], x_test=x[16:], y_test=y[16:],
        task="regression" if per_step else "classification", n_classes=0 if per_step else 2,
        train_lengths=lengths[:16], test_lengths=lengths[16:],
    )


def plain_stateful_model(arch: Architecture, *, batch: int, return_sequences: bool) -> keras.Sequential:
    layers: list = [keras.Input((arch.length, arch.n_features), batch_size=batch)]
    if arch.is_masked:
        layers.append(keras.layers.Masking(mask_value=0.0))
    layers.append(keras.layers.LSTM(arch.units, stateful=True, return_sequences=return_sequences))
    layers.append(keras.layers.Dense(arch.n_outputs, activation=arch.activation))
    return keras.Sequential(layers)


def plain_loss(arch: Architecture) -> keras.losses.Loss:
    """The mean loss over the rows given weight: a row whose sequence has not begun yet in a
    chunk gets none (targets per step are weighted by Keras's mask instead)."""
    if arch.task == "regression":
        return keras.losses.MeanSquaredError(reduction="mean_with_sample_weight")
    return keras.losses.BinaryCrossentropy(reduction="mean_with_sample_weight")


def train_plain_keras(arch: Architecture, train: shaping.Chunks, blocks: list[shaping.Block], seed: int) -> keras.Sequential:
    """The reference articles' stateful loop: each batch's subsequences in order, then a reset.

    A batch begins at the first chunk in which one of its sequences has a real step.
    """
    model = plain_stateful_model(arch, batch=BATCH, return_sequences=arch.is_per_step)
    model.set_weights(initial_weights(arch, seed))
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=plain_loss(arch), jit_compile=False)
    lstm = next(layer for layer in model.layers if isinstance(layer, keras.layers.LSTM))
    for block in blocks:
        for rows, first_chunk in zip(block.rows, block.first_chunks):
            for j in range(first_chunk, train.n_chunks):
                if arch.is_per_step:
                    model.train_on_batch(train.x[rows, j], train.y[rows, j])
                else:
                    has_begun = train.mask[rows, j].any(axis=1).astype(np.float32)
                    model.train_on_batch(train.x[rows, j], train.y[rows], sample_weight=has_begun)
            lstm.reset_states()
    return model


def predict_plain_keras(arch: Architecture, weights: list[np.ndarray], test: shaping.Chunks) -> np.ndarray:
    """Every step's output, (n, k, L, outputs), the state carried through each test sequence."""
    model = plain_stateful_model(arch, batch=test.n_sequences, return_sequences=True)
    model.set_weights(weights)
    return np.stack([model.predict_on_batch(test.x[:, j]) for j in range(test.n_chunks)], axis=1)


def train_with_sweep(implementation: str, arch: Architecture, train: shaping.Chunks, plans: list[list[shaping.Block]]):
    """Each seed's network after one stateful epoch on its own batches, as sweep trains it."""
    if implementation == "fused":
        fused = FusedNetwork(arch, n_repeats=len(SEEDS), optimizer="adam", learning_rate=LEARNING_RATE)
        fused.reset(list(SEEDS))
        for blocks in zip(*plans):
            index = np.stack([block.rows for block in blocks])
            fused.train_epoch(train.x, train.mask, train.y, index, blocks[0].first_chunks)
        predictions = lambda x, mask: fused.predict(x, mask).numpy()  # noqa: E731
        return [(fused.get_weights(r), lambda x, mask, r=r: predictions(x, mask)[r]) for r in range(len(SEEDS))]
    networks = []
    for seed, blocks in zip(SEEDS, plans):
        network = KerasNetwork(arch, optimizer="adam", learning_rate=LEARNING_RATE)
        network.reset(seed)
        for block in blocks:
            network.train_epoch(train.x, train.mask, train.y, block.rows, block.first_chunks)
        networks.append((network.get_weights(), lambda x, mask, n=network: n.predict(x, mask).numpy()))
    return networks


@pytest.mark.parametrize("implementation", ["reference", "fused"])
@pytest.mark.parametrize("per_step", [False, True], ids=["per-sequence", "per-step"])
@pytest.mark.parametrize(
    ("steps", "is_variable"), [(12, False), (10, False), (12, True)], ids=["unmasked", "masked", "variable-lengths"]
)
@pytest.mark.slow
def test_stateful_training_is_keras_stateful_lstm_with_train_on_batch(
    implementation: str, per_step: bool, steps: int, is_variable: bool
) -> None:
    dataset = sequences(steps=steps, per_step=per_step, is_variable=is_variable)
    train = shaping.chunk(dataset.x_train, dataset.y_train, LENGTH, dataset.train_lengths)
    test = shaping.chunk(dataset.x_test, dataset.y_test, LENGTH, dataset.test_lengths)
    assert train.n_chunks == 3 and train.is_padded == (steps % LENGTH != 0 or is_variable)
    arch = Architecture.of(dataset, units=UNITS, length=LENGTH, is_masked=train.is_padded)
    plans = [
        shaping.plan_batches(train.spans, n_chunks=train.n_chunks, batch_size=BATCH, rng=np.random.default_rng(seed))
        for seed in SEEDS
    ]
    if is_variable:  # batches that begin after the first chunk, and rows that begin later still
        assert plans[0][0].first_chunks.max() > 0 and len(set(train.spans)) == 3
    trained = train_with_sweep(implementation, arch, train, plans)
    for seed, blocks, (weights, predict) in zip(SEEDS, plans, trained):
        plain = train_plain_keras(arch, train, blocks, seed)
        for own, expected in zip(weights, plain.get_weights()):
            np.testing.assert_allclose(own, expected, atol=TOLERANCE)
        real = test.mask
        np.testing.assert_allclose(
            predict(test.x, test.mask)[real], predict_plain_keras(arch, plain.get_weights(), test)[real], atol=TOLERANCE
        )


@pytest.mark.parametrize("is_fused", [True, False], ids=["fused", "reference"])
def test_only_a_state_carried_through_training_learns_what_an_earlier_subsequence_held(is_fused: bool) -> None:
    """lag-echo with lag 1 at L = 1: each step's target is the input of the step before.

    One step per subsequence puts every target's cause in an earlier subsequence, where only the
    state carried into training reaches it. Trained that way, the network learns to hand the last
    input on. Trained from a zero state at each subsequence (stateless mode, or a stateful loop
    that forgets between subsequences) it sees an input unrelated to its target and can only learn
    the targets' mean: an RMSE near the spread of the inputs (0.29), however far the prediction
    then carries the state. On echo-first a network trained on each half alone still carries its
    flag through the second half at prediction, which is why that problem cannot tell them apart.
    """
    dataset = load_problem(LagEchoProblem(kind="lag-echo", length=10, lag=1, n_train=200, n_test=50, seed=3))
    set_dataset(dataset)
    common = dict(length=1, units=8, epochs=5, batch_size=10, optimizer="adam", learning_rate=0.01,
                  repeats=(0, 1), seeds=(1, 2), is_fused=is_fused)

    def rmse(mode: str) -> float:
        outcome = train_job(PackJob(key=f"L=1 {mode}", mode=mode, **common))
        return max(result.scores["rmse/sample"] for result in outcome.results)

    carried, forgotten = rmse("stateful"), rmse("stateless")
    assert forgotten > 0.25  # the mean is all a zero state can learn
    assert carried < 0.5 * forgotten
