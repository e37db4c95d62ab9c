"""sweep from Python: the same studies, guarantees and results as the ``sweep`` command.

    import sweep

    spec = sweep.apply_overrides(sweep.load_spec("studies/echo_first.toml"), repeats=3, epochs=1)
    study = sweep.Study.create(spec, storage="sqlite:///sweep.db")
    study.run(workers=2)
    study.dataframe()          # one row per grid point, best first
    study.repeats_dataframe()  # one row per repeat of each point
    study.write_report("echo-first.html")

The command line is a thin layer over this module: what it does, a notebook can do.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from sweep.data import files as data_files
from sweep.data.baselines import score_baselines
from sweep.data.problems import Dataset, DataSummary, describe, load_data, load_problem
from sweep.errors import DataError, SpecError, StorageError, SweepError
from sweep.export.contract import ExportError
from sweep.export.exporting import Exported, export_repeat, refit, representative_repeat
from sweep.report.choice import Choice, chosen_point
from sweep.report.convergence import Convergence, point_convergence
from sweep.report.skill import Yardstick, yardstick_of
from sweep.report.table import PointRow, point_row, rows
from sweep.run.runner import NoProgress, Progress, run_study
from sweep.spec import GridPoint, SeriesProblem, Spec, grid_points, uses_suggestion
from sweep.store import protocol, record
from sweep.store.connection import Liveness, database_exists, open_storage
from sweep.store.optuna_private import storage_of
from sweep.store.record import Results, StoredPoint, read_results
from sweep.train.memory import parse_memory
from sweep.train.pool import default_workers

if TYPE_CHECKING:
    from sweep.data.suggest import Suggestion
    import pandas as pd

    from sweep.report.summary import Report

__all__ = ["RunOutcome", "Study", "StudySummary", "WorkerRow", "describe_data", "list_studies"]

log = logging.getLogger("sweep")
# The least time between two refreshes of the dashboard's note during a run.
NOTE_EVERY_SECONDS = 10.0

# A storage URL (None: $SWEEP_STORAGE, else sqlite:///sweep.db here), or a storage already open.
StorageLike = str | optuna.storages.BaseStorage | None


def _may_hold_studies(storage: StorageLike) -> bool:
    """False only for a SQLite file that is not there yet: opening it would create it."""
    return not (storage is None or isinstance(storage, str)) or database_exists(_checked_storage(storage))


def _checked_storage(storage: StorageLike) -> StorageLike:
    if storage is None or isinstance(storage, (str, optuna.storages.BaseStorage)):
        return storage
    raise StorageError(
        f"storage must be a database URL (a str such as 'sqlite:///sweep.db') or an open Optuna storage, "
        f"not {type(storage).__name__}"
    )


def _opened(storage: StorageLike, *, liveness: Liveness | None = None, must_exist: bool = False):
    if _checked_storage(storage) is None or isinstance(storage, str):
        return open_storage(storage, liveness=liveness, must_exist=must_exist)
    return storage


@dataclass(frozen=True)
class WorkerRow:
    """A process working on a study: the point it holds (None: it watches, or holds none), that
    point's last heartbeat, and its connections to the database (None where they cannot be counted)."""

    worker: str
    point: str | None
    last_heartbeat: datetime | None
    connections: int | None


@dataclass(frozen=True)
class RunOutcome:
    """What one call of :meth:`Study.run` did, and where the study stands after it."""

    n_trained: int  # grid points this call finished or failed
    counts: dict[str, int]  # done, running, waiting, failed: the whole study's points

    @property
    def n_failed(self) -> int:
        return self.counts["failed"]


@dataclass(frozen=True)
class StudySummary:
    """A study in a storage, as ``sweep list`` shows it; `is_sweep` False for any other."""

    name: str
    is_sweep: bool
    n_points: int = 0
    counts: dict[str, int] | None = None
    best_key: str | None = None
    best_mean: float | None = None
    best_skill: float | None = None  # against the best baseline (None: no baseline)
    is_below_baseline: bool = False
    problem: str = ""  # why it cannot be read (a damaged spec, a newer format)


