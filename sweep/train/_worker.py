"""What a worker process keeps between jobs, and the training and scoring of one job."""

from __future__ import annotations

import contextlib
import math
import os
import resource
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import replace
from functools import partial
from typing import TypeVar

import numpy as np

from sweep.data import shaping
from sweep.data.problems import Dataset
from sweep.data.scoring import score_all
from sweep.metrics import is_maximized
from sweep.train.compile_cache import compiling_alone
from sweep.train.memory import prediction_rows
from sweep.train.jobs import PackJob, PackResult, RepeatResult
from sweep.train._common import Architecture
from sweep.train._fused import FusedNetwork
from sweep.train._keras_net import KerasNetwork

_EVAL_BATCH = 2048
# How many of each kind of entry a worker keeps, by the first item of their keys. Prepared
# chunks are as large as the data; traced networks are small, and a race visits every point once
# per stage, each stage's packs perhaps of their own size: keeping only the last few points'
# networks would trace them all again at every stage (about 1 s each).
_CACHE_LIMITS = {"chunks": 4}
_NETWORKS_KEPT = 48
T = TypeVar("T")


class _Cache:
    """The study's data, and the prepared chunks and traced networks of the last grid points."""

    def __init__(self) -> None:
        self.dataset: Dataset | None = None
        self.entries: OrderedDict[Hashable, object] = OrderedDict()

    def get(self, key: tuple, make: Callable[[], T]) -> T:
        if key in self.entries:
            self.entries.move_to_end(key)
        else:
            self.entries[key] = make()
            self._evict(key[0])
        return self.entries[key]  # type: ignore[return-value]

    def _evict(self, kind: Hashable) -> None:
        """Drop the least recently used entries of a kind beyond its limit."""
        same_kind = [key for key in self.entries if key[0] == kind]
        for key in same_kind[: max(0, len(same_kind) - _CACHE_LIMITS.get(kind, _NETWORKS_KEPT))]:
            del self.entries[key]


_CACHE = _Cache()


def set_dataset(dataset: Dataset) -> None:
    """Give this process the study's data; every later job trains on it."""
    _CACHE.dataset = dataset
    _CACHE.entries.clear()


def train_job(job: PackJob) -> PackResult:
    """Train and score a job's repeats, fused or one at a time."""
    dataset = _CACHE.dataset
    if dataset is None:
        raise RuntimeError("set_dataset() must be called first")
    train, test, validation = _CACHE.get(
        ("chunks", job.length, job.backward, job.mode), lambda: _prepare(dataset, job.length, job.mode, job.backward)
    )
    arch = _architecture(dataset, job, train)
    score = partial(score_all, task=dataset.task, target_scale=dataset.target_scale)
    scored = _Scored(test=test, validation=validation, mode=job.mode, score=score, units=job.units, memory_bytes=job.memory_bytes)
    trained = _train_fused(job, arch, train, scored) if job.is_fused else _train_one_by_one(job, arch, train, scored)
    return replace(trained, peak_memory_mb=_peak_memory_mb(), process=os.getpid())


