"""What both implementations share: TensorFlow set-up, the architecture, seeded layers, losses."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

try:  # the initializers that Keras seeds from Python's generator
    from keras.src.initializers.random_initializers import RandomInitializer
except ImportError:  # another Keras: layers are made for every repeat
    RandomInitializer = None

from sweep.data.problems import Dataset  # noqa: E402

# Each grid point has its own shapes; tracing once per point is expected, not worth a warning.
tf.get_logger().setLevel("ERROR")

# Unrolled short subsequences run several times faster than a symbolic loop over the steps, but
# not under XLA: there a symbolic loop trains as fast or faster (u=32, L=29: 1.4 against 1.7 ms
# per update) and compiles in about 2 s at any length, where XLA took 15-30 s to compile 29
# unrolled steps, the larger part of such a grid point's time.
MAX_UNROLL = 32
# From this many units a pack's arithmetic, not the per-step overhead, dominates, and XLA's fused
# elementwise kernels train it 1.6-2.3x faster (24 to 100 units, 2 CPU cores); below it XLA gains
# nothing and its compilation, a few seconds per grid point, would be pure cost.
XLA_MIN_UNITS = 24


def limit_threads(n_threads: int) -> None:
    """Bound TensorFlow's thread pools; call before any TensorFlow operation runs."""
    tf.config.threading.set_intra_op_parallelism_threads(n_threads)
    tf.config.threading.set_inter_op_parallelism_threads(n_threads)


def share_gpus(worker_index: int) -> None:
    """Give this worker process one of the machine's GPUs, if it has any, in turn by worker index,
    to take memory on as it needs it; call before any TensorFlow operation runs.

    TensorFlow places every operation on the first GPU it sees, where there is one, and maps
    nearly all of every visible GPU's memory at its first operation: the second worker process
    would find none left, and the other GPUs would sit idle. ``CUDA_VISIBLE_DEVICES`` still
    decides which GPUs the workers share.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return
    gpu = gpus[worker_index % len(gpus)]
    tf.config.set_visible_devices(gpu, "GPU")
    tf.config.experimental.set_memory_growth(gpu, True)


@dataclass(frozen=True)
class Architecture:
    """Everything that fixes the shapes and the loss of a network for one grid point."""

    task: str
    n_features: int
    n_outputs: int
    is_per_step: bool
    units: int
    length: int | None  # None: any length, for loops that never unroll (see `any_length`)
    is_masked: bool
    # Decoupled TBPTT(k1, k2) in stateful training: `length` is k1, this k2. None: k2 = k1.
    backward: int | None = None

    @classmethod
    def of(cls, dataset: Dataset, *, units: int, length: int, is_masked: bool, backward: int | None = None) -> Architecture:
        backward = None if backward == length else backward
        return cls(
            task=dataset.task,
            n_features=dataset.n_features,
            n_outputs=dataset.n_outputs,
            is_per_step=dataset.is_per_step,
            units=units,
            length=length,
            # Windows reaching back past a sequence's start read padding, which must leave the state alone.
            is_masked=is_masked or (backward is not None and backward > length),
            backward=backward,
        )

    @property
    def is_unrolled(self) -> bool:
        return self.length is not None and self.length <= MAX_UNROLL and not self.is_compiled_with_xla

    def any_length(self) -> Architecture:
        """This architecture for every subsequence length where its loops never unroll (under XLA):
        one network then serves every length of a grid, and its loops are traced once, not per
        length; XLA still compiles each new shape. Decoupled TBPTT splits its windows at lengths
        fixed in the trace, so it keeps its own."""
        return replace(self, length=None) if self.is_compiled_with_xla and self.backward is None else self

    @property
    def is_compiled_with_xla(self) -> bool:
        return self.units >= XLA_MIN_UNITS

    @property
    def activation(self) -> str | None:
        if self.task == "regression":
            return None
        return "sigmoid" if self.n_outputs == 1 else "softmax"


def epoch_signature(arch: Architecture, *, index_shape: tuple[int | None, ...]) -> tuple[tf.TensorSpec, ...]:
    """The inputs of a compiled epoch, `(x, mask, y, index, first_chunks)`: the step's sizes fixed,
    the rest free.

    Both state modes of one length and every block of batches then share one trace, where each
    new input shape would otherwise trace the whole loop again (XLA still compiles per shape).
    """
    return (
        tf.TensorSpec((None, None, arch.length, arch.n_features), tf.float32),
        tf.TensorSpec((None, None, arch.length), tf.bool),
        tf.TensorSpec((None,) * (4 if arch.is_per_step else 2), tf.float32),
        tf.TensorSpec(index_shape, tf.int64),
        tf.TensorSpec((None,), tf.int64),
    )


def predict_signature(arch: Architecture) -> tuple[tf.TensorSpec, ...]:
    """The inputs of a compiled prediction, `(x, mask)`, any number of sequences and chunks."""
    return epoch_signature(arch, index_shape=())[:2]


def seeded_layers(arch: Architecture, seed: int | None = None) -> tuple[keras.layers.LSTM, keras.layers.Dense]:
    """A built Keras LSTM and Dense head; with `seed`, their initial weights are drawn from it."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    lstm = keras.layers.LSTM(arch.units, return_sequences=True, return_state=True, unroll=arch.is_unrolled)
    head = keras.layers.Dense(arch.n_outputs, activation=arch.activation)
    lstm.build((None, None, arch.n_features))
    head.build((None, None, arch.units))
    return lstm, head


