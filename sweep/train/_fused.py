"""A pack of repeats trained as one computation.

The repeats are independent networks whose weights carry a leading repeat axis: the LSTM's
kernels are (P, features, 4 units) and (P, units, 4 units), its bias (P, 4 units), the head's
(P, units, outputs) and (P, outputs). One step of all P cells is a batched matrix product, so a
pack of 15 small LSTMs costs little more than one does, where nearly all of the time is per-step
overhead rather than arithmetic; larger packs are compiled with XLA, which fuses each step's
elementwise gate arithmetic into few kernels, and their recurrent kernel's gradient is formed
once per subsequence (see ``_lstm``). The pack's loss is the sum of the repeats' losses, so each
repeat's gradient, and so its Adam update (which is elementwise), is the one it would get alone.
Every repeat draws its initial weights from its own seed exactly as a standalone Keras LSTM and
Dense would, and sees its own shuffle order. The cell is Keras's LSTM cell (gates in the order
input, forget, candidate, output; sigmoid and tanh).
"""

from __future__ import annotations

from functools import partial

import numpy as np
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
)
from sweep.train._head import has_loss_by_hand, last_step_loss
from sweep.train._lstm import lstm_chunk


class FusedNetwork:
    """P LSTM networks with a Dense head each, trained side by side, with compiled loops."""

    def __init__(self, arch: Architecture, *, n_repeats: int, optimizer: str, learning_rate: float) -> None:
        self.arch = arch
        self.n_repeats = n_repeats
        self.learning_rate = learning_rate
        units, n_in, n_out = arch.units, arch.n_features, arch.n_outputs
        self.shapes = {
            "kernel": (n_in, 4 * units),
            "recurrent_kernel": (units, 4 * units),
            "bias": (4 * units,),
            "head_kernel": (units, n_out),
            "head_bias": (n_out,),
        }
        self.sizes = [int(np.prod(shape)) for shape in self.shapes.values()]
        self.has_loss_by_hand = has_loss_by_hand(arch)
        # One variable holds all of a repeat's weights in a row. The optimizer's update is
        # elementwise, so it is the same, but a few operations for the whole pack instead of a
        # few for each of five arrays: with short subsequences, most of an update's operations.
        self.flat = tf.Variable(tf.zeros((n_repeats, sum(self.sizes))), name="weights")
        self.variables = [self.flat]
        self.optimizer = make_optimizer(optimizer, learning_rate, self.variables)
        signature = epoch_signature(arch, index_shape=(n_repeats, None, None))
        # The loops are written out: traced as written, not rewritten by AutoGraph.
        self.train_epoch = tf.function(
            self._train_epoch, input_signature=signature, jit_compile=arch.is_compiled_with_xla, autograph=False
        )
        # XLA compiles anew for every shape, about 2 s each: a smaller last batch, trained once
        # an epoch, would cost more to compile than XLA saves on it.
        self.train_epoch_uncompiled = tf.function(self._train_epoch, input_signature=signature, autograph=False)
        self.predict = tf.function(self._predict, input_signature=predict_signature(arch), autograph=False)

    def reset(self, seeds: list[int]) -> None:
        """Each repeat's initial weights, drawn from its seed as new Keras layers draw them."""
        if len(seeds) != self.n_repeats:
            raise ValueError(f"{len(seeds)} seeds for a pack of {self.n_repeats}")
        rows = [np.concatenate([array.ravel() for array in initial_weights(self.arch, seed)]) for seed in seeds]
        self.flat.assign(np.stack(rows))
        reset_optimizer(self.optimizer, self.learning_rate)

    def get_weights(self, repeat: int) -> list[np.ndarray]:
        """One repeat's weights, in the order of a Keras LSTM's and Dense's get_weights()."""
        parts = np.split(self.flat[repeat].numpy(), np.cumsum(self.sizes)[:-1])
        return [part.reshape(shape) for part, shape in zip(parts, self.shapes.values())]

    def set_weights(self, repeat: int, weights: list[np.ndarray]) -> None:
        """Put back one repeat's weights, as :meth:`get_weights` gave them; the others stay."""
        self.flat[repeat].assign(np.concatenate([np.ravel(value) for value in weights]))

    def unpacked(self) -> dict[str, tf.Tensor]:
        """The weights by name, each with the repeat axis first, read from the one variable."""
        parts = tf.split(self.flat, self.sizes, axis=1)
        return {name: tf.reshape(part, (self.n_repeats, *shape)) for (name, shape), part in zip(self.shapes.items(), parts)}

    def forward(self, w: dict, x: tf.Tensor, mask: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """One chunk for every repeat: x (P, B, L, features), mask (P, B, L), state (P, B, units)."""
        sequence, h, c = self.recur(w, x, mask, h, c)
        return self.readout(w, sequence), h, c

    def recur(
        self, w: dict, x: tf.Tensor, mask: tf.Tensor, h: tf.Tensor, c: tf.Tensor, *, keep_outputs: bool = True
    ) -> tuple[tf.Tensor, ...]:
        """The LSTMs alone: every step's hidden state (P, B, L, units), and the final state; without
        `keep_outputs`, the final state alone, for a loss that reads nothing else."""
        z_inputs = tf.einsum("pblf,pfg->pblg", x, w["kernel"]) + w["bias"][:, None, None, :]
        return lstm_chunk(
            z_inputs, h, c, w["recurrent_kernel"], mask if self.arch.is_masked else None, is_unrolled=self.arch.is_unrolled,
            keep_outputs=keep_outputs,
        )

    def readout(self, w: dict, sequence: tf.Tensor) -> tf.Tensor:
        """The heads: (P, B, L, units) hidden states to (P, B, L, outputs)."""
        logits = tf.einsum("pblu,puo->pblo", sequence, w["head_kernel"]) + w["head_bias"][:, None, None, :]
        return self._activate(logits)

    def _activate(self, logits: tf.Tensor) -> tf.Tensor:
        if self.arch.activation == "sigmoid":
            return tf.sigmoid(logits)
        if self.arch.activation == "softmax":
            return tf.nn.softmax(logits, axis=-1)
        return logits

    def _train_epoch(
        self, x: tf.Tensor, mask: tf.Tensor, y: tf.Tensor, index: tf.Tensor, first_chunks: tf.Tensor
    ) -> tf.Tensor:
        """Train every repeat on its batches `index` (P, groups, B) of x (n, k, L, features), batch
        g of every repeat from its chunk `first_chunks[g]` on.

        Returns each repeat's summed loss of the updates, shape (P,).

        One loop over every update of the block, group after group and chunk after chunk, the
        state zeroed at each group's first: stateless samples are one chunk each, and a loop per
        group, entered once per update, cost them a third of their time. Stateful and stateless
        training of one length are then the same program.
        """
        n_groups, batch, n_chunks = tf.shape(index)[1], tf.shape(index)[2], tf.shape(x)[1]
        first_chunks = tf.cast(first_chunks, tf.int32)
        step_shape = tf.concat([[-1], tf.shape(x)[2:]], axis=0)
        # The chunks as rows of their own: chunk j of sequence i is row i * k + j.
        x_rows, mask_rows = tf.reshape(x, step_shape), tf.reshape(mask, step_shape[:2])
        y_rows = tf.reshape(y, tf.concat([[-1], tf.shape(y)[2:]], axis=0)) if self.arch.is_per_step else None

        def update(g: tf.Tensor, j: tf.Tensor, is_first: tf.Tensor, h: tf.Tensor, c: tf.Tensor, total: tf.Tensor) -> tuple:
            rows = tf.gather(index, g, axis=1)
            chunk_rows = rows * tf.cast(n_chunks, rows.dtype) + tf.cast(j, rows.dtype)
            x_chunk, mask_chunk = tf.gather(x_rows, chunk_rows), tf.gather(mask_rows, chunk_rows)
            target = tf.gather(y_rows, chunk_rows) if self.arch.is_per_step else tf.gather(y, rows)
            h, c = tf.where(is_first, 0.0, h), tf.where(is_first, 0.0, c)
            with tf.GradientTape() as tape:
                w = self.unpacked()
                if self.has_loss_by_hand:
                    h, c = self.recur(w, x_chunk, mask_chunk, h, c, keep_outputs=False)
                    losses = last_step_loss(self.arch, h, w["head_kernel"], w["head_bias"], target, mask_chunk)
                else:
                    if self.arch.backward is None:
                        outputs, h, c = self.forward(w, x_chunk, mask_chunk, h, c)
                    else:
                        history = padded_history(tf.gather(x, rows), tf.gather(mask, rows), self.arch)
                        outputs, h, c = decoupled_forward(
                            self.arch, partial(self.recur, w), partial(self.readout, w), x_chunk, mask_chunk, history, j, h, c
                        )
                    losses = chunk_loss(self.arch, outputs, target, mask_chunk)
                # Summed, each repeat's gradient is that of its own loss alone.
                loss = tf.reduce_sum(losses)
            gradients = tape.gradient(loss, self.variables)
            apply_gradients(self.optimizer, gradients, self.variables)
            # The next update: the group's next chunk, or the next group's first.
            is_last = j + 1 >= n_chunks
            g_next = g + tf.cast(is_last, g.dtype)
            j_next = tf.where(is_last, tf.gather(first_chunks, tf.minimum(g_next, n_groups - 1)), j + 1)
            return g_next, j_next, is_last, tf.stop_gradient(h), tf.stop_gradient(c), total + losses

        state = tf.zeros((self.n_repeats, batch, self.arch.units))
        start = (tf.constant(0), first_chunks[0], tf.constant(True), state, state, tf.zeros((self.n_repeats,)))
        *_, total = tf.while_loop(lambda g, *_: g < n_groups, update, start)
        return total

    def _predict(self, x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """Every repeat's outputs for x (n, k, L, features): (P, n, k, L, outputs)."""
        n, n_chunks = tf.shape(x)[0], tf.shape(x)[1]
        w = self.unpacked()

        def chunk(j: tf.Tensor, h: tf.Tensor, c: tf.Tensor, outputs: tf.TensorArray) -> tuple:
            x_chunk = tf.repeat(x[None, :, j], self.n_repeats, axis=0)
            mask_chunk = tf.repeat(mask[None, :, j], self.n_repeats, axis=0)
            out, h, c = self.forward(w, x_chunk, mask_chunk, h, c)
            return j + 1, h, c, outputs.write(j, out)

        state = tf.zeros((self.n_repeats, n, self.arch.units))
        start = (tf.constant(0), state, state, tf.TensorArray(tf.float32, size=n_chunks))
        *_, outputs = tf.while_loop(lambda j, *_: j < n_chunks, chunk, start)
        return tf.transpose(outputs.stack(), [1, 2, 0, 3, 4])