class Study:
    """A sweep study in its database: its spec, its grid, and the Optuna study that stores it.

    Make one with :meth:`create` (from a spec: creates the study or resumes it, enqueuing any
    missing grid point) or :meth:`open` (an existing study, by name).
    """

    def __init__(self, optuna_study: optuna.Study, spec: Spec, *, data_dir: str | Path | None = None) -> None:
        self.optuna_study = optuna_study
        self.spec = spec
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._data: tuple[Dataset, list[GridPoint]] | None = None

    @classmethod
    def create(
        cls,
        spec: Spec,
        *,
        storage: StorageLike = None,
        liveness: Liveness | None = Liveness(),
        data_cap_mb: float | None = None,
    ) -> Study:
        """The study of `spec`, created or resumed, with its whole grid enqueued.

        The data and the grid are checked before the database is opened: bad input writes nothing.
        A study of the same name with other settings or data is refused (StorageError). With
        `liveness` (the default), a worker that dies has its point taken over by another.

        The data files are kept in the database too, so that a worker on any machine needs only
        the study's name and URL, unless they are over `data_cap_mb` megabytes (default:
        $SWEEP_DATA_CAP_MB, else 256; 0 keeps none): then a warning says so, and every machine
        needs the files (at the same path, or with ``data_dir`` in :meth:`open`).
        """
        if not isinstance(spec, Spec):
            raise SpecError(
                f"Study.create takes a Spec (from sweep.load_spec or sweep.spec_from_dict), not {type(spec).__name__}"
            )
        data_cap = data_files.data_cap_bytes(data_cap_mb)
        # A study made before the validation split resumes without it: read from a database
        # that is there already (opening a new one would create it before the data are checked).
        opened = None
        if _may_hold_studies(storage):
            opened = _opened(storage, liveness=liveness)
            spec = protocol.as_resumed(opened, spec)
        dataset = load_data(spec)
        points, suggestion = _grid(spec, dataset)
        study = cls(_enqueued(opened or _opened(storage, liveness=liveness), spec, dataset, points), spec)
        if suggestion is not None:
            protocol.store_suggestion(study.optuna_study, suggestion.to_dict())
        study._data = (dataset, points)
        study._keep_data_files(dataset.fingerprint, cap=data_cap)
        study.annotate()
        return study

    @classmethod
    def open(
        cls, name: str, *, storage: StorageLike = None, liveness: Liveness | None = None, data_dir: str | Path | None = None
    ) -> Study:
        """An existing study, by name. Reading it writes nothing; :meth:`run` first loads its data
        and checks them against the study's (the way to join a shared study as a worker).

        The data come from the files the study was made from, where they are here and unchanged;
        else from the copy the study keeps in its database (cached on this machine). With
        `data_dir`, the files are read from that folder under their own names instead (data over
        the cap, shared between machines)."""
        optuna_study = protocol.load_study(_opened(storage, liveness=liveness, must_exist=True), name)
        return cls(optuna_study, protocol.study_spec(optuna_study), data_dir=data_dir)

    @property
    def name(self) -> str:
        return self.optuna_study.study_name

    @property
    def points(self) -> list[GridPoint]:
        return self._dataset_and_points()[1]

    def _dataset_and_points(self) -> tuple[Dataset, list[GridPoint]]:
        """The data and the grid, loaded once. A study opened by name checks that the data here
        are the study's, and enqueues any grid point missing (a creation cut short)."""
        if self._data is None:
            dataset = self._study_data(cache=True)
            points, _ = _grid(self.spec, dataset)
            _enqueued(storage_of(self.optuna_study), self.spec, dataset, points)
            self._data = (dataset, points)
        return self._data

    def run(
        self, *, workers: int | None = None, reference: bool = False, progress: Progress | None = None,
        memory_per_worker: int | str | None = None,
    ) -> RunOutcome:
        """Train every waiting point on `workers` processes (default: the CPU count), each repeat
        stored as it finishes, until no point is waiting (or, with heartbeats, running elsewhere).

        Interrupting (KeyboardInterrupt) puts the point in progress back in the queue with its
        finished repeats. `reference` trains one Keras model at a time instead of fused packs.
        `memory_per_worker` (bytes, or "500MB", "2GB") bounds what each worker's packs take
        beyond TensorFlow and the data: packs are made smaller to fit it (default:
        $SWEEP_MEMORY_PER_WORKER, else a share of the memory available). MemoryBudgetError,
        before anything trains, where not even one repeat of a point fits.
        """
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise SweepError(f"workers must be a whole number of at least 1 (None: the CPU count), not {workers!r}")
        budget = parse_memory(memory_per_worker, what="memory_per_worker") if memory_per_worker is not None else None
        dataset, points = self._dataset_and_points()
        watched = _Annotating(self, progress or NoProgress())
        n_trained = run_study(
            self.optuna_study, self.spec, dataset, points=points, n_workers=workers or default_workers(),
            is_fused=not reference, progress=watched, memory_per_worker=budget,
        )
        self.annotate()
        counts = self.counts()
        if self.spec.keep_weights == "chosen" and not counts.get("waiting") and not counts.get("running"):
            self._keep_chosen_weights_only()
        return RunOutcome(n_trained=n_trained, counts=self.counts())

    def _keep_chosen_weights_only(self) -> None:
        """With keep_weights = "chosen", once the grid is done: drop every other point's weights."""
        results = self.results()
        choice = self.chosen(results=results)
        chosen = next((point for point in results.points if choice is not None and point.key == choice.key), None)
        if chosen is not None:
            protocol.keep_weights_of_one(self.optuna_study, number=chosen.number)

    def export(
        self, path: str | Path, *, point: str | None = None, repeat: int | None = None, refit: bool = False,
        seed: int = 0, refit_on: str = "train",
    ) -> Exported:
        """Write a trained network of the study to the folder `path`: model.keras (a plain Keras
        model), sweep.json (its data contract) and README.md. By default the chosen point's
        representative repeat (its median score on the data the points were ranked on); `point`
        names another finished point by key, `repeat` another repeat (numbered as
        :meth:`repeats_dataframe` numbers them). With `refit`, the point is trained once more
        with `seed` on the training part (`refit_on="all"`: the validation part too) instead.
        Where the study's data are at hand, the model is checked to reproduce the repeat's (or
        the refit's) test scores. ExportError says why it cannot."""
        results = self.results()
        stored = self._point_to_export(results, point)
        if refit:
            return self._export_refit(path, results, stored, repeat=repeat, seed=seed, refit_on=refit_on)
        if repeat is None:
            repeat, why = representative_repeat(stored)
        elif repeat not in stored.repeats:
            raise ExportError(
                f"{stored.key} has no finished repeat {repeat}; its repeats are numbered "
                f"{min(stored.repeats)} to {max(stored.repeats)} ({len(stored.repeats)} finished)"
            )
        else:
            why = f"repeat {repeat}, as asked"
        weights = protocol.kept_weights(self.optuna_study, number=stored.number, repeat=repeat)
        if weights is None:
            raise ExportError(
                f"no weights are kept for {stored.key} repeat {repeat} (the study keeps {self.spec.keep_weights!r}, or "
                "was made before weights were kept); choose a kept repeat with --repeat, or train it again with --refit"
            )
        return export_repeat(
            study=self.name, spec=self.spec, point=stored, repeat=repeat, why=why, weights=weights,
            encoding=results.encoding, dataset=self._dataset_here(), sequence_length=results.sequence_length, folder=Path(path),
        )

    def _export_refit(
        self, path: str | Path, results: Results, stored: StoredPoint, *, repeat: int | None, seed: int, refit_on: str
    ) -> Exported:
        if repeat is not None:
            raise ExportError("--repeat and --refit exclude each other: a refit is a new repeat; drop one")
        if refit_on not in ("train", "all"):
            raise ExportError(f"refit_on {refit_on!r} is none of 'train' (the training part) and 'all' (training and validation)")
        on_all = refit_on == "all"
        try:
            dataset = load_problem(self.spec.problem, None if on_all else self.spec.validation)
        except SweepError as error:
            raise ExportError(f"a refit trains on the study's data, which are not at hand here ({error}); run it where they are") from None
        fitted = refit(self.spec, stored, dataset, seed=seed, on_all=on_all)
        why = f"a refit of {stored.key} with seed {seed} on {fitted.record['trained_on']}"
        encoding = {**results.encoding, **dataset.encoding}
        return export_repeat(
            study=self.name, spec=self.spec, point=stored, repeat=None, why=why, weights=fitted.weights, encoding=encoding,
            dataset=dataset, sequence_length=results.sequence_length, folder=Path(path), details=fitted.details,
            refit_record=fitted.record,
        )

    def _point_to_export(self, results: Results, key: str | None) -> StoredPoint:
        if key is None:
            choice = self.chosen(results=results)
            if choice is None:
                raise ExportError(f"study {self.name!r} has no finished point to export yet; run it first")
            key = choice.key
        for stored in results.points:
            if stored.key == key:
                if stored.state != "done":
                    raise ExportError(f"point {key!r} is {stored.state}, not done; export a finished point")
                return stored
        raise ExportError(f"study {self.name!r} has no point {key!r}; its keys are listed by: sweep status {self.name}")

    def _dataset_here(self) -> Dataset | None:
        """The study's data, from the files here or the copy the study keeps; None where neither is."""
        if self._data is not None:
            return self._data[0]
        try:
            return self._study_data(cache=False)
        except SweepError:
            return None

    def _study_data(self, *, cache: bool) -> Dataset:
        """The study's data: from its files here where they load as the study's (same
        fingerprint), else from the copy kept in its database, kept on in this machine's cache
        with `cache` (a worker) or read through a temporary folder without (a read leaves nothing).
        Files here that differ are never used over the kept copy: a warning says they differ."""
        spec = self.spec if self._data_dir is None else data_files.reading_from_folder(self.spec, self._data_dir)
        expected = record.fingerprint(self.optuna_study.user_attrs)
        named = data_files.named_files(spec)
        here = load_data(spec) if all(path.is_file() for path in named.values()) else None
        if here is not None and (expected is None or here.fingerprint == expected):
            return here
        kept = protocol.kept_data_files(self.optuna_study, fingerprint=expected) if expected else {}
        if not kept:
            if here is not None:
                return here  # other data: joining the study refuses them, naming the fix
            missing = next(path for path in named.values() if not path.is_file())
            raise DataError(
                f"{missing}: no such data file on this machine, and study {self.name!r} keeps no copy of its data "
                "(they were over the data cap at create); put the files at that path, or give the folder that "
                "holds them with --data-dir"
            )
        dataset = self._kept_data(expected, cache=cache)
        if here is not None:
            log.warning(
                "the data files here differ from study %r's (fingerprint %s, here %s); training on the copy the study keeps",
                self.name, expected, here.fingerprint,
            )
        return dataset

    def _kept_data(self, fingerprint: str, *, cache: bool) -> Dataset:
        """The study's data from the copy kept in its database, checked against its fingerprint."""
        if cache:
            folder = data_files.cache_folder(fingerprint)
            if folder.is_dir():
                with contextlib.suppress(SweepError):
                    dataset = load_data(data_files.reading_from(self.spec, folder))
                    if dataset.fingerprint == fingerprint:
                        return dataset
            files = protocol.load_kept_data_files(self.optuna_study, fingerprint=fingerprint)
            dataset = load_data(data_files.reading_from(self.spec, data_files.written_to_cache(fingerprint, files)))
        else:
            with tempfile.TemporaryDirectory(prefix="sweep-data-") as folder:
                data_files.write_files(Path(folder), protocol.load_kept_data_files(self.optuna_study, fingerprint=fingerprint))
                dataset = load_data(data_files.reading_from(self.spec, Path(folder)))
        if dataset.fingerprint != fingerprint:
            raise DataError(
                f"the data study {self.name!r} keeps load with fingerprint {dataset.fingerprint}, not the study's "
                f"{fingerprint}; this sweep reads them otherwise than the one that made the study: use that version"
            )
        return dataset

    def _keep_data_files(self, fingerprint: str, *, cap: int) -> None:
        """Keep the study's data files in its database (once), unless they are over `cap` bytes."""
        named = data_files.named_files(self.spec)
        if not named or cap == 0:
            return
        names = {data_files.kept_name(key, path) for key, path in named.items()}
        if set(protocol.kept_data_files(self.optuna_study, fingerprint=fingerprint)) == names:
            return
        size = sum(path.stat().st_size for path in named.values())
        if size > cap:
            log.warning(
                "the data files of study %r (%s) are over the %s a study keeps in its database (--data-cap, $%s): "
                "workers on other machines need the files, at the same path or in a shared folder given with "
                "sweep worker --data-dir",
                self.name, data_files.readable_size(size), data_files.readable_size(cap), data_files.DATA_CAP_ENV,
            )
            return
        protocol.keep_data_files(self.optuna_study, fingerprint=fingerprint, files=data_files.read_files(self.spec))

    def results(self, *, with_heartbeats: bool = False) -> Results:
        """One snapshot of the study's whole record: every grid point as stored (settings, scores,
        repeats, statistics), finished ones best first, with the study's counts. Every view below
        reads one; pass it (`results=`) to read the database once for several. With
        `with_heartbeats`, each running point's last heartbeat too. StorageError when the database
        fails under the read."""
        return self._read(with_heartbeats=with_heartbeats)

    def _read(self, *, with_heartbeats: bool = False, sequence_length: int | None = None) -> Results:
        if sequence_length is None and self._data is not None:
            sequence_length = self._data[0].sequence_length
        results = read_results(
            self.optuna_study, maximize=self.spec.is_maximized, metric=self.spec.metric,
            sequence_length=sequence_length, with_heartbeats=with_heartbeats,
        )
        if results.baselines is None:  # a study made before baselines were kept: score them, writing nothing
            results = replace(results, baselines=self._baselines_on_read())
        return results

    def _baselines_on_read(self) -> dict[str, Any] | None:
        """The baselines of a study that stored none, where its data are at hand here; else None."""
        dataset = self._dataset_here()
        return _baselines(self.spec, dataset) if dataset is not None else None

    def yardstick(self, *, results: Results | None = None) -> Yardstick | None:
        """The best naive forecast on the data the points are ranked on, which every point's
        skill is measured against (None: no baseline stored, nor data here to score one)."""
        return yardstick_of(results or self.results(), self.spec)

    def counts(self, *, results: Results | None = None) -> dict[str, int]:
        """How many grid points are done, running, waiting and failed."""
        return (results or self.results()).counts

    def rows(self, *, with_heartbeats: bool = False, results: Results | None = None) -> list[PointRow]:
        """Every grid point as the results table shows it, finished ones best first."""
        results = results or self.results(with_heartbeats=with_heartbeats)
        return rows(results, maximize=self.spec.is_maximized, yardstick=self.yardstick(results=results))

    def stored_points(self, *, results: Results | None = None) -> list[StoredPoint]:
        """Every grid point as stored (settings, scores, repeats, statistics), finished ones best first."""
        return (results or self.results()).points

    def chosen(self, *, results: Results | None = None) -> Choice | None:
        """The best finished point, the data it was chosen on, its score on the test data, the
        points it ties with and the rule that picked it, and its skill against the best baseline."""
        results = results or self.results()
        return chosen_point(results.points, yardstick=self.yardstick(results=results))

    def convergence(self, *, results: Results | None = None) -> dict[str, Convergence | None]:
        """The capacity check of every finished point, by key (see :mod:`sweep.report.convergence`)."""
        maximize = self.spec.is_maximized
        return {point.key: point_convergence(point, maximize=maximize) for point in (results or self.results()).finished}

    def records(self, *, results: Results | None = None) -> list[dict[str, Any]]:
        """One plain record per grid point, best first: its settings, state and statistics (on
        the data it was ranked on), and its mean score on the test data."""
        maximize = self.spec.is_maximized
        results = results or self.results()
        stick = self.yardstick(results=results)
        return [
            {
                **point.params, **asdict(point_row(point, maximize=maximize, yardstick=stick)),
                record.PADDING_FRACTION: point.padding_fraction,
                "test_mean": point.test_mean,
            }
            for point in results.points
        ]

    def repeat_records(self, *, results: Results | None = None) -> list[dict[str, Any]]:
        """One plain record per stored repeat of every grid point: seed, every metric, seconds, worker."""
        return [
            {record.KEY: point.key, "repeat": repeat, **details}
            for point in sorted((results or self.results()).points, key=lambda point: point.number)
            for repeat, details in sorted(point.repeats.items())
        ]

    def dataframe(self) -> pd.DataFrame:
        """:meth:`records` as a pandas DataFrame, one row per grid point."""
        from sweep.data.tables import frame

        return frame(self.records())

    def repeats_dataframe(self) -> pd.DataFrame:
        """:meth:`repeat_records` as a pandas DataFrame, one row per repeat."""
        from sweep.data.tables import frame

        return frame(self.repeat_records())

    def report(self, *, results: Results | None = None) -> Report:
        """The numbers of the report: every point's repeats, statistics and comparison with the best."""
        from sweep.report.summary import collect

        results = results or self.results()
        if results.sequence_length is None:  # a study made before the length was stored: read it off the data
            results = self._read(sequence_length=self._study_data(cache=False).sequence_length)
        return collect(results, self.spec)

    def write_report(self, path: str | Path | None = None) -> Path:
        """Write the report, one HTML file that opens offline (default: NAME.html here)."""
        from sweep.report.html import write_html

        return write_html(self.report(), path or Path(f"{self.name}.html"))

    def annotate(self) -> None:
        """Bring the study's note in optuna-dashboard up to date."""
        from sweep.report.dashboard import annotate

        annotate(self.optuna_study, self.report())

    def workers(self, *, results: Results | None = None) -> list[WorkerRow]:
        """The processes working on the study now: each one holding a point (host:pid, the point,
        its last heartbeat) and, on PostgreSQL, every sweep process connected to the database with
        the connections it holds (watching processes too, which hold no point)."""
        results = results or self.results(with_heartbeats=True)
        holding = {point.worker: point for point in results.points if point.state == "running" and point.worker}
        connections = protocol.connections_by_process(self.optuna_study)
        rows = []
        for name in sorted(set(holding) | set(connections or {})):
            point = holding.get(name)
            rows.append(WorkerRow(
                worker=name,
                point=point.key if point else None,
                last_heartbeat=results.heartbeats.get(point.number) if point else None,
                connections=None if connections is None else connections.get(name),
            ))
        return rows

    def set_aside(self, *, results: Results | None = None) -> list[tuple[int, str]]:
        """Trials that are none of the grid's points (enqueued by hand with Optuna), failed for
        good: each one's number and the reason stored."""
        return (results or self.results()).set_aside

    def requeue_failed(self) -> tuple[list[str], list[str]]:
        """Queue the failed points again with their repeats; returns the keys requeued and those
        left failed because they diverged (the same settings and seeds would diverge again)."""
        return protocol.requeue_failed(self.optuna_study)

    def check_deletable(self, *, force: bool = False) -> None:
        """Refuse (StorageError) to delete a study whose points are running, unless `force`:
        their workers would lose their work."""
        running = [point for point in self.stored_points() if point.state == "running"]
        if running and not force:
            workers = sorted({point.worker or "?" for point in running})
            raise StorageError(
                f"study {self.name!r} has {len(running)} running point{'s' if len(running) != 1 else ''} (worker "
                f"{', '.join(workers)}); stop those runs first, or pass --force to delete it anyway"
            )

    def delete(self, *, force: bool = False) -> None:
        """Delete the study, every trial in it and the weights it kept; refused while points run,
        unless `force`."""
        self.check_deletable(force=force)
        protocol.delete_kept_weights(self.optuna_study)
        protocol.delete_kept_data_files(self.optuna_study)
        optuna.delete_study(study_name=self.name, storage=storage_of(self.optuna_study))


