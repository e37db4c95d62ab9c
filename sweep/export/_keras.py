"""The exported network as a plain Keras model: an LSTM under a Dense head, taking the inputs and
their mask, saved to and loaded from ``model.keras`` with nothing of sweep inside."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# Each new input shape traces Keras's predict step again; expected here, not worth a warning.
tf.get_logger().setLevel("ERROR")

__all__ = ["build_model", "chunk_predictor", "load_model"]


def build_model(weights: Sequence[np.ndarray], *, task: str) -> keras.Model:
    """A functional Keras model with the weights of a trained repeat, as a Keras LSTM's and then a
    Dense head's get_weights() list them. Inputs `x` (n, steps, features) and `mask` (n, steps);
    output (n, steps, outputs), the head at every step."""
    kernel, _, _, head_kernel, _ = weights
    n_features, units, n_outputs = kernel.shape[0], kernel.shape[1] // 4, head_kernel.shape[1]
    activation = None if task == "regression" else ("sigmoid" if n_outputs == 1 else "softmax")
    x = keras.Input((None, n_features), name="x")
    mask = keras.Input((None,), dtype="bool", name="mask")
    lstm = keras.layers.LSTM(units, return_sequences=True, name="lstm")
    head = keras.layers.Dense(n_outputs, activation=activation, name="head")
    model = keras.Model({"x": x, "mask": mask}, head(lstm(x, mask=mask)), name="sweep_lstm")
    lstm.set_weights(list(weights[:3]))
    head.set_weights(list(weights[3:]))
    return model


def load_model(path: Path) -> keras.Model:
    return keras.models.load_model(path)


def chunk_predictor(model: keras.Model):
    """`predict(x, mask)` over sweep's chunk layout (n, k, L, features): each sequence's chunks laid
    end to end are one input, so that the state carries across them (stateful); stateless samples
    hold one chunk each, so each starts from a zero state. Returns (n, k, L, outputs)."""

    def predict(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        n, k, length = mask.shape
        flat = {"x": x.reshape(n, k * length, -1), "mask": mask.reshape(n, k * length)}
        outputs = model.predict_on_batch(flat) if n else np.zeros((0, k * length, model.output_shape[-1]), np.float32)
        return np.asarray(outputs).reshape(n, k, length, -1)

    return predict
