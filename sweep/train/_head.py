"""The head and loss of an update where each sequence has one target, with the gradient written
out by hand, for a pack of repeats.

Such a loss reads only the last step's state. Differentiated automatically, the head runs over
every step of the chunk, its gradient is scattered back into a tensor of every step, the
batch mean's gradient is rebuilt from dynamic shapes, and the clipping of the probabilities adds
its own: with small networks, where an update's time goes by the number of operations, about a
sixth of them. Written out, it is a few operations on (P, B, outputs) tensors. The values are
Keras's: binary cross-entropy of clipped probabilities (what Keras computes from a sigmoid's
output it cannot trace back to the logits, as with the reference network's sliced head), and
mean squared error. Softmax heads, targets per step and decoupled TBPTT keep the automatic
gradient.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from sweep.train._common import Architecture


def has_loss_by_hand(arch: Architecture) -> bool:
    """Whether :func:`last_step_loss` serves this architecture."""
    return not arch.is_per_step and arch.backward is None and arch.activation in ("sigmoid", None)


def last_step_loss(
    arch: Architecture, h: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor, y: tf.Tensor, mask: tf.Tensor
) -> tf.Tensor:
    """Each repeat's mean loss over the batch, (P,), of the head on the chunk's last state h
    (P, B, units) against the targets y (P, B, outputs). Masked, the rows with no real step in
    the chunk (a shorter sequence's chunks before its first step) count for nothing."""
    weights = _row_weights(arch, mask, h)

    @tf.custom_gradient
    def loss(h: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor) -> tuple[tf.Tensor, object]:
        outputs = tf.einsum("pbu,puo->pbo", h, kernel) + bias[:, None, :]
        if arch.activation == "sigmoid":
            probabilities = tf.sigmoid(outputs)
            values, d_values = _binary_crossentropy(y, probabilities)
        else:
            values, d_values = _squared_error(y, outputs)
        losses = tf.reduce_mean(values, axis=-1)

        def gradient(d_loss: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            # Mean over the outputs, then the rows' weights, then the repeat's upstream gradient.
            d_rows = (d_loss[:, None] * weights)[..., None] / tf.cast(tf.shape(values)[-1], values.dtype)
            d_outputs = d_values(d_rows)
            if arch.activation == "sigmoid":
                d_outputs = tf.raw_ops.SigmoidGrad(y=probabilities, dy=d_outputs)
            d_h = tf.einsum("pbo,puo->pbu", d_outputs, kernel)
            d_kernel = tf.einsum("pbu,pbo->puo", h, d_outputs)
            return d_h, d_kernel, tf.reduce_sum(d_outputs, axis=1)

        # Unmasked, the plain mean: the value Keras's reference reports, to the last bit.
        mean = tf.reduce_sum(losses * weights, axis=-1) if arch.is_masked else tf.reduce_mean(losses, axis=-1)
        return mean, gradient

    return loss(h, kernel, bias)


def _row_weights(arch: Architecture, mask: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Each row's share of its repeat's batch mean, (P, B): 1 / B, or among the masked rows with
    a real step only."""
    if not arch.is_masked:
        rows = tf.shape(like)[1]
        return tf.fill(tf.shape(like)[:2], 1.0 / tf.cast(rows, like.dtype))
    real = tf.cast(tf.reduce_any(mask, axis=-1), like.dtype)
    return real / tf.maximum(tf.reduce_sum(real, axis=-1, keepdims=True), 1.0)


def _binary_crossentropy(y: tf.Tensor, probabilities: tf.Tensor) -> tuple[tf.Tensor, object]:
    """Keras's binary cross-entropy of probabilities, clipped to [eps, 1 - eps], elementwise;
    and the function taking the gradient of the values to that of the probabilities."""
    epsilon = keras.config.epsilon()
    clipped = tf.clip_by_value(probabilities, epsilon, 1.0 - epsilon)
    values = -(y * tf.math.log(clipped) + (1 - y) * tf.math.log(1 - clipped))

    def d_values(d: tf.Tensor) -> tf.Tensor:
        inside = tf.logical_and(probabilities >= epsilon, probabilities <= 1.0 - epsilon)
        return tf.where(inside, d * ((1 - y) / (1 - clipped) - y / clipped), 0.0)

    return values, d_values


def _squared_error(y: tf.Tensor, outputs: tf.Tensor) -> tuple[tf.Tensor, object]:
    error = outputs - y
    return tf.square(error), lambda d: d * 2.0 * error
