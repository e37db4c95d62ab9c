"""Array shaping for truncated BPTT, in NumPy only.

Sequences of up to T steps are cut into ``k = ceil(T / L)`` subsequences of L steps. Every
sequence is padded at the front, so that real data end every sequence, up to k * L steps, and a
mask marks each sequence's real steps: a sequence of its own length ``n_i`` spans only its last
``ceil(n_i / L)`` chunks (its *span*), the chunks before are all padding. Both state modes share
one layout, ``(sequences, k, L, ...)``:

* stateless: every subsequence with a real step is an independent sample carrying its sequence's
  target, so the layout is flattened to ``(samples, 1, L, ...)``: k = 1 chunk per sample;
* stateful: a batch holds B different sequences and the following batches hold their next
  subsequences, in the same rows, with the state reset after the last one. A batch starts at the
  first chunk in which one of its sequences has a real step (:func:`plan_batches`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Block",
    "Chunks",
    "as_mode",
    "batch_groups",
    "by_sequence",
    "chunk",
    "cut",
    "index_blocks",
    "n_chunks",
    "outputs_by_sequence",
    "pad_front",
    "padding_share",
    "plan_batches",
    "stateless",
    "windows",
]


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

    @property
    def spans(self) -> np.ndarray:
        """How many chunks of each sequence hold a real step: its last ones, (n,)."""
        return self.mask.any(axis=2).sum(axis=1)


def n_chunks(sequence_length: int, length: int) -> int:
    return -(-sequence_length // length)


def padding_share(lengths: np.ndarray, length: int, width: int | None = None) -> tuple[int, float]:
    """How many subsequences of `length` steps sequences of `lengths` make (those with a real
    step), and the share of their steps that is padding. With `width`, windows of `width` steps
    every `length` steps instead (see :func:`windows`)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n_subsequences = int(np.sum(-(-lengths // length)))
    if width is None or width == length:
        return n_subsequences, float(1.0 - lengths.sum() / (n_subsequences * length))
    real = 0
    for steps, count in zip(*np.unique(lengths, return_counts=True)):
        ends = steps - length * np.arange(-(-steps // length))
        real += int(count) * int(np.minimum(ends, width).sum())
    return n_subsequences, float(1.0 - real / (n_subsequences * width))


def pad_front(x: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad axis 1 at the front with zeros up to a multiple of `length`; also return the real-step mask."""
    n, steps = x.shape[:2]
    n_pad = n_chunks(steps, length) * length - steps
    padded = np.zeros((n, steps + n_pad, *x.shape[2:]), dtype=x.dtype)
    padded[:, n_pad:] = x
    mask = np.zeros((n, steps + n_pad), dtype=bool)
    mask[:, n_pad:] = True
    return padded, mask


def chunk(x: np.ndarray, y: np.ndarray, length: int, lengths: np.ndarray | None = None) -> Chunks:
    """Cut sequences `x` (n, T, features) and their targets into subsequences of `length` steps.

    Targets `y` are either per sequence, (n, outputs), or per step, (n, T, outputs). With
    `lengths` (n,), sequence i is its last ``lengths[i]`` steps, the steps before it padding.
    """
    if not 1 <= length <= x.shape[1]:
        raise ValueError(f"subsequence length {length} must be between 1 and the sequence length {x.shape[1]}")
    padded, mask = pad_front(x, length)
    n, total = mask.shape
    if lengths is not None:
        mask &= np.arange(total)[None, :] >= total - np.asarray(lengths)[:, None]
    k = total // length
    x_chunks = padded.reshape(n, k, length, x.shape[2])
    if y.ndim == 3:
        y_padded, _ = pad_front(y, length)
        y = y_padded.reshape(n, k, length, y.shape[2])
    return Chunks(x=x_chunks, mask=mask.reshape(n, k, length), y=y)


def windows(x: np.ndarray, y: np.ndarray, stride: int, width: int, lengths: np.ndarray | None = None) -> Chunks:
    """Windows of `width` steps taken every `stride` steps, the last ending at each sequence's last
    step, in the layout of :func:`chunk`: (n, k, width, ...) with k = ceil(T / stride).

    Windows overlap when `stride` < `width` and leave steps out between them when `stride` > `width`;
    with `stride` = `width` they are :func:`chunk`'s subsequences. Steps before a sequence's start
    are padding, masked, as in :func:`chunk`.
    """
    if stride == width:
        return chunk(x, y, stride, lengths)
    steps = x.shape[1]
    if not 1 <= stride <= steps or not 1 <= width <= steps:
        raise ValueError(f"window stride {stride} and width {width} must be between 1 and the sequence length {steps}")
    k = n_chunks(steps, stride)
    n_pad = max(0, (k - 1) * stride + width - steps)
    mask = np.zeros((x.shape[0], n_pad + steps), dtype=bool)
    real_from = n_pad + steps - (np.asarray(lengths) if lengths is not None else np.full(x.shape[0], steps))
    mask[np.arange(n_pad + steps)[None, :] >= real_from[:, None]] = True
    starts = n_pad + steps - width - stride * np.arange(k - 1, -1, -1)
    take = starts[:, None] + np.arange(width)[None, :]  # (k, width) step indices
    x_windows = _front_padded(x, n_pad)[:, take]
    y_windows = _front_padded(y, n_pad)[:, take] if y.ndim == 3 else y
    return Chunks(x=x_windows, mask=mask[:, take], y=y_windows)


def cut(x: np.ndarray, y: np.ndarray, lengths: np.ndarray | None, *, length: int, mode: str, backward: int | None) -> Chunks:
    """Sequences as a grid point trains and scores them, sequence-major: stateless TBPTT(k1, k2)
    takes independent windows of k2 steps every k1 steps; stateful TBPTT(k1, k2) and every
    point with k2 = k1 take chunks of k1 steps (stateful training reaches back over them itself)."""
    if mode == "stateless" and backward is not None:
        return windows(x, y, length, backward, lengths)
    return chunk(x, y, length, lengths)


def as_mode(chunks: Chunks, mode: str) -> Chunks:
    """The chunks in a state mode's input layout: stateless, each subsequence a sample of its own."""
    return stateless(chunks) if mode == "stateless" else chunks


def outputs_by_sequence(outputs: np.ndarray, chunks: Chunks, mode: str) -> np.ndarray:
    """A network's outputs on `as_mode(chunks, mode)` in the layout of `chunks`, (n, k, L, outputs)."""
    if mode == "stateless":
        return by_sequence(outputs, chunks)
    return outputs.reshape(*chunks.mask.shape, -1)


def _front_padded(values: np.ndarray, n_pad: int) -> np.ndarray:
    padding = np.zeros((values.shape[0], n_pad, *values.shape[2:]), dtype=values.dtype)
    return np.concatenate([padding, values], axis=1)


def stateless(chunks: Chunks) -> Chunks:
    """Every subsequence with a real step as its own sample (one chunk each), carrying its
    sequence's target. A subsequence of padding alone is no sample: nothing to learn or score."""
    n, k, length = chunks.mask.shape
    if chunks.is_per_step:
        y = chunks.y.reshape(n * k, 1, length, chunks.y.shape[-1])
    else:
        y = np.repeat(chunks.y, k, axis=0)
    mask = chunks.mask.reshape(n * k, 1, length)
    x = chunks.x.reshape(n * k, 1, length, chunks.x.shape[-1])
    real = mask.any(axis=(1, 2))
    if not real.all():
        x, mask, y = x[real], mask[real], y[real]
    return Chunks(x=x, mask=mask, y=y)


def by_sequence(samples: np.ndarray, chunks: Chunks) -> np.ndarray:
    """Values of the stateless samples of `chunks`, (samples, 1, L, ...), back in the layout of
    `chunks`, (n, k, L, ...), zero in the chunks that held no sample."""
    n, k, length = chunks.mask.shape
    real = chunks.mask.reshape(n * k, length).any(axis=1)
    values = samples.reshape(-1, length, *samples.shape[3:])
    if real.all():
        return values.reshape(n, k, length, *samples.shape[3:])
    full = np.zeros((n * k, length, *samples.shape[3:]), dtype=samples.dtype)
    full[real] = values
    return full.reshape(n, k, length, *samples.shape[3:])


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


@dataclass(frozen=True, eq=False)
class Block:
    """Batches of one size, in training order: their rows (groups, B) and the first chunk each
    batch trains, the first in which one of its sequences has a real step, (groups,)."""

    rows: np.ndarray
    first_chunks: np.ndarray

    def n_updates(self, n_chunks: int) -> int:
        """Weight updates in this block: one per batch and chunk trained."""
        return int(np.sum(n_chunks - self.first_chunks))


def plan_batches(spans: np.ndarray, *, n_chunks: int, batch_size: int, rng: np.random.Generator | None, epoch: int = 0) -> list[Block]:
    """One epoch's batches of sequences with `spans` real chunks each, in training order.

    Each repeat shuffles the sequences with its own `rng`, then sorts them by span (ties stay in
    the repeat's own order) and cuts batches of `batch_size`, so that a batch holds sequences of
    similar length and trains few chunks of padding. The order in which batches of different
    spans are visited is shuffled by the `epoch` alone, the same for every repeat, so that every
    repeat of a fused pack trains a batch of the same span at the same time; batches of equal
    span keep the repeat's own order. When all sequences have one span (sequences of one length)
    this is :func:`batch_groups` exactly. A smaller last batch, if any, comes last.
    """
    spans = np.asarray(spans)
    order = rng.permutation(len(spans)) if rng is not None else np.arange(len(spans))
    order = order[np.argsort(spans[order], kind="stable")]
    groups = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    # Sorted by span, a group's longest is its last: a max per group cost a stateless epoch of
    # 20,000 one-step windows 60 ms, every repeat.
    group_spans = [int(spans[group[-1]]) for group in groups]
    full = [g for g, group in enumerate(groups) if len(group) == batch_size]
    rest = [g for g, group in enumerate(groups) if len(group) != batch_size]
    ordered = _arrange_by_span(full, [group_spans[g] for g in full], epoch) + rest
    return [
        Block(
            rows=np.stack([groups[g] for g in members]),
            first_chunks=np.array([n_chunks - group_spans[g] for g in members], dtype=np.int64),
        )
        for members in (ordered[: len(full)], ordered[len(full) :])
        if members
    ]


def _arrange_by_span(members: list[int], member_spans: list[int], epoch: int) -> list[int]:
    """`members` with their spans in an order shuffled by the epoch, each span's members in order."""
    if len(set(member_spans)) <= 1:
        return members
    by_span: dict[int, list[int]] = {}
    for member, span in zip(members, member_spans):
        by_span.setdefault(span, []).append(member)
    queues = {span: iter(queued) for span, queued in by_span.items()}
    arrangement = np.random.default_rng(epoch).permutation(np.asarray(member_spans))
    return [next(queues[int(span)]) for span in arrangement]
