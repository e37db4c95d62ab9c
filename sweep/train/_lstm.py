"""One subsequence of an LSTM, for a pack of repeats, with its gradient written out by hand.

Differentiating the step loop automatically computes a weight gradient at every step, one small
(units, 4 units) product per step and repeat, and then adds them all up. Written out, the
backward pass keeps only what is sequential in the loop (the state's gradient) and forms the
recurrent kernel's gradient once, as one product over every step of the subsequence, which for
100 units is the larger part of the arithmetic. The cell is Keras's: gates in the order input,
forget, candidate, output, with sigmoid and tanh.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

Gradient = Callable[..., tuple]


def lstm_chunk(
    z_inputs: tf.Tensor, h: tf.Tensor, c: tf.Tensor, kernel: tf.Tensor, mask: tf.Tensor | None, *, is_unrolled: bool,
    keep_outputs: bool = True,
) -> tuple[tf.Tensor, ...]:
    """Run L steps: z_inputs (P, B, L, 4 units) is x @ kernel + bias, state (P, B, units).

    `kernel` is the recurrent kernel (P, units, 4 units); `mask` (P, B, L), if given, marks the
    real steps, and a padded step leaves the state as it was. Returns every step's output
    (P, B, L, units) and the final state; without `keep_outputs`, the final state alone, for a
    loss that reads nothing else (the backward pass then adds no gradient at every step).
    """

    @tf.custom_gradient
    def chunk(z_inputs: tf.Tensor, h0: tf.Tensor, c0: tf.Tensor, kernel: tf.Tensor) -> tuple[tuple, Gradient]:
        outputs, gates, cells, h_last, c_last = _forward(z_inputs, h0, c0, kernel, mask, is_unrolled=is_unrolled)

        def gradient(*upstream: tf.Tensor | None) -> tuple:
            d_outputs, d_h, d_c = upstream if keep_outputs else (None, *upstream)
            d_h = tf.zeros_like(h0) if d_h is None else d_h
            d_c = tf.zeros_like(c0) if d_c is None else d_c
            d_z, d_h0, d_c0 = _backward(
                d_outputs, d_h, d_c, gates, cells, c0, kernel, mask, length=_length(z_inputs, is_unrolled=is_unrolled),
                is_unrolled=is_unrolled,
            )
            # The state each step started from: h0, then every step's output but the last.
            previous = tf.concat([h0[:, :, None], outputs[:, :, :-1]], axis=2)
            d_kernel = tf.einsum("pblu,pblg->pug", previous, d_z)
            return d_z, d_h0, d_c0, d_kernel

        return ((outputs, h_last, c_last) if keep_outputs else (h_last, c_last)), gradient

    return chunk(z_inputs, h, c, kernel)


def _loop(length: int | tf.Tensor, body: Callable[..., tuple], carry: tuple, *, is_unrolled: bool, reverse: bool = False) -> tuple:
    """`carry = body(t, *carry)` for every step t, last to first with `reverse`: a Python loop
    when unrolled, a graph loop otherwise (written out: these functions are traced as written,
    not rewritten by AutoGraph)."""
    if is_unrolled:
        for t in range(length - 1, -1, -1) if reverse else range(length):
            carry = body(t, *carry)
        return carry

    def step(i: tf.Tensor, *carry: object) -> tuple:
        return (i + 1, *body(length - 1 - i if reverse else i, *carry))

    _, *carry = tf.while_loop(lambda i, *_: i < length, step, (tf.constant(0), *carry))
    return tuple(carry)


def _length(by_step: tf.Tensor, *, is_unrolled: bool) -> int | tf.Tensor:
    return by_step.shape[2] if is_unrolled else tf.shape(by_step)[2]


def _step_reader(by_step: tf.Tensor, *, is_unrolled: bool) -> Callable[[int | tf.Tensor], tf.Tensor]:
    """Step t of a (P, B, L, n) tensor. Unrolled, it is unstacked once: a slice per step costs more,
    and its gradient more still."""
    if is_unrolled:
        steps = tf.unstack(by_step, axis=2)
        return lambda t: steps[t]
    return lambda t: by_step[:, :, t]


def _forward(
    z_inputs: tf.Tensor, h: tf.Tensor, c: tf.Tensor, kernel: tf.Tensor, mask: tf.Tensor | None, *, is_unrolled: bool
) -> tuple[tf.Tensor, ...]:
    """The steps, keeping each step's four gate activations and cell state for the backward pass."""
    length = _length(z_inputs, is_unrolled=is_unrolled)
    step_input = _step_reader(z_inputs, is_unrolled=is_unrolled)

    def step(t: int | tf.Tensor, h: tf.Tensor, c: tf.Tensor, outputs: Steps, cells: Steps, gates: tuple) -> tuple:
        z = step_input(t) + tf.matmul(h, kernel)
        z_in, z_forget, z_candidate, z_out = tf.split(z, 4, axis=-1)
        step_gates = (tf.sigmoid(z_in), tf.sigmoid(z_forget), tf.tanh(z_candidate), tf.sigmoid(z_out))
        gate_in, gate_forget, candidate, gate_out = step_gates
        c_next = gate_forget * c + gate_in * candidate
        h_next = gate_out * tf.tanh(c_next)
        if mask is not None:
            real = mask[:, :, t, None]
            h_next, c_next = tf.where(real, h_next, h), tf.where(real, c_next, c)
        # Each gate apart: joined and split again at every step, they cost two more operations.
        gates = tuple(_write(steps, t, gate) for steps, gate in zip(gates, step_gates))
        return h_next, c_next, _write(outputs, t, h_next), _write(cells, t, c_next), gates

    carry = (h, c, _new_steps(length), _new_steps(length), tuple(_new_steps(length) for _ in range(4)))
    h, c, outputs, cells, gates = _loop(length, step, carry, is_unrolled=is_unrolled)
    return _by_step(outputs), gates, cells, h, c


