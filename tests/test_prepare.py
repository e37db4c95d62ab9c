from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sweep.data import shaping
from sweep.data.shaping import Chunks, batch_groups, by_sequence, chunk, index_blocks, n_chunks, pad_front, plan_batches, stateless

SMALL = settings(max_examples=60, deadline=None)
values = st.floats(-100, 100, allow_nan=False, width=32)


@st.composite
def shapes(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """(sequences, steps, features, subsequence length)."""
    n = draw(st.integers(1, 6))
    steps = draw(st.integers(1, 24))
    features = draw(st.integers(1, 3))
    length = draw(st.integers(1, steps))
    return n, steps, features, length


@st.composite
def problems(draw: st.DrawFn, per_step: bool) -> tuple[np.ndarray, np.ndarray, int]:
    n, steps, features, length = draw(shapes())
    outputs = draw(st.integers(1, 3))
    x = draw(arrays(np.float32, (n, steps, features), elements=values))
    y_shape = (n, steps, outputs) if per_step else (n, outputs)
    y = draw(arrays(np.float32, y_shape, elements=values))
    return x, y, length


def traced(n: int, steps: int, features: int = 1) -> np.ndarray:
    """Inputs whose every value names its sequence and step: 1000 * (sequence + 1) + step."""
    x = 1000.0 * (np.arange(n)[:, None, None] + 1) + np.arange(steps)[None, :, None]
    return np.repeat(x, features, axis=2).astype(np.float32)


def real_steps(array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Chunked (n, k, L, ...) back to (n, T, ...) by dropping the masked steps."""
    n = array.shape[0]
    flat = array.reshape(n, -1, *array.shape[3:])
    return flat[mask.reshape(n, -1)].reshape(n, -1, *array.shape[3:])


@SMALL
@given(shapes(), st.data())
def test_pad_front_pads_fewer_than_length_zero_steps_at_the_front(shape: tuple, data: st.DataObject) -> None:
    n, steps, features, length = shape
    x = data.draw(arrays(np.float32, (n, steps, features), elements=values))
    padded, mask = pad_front(x, length)
    n_pad = padded.shape[1] - steps
    assert padded.shape == (n, n_chunks(steps, length) * length, features)
    assert padded.shape[1] % length == 0
    assert 0 <= n_pad < length
    assert mask.shape == padded.shape[:2]
    assert not mask[:, :n_pad].any()
    assert mask[:, n_pad:].all()
    assert np.array_equal(padded[:, n_pad:], x)
    assert not padded[:, :n_pad].any()


@SMALL
@given(problems(per_step=False))
def test_joining_the_real_steps_of_the_subsequences_gives_back_each_sequence(problem: tuple) -> None:
    x, y, length = problem
    chunks = chunk(x, y, length)
    assert chunks.x.shape == (x.shape[0], math.ceil(x.shape[1] / length), length, x.shape[2])
    assert np.array_equal(real_steps(chunks.x, chunks.mask), x)
    assert np.array_equal(chunks.y, y)
    assert not chunks.is_per_step


@SMALL
@given(problems(per_step=False))
def test_only_the_front_of_the_first_subsequence_is_masked(problem: tuple) -> None:
    x, y, length = problem
    chunks = chunk(x, y, length)
    n_pad = chunks.n_chunks * length - x.shape[1]
    expected_first = np.arange(length) >= n_pad
    assert n_pad < length
    assert np.array_equal(chunks.mask[:, 0], np.broadcast_to(expected_first, (x.shape[0], length)))
    assert chunks.mask[:, 1:].all()
    assert not chunks.x[~chunks.mask].any()
    assert chunks.is_padded == (n_pad > 0)


@SMALL
@given(problems(per_step=True))
def test_per_step_targets_are_split_exactly_like_the_inputs(problem: tuple) -> None:
    x, y, length = problem
    chunks = chunk(x, y, length)
    assert chunks.is_per_step
    assert chunks.y.shape == (*chunks.mask.shape, y.shape[2])
    assert np.array_equal(real_steps(chunks.y, chunks.mask), y)
    assert not chunks.y[~chunks.mask].any()


@SMALL
@given(problems(per_step=False))
def test_stateless_gives_n_times_k_samples_each_with_its_sequence_target(problem: tuple) -> None:
    x, y, length = problem
    chunks = chunk(x, y, length)
    n, k = chunks.n_sequences, chunks.n_chunks
    flat = stateless(chunks)
    assert flat.x.shape == (n * k, 1, length, x.shape[2])
    assert flat.mask.shape == (n * k, 1, length)
    assert flat.y.shape == (n * k, y.shape[1])
    for i in range(n):
        for j in range(k):
            assert np.array_equal(flat.x[i * k + j, 0], chunks.x[i, j])
            assert np.array_equal(flat.mask[i * k + j, 0], chunks.mask[i, j])
            assert np.array_equal(flat.y[i * k + j], y[i])


@SMALL
@given(problems(per_step=True))
def test_stateless_keeps_per_step_targets_with_their_subsequence(problem: tuple) -> None:
    x, y, length = problem
    chunks = chunk(x, y, length)
    n, k = chunks.n_sequences, chunks.n_chunks
    flat = stateless(chunks)
    assert flat.is_per_step
    assert flat.y.shape == (n * k, 1, length, y.shape[2])
    for i in range(n):
        for j in range(k):
            assert np.array_equal(flat.y[i * k + j, 0], chunks.y[i, j])


@SMALL
@given(st.integers(1, 40), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_shuffled_batches_are_a_permutation_in_batches_of_at_most_b(n_samples: int, batch_size: int, seed: int) -> None:
    groups = batch_groups(n_samples, batch_size, np.random.default_rng(seed))
    assert len(groups) == math.ceil(n_samples / batch_size)
    assert np.array_equal(np.sort(np.concatenate(groups)), np.arange(n_samples))
    assert all(len(group) == batch_size for group in groups[:-1])
    assert 1 <= len(groups[-1]) <= batch_size


@SMALL
@given(st.integers(1, 40), st.integers(1, 12))
def test_batches_without_an_rng_keep_the_sample_order(n_samples: int, batch_size: int) -> None:
    groups = batch_groups(n_samples, batch_size, None)
    assert np.array_equal(np.concatenate(groups), np.arange(n_samples))


def gathered(chunks: Chunks, groups: list[np.ndarray]) -> list[Chunks]:
    """What training gathers for each block of `index_blocks`: the samples of its groups."""
    return [Chunks(x=chunks.x[index], mask=chunks.mask[index], y=chunks.y[index]) for index in index_blocks(groups)]


def training_batches(blocks: list[Chunks]) -> list[list[Chunks]]:
    """Walk blocks -> groups -> chunks, as training does: one list of k batches per group."""
    return [
        [Chunks(x=block.x[g, :, j], mask=block.mask[g, :, j], y=block.y[g]) for j in range(block.x.shape[2])]
        for block in blocks
        for g in range(block.x.shape[0])
    ]


@SMALL
@given(shapes(), st.integers(1, 8), st.integers(0, 2**32 - 1), st.booleans())
def test_stateful_batches_hold_the_next_chunk_of_the_same_sequences_in_the_same_rows(
    shape: tuple, batch_size: int, seed: int, per_step: bool
) -> None:
    n, steps, features, length = shape
    x = traced(n, steps, features)
    y = -x if per_step else np.arange(n, dtype=np.float32)[:, None]
    chunks = chunk(x, y, length)
    groups = batch_groups(n, batch_size, np.random.default_rng(seed))
    walked = training_batches(gathered(chunks, groups))
    assert len(walked) == len(groups)
    for group, batches in zip(groups, walked):
        assert len(batches) == chunks.n_chunks
        for j, batch in enumerate(batches):
            assert np.array_equal(batch.x, chunks.x[group, j])
            assert np.array_equal(batch.mask, chunks.mask[group, j])
            assert np.array_equal(batch.y, chunks.y[group])


@SMALL
@given(shapes(), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_every_sequence_is_trained_once_per_epoch_at_one_row(shape: tuple, batch_size: int, seed: int) -> None:
    n, steps, _, length = shape
    chunks = chunk(traced(n, steps), np.zeros((n, 1), np.float32), length)
    blocks = gathered(chunks, batch_groups(n, batch_size, np.random.default_rng(seed)))
    seen = []
    for batches in training_batches(blocks):
        rows = [batch.x[:, -1, 0] // 1000 - 1 for batch in batches]
        for batch in batches:
            real = batch.mask[:, 0]
            assert np.array_equal(batch.x[real, 0, 0] // 1000 - 1, rows[-1][real])
        seen.extend(rows[-1].astype(int))
    assert sorted(seen) == list(range(n))


@SMALL
@given(st.integers(1, 30), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_full_groups_share_a_block_and_a_smaller_last_group_has_its_own(n: int, batch_size: int, seed: int) -> None:
    chunks = chunk(traced(n, 4), np.zeros((n, 1), np.float32), 2)
    blocks = gathered(chunks, batch_groups(n, batch_size, np.random.default_rng(seed)))
    full, rest = divmod(n, batch_size)
    sizes = [(block.x.shape[0], block.x.shape[1]) for block in blocks]
    expected = ([(full, batch_size)] if full else []) + ([(1, rest)] if rest else [])
    assert sizes == expected


def test_five_steps_in_pairs_pad_one_step_at_the_front() -> None:
    x = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], dtype=np.float32)[:, :, None]
    chunks = chunk(x, np.array([[1.0], [0.0]], np.float32), 2)
    assert chunks.x[..., 0].tolist() == [[[0, 1], [2, 3], [4, 5]], [[0, 6], [7, 8], [9, 10]]]
    assert chunks.mask.tolist() == [[[False, True], [True, True], [True, True]]] * 2
    assert chunks.n_chunks == 3
    assert chunks.is_padded


def test_pad_front_of_five_steps_to_pairs() -> None:
    padded, mask = pad_front(np.array([[1, 2, 3, 4, 5]], np.float32), 2)
    assert padded.tolist() == [[0, 1, 2, 3, 4, 5]]
    assert mask.tolist() == [[False, True, True, True, True, True]]


def test_a_length_that_divides_the_sequence_pads_nothing() -> None:
    chunks = chunk(np.arange(1, 7, dtype=np.float32).reshape(1, 6, 1), np.ones((1, 1), np.float32), 3)
    assert chunks.x[0, :, :, 0].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert chunks.mask.all()
    assert not chunks.is_padded


def test_per_step_targets_of_five_steps_in_pairs() -> None:
    x = np.arange(1, 6, dtype=np.float32).reshape(1, 5, 1)
    chunks = chunk(x, 10 * x, 2)
    assert chunks.y[0, :, :, 0].tolist() == [[0, 10], [20, 30], [40, 50]]


def test_stateless_five_steps_in_pairs() -> None:
    x = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], dtype=np.float32)[:, :, None]
    flat = stateless(chunk(x, np.array([[1.0], [0.0]], np.float32), 2))
    assert flat.x[:, 0, :, 0].tolist() == [[0, 1], [2, 3], [4, 5], [0, 6], [7, 8], [9, 10]]
    assert flat.y[:, 0].tolist() == [1, 1, 1, 0, 0, 0]
    assert flat.n_chunks == 1


def test_five_samples_in_batches_of_two() -> None:
    assert [group.tolist() for group in batch_groups(5, 2, None)] == [[0, 1], [2, 3], [4]]


def test_index_blocks_of_five_sequences_in_twos() -> None:
    x = np.arange(1, 6, dtype=np.float32)[:, None, None].repeat(4, axis=1)
    chunks = chunk(x, np.arange(5, dtype=np.float32)[:, None], 2)
    full, last = gathered(chunks, [np.array([3, 0]), np.array([4, 1]), np.array([2])])
    assert full.x.shape == (2, 2, 2, 2, 1)
    assert last.x.shape == (1, 1, 2, 2, 1)
    assert full.x[:, :, :, 0, 0].tolist() == [[[4, 4], [1, 1]], [[5, 5], [2, 2]]]
    assert full.y[..., 0].tolist() == [[3, 0], [4, 1]]
    assert last.y[..., 0].tolist() == [[2]]


@pytest.mark.parametrize("length", [0, 6])
def test_a_length_outside_one_to_t_is_refused(length: int) -> None:
    with pytest.raises(ValueError, match="between 1 and the sequence length 5"):
        chunk(np.zeros((1, 5, 1), np.float32), np.zeros((1, 1), np.float32), length)


@st.composite
def variable_lengths(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    """(each sequence's length, the padded steps T, the subsequence length)."""
    n = draw(st.integers(1, 30))
    steps = draw(st.integers(1, 24))
    lengths = np.array(draw(st.lists(st.integers(1, steps), min_size=n, max_size=n)))
    return lengths, steps, draw(st.integers(1, steps))


def variable_chunks(lengths: np.ndarray, steps: int, length: int) -> Chunks:
    x = traced(len(lengths), steps)
    x[np.arange(steps)[None, :] < steps - lengths[:, None]] = 0.0
    return chunk(x, np.arange(len(lengths), dtype=np.float32)[:, None], length, lengths)


@SMALL
@given(variable_lengths())
def test_a_sequence_of_its_own_length_is_its_last_steps_and_spans_its_last_chunks(problem: tuple) -> None:
    lengths, steps, length = problem
    chunks = variable_chunks(lengths, steps, length)
    assert np.array_equal(chunks.mask.reshape(len(lengths), -1).sum(axis=1), lengths)
    assert np.array_equal(chunks.spans, -(-lengths // length))
    for i, n_steps in enumerate(lengths):
        real = chunks.x[i][chunks.mask[i]][:, 0]
        assert real.tolist() == (1000.0 * (i + 1) + np.arange(steps - n_steps, steps)).tolist()


@SMALL
@given(variable_lengths())
def test_stateless_keeps_every_subsequence_with_a_real_step_and_no_other(problem: tuple) -> None:
    lengths, steps, length = problem
    chunks = variable_chunks(lengths, steps, length)
    flat = stateless(chunks)
    assert flat.n_sequences == int(np.sum(-(-lengths // length)))
    assert flat.mask.any(axis=(1, 2)).all()
    assert np.array_equal(flat.y[:, 0], np.repeat(np.arange(len(lengths)), chunks.spans))
    restored = by_sequence(flat.x, chunks)
    assert np.array_equal(restored[chunks.mask], chunks.x[chunks.mask])


@SMALL
@given(variable_lengths(), st.integers(1, 8), st.integers(0, 2**32 - 1), st.integers(0, 3))
def test_planned_batches_train_every_sequence_once_from_the_first_chunk_any_of_them_needs(
    problem: tuple, batch_size: int, seed: int, epoch: int
) -> None:
    lengths, steps, length = problem
    chunks = variable_chunks(lengths, steps, length)
    blocks = plan_batches(chunks.spans, n_chunks=chunks.n_chunks, batch_size=batch_size, rng=np.random.default_rng(seed), epoch=epoch)
    rows = np.concatenate([block.rows.ravel() for block in blocks])
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    full, rest = divmod(len(lengths), batch_size)
    assert [block.rows.shape for block in blocks] == ([(full, batch_size)] if full else []) + ([(1, rest)] if rest else [])
    for block in blocks:
        for group, first in zip(block.rows, block.first_chunks):
            has_real = chunks.mask[group].any(axis=(0, 2))
            assert first == int(np.argmax(has_real))  # the first chunk in which any of them has a real step
            assert has_real[first:].all()


@SMALL
@given(variable_lengths(), st.integers(1, 8), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 3))
def test_every_repeat_trains_batches_of_the_same_spans_in_the_same_order(
    problem: tuple, batch_size: int, seed: int, other_seed: int, epoch: int
) -> None:
    """What lets a fused pack train its repeats' batches in step: only the sequences differ."""
    lengths, steps, length = problem
    spans = -(-lengths // length)
    k = -(-steps // length)
    one, other = (plan_batches(spans, n_chunks=k, batch_size=batch_size, rng=np.random.default_rng(s), epoch=epoch) for s in (seed, other_seed))
    assert len(one) == len(other)
    for a, b in zip(one, other):
        assert np.array_equal(a.first_chunks, b.first_chunks)
        assert np.array_equal(np.sort(spans[a.rows], axis=1), np.sort(spans[b.rows], axis=1))


@SMALL
@given(st.integers(1, 40), st.integers(1, 12), st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(0, 3))
def test_sequences_of_one_length_are_planned_as_shuffled_batches_were_before(
    n: int, batch_size: int, seed: int, k: int, epoch: int
) -> None:
    """Studies stored before variable lengths existed resume with the same batches."""
    before = index_blocks(batch_groups(n, batch_size, np.random.default_rng(seed)))
    planned = plan_batches(np.full(n, k), n_chunks=k, batch_size=batch_size, rng=np.random.default_rng(seed), epoch=epoch)
    assert [block.rows.tolist() for block in planned] == [index.tolist() for index in before]
    assert all((block.first_chunks == 0).all() for block in planned)


def test_batches_hold_sequences_of_similar_spans() -> None:
    spans = np.array([1, 3, 1, 2, 3, 1, 2, 2, 3])
    (block,) = plan_batches(spans, n_chunks=3, batch_size=3, rng=np.random.default_rng(0), epoch=0)
    assert sorted(spans[group].tolist() for group in block.rows) == [[1, 1, 1], [2, 2, 2], [3, 3, 3]]
    assert block.first_chunks.tolist() == [3 - spans[group][0] for group in block.rows]


def test_windows_of_the_stride_are_the_chunks() -> None:
    x = np.arange(1, 11, dtype=np.float32).reshape(1, 10, 1)
    windows, chunks = shaping.windows(x, np.zeros((1, 1)), 3, 3), shaping.chunk(x, np.zeros((1, 1)), 3)
    assert np.array_equal(windows.x, chunks.x) and np.array_equal(windows.mask, chunks.mask)


def test_overlapping_windows_end_every_stride_steps_at_the_sequence_end() -> None:
    """k2 = 5 steps every k1 = 3: the last window ends at the last step, earlier ones 3 steps
    apart, and the steps before the sequence are masked padding."""
    x = np.arange(1, 11, dtype=np.float32).reshape(1, 10, 1)
    windows = shaping.windows(x, np.zeros((1, 1)), 3, 5)
    assert windows.x[0, :, :, 0].tolist() == [[0, 0, 0, 0, 1], [0, 1, 2, 3, 4], [3, 4, 5, 6, 7], [6, 7, 8, 9, 10]]
    assert windows.mask[0].sum(axis=1).tolist() == [1, 4, 5, 5]


def test_windows_further_apart_than_their_width_leave_steps_out() -> None:
    x = np.arange(1, 11, dtype=np.float32).reshape(1, 10, 1)
    windows = shaping.windows(x, np.zeros((1, 1)), 4, 2)
    assert windows.x[0, :, :, 0].tolist() == [[1, 2], [5, 6], [9, 10]]
    assert windows.mask.all()


def test_stateless_windows_carry_their_targets_and_skip_windows_of_padding_alone() -> None:
    """Per step, each window keeps its own steps' targets; a shorter sequence's windows before
    its start are no samples."""
    x = np.arange(1, 21, dtype=np.float32).reshape(2, 10, 1)
    y = x * 10
    samples = shaping.stateless(shaping.windows(x, y, 3, 5, lengths=np.array([10, 4])))
    assert samples.x.shape == (6, 1, 5, 1)  # 4 windows of the first sequence, 2 of the second
    assert np.array_equal(samples.y[..., 0], np.where(samples.mask, samples.x[..., 0] * 10, samples.y[..., 0]))
    assert samples.mask[-1, 0].tolist() == [False, True, True, True, True]
    assert samples.x[-1, 0, 1:, 0].tolist() == [17, 18, 19, 20]


@pytest.mark.parametrize(("stride", "width"), [(3, 5), (4, 2), (1, 4), (3, 3)])
def test_the_padding_share_of_windows_is_that_of_the_windows_made(stride: int, width: int) -> None:
    lengths = np.array([10, 4, 7, 7])
    windows = shaping.windows(np.ones((4, 10, 1)), np.zeros((4, 1)), stride, width, lengths)
    samples = shaping.stateless(windows)
    n_samples, share = shaping.padding_share(lengths, stride, width)
    assert n_samples == samples.x.shape[0]
    assert share == pytest.approx(1.0 - samples.mask.mean())
