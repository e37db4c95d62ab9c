"""Decoupled TBPTT(k1, k2) against a step-by-step reference written for the test.

The reference walks each batch of sequences one step at a time with its own LSTM cell and Dense
head, and places the gradient's stops by hand: every k1 steps one update, whose loss is that of
the k1 new outputs and whose gradient goes back k2 steps, from the state k2 steps back taken as a
constant. That state is the one the last forward pass over that step computed. Nothing of
sweep's training code is used, only its batch plan and initial weights, so that both networks
must start where the reference starts and see the same batches.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from sweep.data import shaping
from sweep.train.jobs import PackJob
from sweep.data.problems import Dataset
from sweep.train import FusedNetwork, KerasNetwork, set_dataset, train_job
from sweep.train._common import Architecture, initial_weights
from tests.test_stateful import sequences

SEEDS = (5, 61)
BATCH = 4
UNITS = 5
LEARNING_RATE = 0.01
TOLERANCE = 1e-5


def cell_step(weights: list[tf.Variable], x: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Keras's LSTM cell: gates input, forget, candidate, output; sigmoid and tanh."""
    kernel, recurrent, bias = weights[:3]
    z_in, z_forget, z_candidate, z_out = tf.split(x @ kernel + h @ recurrent + bias, 4, axis=-1)
    c = tf.sigmoid(z_forget) * c + tf.sigmoid(z_in) * tf.tanh(z_candidate)
    return tf.sigmoid(z_out) * tf.tanh(c), c


def head(weights: list[tf.Variable], arch: Architecture, h: tf.Tensor) -> tf.Tensor:
    logits = h @ weights[3] + weights[4]
    return tf.sigmoid(logits) if arch.activation == "sigmoid" else logits


def window_loss(arch: Architecture, outputs: list[tf.Tensor], targets: np.ndarray, real: np.ndarray) -> tf.Tensor:
    """The loss of the k1 new steps: per step, the mean over real steps; per sequence, the last
    output's, over the rows with a real step among the new ones."""
    if arch.is_per_step:
        losses = tf.stack([keras.losses.mean_squared_error(targets[:, i], out) for i, out in enumerate(outputs)], axis=1)
        weight = real.astype(np.float32)
        return tf.reduce_sum(losses * weight) / max(weight.sum(), 1.0)
    losses = keras.losses.binary_crossentropy(targets, outputs[-1])
    weight = real.any(axis=1).astype(np.float32)
    return tf.reduce_sum(losses * weight) / max(weight.sum(), 1.0)


def train_step_by_step(arch: Architecture, train: shaping.Chunks, blocks: list[shaping.Block], seed: int, *, k1: int, k2: int) -> list[np.ndarray]:
    """One epoch of TBPTT(k1, k2) on the plan's batches, one step at a time; the final weights."""
    weights = [tf.Variable(w) for w in initial_weights(arch, seed)]
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    optimizer.build(weights)
    n_steps = train.n_chunks * k1
    for block in blocks:
        for rows, first_chunk in zip(block.rows, block.first_chunks):
            x = train.x[rows].reshape(len(rows), n_steps, -1)
            mask = train.mask[rows].reshape(len(rows), n_steps)
            y = train.y[rows].reshape(len(rows), n_steps, -1) if arch.is_per_step else train.y[rows]
            zeros = tf.zeros((len(rows), arch.units))
            state_before = {}  # step -> the state before it, as the last forward pass over it left it
            for j in range(first_chunk, train.n_chunks):
                end = (j + 1) * k1
                start = max(0, end - max(k1, k2))
                h, c = state_before.get(start, (zeros, zeros))
                outputs = []
                with tf.GradientTape() as tape:
                    for t in range(start, end):
                        if t < end - k2:
                            with tape.stop_recording():  # before the k2 steps the gradient goes back
                                h, c = masked_step(weights, x[:, t], mask[:, t], h, c)
                        else:
                            h, c = masked_step(weights, x[:, t], mask[:, t], h, c)
                        state_before[t + 1] = (h, c)
                        if t >= end - k1:
                            outputs.append(head(weights, arch, h))
                    targets = y[:, end - k1 : end] if arch.is_per_step else y
                    loss = window_loss(arch, outputs, targets, mask[:, end - k1 : end])
                optimizer.apply(tape.gradient(loss, weights), weights)
    return [w.numpy() for w in weights]


