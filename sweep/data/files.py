"""The files a study's data come from: which ones its spec names, reading them to keep in the
study's database, and pointing a spec at copies of them elsewhere (a worker's local cache of the
kept ones, or a folder of shared files given with --data-dir).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from sweep.errors import DataError, SpecError
from sweep.spec import PATH_KEYS, Spec

__all__ = [
    "DATA_CAP_ENV",
    "DATA_CAP_MB",
    "cache_folder",
    "cache_root",
    "data_cap_bytes",
    "kept_name",
    "named_files",
    "read_files",
    "readable_size",
    "reading_from",
    "reading_from_folder",
    "written_to_cache",
    "write_files",
]

# The most data (files as read, in megabytes) a study keeps in its database by default.
DATA_CAP_MB = 256.0
DATA_CAP_ENV = "SWEEP_DATA_CAP_MB"
CACHE_ENV = "SWEEP_CACHE_DIR"


def named_files(spec: Spec) -> dict[str, Path]:
    """The data files the spec's problem names, by the key that names each (path, train, test)."""
    problem = spec.problem
    return {key: Path(getattr(problem, key)) for key in PATH_KEYS if getattr(problem, key, None)}


def kept_name(key: str, path: Path) -> str:
    """The name a file is kept under: its key and its own name, whose suffix says how to read it."""
    return f"{key}-{path.name}"


def data_cap_bytes(cap_mb: float | None = None) -> int:
    """The cap in bytes: `cap_mb` if given, else $SWEEP_DATA_CAP_MB, else DATA_CAP_MB (0 keeps nothing)."""
    if cap_mb is None:
        value = os.environ.get(DATA_CAP_ENV)
        try:
            cap_mb = float(value) if value is not None else DATA_CAP_MB
        except ValueError:
            raise SpecError(f"${DATA_CAP_ENV} is {value!r}; give it a number of megabytes (0 keeps no data), or unset it") from None
    if not 0 <= cap_mb < float("inf"):
        raise SpecError(f"the data cap is {cap_mb!r} MB; give a number of megabytes, 0 or more (0 keeps no data)")
    return int(cap_mb * 1_000_000)


def readable_size(n_bytes: float) -> str:
    """A size as people say it: 900 B, 12 kB, 256 MB, 1.2 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes:.0f} B"


def read_files(spec: Spec) -> dict[str, bytes]:
    """The spec's data files as they are now, by kept name."""
    files = {}
    for key, path in named_files(spec).items():
        try:
            files[kept_name(key, path)] = path.read_bytes()
        except OSError as error:
            raise DataError(f"{path}: cannot read the data file ({error.strerror}); fix problem.{key}") from None
    return files


def reading_from(spec: Spec, folder: Path) -> Spec:
    """The spec with each data file read from `folder`, where it is kept under its kept name."""
    return _with_paths(spec, {key: folder / kept_name(key, path) for key, path in named_files(spec).items()})


def reading_from_folder(spec: Spec, data_dir: Path) -> Spec:
    """The spec with each data file read from `data_dir` under its own name (--data-dir: the
    files shared between machines, wherever each machine mounts them)."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such data folder; give --data-dir a folder that holds the study's data files")
    return _with_paths(spec, {key: data_dir / path.name for key, path in named_files(spec).items()})


def _with_paths(spec: Spec, paths: Mapping[str, Path]) -> Spec:
    problem = spec.problem.model_copy(update={key: str(path) for key, path in paths.items()})
    return spec.model_copy(update={"problem": problem})


def cache_root() -> Path:
    """This machine's cache of sweep's: $SWEEP_CACHE_DIR, else $XDG_CACHE_HOME/sweep, else ~/.cache/sweep."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "sweep")
    return Path(root)


def cache_folder(fingerprint: str) -> Path:
    """Where this machine keeps its copy of the data of one fingerprint: under :func:`cache_root`."""
    return cache_root() / "data" / fingerprint


def write_files(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write the files (kept name: bytes) into `folder`."""
    for name, content in files.items():
        (folder / name).write_bytes(content)


def written_to_cache(fingerprint: str, files: Mapping[str, bytes]) -> Path:
    """Write the files to this machine's cache folder for the fingerprint, whole or not at all
    (a staging folder renamed into place), and return it. Another process that wrote it first wins."""
    folder = cache_folder(fingerprint)
    if folder.is_dir():
        shutil.rmtree(folder)  # a copy that did not load as the study's data
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{fingerprint}-", dir=folder.parent))
    try:
        write_files(staging, files)
        try:
            staging.rename(folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
