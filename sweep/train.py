"""Training and scoring of one repeat: the only module that imports TensorFlow.

A repeat is one LSTM, initialised from its own seed, trained with truncated BPTT over the
prepared subsequences and scored on the test data. The network is a Keras ``LSTM`` (returning
its sequence and state) under a Keras ``Dense`` head, driven by a compiled training loop in which
one call trains a whole epoch: for each batch of sequences, the state starts at zero and is carried
from each subsequence to the next with the gradient stopped between them, which is what truncated
BPTT is. A stateless split is the same loop over samples of one subsequence each.

The compiled loop is kept per worker process and reused by every repeat of a grid point, with
fresh weights and optimizer state each time, so that a repeat pays for training, not for tracing.
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

# Each grid point has its own shapes; tracing once per point is expected, not worth a warning.
tf.get_logger().setLevel("ERROR")

from sweep import prepare  # noqa: E402
from sweep.errors import RepeatFailed  # noqa: E402
from sweep.jobs import RepeatJob, RepeatResult  # noqa: E402
from sweep.problems import Dataset  # noqa: E402
from sweep.scoring import score_all  # noqa: E402

__all__ = ["Network", "limit_threads", "set_dataset", "train_repeat"]

_EVAL_BATCH = 2048
_CACHE_SIZE = 4
_MAX_UNROLL = 32


def limit_threads(n_threads: int) -> None:
    """Bound TensorFlow's thread pools; call before any TensorFlow operation runs."""
    tf.config.threading.set_intra_op_parallelism_threads(n_threads)
    tf.config.threading.set_inter_op_parallelism_threads(n_threads)