def describe_data(spec: Spec) -> DataSummary:
    """The data as sweep sees them, before anything is trained (what ``sweep data`` shows):
    sequences, lengths, features, classes or target ranges, and each grid length's padding."""
    dataset = load_data(spec)
    points, _ = _grid(spec, dataset)
    return describe(dataset, sorted({point.length for point in points}))


def suggest_lengths(spec: Spec) -> Suggestion:
    """Candidate subsequence lengths read off the study's training data, each with its reasons,
    and the ACF and PACF they come from (what ``sweep suggest`` shows). Trains and writes nothing."""
    return _suggestion(spec, load_data(spec))


def _suggestion(spec: Spec, dataset: Dataset) -> Suggestion:
    target = spec.problem.target if spec.problem.kind == "series" else None
    from sweep.data.suggest import suggest  # statsmodels and scipy: 1.8 s that only a suggestion needs

    return suggest(dataset, dataset.encoding.get("features"), target_name=target)


def _grid(spec: Spec, dataset: Dataset) -> tuple[list[GridPoint], Suggestion | None]:
    """The grid's points, and the data's suggestion where the grid's lengths name it."""
    suggestion = _suggestion(spec, dataset) if uses_suggestion(spec.grid) else None
    return grid_points(spec, dataset.sequence_length, suggestion.lengths if suggestion else None), suggestion


