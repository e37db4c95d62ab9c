"""Worker processes that train repeats.

Workers are started with ``spawn`` (TensorFlow is not fork-safe), receive the study's data once,
and then take plain :class:`~sweep.train.jobs.PackJob` objects and return plain results. They never
touch the study database: only the main process records anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing.context
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.sharedctypes import Synchronized
from typing import TYPE_CHECKING

from sweep.data.problems import Dataset
from sweep.train.compile_cache import use_compile_cache

if TYPE_CHECKING:
    from sweep.train.jobs import PackJob, PackResult

__all__ = ["RepeatPool", "WorkerDied", "default_workers", "end_with_parent", "quiet_stderr"]


class WorkerDied(Exception):
    """A worker process ended without returning (killed, out of memory); its job can be run again."""


class _SpawnedWithoutMain(multiprocessing.context.SpawnProcess):
    """A spawned worker that does not run the parent's main script again.

    ``spawn`` re-imports the parent's ``__main__`` in every child, so a script that calls sweep's
    API without an ``if __name__ == "__main__"`` guard would run itself once per worker, and one
    fed on standard input would fail. Workers need nothing from it: their work is sweep's own.
    """

    def start(self) -> None:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")  # no file, no spec: nothing to re-import
        try:
            super().start()
        finally:
            sys.modules["__main__"] = main


class _SpawnContext(multiprocessing.context.SpawnContext):
    Process = _SpawnedWithoutMain


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


# Libraries that TensorFlow and Keras import where they are installed, each inside a
# `try: ... except ImportError`, for what no worker does: JAX for TF Lite's converter, pandas for
# Keras's data adapters (with pyarrow, 0.3 s), IPython for Keras's file editor (0.15 s). Together
# about 0.9 s of every worker's start, on every run and every restart.
_NOT_IN_WORKERS = ("jax", "pandas", "IPython")


def _start_worker(dataset: Dataset, n_threads: int, parent: int, started: Synchronized) -> None:
    # Ctrl-C reaches the whole process group; the main process alone decides what to keep.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    end_with_parent(parent)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keep_freed_memory()
    use_compile_cache()  # before TensorFlow is imported: it reads its XLA flags once
    for name in _NOT_IN_WORKERS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # importing it raises ImportError
    with quiet_stderr():
        # TensorFlow's native start-up chatter goes straight to file descriptor 2.
        from sweep.train import _common, _worker
    _common.limit_threads(n_threads)
    _common.share_gpus(_next_index(started))
    _worker.set_dataset(dataset)


def _next_index(started: Synchronized) -> int:
    """This worker's number among those its pool started, 0 for the first."""
    with started.get_lock():
        index = started.value
        started.value += 1
    return index


# glibc's mallopt() options.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Up to this size a freed block stays with the process for the next allocation: more than a
# large pack's activations for one update.
KEPT_FREED_BYTES = 1 << 30


def keep_freed_memory() -> None:
    """Have glibc's allocator keep what the process frees, for its next allocations, instead of
    giving it back to the system at once.

    By default glibc maps every block of over 32 MB on its own and unmaps it when freed, and
    hands the top of its heap back when that is free: a worker then pays page faults to map
    and zero the activations of every training and prediction call afresh, as if each call were
    its first. On a virtual machine whose host takes freed memory back (a balloon device's free
    page reporting) that costs up to 3 s per GB, where memory touched again at once costs 0.13 s:
    an epoch on 1,000- and 2,000-step
    subsequences trained 14-18% faster kept, the default study 8% faster. What the process holds
    stays at the peak it reached, which the packs' memory budget already bounds (1.6 GB against
    1.4 GB on 1,344-step sequences).
    """
    mallopt = _linux_libc("mallopt")
    if mallopt is None:
        return  # not glibc: its own allocator's defaults
    mallopt(_M_MMAP_THRESHOLD, KEPT_FREED_BYTES)
    mallopt(_M_TRIM_THRESHOLD, KEPT_FREED_BYTES)


