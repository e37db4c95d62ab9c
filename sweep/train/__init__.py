"""Training repeats: the worker processes, the plain jobs they take, and the only code that imports
TensorFlow.

A repeat is one LSTM with a Dense head, initialised from its own seed, trained with truncated BPTT
over the prepared subsequences and scored on the test data. For each batch of sequences the state
starts at zero and is carried from each subsequence to the next with its gradient stopped, which is
what truncated BPTT is; a stateless split is the same loop over samples of one subsequence each.

Two implementations of the same training:

* :class:`KerasNetwork`, the reference: one Keras ``LSTM`` and ``Dense``, one repeat at a time;
* :class:`FusedNetwork`: a pack of repeats as one computation, each with its own weights, seed,
  shuffle order and optimizer state, trained to the same weights as the reference would train each.

``jobs`` (the picklable work that crosses processes), ``pool`` (the spawned worker processes),
``memory`` (what a pack of repeats takes, and what a worker may give it) and ``compile_cache``
(where XLA keeps compiled programs between processes and runs) import no TensorFlow, so the main
process uses them freely; the modules that begin with an
underscore import it, and only worker processes (and tests) load them. The names below load them
when first asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FusedNetwork", "KerasNetwork", "limit_threads", "set_dataset", "train_job"]

_HOMES = {
    "FusedNetwork": "sweep.train._fused",
    "KerasNetwork": "sweep.train._keras_net",
    "limit_threads": "sweep.train._common",
    "set_dataset": "sweep.train._worker",
    "train_job": "sweep.train._worker",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'sweep.train' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