def initial_weights(arch: Architecture, seed: int) -> list[np.ndarray]:
    """The weights a new Keras LSTM and Dense would start from under `seed`, without building them.

    New layers take their initializers' seeds from the global generator that `seed` resets, so
    drawing from the initializers of unbuilt layers gives exactly the built layers' weights, in
    a third of the time; where the draws that seed each initializer are known (see
    :func:`_initializer_draws`), the layers are not even made, a third of that again.
    """
    units = arch.units
    bias = np.zeros(4 * units, np.float32)
    bias[units : 2 * units] = 1.0  # Keras's unit_forget_bias
    shapes = [(arch.n_features, 4 * units), (units, 4 * units), (units, arch.n_outputs)]
    initializers = _seeded_initializers(arch, seed)
    kernel, recurrent, head = (np.asarray(initializer(shape)) for initializer, shape in zip(initializers, shapes))
    return [kernel, recurrent, bias, head, np.zeros(arch.n_outputs, np.float32)]


def _seeded_initializers(arch: Architecture, seed: int) -> list[keras.initializers.Initializer]:
    """The initializers of the LSTM's kernel and recurrent kernel and of the head's kernel, seeded
    as new layers made after `_seed_keras(seed)` would seed them."""
    draws = _initializer_draws(arch)
    _seed_keras(seed)
    if draws is None:
        lstm, head = _unbuilt_layers(arch)
        return [lstm.cell.kernel_initializer, lstm.cell.recurrent_initializer, head.kernel_initializer]
    seeds = [random.randint(1, int(1e9)) for _ in range(max(index for index, _, _ in draws) + 1)]
    initializers = []
    for index, kind, config in draws:
        initializer = kind.from_config(config)
        initializer.seed = seeds[index]  # what the draw would have given it
        initializers.append(initializer)
    return initializers


# By architecture: which draw seeds each initializer, with its class and settings (None: unknown).
_DRAWS: dict[tuple, list[tuple[int, type, dict]] | None] = {}
_PROBE_SEED = 12345


