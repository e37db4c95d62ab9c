"""The worker processes themselves: what they load before their first job."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sweep.data.problems import load_problem
from sweep.spec import EchoFirstProblem
from sweep.train.pool import RepeatPool, _next_index


def loaded_modules() -> set[str]:
    """The top-level modules this process has imported (run in a worker)."""
    return {name.split(".")[0] for name, module in sys.modules.items() if module is not None}


def resident_bytes_around(n_bytes: int) -> tuple[int, int]:
    """This process's resident memory before it allocates and fills n_bytes, and after it frees
    them (run in a worker)."""
    page = os.sysconf("SC_PAGE_SIZE")
    before = int(Path("/proc/self/statm").read_text().split()[1]) * page
    block = np.ones(n_bytes, np.uint8)
    del block
    return before, int(Path("/proc/self/statm").read_text().split()[1]) * page


@pytest.fixture(scope="module")
def worker() -> Iterator[RepeatPool]:
    """A started pool of one worker."""
    dataset = load_problem(EchoFirstProblem(kind="echo-first", length=4, n_train=4, n_test=2, seed=0))
    with RepeatPool(dataset, n_workers=1) as pool:
        yield pool


@pytest.mark.slow
def test_workers_leave_out_what_tensorflow_would_import_for_nothing(worker: RepeatPool) -> None:
    loaded = worker._executor.submit(loaded_modules).result(timeout=120)
    assert {"tensorflow", "keras"} <= loaded  # the worker is started, TensorFlow and Keras with it
    assert not loaded & {"jax", "pandas", "pyarrow", "IPython"}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator, on Linux")
def test_a_worker_keeps_the_memory_it_frees_for_its_next_call(worker: RepeatPool) -> None:
    """glibc would unmap a freed block of over 32 MB at once, and the next training call would map
    and zero its activations afresh."""
    before, after = worker._executor.submit(resident_bytes_around, 256 << 20).result(timeout=120)
    assert after - before > 200 << 20


def test_workers_take_the_gpus_in_turn_each_growing_its_memory(monkeypatch) -> None:
    """Where the machine has GPUs, TensorFlow would map nearly all of each one's memory in the
    first worker and put every worker on the first GPU."""
    from sweep.train import _common

    gpus = [SimpleNamespace(name=f"/physical_device:GPU:{i}", device_type="GPU") for i in range(2)]
    visible, growing = [], []
    monkeypatch.setattr(_common.tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(_common.tf.config, "set_visible_devices", lambda device, kind: visible.append((device.name, kind)))
    monkeypatch.setattr(_common.tf.config.experimental, "set_memory_growth", lambda device, on: growing.append((device.name, on)))

    started = multiprocessing.get_context("spawn").Value("i", 0)
    for _ in range(3):
        _common.share_gpus(_next_index(started))

    names = [gpu.name for gpu in gpus]
    assert visible == [(names[0], "GPU"), (names[1], "GPU"), (names[0], "GPU")]
    assert growing == [(names[0], True), (names[1], True), (names[0], True)]


def test_without_a_gpu_nothing_is_hidden_or_configured() -> None:
    from sweep.train import _common

    if _common.tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    _common.share_gpus(0)
    assert [device.device_type for device in _common.tf.config.get_visible_devices()] == ["CPU"]