def _backward(
    d_outputs: tf.Tensor | None,
    d_h: tf.Tensor,
    d_c: tf.Tensor,
    gates: tuple[Steps, ...],
    cells: Steps,
    c0: tf.Tensor,
    kernel: tf.Tensor,
    mask: tf.Tensor | None,
    *,
    length: int | tf.Tensor,
    is_unrolled: bool,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The gradient of the gates' inputs at every step, and of the initial state; `d_outputs`
    None where no step's output reached the loss but through the final state.

    TensorFlow's own sigmoid and tanh gradient operations, dy * y * (1 - y) and dy * (1 - y * y),
    each one operation where written out they are three: with small networks an update's time
    goes by the number of operations more than by their size.
    """
    step_d_output = None if d_outputs is None else _step_reader(d_outputs, is_unrolled=is_unrolled)

    def step(t: int | tf.Tensor, d_h: tf.Tensor, d_c: tf.Tensor, d_z_steps: Steps) -> tuple:
        if step_d_output is not None:
            d_h = d_h + step_d_output(t)
        gate_in, gate_forget, candidate, gate_out = (_read(steps, t) for steps in gates)
        c_prev = _previous_cell(cells, c0, t)
        tanh_c = tf.tanh(_read(cells, t))
        d_cell = d_c + _tanh_gradient(tanh_c, d_h * gate_out)
        d_z = tf.concat(
            [
                _sigmoid_gradient(gate_in, d_cell * candidate),
                _sigmoid_gradient(gate_forget, d_cell * c_prev),
                _tanh_gradient(candidate, d_cell * gate_in),
                _sigmoid_gradient(gate_out, d_h * tanh_c),
            ],
            axis=-1,
        )
        d_h_prev = tf.matmul(d_z, kernel, transpose_b=True)
        d_c_prev = d_cell * gate_forget
        if mask is not None:
            # A padded step passed the state through unchanged, and so passes its gradient back.
            real = mask[:, :, t, None]
            d_z = tf.where(real, d_z, 0.0)
            d_h_prev, d_c_prev = tf.where(real, d_h_prev, d_h), tf.where(real, d_c_prev, d_c)
        return d_h_prev, d_c_prev, _write(d_z_steps, t, d_z)

    d_h, d_c, d_z_steps = _loop(length, step, (d_h, d_c, _new_steps(length)), is_unrolled=is_unrolled, reverse=True)
    return _by_step(d_z_steps), d_h, d_c


def _sigmoid_gradient(y: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:
    """dy * y * (1 - y), where y = sigmoid(x): the gradient reaching x."""
    return tf.raw_ops.SigmoidGrad(y=y, dy=dy)


def _tanh_gradient(y: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:
    """dy * (1 - y * y), where y = tanh(x): the gradient reaching x."""
    return tf.raw_ops.TanhGrad(y=y, dy=dy)


def _previous_cell(cells: Steps, c0: tf.Tensor, t: tf.Tensor | int) -> tf.Tensor:
    """The cell state step t started from."""
    if isinstance(t, int):
        return c0 if t == 0 else _read(cells, t - 1)
    return tf.cond(t > 0, lambda: _read(cells, tf.maximum(t - 1, 0)), lambda: c0)


# What the loops keep of every step, (P, B, n) each. Unrolled, a Python list of the step tensors,
# which XLA reads in place: with a TensorArray, packs of 100 units took 15-25% longer per update.
# In a symbolic loop, a TensorArray, which the loop can carry.
Steps = list | tf.TensorArray


def _new_steps(length: int | tf.Tensor) -> Steps:
    return [None] * length if isinstance(length, int) else tf.TensorArray(tf.float32, size=length)


def _write(steps: Steps, t: int | tf.Tensor, value: tf.Tensor) -> Steps:
    if isinstance(steps, list):
        steps[t] = value
        return steps
    return steps.write(t, value)


def _read(steps: Steps, t: int | tf.Tensor) -> tf.Tensor:
    return steps[t] if isinstance(steps, list) else steps.read(t)


def _by_step(steps: Steps) -> tf.Tensor:
    """The steps stacked as (P, B, L, n)."""
    if isinstance(steps, list):
        return tf.stack(steps, axis=2)
    return tf.transpose(steps.stack(), [1, 2, 0, 3])