def _initializer_draws(arch: Architecture) -> list[tuple[int, type, dict]] | None:
    """Which of Python's draws after a seed each initializer of new layers takes as its seed, with
    its class and settings. Found once per process by making the layers under a known seed and
    matching their seeds to the draws (Keras seeds an unseeded initializer with
    ``random.randint(1, 1e9)``); None where they do not match (another Keras), and then the
    layers are made for every repeat."""
    key = (arch.units, arch.n_features, arch.n_outputs, arch.activation, arch.is_unrolled)
    if key not in _DRAWS:
        _seed_keras(_PROBE_SEED)
        lstm, head = _unbuilt_layers(arch)
        _seed_keras(_PROBE_SEED)
        draws = [random.randint(1, int(1e9)) for _ in range(64)]
        found: list[tuple[int, type, dict]] | None = []
        for initializer in (lstm.cell.kernel_initializer, lstm.cell.recurrent_initializer, head.kernel_initializer):
            is_seeded = RandomInitializer is not None and isinstance(initializer, RandomInitializer)
            drawn = initializer.seed if is_seeded else None
            if drawn not in draws:
                found = None
                break
            found.append((draws.index(drawn), type(initializer), initializer.get_config()))
        _DRAWS[key] = found
    return _DRAWS[key]


def _unbuilt_layers(arch: Architecture) -> tuple[keras.layers.LSTM, keras.layers.Dense]:
    lstm = keras.layers.LSTM(arch.units, return_sequences=True, return_state=True, unroll=arch.is_unrolled)
    head = keras.layers.Dense(arch.n_outputs, activation=arch.activation)
    return lstm, head


def _seed_keras(seed: int) -> None:
    """Seed new Keras layers' initializers as `keras.utils.set_random_seed` would.

    Unseeded initializers take their seeds from Python's generator and draw with stateless random
    ops, so seeding Python's generator alone fixes every initial weight. TensorFlow's global seed
    plays no part, and setting it would empty TensorFlow's kernel cache: the next training and
    prediction calls would rebuild every kernel, a third of a 15-repeat pack's time.
    """
    random.seed(seed)


# The reference network's loops (`_keras_net`) are Python's `for` and `while` over tensors, which
# AutoGraph turns into graph loops; it would also rewrite, at the first trace in every worker,
# each Keras function they call (the losses, the optimizer's update: about 150 functions, a second
# of the first grid point), which hold no such loops. Those are marked to be called as they are.
# (The fused network's loops are written out, and traced with AutoGraph off.)
keep_as_written = tf.autograph.experimental.do_not_convert


@keep_as_written
def apply_gradients(optimizer: keras.optimizers.Optimizer, gradients: list, variables: list) -> None:
    optimizer.apply(gradients, variables)


def make_optimizer(name: str, learning_rate: float, variables: list) -> keras.optimizers.Optimizer:
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    optimizer = optimizers[name](learning_rate=learning_rate)
    optimizer.build(variables)
    return optimizer


def reset_optimizer(optimizer: keras.optimizers.Optimizer, learning_rate: float) -> None:
    """Zero the step count and every slot, as a newly built optimizer has them."""
    for variable in optimizer.variables:
        variable.assign(tf.zeros_like(variable))
    optimizer.learning_rate.assign(learning_rate)


