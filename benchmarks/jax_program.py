"""Repeat LSTMs trained by a JAX program written the fastest known way: every repeat in one
program (`vmap` over the repeats), the steps of a window, the windows of a batch and the batches
of an epoch in `lax.scan` loops, and one `jit` for a whole epoch; Adam written out. The benchmark
runs it in spawned processes, which import this module by name.

The network and its training are those of a sweep grid point with a class per sequence: an LSTM,
a sigmoid unit on the last state, binary cross-entropy, Adam. Stateless, every window of L steps
is its own sample; stateful, a batch of sequences is trained window by window, the state carried
from one window to the next and the gradient cut between them (TBPTT), and zeroed for the next
batch.
"""

from __future__ import annotations

import os
import time
from functools import cache

import numpy as np

EPSILON = 1e-7  # Keras's Adam


def start_worker(parent: int) -> None:
    """A worker process's set-up: it ends with `parent` (kill -9 included), as sweep's workers
    do, and runs one thread, as a sweep worker on two cores with two workers. Runs before jax is
    imported."""
    from sweep.train.pool import end_with_parent

    end_with_parent(parent)
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def train_repeats(args: tuple) -> tuple[float, list[float]]:
    """Train `len(seeds)` repeats; return the seconds from the first update to the last score
    and each repeat's per-sample test accuracy. Tracing and compilation happen on a first call
    with the same shapes, as sweep's are left out by warming its workers."""
    x_train, y_train, x_test, y_test, settings, seeds = args
    length, mode, batch = settings["length"], settings["mode"], settings["batch_size"]
    train, train_labels = _windows(x_train, y_train, length)
    test, test_labels = _windows(x_test, y_test, length)
    params = _initial(seeds, n_features=x_train.shape[-1], units=settings["units"])
    moments = _zeros_like(params), _zeros_like(params)
    started = time.perf_counter()
    rngs = [np.random.default_rng(seed) for seed in seeds]
    for epoch in range(settings["epochs"]):
        orders = np.stack([_order(rng, train.shape[0], train.shape[1], batch, mode) for rng in rngs])
        params, moments = _compiled("_epoch")(params, moments, epoch, train, train_labels, orders,
                                 mode=mode, learning_rate=settings["learning_rate"])
    accuracy = np.asarray(_compiled("_accuracy")(params, test, test_labels, mode=mode))
    return time.perf_counter() - started, accuracy.tolist()


