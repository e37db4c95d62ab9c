"""Where XLA keeps the programs it compiled, between worker processes and between runs.

Compiling a grid point's training loop under XLA costs 1-2 s of CPU per new shape and worker
process, which on small data is most of a point's time. TensorFlow can keep each compiled
program in a directory and load it when the same program is compiled again: by the other
workers of a run, by the next run of a study, or by another study of the same shapes. An entry
is used only when its program matches the one being compiled exactly (TensorFlow compares them
whole), and is written to a temporary file first and then moved into place, so that workers
sharing the directory never read half an entry.

The directory is ``$SWEEP_COMPILE_CACHE``, else ``xla`` in sweep's cache on this machine
(``$SWEEP_CACHE_DIR``, else ``~/.cache/sweep``), with one folder per TensorFlow version;
``SWEEP_COMPILE_CACHE=off`` compiles every time.
TensorFlow fails a compilation whose entry it cannot write, so a directory that cannot be written,
or a disk with little room left, is not used; nor is a path with a space, which TensorFlow's flags
cannot carry.

Workers that start the same program at once (the packs of one point) would each compile it, on
the same cores: one compiles it while the others wait for its entry (:func:`compiling_alone`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO

from sweep.data.files import cache_root

__all__ = ["CACHE_ENV", "compile_cache_directory", "compiling_alone", "use_compile_cache"]

CACHE_ENV = "SWEEP_COMPILE_CACHE"
_OFF = {"", "0", "off", "no", "none", "false"}
_FLAG = "--tf_xla_persistent_cache_directory"
# An entry is about 0.5 MB: keep the most recently written, so that the cache stays near 200 MB.
MAX_ENTRIES = 400
# Below this much free room an entry that fails to be written would fail its training.
MIN_FREE_BYTES = 1 << 30


def compile_cache_directory() -> Path | None:
    """The directory for this TensorFlow version's compiled programs; None where turned off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None and value.strip().lower() in _OFF:
        return None
    base = Path(value).expanduser() if value else cache_root() / "xla"
    try:
        tensorflow = version("tensorflow")
    except PackageNotFoundError:
        tensorflow = "unknown"
    return base / f"tensorflow-{tensorflow}"


def use_compile_cache() -> Path | None:
    """Have XLA keep and reuse its compiled programs in :func:`compile_cache_directory`, where it
    can be written; the directory used, or None. Call before TensorFlow is imported: it reads its
    flags once. A cache the user gave TensorFlow directly is theirs and left as it is."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    directory = compile_cache_directory()
    if _FLAG in flags or directory is None or " " in str(directory) or not _is_usable(directory):
        return None
    _prune(directory)
    os.environ["TF_XLA_FLAGS"] = f"{flags} {_FLAG}={directory}".strip()
    _in_use[0] = directory
    return directory


# The directory this process's TensorFlow keeps its programs in (None: none), and the programs
# this process has started, by key.
_in_use: list[Path | None] = [None]
_started: set[str] = set()
_POLL_SECONDS = 0.05
# However long a compilation takes, a worker waits no longer than this for another's.
MAX_WAIT_SECONDS = 300.0


@contextlib.contextmanager
def compiling_alone(key: str) -> Iterator[None]:
    """Around the first call, in this process, of a compiled program named `key` (anything that
    tells its shapes apart). Where another worker is compiling the same key, wait until it has
    kept its entry (or has finished, or died), so that this call loads the program instead of
    compiling it a second time on the same cores. Nothing where no cache is in use, the key was
    started here before, or its program was kept already (then every worker loads it at once)."""
    directory = _in_use[0]
    if directory is None or key in _started:
        yield
        return
    _started.add(key)
    name = directory / "locks" / hashlib.sha256(key.encode()).hexdigest()[:32]
    kept = name.with_suffix(".kept")
    handle = None if kept.exists() else _open_lock(name.with_suffix(".lock"))
    if handle is None:  # kept already, or no lock to be had: compile (or load) as if alone
        yield
        return
    with handle:
        if _try_lock(handle):
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                kept.touch()
            return
        _wait_for_entry(directory, handle)
    yield


def _open_lock(path: Path) -> IO[str] | None:
    try:
        path.parent.mkdir(exist_ok=True)
        return open(path, "a+")
    except OSError:
        return None


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for_entry(directory: Path, handle: IO[str]) -> None:
    """Until a new entry is in the directory or the lock's holder lets go. An entry of another
    program may wake it early: then this process compiles its own, as without the lock."""
    before = set(directory.glob("*.pb"))
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        if set(directory.glob("*.pb")) - before:
            return
        if _try_lock(handle):
            fcntl.flock(handle, fcntl.LOCK_UN)
            return


def _oldest_beyond(paths: Iterator[Path]) -> list[Path]:
    """The paths beyond the MAX_ENTRIES most recently written."""
    return sorted(paths, key=lambda path: path.stat().st_mtime, reverse=True)[MAX_ENTRIES:]


def _is_usable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
        return shutil.disk_usage(directory).free >= MIN_FREE_BYTES
    except OSError:
        return False


def _prune(directory: Path) -> None:
    """Drop the oldest entries beyond MAX_ENTRIES, and temporary files of writes that never ended."""
    try:
        an_hour_ago = time.time() - 3600
        stale = [
            path for path in [*directory.glob("*.tmp"), *directory.glob("locks/*.lock")] if path.stat().st_mtime < an_hour_ago
        ]
        for path in _oldest_beyond(directory.glob("*.pb")) + _oldest_beyond(directory.glob("locks/*.kept")) + stale:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # another worker pruned it first