def pointwise_loss(arch: Architecture, y: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
    """The loss of each prediction, reducing only the output axis."""
    if arch.task == "regression":
        return keras.losses.mean_squared_error(y, outputs)
    if arch.n_outputs == 1:
        return keras.losses.binary_crossentropy(y, outputs)
    return keras.losses.sparse_categorical_crossentropy(y[..., 0], outputs)


@keep_as_written
def chunk_loss(arch: Architecture, outputs: tf.Tensor, y: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean loss of one chunk, over the batch axis (the second-last axis of the result's input).

    `outputs` is (..., B, L, outputs). Targets per sequence meet the chunk's last output, of the
    rows that have a real step in the chunk (a shorter sequence's chunks before its first step
    are padding alone); targets per step meet every output, the padded steps weighted zero.
    Leading axes are kept.
    """
    if not arch.is_per_step:
        losses = pointwise_loss(arch, y, outputs[..., -1, :])
        if not arch.is_masked:
            return tf.reduce_mean(losses, axis=-1)
        real = tf.cast(tf.reduce_any(mask, axis=-1), losses.dtype)
        return tf.reduce_sum(losses * real, axis=-1) / tf.maximum(tf.reduce_sum(real, axis=-1), 1.0)
    weight = tf.cast(mask, outputs.dtype)
    per_step = pointwise_loss(arch, y, outputs) * weight
    return tf.reduce_sum(per_step, axis=[-2, -1]) / tf.maximum(tf.reduce_sum(weight, axis=[-2, -1]), 1.0)


Recur = Callable[[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]
Readout = Callable[[tf.Tensor], tf.Tensor]


def padded_history(x: tf.Tensor, mask: tf.Tensor, arch: Architecture) -> tuple[tf.Tensor, tf.Tensor] | None:
    """What windows reaching back over earlier chunks read (k2 > k1 only, else None): a batch
    group's chunks (..., k, k1, features) as one run of steps (..., k2 - k1 + k * k1, features),
    after k2 - k1 steps of padding, so that every window of k2 steps ending at a chunk's end lies
    inside it: the window of chunk j is steps j * k1 to j * k1 + k2."""
    if arch.backward is None or arch.backward < arch.length:
        return None
    extra = arch.backward - arch.length
    lead = tf.shape(x)[:-3]
    steps = tf.reshape(x, tf.concat([lead, [-1, arch.n_features]], axis=0))
    real = tf.reshape(mask, tf.concat([lead, [-1]], axis=0))
    padding = tf.zeros(tf.concat([lead, [extra, arch.n_features]], axis=0))
    return (
        tf.concat([padding, steps], axis=-2),
        tf.concat([tf.zeros(tf.concat([lead, [extra]], axis=0), tf.bool), real], axis=-1),
    )


def decoupled_forward(
    arch: Architecture,
    recur: Recur,
    readout: Readout,
    x_chunk: tf.Tensor,
    mask_chunk: tf.Tensor,
    history: tuple | None,
    j: tf.Tensor,
    h: tf.Tensor,
    c: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The forward pass of one TBPTT(k1, k2) update, ending at chunk j: the outputs of its k1 new
    steps, and the state the next update starts from.

    k2 < k1: the chunk's first k1 - k2 steps run with the state's gradient stopped after them, so
    the gradient goes back k2 steps through time (the head still learns from every output). k2 > k1:
    the k2 steps up to the chunk's end run again from the state the last update left k2 steps back
    (its state after its first k1 steps, which is where the next window starts); the loss is that
    of the last k1 outputs. `recur(x, mask, h, c)` runs the LSTM over steps (..., B, steps, ...)
    and `readout` is the head.
    """
    k1, k2 = arch.length, arch.backward
    if k2 < k1:
        cut = k1 - k2
        old, h, c = recur(x_chunk[..., :cut, :], mask_chunk[..., :cut], h, c)
        old, h, c = tf.stop_gradient(old), tf.stop_gradient(h), tf.stop_gradient(c)
        new, h, c = recur(x_chunk[..., cut:, :], mask_chunk[..., cut:], h, c)
        return readout(tf.concat([old, new], axis=-2)), h, c
    x_steps, mask_steps = history
    window = j * k1 + tf.range(k2)
    axis = x_steps.shape.rank - 2
    x_window, mask_window = tf.gather(x_steps, window, axis=axis), tf.gather(mask_steps, window, axis=axis)
    first, h_next, c_next = recur(x_window[..., :k1, :], mask_window[..., :k1], h, c)
    rest, _, _ = recur(x_window[..., k1:, :], mask_window[..., k1:], h_next, c_next)
    return readout(tf.concat([first, rest], axis=-2)[..., k2 - k1 :, :]), h_next, c_next