def _linux_libc(name: str) -> Callable[..., int] | None:
    """A function of the C library this Linux process runs on; None elsewhere, or where that
    library has no function of the name."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


# Linux's prctl option that delivers a signal to a process when its parent dies.
_PR_SET_PDEATHSIG = 1
PARENT_WATCH_SECONDS = 1.0


def end_with_parent(parent: int) -> None:
    """Exit when the process that started this worker is gone, whatever ended it (SIGKILL, the
    out-of-memory killer, a crash): a worker otherwise waits for good on a queue whose write end
    it holds itself, with the study's data and TensorFlow in memory. Linux delivers SIGKILL at
    the parent's death; a thread that watches the parent does it elsewhere, and backs the signal
    up. A repeat in training is lost with the worker and trained again by whoever takes the
    point over."""
    prctl = _linux_libc("prctl")
    if prctl is not None:  # else the watch alone
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="sweep-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_WATCH_SECONDS)
    os._exit(1)


def _train(job: PackJob) -> PackResult:
    from sweep.train import _worker

    return _worker.train_job(job)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null: TensorFlow's native start-up chatter, which no
    logging setting silences, goes there; Python's errors are raised as ever."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class RepeatPool:
    """A pool of spawned worker processes, each holding the study's data."""

    def __init__(self, dataset: Dataset, *, n_workers: int) -> None:
        self.dataset = dataset
        self.n_workers = n_workers
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        n_threads = max(1, default_workers() // self.n_workers)
        context = _SpawnContext()
        return ProcessPoolExecutor(
            max_workers=self.n_workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self.dataset, n_threads, os.getpid(), context.Value("i", 0)),
        )

    def run(self, jobs: Sequence[PackJob]) -> Iterator[tuple[PackJob, PackResult | BaseException]]:
        """Yield (job, result or the exception it raised) as jobs finish, in finishing order.

        When a worker dies, the pool is restarted and the jobs still owed are yielded with
        :class:`WorkerDied`. Closing the iterator early cancels the jobs not yet started.
        """
        futures: dict[Future, PackJob] = {self._executor.submit(_train, job): job for job in jobs}
        is_broken = False
        try:
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    job = futures.pop(future)
                    outcome = self.outcome(job, future)
                    is_broken = is_broken or isinstance(outcome, WorkerDied)
                    yield job, outcome
        finally:
            for future in futures:
                future.cancel()
            if is_broken:
                self.restart()

    def submit(self, job: PackJob) -> Future:
        """Start one job on the first free worker; :meth:`outcome` reads it once done."""
        return self._executor.submit(_train, job)

    @staticmethod
    def outcome(job: PackJob, future: Future) -> PackResult | BaseException:
        """A finished job's result, the exception it raised, or WorkerDied where its worker died
        (then every job in flight fails so, and the pool needs :meth:`restart`)."""
        error = future.exception()
        if isinstance(error, BrokenProcessPool):
            return WorkerDied(f"a worker process died while training {job.key} repeats {list(job.repeats)}")
        return error if error is not None else future.result()

    def restart(self) -> None:
        """A new pool in place of a broken one. The broken pool's workers are stopped and waited
        for first: a worker left alive waits on its queue for good, and the process with it."""
        self.terminate()
        self._executor = self._start()

    def close(self) -> None:
        """End the workers once their work is done. They hold nothing to save, and an orderly exit
        spends about 1.4 s in TensorFlow's teardown, at the end of every run: they are stopped."""
        self.terminate()

    def terminate(self) -> None:
        """Stop at once, abandoning the jobs in progress (their finished repeats are stored already)."""
        # ProcessPoolExecutor has no public way to stop running work before Python 3.14.
        for process in list(getattr(self._executor, "_processes", {}).values()):
            process.terminate()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> RepeatPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()