def list_studies(storage: StorageLike = None) -> list[StudySummary]:
    """Every study in the storage, by name; none when the database does not exist yet."""
    if not _may_hold_studies(storage):
        return []
    opened = _opened(storage, must_exist=True)
    summaries = []
    for name, is_sweep in protocol.study_names(opened):
        if not is_sweep:
            summaries.append(StudySummary(name, is_sweep=False))
            continue
        try:
            study = Study.open(name, storage=opened)
        except StorageError as error:  # a damaged or newer study: say so, and list the others
            summaries.append(StudySummary(name, is_sweep=True, problem=str(error)))
            continue
        results = study.results()
        choice = study.chosen(results=results)
        summaries.append(StudySummary(
            name, is_sweep=True, n_points=len(results.points), counts=results.counts,
            best_key=choice.key if choice else None, best_mean=choice.mean if choice else None,
            best_skill=choice.skill if choice else None, is_below_baseline=bool(choice and choice.is_below_baseline),
        ))
    return summaries


def _enqueued(storage: optuna.storages.BaseStorage, spec: Spec, dataset: Dataset, points: list[GridPoint]) -> optuna.Study:
    return protocol.create_or_resume(
        storage, spec, fingerprint=dataset.fingerprint, points=points,
        sequence_length=dataset.sequence_length, baselines=_baselines(spec, dataset),
        encoding={**dataset.encoding, "targets": "per step" if dataset.is_per_step else "per sequence"},
    )


