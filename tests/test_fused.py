"""The fused pack trains each repeat exactly as a standalone Keras network would."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from sweep.data import shaping
from sweep.train.jobs import PackJob
from sweep.data.problems import check_arrays, load_problem
from sweep.data.statistics import summarize
from sweep.spec import EchoFirstProblem, LagEchoProblem
from sweep.train import _common
from sweep.train import FusedNetwork, KerasNetwork, set_dataset, train_job
from sweep.train._common import MAX_UNROLL, XLA_MIN_UNITS, Architecture, initial_weights, seeded_layers

SEEDS = [3, 40, 500]
TOLERANCE = 1e-5


def three_classes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6, 2)).astype(np.float32)
    labels = (x[:, 0, 0] > 0).astype(int) + (x[:, 0, 1] > 0.5).astype(int)
    return check_arrays(
        {"x_train": x[:24], "y_train": labels[:24], "x_test": x[24:], "y_test": labels[24:]},
        task="classification", source="test",
    )


def sum_per_sequence():
    """Regression with one target per sequence: the hand-written mean squared error."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 8, 1)).astype(np.float32)
    y = x[:, :3, 0].sum(axis=1)
    return check_arrays(
        {"x_train": x[:24], "y_train": y[:24], "x_test": x[24:], "y_test": y[24:]}, task="regression", source="test",
    )


PROBLEMS = {
    "echo-first": lambda: load_problem(EchoFirstProblem(kind="echo-first", length=8, n_train=24, n_test=8, seed=2)),
    "echo-first padded": lambda: load_problem(EchoFirstProblem(kind="echo-first", length=9, n_train=24, n_test=8, seed=2)),
    "echo-first long padded": lambda: load_problem(
        EchoFirstProblem(kind="echo-first", length=37, n_train=24, n_test=8, seed=2)
    ),
    "lag-echo long": lambda: load_problem(LagEchoProblem(kind="lag-echo", length=68, lag=3, n_train=24, n_test=8, seed=2)),
    "lag-echo padded": lambda: load_problem(LagEchoProblem(kind="lag-echo", length=9, lag=2, n_train=24, n_test=8, seed=2)),
    "three classes": three_classes,
    "sum per sequence": sum_per_sequence,
}


def train_both(dataset, *, length: int, mode: str, units: int = 5, batch_size: int = 8):
    """One epoch of a fused pack and of each repeat alone, on the same per-repeat batches."""
    train = shaping.chunk(dataset.x_train, dataset.y_train, length, dataset.train_lengths)
    train = shaping.stateless(train) if mode == "stateless" else train
    arch = Architecture.of(dataset, units=units, length=length, is_masked=train.is_padded)
    plans = [
        shaping.plan_batches(train.spans, n_chunks=train.n_chunks, batch_size=batch_size, rng=np.random.default_rng(seed))
        for seed in SEEDS
    ]
    fused = FusedNetwork(arch, n_repeats=len(SEEDS), optimizer="adam", learning_rate=0.01)
    fused.reset(SEEDS)
    for blocks in zip(*plans):
        index = np.stack([block.rows for block in blocks])
        fused.train_epoch(train.x, train.mask, train.y, index, blocks[0].first_chunks)
    alone = []
    for seed, blocks in zip(SEEDS, plans):
        network = KerasNetwork(arch, optimizer="adam", learning_rate=0.01)
        network.reset(seed)
        for block in blocks:
            network.train_epoch(train.x, train.mask, train.y, block.rows, block.first_chunks)
        alone.append(network)
    return fused, alone, train


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("mode", ["stateless", "stateful"])
@pytest.mark.slow
def test_every_repeat_of_a_pack_ends_with_the_weights_and_predictions_it_gets_alone(problem: str, mode: str) -> None:
    dataset = PROBLEMS[problem]()
    fused, alone, _ = train_both(dataset, length=4, mode=mode)
    # One target per sequence, and a sigmoid or no activation: the head's and loss's gradient by hand.
    assert fused.has_loss_by_hand == (not dataset.is_per_step and dataset.n_outputs == 1)
    test = shaping.chunk(dataset.x_test, dataset.y_test, 4)
    assert_repeats_match(fused, alone, shaping.stateless(test) if mode == "stateless" else test)


def assert_repeats_match(fused: FusedNetwork, alone: list[KerasNetwork], test: shaping.Chunks) -> None:
    predictions = fused.predict(test.x, test.mask).numpy()
    for repeat, network in enumerate(alone):
        for fused_weight, own_weight in zip(fused.get_weights(repeat), network.get_weights()):
            np.testing.assert_allclose(fused_weight, own_weight, atol=TOLERANCE)
        np.testing.assert_allclose(predictions[repeat], network.predict(test.x, test.mask).numpy(), atol=TOLERANCE)


@pytest.mark.parametrize(
    ("problem", "length", "units"),
    [
        # Past MAX_UNROLL steps the chunk is a symbolic loop, forward and backward.
        ("echo-first long padded", 35, 5),
        ("lag-echo long", 34, 5),
        # From XLA_MIN_UNITS units the epoch is compiled with XLA, its steps a symbolic loop.
        ("echo-first padded", 4, XLA_MIN_UNITS),
        ("lag-echo long", 34, XLA_MIN_UNITS),
    ],
)
@pytest.mark.parametrize("mode", ["stateless", "stateful"])
@pytest.mark.slow
def test_long_subsequences_and_larger_packs_train_as_each_repeat_alone(problem: str, length: int, units: int, mode: str) -> None:
    dataset = PROBLEMS[problem]()
    fused, alone, _ = train_both(dataset, length=length, mode=mode, units=units)
    assert fused.arch.is_unrolled == (length <= MAX_UNROLL and units < XLA_MIN_UNITS)
    assert fused.arch.is_compiled_with_xla == (units >= XLA_MIN_UNITS)
    test = shaping.chunk(dataset.x_test, dataset.y_test, length)
    assert_repeats_match(fused, alone, shaping.stateless(test) if mode == "stateless" else test)