def _windows(x: np.ndarray, y: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, T, F) sequences as (n, k, L, F) windows, and the labels (n,)."""
    n, steps, features = x.shape
    return x.reshape(n, steps // length, length, features), y[:, 0].astype(np.float32)


def _order(rng: np.random.Generator, n: int, k: int, batch: int, mode: str) -> np.ndarray:
    """One epoch's batches of a repeat as sample indices, (batches, B): stateless, a sample is a
    window (sequence * k + window); stateful, a sequence."""
    n_samples = n * k if mode == "stateless" else n
    order = rng.permutation(n_samples)
    return order[: n_samples // batch * batch].reshape(-1, batch)


def _initial(seeds, *, n_features: int, units: int):
    import jax
    import jax.numpy as jnp

    def one(key):
        k_in, k_rec, k_out = jax.random.split(key, 3)
        limit = np.sqrt(6 / (n_features + 4 * units))
        recurrent, _ = jnp.linalg.qr(jax.random.normal(k_rec, (4 * units, units)))
        return dict(
            w_in=jax.random.uniform(k_in, (n_features, 4 * units), minval=-limit, maxval=limit),
            w_rec=recurrent.T,
            bias=jnp.zeros(4 * units).at[units:2 * units].set(1.0),  # the forget gate's 1, as Keras
            w_out=jax.random.uniform(k_out, (units, 1), minval=-np.sqrt(6 / (units + 1)), maxval=np.sqrt(6 / (units + 1))),
            b_out=jnp.zeros(1),
        )

    return jax.vmap(one)(jnp.stack([jax.random.PRNGKey(int(seed)) for seed in seeds]))


def _zeros_like(params):
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(jnp.zeros_like, params)


def _run(params, x, state):
    """The LSTM over a window x (B, L, F) from `state`; returns the last (h, c)."""
    import jax
    import jax.numpy as jnp

    projected = jnp.einsum("blf,fg->lbg", x, params["w_in"]) + params["bias"]

    def step(carry, z):
        h, c = carry
        i, f, g, o = jnp.split(z + h @ params["w_rec"], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), None

    # A rolled loop: unrolling the 10 steps made this program 1.5x slower on the CPU.
    return jax.lax.scan(step, state, projected)[0]


def _loss(params, x, labels, state):
    import jax.numpy as jnp
    from jax.nn import log_sigmoid

    h, c = _run(params, x, state)
    logits = (h @ params["w_out"] + params["b_out"])[:, 0]
    loss = -jnp.mean(labels * log_sigmoid(logits) + (1 - labels) * log_sigmoid(-logits))
    return loss, (h, c)


def _adam(params, moments, grads, t, learning_rate):
    import jax
    import jax.numpy as jnp

    first, second = moments
    first = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, first, grads)
    second = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, second, grads)
    rate = learning_rate * jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
    params = jax.tree_util.tree_map(lambda p, m, v: p - rate * m / (jnp.sqrt(v) + EPSILON), params, first, second)
    return params, (first, second)


@cache
def _compiled(name: str):
    """`_epoch` or `_accuracy`, jitted: built on first use, so that importing this module does
    not import jax before `start_worker` has run."""
    import jax

    static = {"_epoch": ("mode", "learning_rate"), "_accuracy": ("mode",)}[name]
    return jax.jit(globals()[name], static_argnames=static)


def _epoch(params, moments, epoch, windows, labels, orders, *, mode, learning_rate):
    """One epoch of every repeat: vmap over the repeats of a scan over the batches."""
    import jax
    import jax.numpy as jnp

    n, k = windows.shape[:2]
    units = params["w_rec"].shape[-2]
    updates_per_batch = 1 if mode == "stateless" else k

    def one_repeat(params, moments, order):
        def batch_step(carry, rows):
            params, moments, t = carry
            if mode == "stateless":
                x = windows.reshape(n * k, *windows.shape[2:])[rows]
                zero = jnp.zeros((rows.shape[0], units))
                grads, _ = jax.grad(_loss, has_aux=True)(params, x, labels[rows // k], (zero, zero))
                params, moments = _adam(params, moments, grads, t + 1, learning_rate)
                return (params, moments, t + 1), None

            def window_step(carry, x):
                params, moments, t, state = carry
                grads, state = jax.grad(_loss, has_aux=True)(params, x, labels[rows], state)
                state = jax.lax.stop_gradient(state)
                params, moments = _adam(params, moments, grads, t + 1, learning_rate)
                return (params, moments, t + 1, state), None

            zero = jnp.zeros((rows.shape[0], units))
            (params, moments, t, _), _ = jax.lax.scan(
                window_step, (params, moments, t, (zero, zero)), jnp.swapaxes(windows[rows], 0, 1))
            return (params, moments, t), None

        start = epoch * order.shape[0] * updates_per_batch
        (params, moments, _), _ = jax.lax.scan(batch_step, (params, moments, start), order)
        return params, moments

    return jax.vmap(one_repeat)(params, moments, orders)


def _accuracy(params, windows, labels, *, mode):
    """Each repeat's per-sample accuracy: stateless, every window is a sample; stateful, the
    output after every window, the state carried."""
    import jax
    import jax.numpy as jnp

    n, k = windows.shape[:2]
    units = params["w_rec"].shape[-2]

    def one_repeat(params):
        zero = jnp.zeros((n * k if mode == "stateless" else n, units))
        if mode == "stateless":
            h, _ = _run(params, windows.reshape(n * k, *windows.shape[2:]), (zero, zero))
            right = ((h @ params["w_out"] + params["b_out"])[:, 0] > 0) == (jnp.repeat(labels, k) > 0.5)
            return jnp.mean(right)

        def window(state, x):
            state = _run(params, x, state)
            return state, ((state[0] @ params["w_out"] + params["b_out"])[:, 0] > 0) == (labels > 0.5)

        _, right = jax.lax.scan(window, (zero, zero), jnp.swapaxes(windows, 0, 1))
        return jnp.mean(right)

    return jax.vmap(one_repeat)(params)
