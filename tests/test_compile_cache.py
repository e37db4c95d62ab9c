"""XLA's compiled programs kept between worker processes and runs."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweep.data.problems import load_problem
from sweep.spec import LagEchoProblem
from sweep.train import compile_cache
from sweep.train._common import XLA_MIN_UNITS
from sweep.train.compile_cache import CACHE_ENV, compile_cache_directory, use_compile_cache
from sweep.train.jobs import PackJob
from sweep.train.pool import RepeatPool


@pytest.fixture
def no_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """No XLA flags, and after the test none of those it set: the workers of later tests inherit them."""
    monkeypatch.setenv("TF_XLA_FLAGS", "")  # remembers that there were none
    monkeypatch.delenv("TF_XLA_FLAGS")


def test_the_cache_lives_in_sweep_s_cache_one_folder_per_tensorflow_version(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("SWEEP_CACHE_DIR", str(tmp_path))  # where sweep keeps the data it reads from a study, too
    directory = compile_cache_directory()
    assert directory.parent == tmp_path / "xla"
    assert directory.name.startswith("tensorflow-2.")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "elsewhere"))
    assert compile_cache_directory().parent == tmp_path / "elsewhere"


@pytest.mark.parametrize("value", ["off", "OFF", "0", "none", ""])
def test_the_cache_can_be_turned_off(monkeypatch, no_flags, value):
    monkeypatch.setenv(CACHE_ENV, value)
    assert compile_cache_directory() is None
    assert use_compile_cache() is None
    assert "TF_XLA_FLAGS" not in os.environ


def test_tensorflow_is_pointed_at_a_writable_cache(monkeypatch, no_flags, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    directory = use_compile_cache()
    assert directory is not None and directory.is_dir()
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_persistent_cache_directory={directory}"


def test_a_cache_that_cannot_be_written_is_not_used(monkeypatch, no_flags):
    # TensorFlow fails the training whose compiled program it cannot write.
    monkeypatch.setenv(CACHE_ENV, "/proc/sweep-cannot-write-here")
    assert use_compile_cache() is None
    assert "TF_XLA_FLAGS" not in os.environ


def test_a_cache_the_user_gave_tensorflow_is_left_as_it_is(monkeypatch, tmp_path):
    flags = f"--tf_xla_persistent_cache_directory={tmp_path / 'mine'} --tf_xla_cpu_global_jit"
    monkeypatch.setenv("TF_XLA_FLAGS", flags)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "sweep's"))
    assert use_compile_cache() is None
    assert os.environ["TF_XLA_FLAGS"] == flags


def test_the_oldest_entries_and_abandoned_writes_are_dropped(monkeypatch, no_flags, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(compile_cache, "MAX_ENTRIES", 2)
    directory = compile_cache_directory()
    directory.mkdir(parents=True)
    for age in range(4):
        entry = directory / f"entry{age}.pb"
        entry.write_bytes(b"x")
        os.utime(entry, (1e9 - age, 1e9 - age))
    (directory / "abandoned.pb.tmp").write_bytes(b"x")
    os.utime(directory / "abandoned.pb.tmp", (1e9, 1e9))
    (directory / "being-written.pb.tmp").write_bytes(b"x")
    use_compile_cache()
    assert sorted(path.name for path in directory.iterdir()) == ["being-written.pb.tmp", "entry0.pb", "entry1.pb"]


def test_a_new_pool_loads_the_programs_an_earlier_one_compiled_and_trains_the_same(monkeypatch, no_flags, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    dataset = load_problem(LagEchoProblem(kind="lag-echo", length=12, lag=2, n_train=8, n_test=4, seed=0))
    job = PackJob(key="L=6 stateful", length=6, mode="stateful", units=XLA_MIN_UNITS, epochs=1, batch_size=4,
                  optimizer="adam", learning_rate=0.01, repeats=(0, 1), seeds=(3, 4))

    def train_in_a_new_pool() -> list[dict[str, float]]:
        with RepeatPool(dataset, n_workers=1) as pool:
            ((_, outcome),) = pool.run([job])
        assert not isinstance(outcome, BaseException), outcome
        return [result.scores for result in outcome.results]

    first = train_in_a_new_pool()
    entries = {path: path.stat().st_ino for path in compile_cache_directory().glob("*.pb")}
    assert entries, "the compiled epoch was not kept"
    again = train_in_a_new_pool()
    # Compiled again, an entry would have been written anew, under a new inode.
    assert {path: path.stat().st_ino for path in compile_cache_directory().glob("*.pb")} == entries
    assert again == first


HOLDER = """
import sys, time
from pathlib import Path
from sweep.train import compile_cache
compile_cache._in_use[0] = Path(sys.argv[1])
with compile_cache.compiling_alone("the program"):
    print("compiling", flush=True)
    time.sleep(1.0)
    (Path(sys.argv[1]) / "entry.pb").write_bytes(b"compiled")  # what TensorFlow keeps, then it trains
    time.sleep(float(sys.argv[2]))
"""


def start_holder(directory: Path, *, trains_for: float) -> subprocess.Popen:
    """Another worker that compiles "the program": its entry appears a second in, and it holds on."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), str(trains_for)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "compiling"
    return holder


def test_a_worker_loads_what_another_is_compiling_instead_of_compiling_it_too(monkeypatch, tmp_path):
    monkeypatch.setattr(compile_cache, "_in_use", [tmp_path])
    monkeypatch.setattr(compile_cache, "_started", set())
    holder = start_holder(tmp_path, trains_for=30)
    try:
        with compile_cache.compiling_alone("the program"):
            # In once the other's entry is there, not once it has finished training.
            assert (tmp_path / "entry.pb").exists() and holder.poll() is None
        with compile_cache.compiling_alone("another program"):  # nobody compiles that: straight in
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_program_kept_before_is_loaded_by_every_worker_at_once(monkeypatch, tmp_path):
    monkeypatch.setattr(compile_cache, "_in_use", [tmp_path])
    holder = start_holder(tmp_path, trains_for=0)
    assert holder.wait(timeout=60) == 0  # compiled and kept
    monkeypatch.setattr(compile_cache, "_started", set())

    def wait(*_: object) -> None:
        raise AssertionError("waited for a program that is kept")

    monkeypatch.setattr(compile_cache, "_wait_for_entry", wait)
    (lock,) = (tmp_path / "locks").glob("*.lock")
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a worker of a later run, loading it
        with compile_cache.compiling_alone("the program"):
            pass


def test_a_first_call_that_fails_lets_the_others_compile_and_keeps_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(compile_cache, "_in_use", [tmp_path])
    monkeypatch.setattr(compile_cache, "_started", set())
    with pytest.raises(RuntimeError, match="out of memory"):
        with compile_cache.compiling_alone("the program"):
            raise RuntimeError("out of memory")
    assert not list((tmp_path / "locks").glob("*.kept"))
    (lock,) = (tmp_path / "locks").glob("*.lock")
    with open(lock) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: raises BlockingIOError if held
