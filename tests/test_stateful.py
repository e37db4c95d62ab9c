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

from sweep import prepare
from sweep.jobs import PackJob
from sweep.problems import Dataset, check_arrays, load_problem
from sweep.spec import LagEchoProblem
from sweep.train import FusedNetwork, KerasNetwork, set_dataset, train_job
from sweep.train._common import Architecture, initial_weights

SEEDS = (5, 61)
BATCH = 4
LENGTH = 4
UNITS = 5
LEARNING_RATE = 0.01
TOLERANCE = 1e-5


def sequences(*, steps: int, per_step: bool) -> Dataset:
    """16 training and 8 test sequences of two features, never exactly zero on a real step.

    Keras's ``Masking`` layer finds padding by its value, so real steps must differ from the
    zeros that front padding adds. Per sequence: is the first step's first feature large (two
    classes). Per step: the previous step's first feature (regression), so every subsequence
    but the first needs the state carried into it.
    """
    rng = np.random.default_rng(8)
    x = rng.uniform(0.1, 1.0, size=(24, steps, 2)).astype(np.float32)
    if per_step:
        y = np.zeros((24, steps, 1), np.float32)
        y[:, 1:, 0] = x[:, :-1, 0]
    else:
        y = (x[:, 0, 0] > 0.55).astype(np.int64)
    task = "regression" if per_step else "classification"
    return check_arrays({"x_train": x[:16], "y_train": y[:16], "x_test": x[16:], "y_test": y[16:]}, task=task, source="test")


def plain_stateful_model(arch: Architecture, *, batch: int, return_sequences: bool) -> keras.Sequential:
    layers: list = [keras.Input((arch.length, arch.n_features), batch_size=batch)]
    if arch.is_masked:
        layers.append(keras.layers.Masking(mask_value=0.0))
    layers.append(keras.layers.LSTM(arch.units, stateful=True, return_sequences=return_sequences))
    layers.append(keras.layers.Dense(arch.n_outputs, activation=arch.activation))
    return keras.Sequential(layers)


def train_plain_keras(arch: Architecture, train: prepare.Chunks, groups: list[np.ndarray], seed: int) -> keras.Sequential:
    """The reference articles' stateful loop: each group's subsequences in order, then a reset."""
    model = plain_stateful_model(arch, batch=BATCH, return_sequences=arch.is_per_step)
    model.set_weights(initial_weights(arch, seed))
    loss = "mean_squared_error" if arch.task == "regression" else "binary_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=loss, jit_compile=False)
    lstm = next(layer for layer in model.layers if isinstance(layer, keras.layers.LSTM))
    for rows in groups:
        for j in range(train.n_chunks):
            target = train.y[rows, j] if arch.is_per_step else train.y[rows]
            model.train_on_batch(train.x[rows, j], target)
        lstm.reset_states()
    return model


def predict_plain_keras(arch: Architecture, weights: list[np.ndarray], test: prepare.Chunks) -> np.ndarray:
    """Every step's output, (n, k, L, outputs), the state carried through each test sequence."""
    model = plain_stateful_model(arch, batch=test.n_sequences, return_sequences=True)
    model.set_weights(weights)
    return np.stack([model.predict_on_batch(test.x[:, j]) for j in range(test.n_chunks)], axis=1)


def train_with_sweep(implementation: str, arch: Architecture, train: prepare.Chunks, groups: list[list[np.ndarray]]):
    """Each seed's network after one stateful epoch on its own groups, as sweep trains it."""
    if implementation == "fused":
        fused = FusedNetwork(arch, n_repeats=len(SEEDS), optimizer="adam", learning_rate=LEARNING_RATE)
        fused.reset(list(SEEDS))
        fused.train_epoch(train.x, train.mask, train.y, np.stack([np.stack(own) for own in groups]))
        predictions = lambda x, mask: fused.predict(x, mask).numpy()  # noqa: E731
        return [(fused.get_weights(r), lambda x, mask, r=r: predictions(x, mask)[r]) for r in range(len(SEEDS))]
    networks = []
    for seed, own in zip(SEEDS, groups):
        network = KerasNetwork(arch, optimizer="adam", learning_rate=LEARNING_RATE)
        network.reset(seed)
        network.train_epoch(train.x, train.mask, train.y, np.stack(own))
        networks.append((network.get_weights(), lambda x, mask, n=network: n.predict(x, mask).numpy()))
    return networks


@pytest.mark.parametrize("implementation", ["reference", "fused"])
@pytest.mark.parametrize("per_step", [False, True], ids=["per-sequence", "per-step"])
@pytest.mark.parametrize("steps", [12, 10], ids=["unmasked", "masked"])
def test_stateful_training_is_keras_stateful_lstm_with_train_on_batch(implementation: str, per_step: bool, steps: int) -> None:
    dataset = sequences(steps=steps, per_step=per_step)
    train = prepare.chunk(dataset.x_train, dataset.y_train, LENGTH)
    test = prepare.chunk(dataset.x_test, dataset.y_test, LENGTH)
    assert train.n_chunks == 3 and train.is_padded == (steps % LENGTH != 0)
    arch = Architecture.of(dataset, units=UNITS, length=LENGTH, is_masked=train.is_padded)
    groups = [prepare.batch_groups(train.n_sequences, BATCH, np.random.default_rng(seed)) for seed in SEEDS]
    trained = train_with_sweep(implementation, arch, train, groups)
    for seed, own_groups, (weights, predict) in zip(SEEDS, groups, trained):
        plain = train_plain_keras(arch, train, own_groups, seed)
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
