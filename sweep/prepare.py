"""Array shaping for truncated BPTT, in NumPy only.

A sequence of T steps is cut into ``k = ceil(T / L)`` subsequences of L steps. When L does not
divide T the sequence is padded at the front, so that real data end every sequence, and a mask
marks the real steps. Both state modes share one layout, ``(sequences, k, L, ...)``:

* stateless: every subsequence is an independent sample carrying its sequence's target, so the
  layout is flattened to ``(sequences * k, 1, L, ...)``: k = 1 chunk per sample;
* stateful: a batch holds B different sequences and the following k batches hold their next
  subsequences, in the same rows, with the state reset after the last one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Chunks", "batch_groups", "chunk", "n_chunks", "pad_front", "index_blocks", "stateless"]


@dataclass(frozen=True, eq=False)
class Chunks:
    """Sequences cut into subsequences: inputs, real-step mask and targets, sequence-major."""

    x: np.ndarray  # (n, k, L, features)
    mask: np.ndarray  # (n, k, L) bool, True on real steps
    y: np.ndarray  # per sequence: (n, outputs); per step: (n, k, L, outputs)

    @property
    def n_sequences(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_chunks(self) -> int:
        return int(self.x.shape[1])

    @property
    def is_padded(self) -> bool:
        return not bool(self.mask.all())

    @property
    def is_per_step(self) -> bool:
        return self.y.ndim == 4


def n_chunks(sequence_length: int, length: int) -> int:
    return -(-sequence_length // length)


def pad_front(x: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad axis 1 at the front with zeros up to a multiple of `length`; also return the real-step mask."""
    n, steps = x.shape[:2]
    n_pad = n_chunks(steps, length) * length - steps
    padded = np.zeros((n, steps + n_pad, *x.shape[2:]), dtype=x.dtype)
    padded[:, n_pad:] = x
    mask = np.zeros((n, steps + n_pad), dtype=bool)
    mask[:, n_pad:] = True
    return padded, mask


def chunk(x: np.ndarray, y: np.ndarray, length: int) -> Chunks:
    """Cut sequences `x` (n, T, features) and their targets into subsequences of `length` steps.

    Targets `y` are either per sequence, (n, outputs), or per step, (n, T, outputs).
    """
    if not 1 <= length <= x.shape[1]:
        raise ValueError(f"subsequence length {length} must be between 1 and the sequence length {x.shape[1]}")
    padded, mask = pad_front(x, length)
    n, total = mask.shape
    k = total // length
    x_chunks = padded.reshape(n, k, length, x.shape[2])
    if y.ndim == 3:
        y_padded, _ = pad_front(y, length)
        y = y_padded.reshape(n, k, length, y.shape[2])
    return Chunks(x=x_chunks, mask=mask.reshape(n, k, length), y=y)


def stateless(chunks: Chunks) -> Chunks:
    """Every subsequence as its own sample (one chunk each), carrying its sequence's target."""
    n, k, length = chunks.mask.shape
    if chunks.is_per_step:
        y = chunks.y.reshape(n * k, 1, length, chunks.y.shape[-1])
    else:
        y = np.repeat(chunks.y, k, axis=0)
    return Chunks(
        x=chunks.x.reshape(n * k, 1, length, chunks.x.shape[-1]),
        mask=chunks.mask.reshape(n * k, 1, length),
        y=y,
    )


def batch_groups(n_samples: int, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Sample indices grouped into batches, shuffled when `rng` is given.

    A group is a batch of whole samples: in stateful mode, the group's sequences are trained
    chunk by chunk, each chunk one batch, the rows fixed across the group's chunks.
    """
    order = rng.permutation(n_samples) if rng is not None else np.arange(n_samples)
    return [order[start : start + batch_size] for start in range(0, n_samples, batch_size)]


def index_blocks(groups: list[np.ndarray]) -> list[np.ndarray]:
    """Stack the groups into blocks of equal batch size, in training order: (groups, B) each.

    Training walks the blocks, then a block's groups, then the chunks of a group, so batch (g, j)
    holds chunk j of the samples ``block[g]``, always in the same rows. Full groups share one
    block; a smaller last group gets its own.
    """
    sizes = sorted({len(group) for group in groups}, reverse=True)
    return [np.stack([group for group in groups if len(group) == size]) for size in sizes]
