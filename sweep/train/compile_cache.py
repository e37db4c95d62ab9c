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
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sweep.data.files import cache_root

__all__ = ["CACHE_ENV", "compile_cache_directory", "use_compile_cache"]

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
    return directory


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
        entries = sorted(directory.glob("*.pb"), key=lambda path: path.stat().st_mtime, reverse=True)
        an_hour_ago = time.time() - 3600
        stale = [path for path in directory.glob("*.tmp") if path.stat().st_mtime < an_hour_ago]
        for path in entries[MAX_ENTRIES:] + stale:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # another worker pruned it first