@pytest.mark.parametrize("mode", ["stateless", "stateful"])
@pytest.mark.slow
def test_a_smaller_last_batch_trains_as_each_repeat_alone(mode: str) -> None:
    """24 sequences in batches of 7: two blocks of different batch sizes share one trace."""
    dataset = PROBLEMS["echo-first padded"]()
    fused, alone, _ = train_both(dataset, length=4, mode=mode, batch_size=7)
    assert fused.train_epoch.experimental_get_tracing_count() == 1
    test = shaping.chunk(dataset.x_test, dataset.y_test, 4)
    assert_repeats_match(fused, alone, shaping.stateless(test) if mode == "stateless" else test)


@pytest.mark.slow
def test_training_moved_the_weights_and_repeats_differ() -> None:
    fused, _, _ = train_both(PROBLEMS["echo-first"](), length=4, mode="stateful")
    start = [initial_weights(fused.arch, seed) for seed in SEEDS]
    assert not np.allclose(fused.get_weights(0)[1], start[0][1])
    assert not np.allclose(fused.get_weights(0)[0], fused.get_weights(1)[0])


@pytest.mark.parametrize("seed", [0, 7, 123456])
@pytest.mark.parametrize(("units", "n_features", "n_outputs"), [(5, 1, 1), (12, 3, 4)])
def test_initial_weights_are_those_of_newly_built_keras_layers(seed: int, units: int, n_features: int, n_outputs: int) -> None:
    arch = Architecture(task="classification", n_features=n_features, n_outputs=n_outputs, is_per_step=False,
                        units=units, length=4, is_masked=False)
    lstm, head = seeded_layers(arch, seed)
    built = lstm.get_weights() + head.get_weights()
    for drawn, expected in zip(initial_weights(arch, seed), built):
        np.testing.assert_array_equal(drawn, expected)
    # Drawn without making layers (the seeds' draws were found), and the same where they are not.
    assert _common._initializer_draws(arch) is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_common, "_initializer_draws", lambda arch: None)
        for drawn, expected in zip(initial_weights(arch, seed), built):
            np.testing.assert_array_equal(drawn, expected)


def test_initial_weights_leave_tensorflow_seeded_as_it_was() -> None:
    """Drawing a repeat's weights must not reseed TensorFlow, which would empty its kernel cache."""
    import tensorflow as tf

    arch = Architecture(task="classification", n_features=1, n_outputs=1, is_per_step=False, units=5, length=4, is_masked=False)
    tf.random.set_seed(11)
    expected = tf.random.uniform((3,)).numpy()
    tf.random.set_seed(11)
    initial_weights(arch, 7)
    np.testing.assert_array_equal(tf.random.uniform((3,)).numpy(), expected)


@pytest.mark.slow
def test_the_reference_network_trains_as_a_keras_sequential_model_does() -> None:
    """Anchor the reference path itself to plain Keras: Sequential, Adam, train_on_batch."""
    dataset = PROBLEMS["echo-first"]()
    train = shaping.stateless(shaping.chunk(dataset.x_train, dataset.y_train, 4))
    arch = Architecture.of(dataset, units=5, length=4, is_masked=False)
    network = KerasNetwork(arch, optimizer="adam", learning_rate=0.01)
    network.reset(SEEDS[0])
    model = keras.Sequential([keras.Input((4, 1)), keras.layers.LSTM(5), keras.layers.Dense(1, activation="sigmoid")])
    model.set_weights(initial_weights(arch, SEEDS[0]))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", jit_compile=False)
    for block in shaping.plan_batches(train.spans, n_chunks=1, batch_size=8, rng=np.random.default_rng(1)):
        network.train_epoch(train.x, train.mask, train.y, block.rows, block.first_chunks)
        for rows in block.rows:
            model.train_on_batch(train.x[rows, 0], train.y[rows])
    for own, plain in zip(network.get_weights(), model.get_weights()):
        np.testing.assert_allclose(own, plain, atol=TOLERANCE)


@pytest.mark.slow
def test_fused_and_one_by_one_repeats_agree_in_distribution() -> None:
    """Different seeds, a setting where repeats disagree: each mean lies in the other's 95% CI."""
    dataset = load_problem(EchoFirstProblem(kind="echo-first", length=20, n_train=200, n_test=100, seed=1))
    set_dataset(dataset)
    common = dict(key="spread", length=10, mode="stateful", units=4, epochs=1, batch_size=10,
                  optimizer="adam", learning_rate=0.01, repeats=tuple(range(12)))
    fused = train_job(PackJob(seeds=tuple(range(12)), is_fused=True, **common))
    alone = train_job(PackJob(seeds=tuple(range(100, 112)), is_fused=False, **common))
    fused_stats = summarize([r.scores["accuracy/sample"] for r in fused.results])
    alone_stats = summarize([r.scores["accuracy/sample"] for r in alone.results])
    assert fused_stats["std"] > 0.05 and alone_stats["std"] > 0.05  # the repeats really disagree
    assert alone_stats["ci95_low"] <= fused_stats["mean"] <= alone_stats["ci95_high"]
    assert fused_stats["ci95_low"] <= alone_stats["mean"] <= fused_stats["ci95_high"]