class Network:
    """An LSTM and its Dense head, with a compiled epoch loop and a compiled prediction loop."""

    def __init__(
        self, *, dataset: Dataset, units: int, length: int, optimizer: str, learning_rate: float, is_masked: bool
    ) -> None:
        self.units = units
        # Unrolled short subsequences run several times faster than a symbolic loop over steps.
        self.is_unrolled = length <= _MAX_UNROLL
        self.task = dataset.task
        self.n_classes = dataset.n_classes
        self.n_features = dataset.n_features
        self.n_outputs = dataset.n_outputs
        self.is_per_step = dataset.is_per_step
        self.is_masked = is_masked
        self.learning_rate = learning_rate
        self.lstm, self.head = self._layers()
        self.variables = self.lstm.trainable_variables + self.head.trainable_variables
        self.optimizer = _optimizer(optimizer, learning_rate)
        self.optimizer.build(self.variables)
        self.train_epoch = tf.function(self._train_epoch, reduce_retracing=True)
        self.predict = tf.function(self._predict, reduce_retracing=True)

    def _layers(self) -> tuple[keras.layers.LSTM, keras.layers.Dense]:
        lstm = keras.layers.LSTM(self.units, return_sequences=True, return_state=True, unroll=self.is_unrolled)
        if self.task == "regression":
            activation = None
        else:
            activation = "sigmoid" if self.n_outputs == 1 else "softmax"
        head = keras.layers.Dense(self.n_outputs, activation=activation)
        lstm.build((None, None, self.n_features))
        head.build((None, None, self.units))
        return lstm, head

    def reset(self, seed: int) -> None:
        """Fresh weights drawn from `seed` exactly as new layers would draw them, and a fresh optimizer."""
        keras.utils.set_random_seed(seed)
        fresh_lstm, fresh_head = self._layers()
        self.lstm.set_weights(fresh_lstm.get_weights())
        self.head.set_weights(fresh_head.get_weights())
        for variable in self.optimizer.variables:
            variable.assign(tf.zeros_like(variable))
        self.optimizer.learning_rate.assign(self.learning_rate)

    def _forward(self, x: tf.Tensor, mask: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, ...]:
        sequence, h, c = self.lstm(x, mask=mask if self.is_masked else None, initial_state=[h, c])
        return self.head(sequence), h, c

    def _loss(self, outputs: tf.Tensor, y: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        if not self.is_per_step:
            return tf.reduce_mean(self._pointwise_loss(y, outputs[:, -1]))
        weight = tf.cast(mask, outputs.dtype)
        per_step = self._pointwise_loss(y, outputs)
        return tf.reduce_sum(per_step * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)

    def _pointwise_loss(self, y: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
        if self.task == "regression":
            return keras.losses.mean_squared_error(y, outputs)
        if self.n_outputs == 1:
            return keras.losses.binary_crossentropy(y, outputs)
        return keras.losses.sparse_categorical_crossentropy(y[..., 0], outputs)

    def _train_epoch(self, x: tf.Tensor, mask: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """Train on one block of groups: x is (groups, B, k, L, features). Returns the mean loss."""
        n_groups, batch, n_chunks = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        total = tf.constant(0.0)
        for g in tf.range(n_groups):
            h = tf.zeros((batch, self.units))
            c = tf.zeros((batch, self.units))
            for j in tf.range(n_chunks):
                target = y[g, :, j] if self.is_per_step else y[g]
                with tf.GradientTape() as tape:
                    outputs, h, c = self._forward(x[g, :, j], mask[g, :, j], h, c)
                    loss = self._loss(outputs, target, mask[g, :, j])
                gradients = tape.gradient(loss, self.variables)
                self.optimizer.apply(gradients, self.variables)
                # Truncation: the state goes on to the next subsequence, its gradient does not.
                h, c = tf.stop_gradient(h), tf.stop_gradient(c)
                total += loss
        return total / tf.cast(n_groups * n_chunks, tf.float32)

    def _predict(self, x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """Outputs for x (n, k, L, features), the state carried across each sequence's chunks."""
        n, n_chunks = tf.shape(x)[0], tf.shape(x)[1]
        h = tf.zeros((n, self.units))
        c = tf.zeros((n, self.units))
        outputs = tf.TensorArray(tf.float32, size=n_chunks)
        for j in tf.range(n_chunks):
            out, h, c = self._forward(x[:, j], mask[:, j], h, c)
            outputs = outputs.write(j, out)
        return tf.transpose(outputs.stack(), [1, 0, 2, 3])


def _optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    return optimizers[name](learning_rate=learning_rate)


class _Worker:
    """What one worker process keeps between repeats: prepared data and compiled networks."""

    def __init__(self) -> None:
        self.dataset: Dataset | None = None
        self.chunks: OrderedDict[tuple[Any, ...], tuple[prepare.Chunks, prepare.Chunks]] = OrderedDict()
        self.networks: OrderedDict[tuple[Any, ...], Network] = OrderedDict()

    def set_dataset(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.chunks.clear()
        self.networks.clear()

    def prepared(self, length: int, mode: str) -> tuple[prepare.Chunks, prepare.Chunks]:
        assert self.dataset is not None, "set_dataset() comes first"
        return _cached(self.chunks, (length, mode), lambda: _prepare(self.dataset, length, mode))

    def network(self, job: RepeatJob, is_masked: bool) -> Network:
        assert self.dataset is not None, "set_dataset() comes first"
        key = (job.units, job.length, job.optimizer, job.learning_rate, is_masked)
        return _cached(
            self.networks,
            key,
            lambda: Network(
                dataset=self.dataset,
                units=job.units,
                length=job.length,
                optimizer=job.optimizer,
                learning_rate=job.learning_rate,
                is_masked=is_masked,
            ),
        )


def _cached(cache: OrderedDict, key: tuple[Any, ...], make: Any) -> Any:
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    cache[key] = value = make()
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


def _prepare(dataset: Dataset, length: int, mode: str) -> tuple[prepare.Chunks, prepare.Chunks]:
    """Training samples in the mode's layout, and the test sequences, sequence-major, for scoring."""
    train = prepare.chunk(dataset.x_train, dataset.y_train, length)
    test = prepare.chunk(dataset.x_test, dataset.y_test, length)
    return (prepare.stateless(train) if mode == "stateless" else train), test


_WORKER = _Worker()


def set_dataset(dataset: Dataset) -> None:
    """Give this process the study's data; every later repeat trains on it."""
    _WORKER.set_dataset(dataset)


def train_repeat(job: RepeatJob, dataset: Dataset | None = None) -> RepeatResult:
    """Train and score one repeat. Raises :class:`RepeatFailed` when training diverges."""
    if dataset is not None and dataset is not _WORKER.dataset:
        set_dataset(dataset)
    started = time.perf_counter()
    train, test = _WORKER.prepared(job.length, job.mode)
    network = _WORKER.network(job, is_masked=train.is_padded)
    network.reset(job.seed)
    rng = np.random.default_rng(job.seed)
    loss = math.nan
    for epoch in range(job.epochs):
        loss = _train_one_epoch(network, train, job.batch_size, rng)
        if not math.isfinite(loss):
            raise RepeatFailed(
                f"{job.key} repeat {job.repeat}: the training loss became {loss} in epoch {epoch + 1}; "
                "lower training.learning_rate"
            )
    predictions = _predict_all(network, prepare.stateless(test) if job.mode == "stateless" else test)
    predictions = predictions.reshape(*test.mask.shape, -1)
    scores = score_all(predictions, test, task=_WORKER.dataset.task)
    return RepeatResult(
        repeat=job.repeat,
        seed=job.seed,
        scores=scores,
        train_loss=loss,
        seconds=time.perf_counter() - started,
    )


def _train_one_epoch(network: Network, train: prepare.Chunks, batch_size: int, rng: np.random.Generator) -> float:
    groups = prepare.batch_groups(train.n_sequences, batch_size, rng)
    weighted, n_batches = 0.0, 0
    for block in prepare.stack_groups(train, groups):
        n_block = block.x.shape[0] * block.x.shape[2]
        weighted += float(network.train_epoch(block.x, block.mask, block.y)) * n_block
        n_batches += n_block
    return weighted / n_batches


def _predict_all(network: Network, test: prepare.Chunks) -> np.ndarray:
    parts = [
        network.predict(test.x[start : start + _EVAL_BATCH], test.mask[start : start + _EVAL_BATCH]).numpy()
        for start in range(0, test.n_sequences, _EVAL_BATCH)
    ]
    return np.concatenate(parts)
