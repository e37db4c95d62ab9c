"""Training and scoring of repeats: the only package that imports TensorFlow.

A repeat is one LSTM with a Dense head, initialised from its own seed, trained with truncated BPTT
over the prepared subsequences and scored on the test data. For each batch of sequences the state
starts at zero and is carried from each subsequence to the next with its gradient stopped, which is
what truncated BPTT is; a stateless split is the same loop over samples of one subsequence each.

Two implementations of the same training:

* :class:`KerasNetwork`, the reference: one Keras ``LSTM`` and ``Dense``, one repeat at a time;
* :class:`FusedNetwork`: a pack of repeats as one computation, each with its own weights, seed,
  shuffle order and optimizer state, trained to the same weights as the reference would train each.
"""

from sweep.train._common import limit_threads
from sweep.train._fused import FusedNetwork
from sweep.train._keras_net import KerasNetwork
from sweep.train._worker import set_dataset, train_job

__all__ = ["FusedNetwork", "KerasNetwork", "limit_threads", "set_dataset", "train_job"]