def masked_step(weights: list[tf.Variable], x: np.ndarray, real: np.ndarray, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One step; a padded step leaves the state as it was."""
    h_next, c_next = cell_step(weights, tf.constant(x), h, c)
    real = tf.constant(real[:, None])
    return tf.where(real, h_next, h), tf.where(real, c_next, c)


def data(variant: str) -> Dataset:
    """12 steps of two features: all of one length, or of lengths 2 to 12 (masked)."""
    return sequences(steps=12, per_step=variant.endswith("per-step"), is_variable=variant.startswith("masked"))


def trained_by_sweep(arch: Architecture, train: shaping.Chunks, plans: list[list[shaping.Block]]) -> dict[str, list[list[np.ndarray]]]:
    """Each seed's weights after one epoch, from a fused pack and from the one-at-a-time network."""
    fused = FusedNetwork(arch, n_repeats=len(SEEDS), optimizer="adam", learning_rate=LEARNING_RATE)
    fused.reset(list(SEEDS))
    for blocks in zip(*plans):
        fused.train_epoch(train.x, train.mask, train.y, np.stack([b.rows for b in blocks]), blocks[0].first_chunks)
    alone = []
    network = KerasNetwork(arch, optimizer="adam", learning_rate=LEARNING_RATE)
    for seed, blocks in zip(SEEDS, plans):
        network.reset(seed)
        for block in blocks:
            network.train_epoch(train.x, train.mask, train.y, block.rows, block.first_chunks)
        alone.append(network.get_weights())
    return {"fused": [fused.get_weights(r) for r in range(len(SEEDS))], "reference": alone}


@pytest.mark.slow
@pytest.mark.parametrize(("k1", "k2"), [(4, 2), (4, 4), (3, 8)], ids=["k2<k1", "k2=k1", "k2>k1"])
@pytest.mark.parametrize("variant", ["unmasked-per-sequence", "unmasked-per-step", "masked-per-step", "masked-per-sequence"])
def test_every_repeat_trains_as_the_step_by_step_reference(k1: int, k2: int, variant: str) -> None:
    dataset = data(variant)
    train = shaping.chunk(dataset.x_train, dataset.y_train, k1, dataset.train_lengths)
    arch = Architecture.of(dataset, units=UNITS, length=k1, is_masked=train.is_padded, backward=k2)
    assert arch.is_masked == (variant.startswith("masked") or k2 > k1)
    plans = [
        shaping.plan_batches(train.spans, n_chunks=train.n_chunks, batch_size=BATCH, rng=np.random.default_rng(seed))
        for seed in SEEDS
    ]
    expected = [train_step_by_step(arch, train, blocks, seed, k1=k1, k2=k2) for seed, blocks in zip(SEEDS, plans)]
    for implementation, per_seed in trained_by_sweep(arch, train, plans).items():
        for own_weights, reference in zip(per_seed, expected):
            for own, plain in zip(own_weights, reference):
                np.testing.assert_allclose(own, plain, atol=TOLERANCE, err_msg=implementation)


def test_the_reference_tells_the_gradient_lengths_apart() -> None:
    """The reference is not blind to k2: on the same batches, k2 = 2, 4 and 8 end apart."""
    dataset = data("unmasked-per-step")
    train = shaping.chunk(dataset.x_train, dataset.y_train, 4, dataset.train_lengths)
    arch = Architecture.of(dataset, units=UNITS, length=4, is_masked=True)
    blocks = shaping.plan_batches(train.spans, n_chunks=train.n_chunks, batch_size=BATCH, rng=np.random.default_rng(1))
    kernels = [train_step_by_step(arch, train, blocks, 1, k1=4, k2=k2)[1] for k2 in (2, 4, 8)]
    assert min(np.abs(a - b).max() for a, b in [(kernels[0], kernels[1]), (kernels[1], kernels[2])]) > 1e-4


def test_k1_equal_to_k2_is_plain_tbptt_bit_for_bit() -> None:
    """A grid that lists k2 = k1 trains exactly what a grid without k2 trains."""
    dataset = sequences(steps=12, per_step=True, is_variable=True)
    set_dataset(dataset)
    common = dict(key="same", length=4, mode="stateful", units=UNITS, epochs=1, batch_size=BATCH, optimizer="adam",
                  learning_rate=LEARNING_RATE, repeats=(0, 1), seeds=SEEDS)
    plain = train_job(PackJob(**common))
    listed = train_job(PackJob(backward=4, **common))
    assert [r.scores for r in plain.results] == [r.scores for r in listed.results]
    assert [r.train_loss for r in plain.results] == [r.train_loss for r in listed.results]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "k1", "k2"), [("stateless", 3, 5), ("stateless", 4, 2), ("stateful", 3, 8), ("stateful", 4, 2)])
def test_a_pack_trains_and_scores_every_repeat_as_it_does_alone(mode: str, k1: int, k2: int) -> None:
    """Through the worker, as a sweep runs it: stateless windows of k2 steps every k1, or
    stateful TBPTT(k1, k2), on sequences of their own lengths; a pack equals each repeat alone."""
    set_dataset(sequences(steps=12, per_step=True, is_variable=True))
    common = dict(key=f"k1={k1} k2={k2} {mode}", length=k1, backward=k2, mode=mode, units=UNITS, epochs=2,
                  batch_size=BATCH, optimizer="adam", learning_rate=LEARNING_RATE, repeats=(0, 1), seeds=SEEDS)
    fused, alone = train_job(PackJob(is_fused=True, **common)), train_job(PackJob(is_fused=False, **common))
    assert len(fused.results) == len(alone.results) == 2
    for packed, single in zip(fused.results, alone.results):
        assert packed.scores.keys() == single.scores.keys()
        for name, value in packed.scores.items():
            assert value == pytest.approx(single.scores[name], abs=TOLERANCE), name
        assert packed.train_loss == pytest.approx(single.train_loss, abs=TOLERANCE)
