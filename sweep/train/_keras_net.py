"""The reference implementation: one Keras LSTM and Dense head, one repeat at a time."""

from __future__ import annotations

import tensorflow as tf

from sweep.train._common import (
    Architecture,
    apply_gradients,
    chunk_loss,
    decoupled_forward,
    epoch_signature,
    initial_weights,
    make_optimizer,
    padded_history,
    predict_signature,
    reset_optimizer,
    seeded_layers,
)


class KerasNetwork:
    """A Keras LSTM under a Keras Dense head, with compiled epoch and prediction loops.

    The loops are traced once and reused for every repeat: :meth:`reset` gives the network the
    weights that new layers would draw from a seed, and a fresh optimizer.
    """

    def __init__(self, arch: Architecture, *, optimizer: str, learning_rate: float) -> None:
        self.arch = arch
        self.learning_rate = learning_rate
        self.lstm, self.head = seeded_layers(arch)
        self.variables = self.lstm.trainable_variables + self.head.trainable_variables
        self.optimizer = make_optimizer(optimizer, learning_rate, self.variables)
        self.train_epoch = tf.function(self._train_epoch, input_signature=epoch_signature(arch, index_shape=(None, None)))
        self.predict = tf.function(self._predict, input_signature=predict_signature(arch))

    def reset(self, seed: int) -> None:
        weights = initial_weights(self.arch, seed)
        self.lstm.set_weights(weights[:3])
        self.head.set_weights(weights[3:])
        reset_optimizer(self.optimizer, self.learning_rate)

    def get_weights(self) -> list:
        return self.lstm.get_weights() + self.head.get_weights()

    def forward(self, x: tf.Tensor, mask: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, ...]:
        sequence, h, c = self.recur(x, mask, h, c)
        return self.head(sequence), h, c

    def recur(self, x: tf.Tensor, mask: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """The LSTM alone: every step's hidden state, and the final state."""
        return self.lstm(x, mask=mask if self.arch.is_masked else None, initial_state=[h, c])

    def _train_epoch(
        self, x: tf.Tensor, mask: tf.Tensor, y: tf.Tensor, index: tf.Tensor, first_chunks: tf.Tensor
    ) -> tf.Tensor:
        """Train on the batches `index` (groups, B) of samples x (n, k, L, features), batch g from
        its chunk `first_chunks[g]` on; returns the summed loss of the updates."""
        n_groups, batch, n_chunks = tf.shape(index)[0], tf.shape(index)[1], tf.shape(x)[1]
        total = tf.constant(0.0)
        for g in tf.range(n_groups):
            rows = index[g]
            x_group, mask_group, y_group = tf.gather(x, rows), tf.gather(mask, rows), tf.gather(y, rows)
            h = tf.zeros((batch, self.arch.units))
            c = tf.zeros((batch, self.arch.units))
            history = padded_history(x_group, mask_group, self.arch)
            # A while loop, not a range: XLA needs a range's bounds at compile time.
            j = tf.cast(first_chunks[g], tf.int32)
            while j < n_chunks:
                target = y_group[:, j] if self.arch.is_per_step else y_group
                with tf.GradientTape() as tape:
                    if self.arch.backward is None:
                        outputs, h, c = self.forward(x_group[:, j], mask_group[:, j], h, c)
                    else:
                        outputs, h, c = decoupled_forward(self.arch, self.recur, self.head, x_group[:, j], mask_group[:, j], history, j, h, c)
                    loss = chunk_loss(self.arch, outputs, target, mask_group[:, j])
                gradients = tape.gradient(loss, self.variables)
                apply_gradients(self.optimizer, gradients, self.variables)
                # Truncation: the state goes on to the next subsequence, its gradient does not.
                h, c = tf.stop_gradient(h), tf.stop_gradient(c)
                total += loss
                j += 1
        return total

    def _predict(self, x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """Outputs for x (n, k, L, features), the state carried across each sequence's chunks."""
        n, n_chunks = tf.shape(x)[0], tf.shape(x)[1]
        h = tf.zeros((n, self.arch.units))
        c = tf.zeros((n, self.arch.units))
        outputs = tf.TensorArray(tf.float32, size=n_chunks)
        for j in tf.range(n_chunks):
            out, h, c = self.forward(x[:, j], mask[:, j], h, c)
            outputs = outputs.write(j, out)
        return tf.transpose(outputs.stack(), [1, 0, 2, 3])