def _baselines(spec: Spec, dataset: Dataset) -> dict[str, Any]:
    """The naive forecasts' scores on the study's data, as a study keeps them; a long series' season
    is `problem.season`, else the strongest period of its training part (none found: no seasonal
    naive forecast)."""
    problem = spec.problem
    if not isinstance(problem, SeriesProblem):
        return {baseline.name: baseline.to_dict() for baseline in score_baselines(dataset)}
    season = problem.season
    if season is None:
        from sweep.data.suggest import target_periods  # statsmodels: see _suggestion

        season = next(iter(target_periods(dataset)), None)
    baselines = score_baselines(dataset, target=problem.target, season=season, horizon=problem.horizon)
    return {baseline.name: baseline.to_dict() for baseline in baselines}


def _takes_an_argument(method: Callable[..., object]) -> bool:
    try:
        return bool(inspect.signature(method).parameters)
    except (TypeError, ValueError):  # no signature to read: assume the current protocol
        return True


class _Annotating:
    """Passes progress on, and refreshes the dashboard note after a point, at most every
    NOTE_EVERY_SECONDS (the note reads the whole study: after every point of a big grid on many
    machines it would cost more than the points), and once more when the run ends."""

    def __init__(self, study: Study, progress: Progress) -> None:
        self._study = study
        self._progress = progress
        self._noted = time.monotonic()
        # A progress written before points trained side by side takes no key.
        self._is_told_the_key = _takes_an_argument(progress.repeat_finished)

    def point_started(self, key: str, *, n_repeats: int, n_finished: int) -> None:
        self._progress.point_started(key, n_repeats=n_repeats, n_finished=n_finished)

    def repeat_finished(self, key: str) -> None:
        if self._is_told_the_key:
            self._progress.repeat_finished(key)
        else:
            self._progress.repeat_finished()  # type: ignore[call-arg]

    def point_finished(self, key: str, *, is_complete: bool) -> None:
        if time.monotonic() - self._noted >= NOTE_EVERY_SECONDS:
            self._study.annotate()
            self._noted = time.monotonic()
        self._progress.point_finished(key, is_complete=is_complete)

    def point_paused(self, key: str, *, n_finished: int) -> None:
        # A progress written before races had no pauses to show.
        paused = getattr(self._progress, "point_paused", None)
        if paused is not None:
            paused(key, n_finished=n_finished)