def _peak_memory_mb() -> float:
    """This process's peak resident memory (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prepare(
    dataset: Dataset, length: int, mode: str, backward: int | None
) -> tuple[shaping.Chunks, shaping.Chunks, shaping.Chunks | None]:
    """Training samples in the mode's layout, and the test and validation sequences (None
    without a split), sequence-major, for scoring.

    Stateless TBPTT(k1, k2) trains and scores independent windows of k2 steps taken every k1
    steps; stateful TBPTT(k1, k2) trains on chunks of k1 steps and reaches back over them itself.
    """
    def cut(x: np.ndarray, y: np.ndarray, lengths: np.ndarray) -> shaping.Chunks:
        return shaping.cut(x, y, lengths, length=length, mode=mode, backward=backward)

    train = cut(dataset.x_train, dataset.y_train, dataset.train_lengths)
    test = cut(dataset.x_test, dataset.y_test, dataset.test_lengths)
    validation = cut(dataset.x_val, dataset.y_val, dataset.val_lengths) if dataset.has_validation else None
    return shaping.as_mode(train, mode), test, validation


class _Scored:
    """The data a job's networks are scored on: the test data once trained, and the validation
    data, where the study holds some out, after every epoch."""

    def __init__(
        self, *, test: shaping.Chunks, validation: shaping.Chunks | None, mode: str, score: Callable,
        units: int, memory_bytes: int | None,
    ) -> None:
        self.mode, self.score = mode, score
        self.units, self.memory_bytes = units, memory_bytes
        # Each set with its inputs in the mode's layout, made once: the validation data are
        # predicted after every epoch.
        self.test = (test, shaping.as_mode(test, mode))
        self.validation = (validation, shaping.as_mode(validation, mode)) if validation is not None else None

    def test_scores(self, predict: Callable, *, n_repeats: int | None) -> list[dict[str, float]]:
        """Every metric of each network (one per repeat of a pack, or the one network) on the test data."""
        return self._all_scores(predict, *self.test, n_repeats=n_repeats)

    def validation_scores(self, predict: Callable, *, n_repeats: int | None) -> list[dict[str, float]]:
        """Every metric of each network on the validation data; empty without a split."""
        if self.validation is None:
            return [{} for _ in range(n_repeats or 1)]
        return self._all_scores(predict, *self.validation, n_repeats=n_repeats)

    def _all_scores(
        self, predict: Callable, chunks: shaping.Chunks, inputs: shaping.Chunks, *, n_repeats: int | None
    ) -> list[dict[str, float]]:
        outputs = _predict_all(predict, inputs, n_repeats=n_repeats, units=self.units, memory_bytes=self.memory_bytes)
        per_network = outputs if n_repeats is not None else outputs[None]
        return [self.score(shaping.outputs_by_sequence(network, chunks, self.mode), chunks) for network in per_network]


def _architecture(dataset: Dataset, job: PackJob, train: shaping.Chunks) -> Architecture:
    """The networks' architecture for a job: stateless samples are plain subsequences of their own
    length (a window's k2 steps), stateful training keeps k1 and k2 apart."""
    if job.mode == "stateless":
        return Architecture.of(dataset, units=job.units, length=train.x.shape[2], is_masked=train.is_padded)
    return Architecture.of(dataset, units=job.units, length=job.length, is_masked=train.is_padded, backward=job.backward)


def _train_fused(job: PackJob, arch: Architecture, train: shaping.Chunks, scored: _Scored) -> PackResult:
    started = time.perf_counter()
    shared = arch.any_length()
    network = _CACHE.get(
        ("fused", shared, len(job.repeats), job.optimizer, job.learning_rate),
        lambda: FusedNetwork(shared, n_repeats=len(job.repeats), optimizer=job.optimizer, learning_rate=job.learning_rate),
    )
    network.reset(list(job.seeds))
    rngs = [np.random.default_rng(seed) for seed in job.seeds]
    n_repeats = len(job.repeats)
    stopping = _EarlyStopping(job, n_repeats)
    # A stopped repeat still trains inside the pack (its neighbours' shapes need it), but its
    # weights are put back after every epoch: frozen as they were when it stopped.
    frozen: dict[int, list[np.ndarray]] = {}
    losses, validation = [], []
    for epoch in range(job.epochs):
        losses.append(_fused_epoch(network, train, job.batch_size, rngs, epoch=epoch))
        for index, weights in frozen.items():
            network.set_weights(index, weights)
        validation.append(scored.validation_scores(network.predict, n_repeats=n_repeats))
        for index in stopping.update(epoch, validation[-1]):
            frozen[index] = network.get_weights(index)
        if len(frozen) == n_repeats:
            break
    test_scores = scored.test_scores(network.predict, n_repeats=n_repeats)
    seconds = (time.perf_counter() - started) / n_repeats
    results, failures = [], []
    for index, (repeat, seed) in enumerate(zip(job.repeats, job.seeds)):
        trained = stopping.epochs_trained(index, len(losses))
        curve = tuple(float(epoch_losses[index]) for epoch_losses in losses[:trained])
        per_epoch = [epoch[index] for epoch in validation[:trained]]
        result = _result(job, repeat, seed, test_scores[index], seconds, curve, per_epoch, stopping.stopped[index])
        if job.keep_weights:
            result = replace(result, weights=tuple(network.get_weights(index)))
        reason = _divergence(job, result)
        if reason:
            failures.append((repeat, reason))
        else:
            results.append(result)
    return PackResult(results=tuple(results), failures=tuple(failures))


# An epoch improves on a repeat's best only by more than this share of it: fused and alone,
# scores agree to about 1e-6, and a tie on a plateau must not stop one and not the other.
MIN_IMPROVEMENT = 1e-4


class _EarlyStopping:
    """Each repeat's best objective on the validation data so far, and the epoch at which one that
    has not improved on it for `job.patience` epochs stopped (None while it trains on, or when
    its patience ran out only at the last epoch: it trained every epoch)."""

    def __init__(self, job: PackJob, n_repeats: int) -> None:
        self.patience, self.objective, self.epochs = job.patience, job.objective, job.epochs
        self.sign = 1.0 if job.objective and is_maximized(job.objective) else -1.0
        self.best = [-math.inf] * n_repeats
        self.best_epoch = [0] * n_repeats
        self.stopped: list[int | None] = [None] * n_repeats

    def update(self, epoch: int, scores: list[dict[str, float]]) -> list[int]:
        """Take the scores after `epoch` (0-based); returns the repeats that stop there."""
        if not self.patience or not self.objective or not all(scores):  # off, or no validation data
            return []
        stopping = []
        for index, score in enumerate(scores):
            if self.stopped[index] is not None:
                continue
            value = self.sign * score[self.objective]
            best = self.best[index]
            if best == -math.inf or value > best + MIN_IMPROVEMENT * abs(best):
                self.best[index], self.best_epoch[index] = value, epoch
            elif epoch - self.best_epoch[index] >= self.patience and epoch + 1 < self.epochs:
                self.stopped[index] = epoch + 1
                stopping.append(index)
        return stopping

    def epochs_trained(self, index: int, epochs: int) -> int:
        return self.stopped[index] or epochs


def _result(
    job: PackJob, repeat: int, seed: int, scores: dict[str, float], seconds: float,
    losses: tuple[float, ...], validation: list[dict[str, float]], stopped_epoch: int | None = None,
) -> RepeatResult:
    """A finished repeat; `validation` holds its scores on the validation data after each epoch."""
    return RepeatResult(
        repeat=repeat, seed=seed, scores=scores, seconds=seconds, loss_per_epoch=losses,
        validation_scores=validation[-1],
        validation_per_epoch=tuple(epoch[job.objective] for epoch in validation if epoch) if job.objective else (),
        stopped_epoch=stopped_epoch,
    )


def _fused_epoch(network: FusedNetwork, train: shaping.Chunks, batch_size: int, rngs: list, *, epoch: int) -> np.ndarray:
    """One epoch of every repeat of the pack, each on its own batches; each repeat's mean loss.

    Every repeat's block b holds batches of the same spans (see :func:`shaping.plan_batches`),
    so the pack trains the same chunks of each in step.
    """
    spans = train.spans
    plans = [
        shaping.plan_batches(spans, n_chunks=train.n_chunks, batch_size=batch_size, rng=rng, epoch=epoch)
        for rng in rngs
    ]
    total = np.zeros(len(rngs))
    n_updates = 0
    for blocks in zip(*plans):
        index = np.stack([block.rows for block in blocks])
        is_full = index.shape[2] == batch_size or len(plans[0]) == 1
        train_epoch = network.train_epoch if is_full else network.train_epoch_uncompiled
        arrays = (train.x, train.mask, train.y, index, blocks[0].first_chunks)
        with _compiling_alone(network, arrays) if is_full else contextlib.nullcontext():
            total += train_epoch(*arrays).numpy()
        n_updates += blocks[0].n_updates(train.n_chunks)
    return total / n_updates


def _compiling_alone(network: FusedNetwork, arrays: tuple[np.ndarray, ...]) -> contextlib.AbstractContextManager:
    """Under XLA, the epoch's program is compiled once for these shapes by whichever worker starts
    it first; the others load it (see :func:`compile_cache.compiling_alone`)."""
    if not network.arch.is_compiled_with_xla:
        return contextlib.nullcontext()
    shapes = tuple((array.shape, str(array.dtype)) for array in arrays)
    return compiling_alone(repr((network.arch, network.n_repeats, shapes)))


def _train_one_by_one(job: PackJob, arch: Architecture, train: shaping.Chunks, scored: _Scored) -> PackResult:
    network = _CACHE.get(
        ("keras", arch, job.optimizer, job.learning_rate),
        lambda: KerasNetwork(arch, optimizer=job.optimizer, learning_rate=job.learning_rate),
    )
    results, failures = [], []
    for repeat, seed in zip(job.repeats, job.seeds):
        started = time.perf_counter()
        network.reset(seed)
        rng = np.random.default_rng(seed)
        stopping = _EarlyStopping(job, 1)
        losses, validation = [], []
        for epoch in range(job.epochs):
            losses.append(_keras_epoch(network, train, job.batch_size, rng, epoch=epoch))
            validation.append(scored.validation_scores(network.predict, n_repeats=None)[0])
            if stopping.update(epoch, validation[-1:]):
                break
        scores = scored.test_scores(network.predict, n_repeats=None)[0]
        result = _result(job, repeat, seed, scores, time.perf_counter() - started, tuple(losses), validation, stopping.stopped[0])
        if job.keep_weights:
            result = replace(result, weights=tuple(network.get_weights()))
        reason = _divergence(job, result)
        if reason:
            failures.append((repeat, reason))
        else:
            results.append(result)
    return PackResult(results=tuple(results), failures=tuple(failures))


def _keras_epoch(network: KerasNetwork, train: shaping.Chunks, batch_size: int, rng: np.random.Generator, *, epoch: int) -> float:
    total, n_updates = 0.0, 0
    for block in shaping.plan_batches(train.spans, n_chunks=train.n_chunks, batch_size=batch_size, rng=rng, epoch=epoch):
        total += float(network.train_epoch(train.x, train.mask, train.y, block.rows, block.first_chunks))
        n_updates += block.n_updates(train.n_chunks)
    return total / n_updates


def _divergence(job: PackJob, result: RepeatResult) -> str:
    """Why a repeat diverged ("" if it did not): a training loss, or a score on the test or
    validation data, that is no finite number. A network that blows up on its last update keeps
    a finite loss curve and scores infinity: that is no score to rank."""
    if not math.isfinite(result.train_loss):
        what = f"the training loss became {result.train_loss}"
    else:
        broken = [
            (f"{part} {name}", score)
            for part, scores in (("test", result.scores), ("validation", result.validation_scores))
            for name, score in scores.items() if not math.isfinite(score)
        ]
        if not broken:
            return ""
        what = f"its {broken[0][0]} score became {broken[0][1]} (its network blew up)"
    return (
        f"{job.key} repeat {result.repeat}: {what}; a study's settings are fixed, so run the "
        "study file with a lower training.learning_rate (or grid.learning_rate) under a new --name"
    )


def _predict_all(
    predict: Callable, test: shaping.Chunks, *, n_repeats: int | None, units: int, memory_bytes: int | None
) -> np.ndarray:
    """Predictions in batches of sequences, as many at once as the pack's memory holds; with a
    pack, the repeat axis comes first."""
    most = _EVAL_BATCH if n_repeats is None else max(1, _EVAL_BATCH // n_repeats)
    steps = test.x.shape[1] * test.x.shape[2]
    step = prediction_rows(n_repeats=n_repeats or 1, steps=steps, units=units, budget=memory_bytes, most=most)
    parts = [
        predict(test.x[start : start + step], test.mask[start : start + step]).numpy()
        for start in range(0, test.n_sequences, step)
    ]
    return np.concatenate(parts, axis=0 if n_repeats is None else 1)
