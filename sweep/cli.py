"""The ``sweep`` command: parse, call the library, print, exit. Errors become one line and exit 1."""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import optuna
import sqlalchemy.exc
import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from sweep import api
from sweep.api import Study
from sweep.data.problems import DataSummary
from sweep.errors import EmptyDatabaseError, SweepError
from sweep.report.skill import NO_BASELINE
from sweep.spec import Spec, apply_overrides, load_spec
from sweep.store.connection import (
    Liveness,
    close_storages,
    database_exists,
    describe_database_error,
    display_url,
    last_opened_url,
    open_storage,
)
from sweep.train.memory import MEMORY_ENV, MemoryBudgetError, parse_memory
from sweep.train.pool import default_workers

if TYPE_CHECKING:
    from sweep.data.suggest import Suggestion

app = typer.Typer(
    help="Grid search over truncated-BPTT subsequence lengths for LSTMs, stored in Optuna studies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()

# Exit statuses, as the README lists them.
EXIT_BAD_INPUT = 1  # a broken study file, bad data, an unreachable database: one line says what to fix
EXIT_USAGE = 2  # an unknown command or option, or an option's value out of range
EXIT_FAILED_POINTS = 3  # the run finished, but some grid points failed (their reasons are stored)
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # SIGTERM

StorageOption = Annotated[
    Optional[str],
    typer.Option(
        "--storage",
        help="Study database URL (default: $SWEEP_STORAGE, else sqlite:///sweep.db in this directory).",
        show_default=False,
    ),
]

WorkersOption = Annotated[
    Optional[int],
    typer.Option(
        min=1, envvar="SWEEP_WORKERS", help="Worker processes (default: $SWEEP_WORKERS, else the CPU count).",
        show_default=False,
    ),
]
ReferenceOption = Annotated[
    bool, typer.Option("--reference", help="Train one Keras model at a time instead of fused packs (slower).")
]
DataCapOption = Annotated[
    Optional[float],
    typer.Option(
        "--data-cap", min=0, metavar="MB",
        help="Keep the data files in the study's database up to this many megabytes, for workers on other "
        "machines (default: $SWEEP_DATA_CAP_MB, else 256; 0 keeps none).",
        show_default=False,
    ),
]
def _memory_size(value: Optional[str]) -> Optional[str]:
    """Refuse a --memory-per-worker that is no amount before anything is opened or written."""
    if value is not None:
        try:
            parse_memory(value)
        except MemoryBudgetError as error:
            raise typer.BadParameter(str(error).removeprefix("--memory-per-worker ")) from None
    return value


MemoryOption = Annotated[
    Optional[str],
    typer.Option(
        "--memory-per-worker", metavar="SIZE", callback=_memory_size, envvar=MEMORY_ENV,
        help="Memory each worker process may give its packs of repeats, beyond TensorFlow and the data, "
        "such as 500MB or 2GB (default: $SWEEP_MEMORY_PER_WORKER, else a share of the memory available).",
        show_default=False,
    ),
]
HeartbeatOption = Annotated[int, typer.Option(min=1, help="Seconds between a worker's heartbeats on its point.")]
GraceOption = Annotated[int, typer.Option(min=2, help="Seconds of silence after which a worker counts as dead.")]


@app.command()
def run(
    target: Annotated[
        str, typer.Argument(metavar="STUDY", help="A study file (.toml), or the name of a study in the storage.")
    ],
    storage: StorageOption = None,
    repeats: Annotated[Optional[int], typer.Option(min=1, help="Repeats per grid point (overrides the file).")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Training epochs (overrides the file).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Study name (overrides the file).")] = None,
    workers: WorkersOption = None,
    reference: ReferenceOption = False,
    heartbeat_interval: HeartbeatOption = 10,
    grace_period: GraceOption = 60,
    data_cap: DataCapOption = None,
    memory_per_worker: MemoryOption = None,
) -> None:
    """Run a study: enqueue its grid, train every waiting point, print the results.

    Running it again resumes: finished points are kept, a point that was interrupted goes on
    from the repeats it had finished, and no point is added twice.

    Example: sweep run studies/echo_first.toml --repeats 3 --epochs 1 --workers 2
    """
    liveness = Liveness(heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    _work(_study_for(target, storage=storage, liveness=liveness, overrides={"repeats": repeats, "epochs": epochs,
                     "name": name}, data_cap=data_cap), storage=storage, workers=workers, reference=reference,
          memory_per_worker=memory_per_worker)


@app.command()
def worker(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    storage: StorageOption = None,
    workers: WorkersOption = None,
    reference: ReferenceOption = False,
    heartbeat_interval: HeartbeatOption = 10,
    grace_period: GraceOption = 60,
    memory_per_worker: MemoryOption = None,
    data_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--data-dir", metavar="DIR",
            help="Read the study's data files from this folder, under their own names (data the study does not keep).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Join a study from any machine that reaches its database, and work on its waiting points.

    Only the name and the storage are needed: the settings come from the study, and a study of
    your own files keeps them in its database (up to --data-cap at create). Files here are used
    where they are the study's; files that differ never are.

    Example: sweep worker echo-first --storage postgresql+psycopg://user@db-host/sweeps
    """
    liveness = Liveness(heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    study = Study.open(name, storage=storage, liveness=liveness, data_dir=data_dir)
    _work(study, storage=storage, workers=workers, reference=reference, memory_per_worker=memory_per_worker)


def _work(
    study: Study, *, storage: str | None, workers: int | None, reference: bool, memory_per_worker: str | None = None
) -> None:
    """Train the study's waiting points with progress bars, then print its results."""
    spec, points = study.spec, study.points
    n_workers = workers or default_workers()
    console.print(
        f"[bold]{spec.name}[/]: {len(points)} grid points x {spec.repeats} repeats, "
        f"{n_workers} worker{'s' if n_workers > 1 else ''}, storage {display_url(storage)}"
    )
    try:
        with _stopped_by_sigterm(), _ProgressBars(study.counts(), n_points=len(points)) as progress:
            outcome = study.run(
                workers=n_workers, reference=reference, progress=progress, memory_per_worker=memory_per_worker
            )
    except KeyboardInterrupt as stop:
        how = "terminated" if isinstance(stop, Terminated) else "interrupted"
        typer.echo(f"{how}: the point in progress keeps its finished repeats; run again to resume", err=True)
        raise typer.Exit(EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED) from None
    _print_results(study)
    if outcome.n_failed:
        typer.echo(
            f"{outcome.n_failed} grid point{'s' if outcome.n_failed != 1 else ''} failed (reasons: sweep status "
            f"{spec.name}); once the cause is fixed, sweep requeue {spec.name} and run again",
            err=True,
        )
        raise typer.Exit(EXIT_FAILED_POINTS)


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, docker stop): stops a run as Ctrl-C does."""


@contextlib.contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """While training, SIGTERM unwinds like Ctrl-C: the point goes back to the queue with its
    finished repeats and the worker processes are ended, where it used to leave them running."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _study_for(target: str, *, storage: str | None, liveness: Liveness, overrides: dict, data_cap: float | None) -> Study:
    """The study a run works on: a study file's, created or resumed, or a stored study by name
    (its data from the files here or the copy it keeps, as a worker's)."""
    if target.endswith(".toml") or Path(target).is_file():
        spec = apply_overrides(load_spec(target), **overrides)
        return Study.create(spec, storage=storage, liveness=liveness, data_cap_mb=data_cap)
    given = [f"--{key}" for key, value in overrides.items() if value is not None]
    if given:
        Study.open(target, storage=storage)  # an unknown name is the first thing to say
        raise SweepError(
            f"{', '.join(given)} cannot change the existing study {target!r}; "
            "run its study file with --name NEW to try other settings"
        )
    return Study.open(target, storage=storage, liveness=liveness)


@app.command()
def data(
    study_file: Annotated[Path, typer.Argument(metavar="STUDY_FILE", help="The study file (.toml).")],
) -> None:
    """Show the data as sweep sees them, before anything is trained; writes nothing.

    Sequences in training and test, their lengths, the features, the classes with their counts or
    the target's range, and for every subsequence length of the grid how many training
    subsequences it makes and what share of their steps is padding.

    Example: sweep data studies/my_study.toml
    """
    spec = load_spec(study_file)
    _print_data(spec, api.describe_data(spec))


@app.command()
def suggest(
    study_file: Annotated[Path, typer.Argument(metavar="STUDY_FILE", help="The study file (.toml).")],
    lags: Annotated[int, typer.Option(min=1, help="Lags of the ACF and PACF to print.")] = 15,
) -> None:
    """Suggest subsequence lengths from the data; trains and writes nothing.

    The ACF and PACF of the target (regression with a target per step) or of each input, pooled
    over the training sequences, with the band noise stays in; the lags at which each input
    correlates with the target; the periods; the AR order BIC prefers; and the candidate
    lengths these imply, each with its reason. grid.lengths = "suggested" (or
    "factors+suggested") sweeps them.

    Example: sweep suggest studies/sunspots.toml
    """
    spec = load_spec(study_file)
    _print_suggestion(spec, api.suggest_lengths(spec), lags)


def _print_suggestion(spec: Spec, suggestion: Suggestion, n_lags: int) -> None:
    console.print(f"[bold]{spec.name}[/]: {suggestion.n_steps} training steps")
    for gram in suggestion.correlograms:
        console.print(gram.describe_stationarity(), highlight=False)
        shown = min(n_lags, len(gram.acf) - 1)
        of = " of its differences" if gram.differenced else ""
        table = _numbers_table("lag", "ACF", "PACF", "band", title=f"{gram.name}: ACF, PACF{of} (* significant)")
        for lag in range(1, shown + 1):
            band = gram.band[lag]
            table.add_row(
                str(lag),
                _marked(gram.acf[lag], lag in gram.significant_acf),
                _marked(gram.pacf[lag], lag in gram.significant_pacf),
                "" if band is None else f"±{band:.3f}",
            )
        console.print(table)
        periods = f"periods {', '.join(map(str, gram.periods))} (periodogram, confirmed by the ACF)" if gram.periods else "no period"
        console.print(f"{gram.name}: {periods}; AR order by BIC {gram.ar_order}", highlight=False)
    for name, lags in suggestion.cross_lags.items():
        console.print(f"{name} correlates with the target at lags {lags or 'none'} (the input that many steps earlier)")
    if not suggestion.candidates:
        console.print('no length suggested: nothing in the data stands out of the noise; keep grid.lengths = "factors"')
        return
    table = _numbers_table("length", "why", title="suggested lengths")
    table.columns[1].justify = "left"
    for length, reasons in sorted(suggestion.candidates.items()):
        table.add_row(str(length), "; ".join(reasons))
    console.print(table)
    console.print('sweep them with grid.lengths = "suggested", or "factors+suggested" to add the factors')


def _marked(value: float, is_significant: bool) -> str:
    return f"{value:+.3f}{'*' if is_significant else ' '}"


def _print_data(spec: Spec, summary: DataSummary) -> None:
    target = "per step" if summary.is_per_step else "per sequence"
    scaled = ", standardized with the training data's statistics" if summary.is_standardized else ""
    console.print(f"[bold]{spec.name}[/]: {summary.task}, targets {target}, {len(summary.features)} feature(s){scaled}")
    console.print("features: " + ", ".join(summary.features))
    table = _numbers_table("", "sequences", "steps", "shortest", "median", "longest", title="sequences")
    parts = [("train", summary.train), *([("validation", summary.validation)] if summary.validation else []), ("test", summary.test)]
    for name, part in parts:
        table.add_row(name, str(part.n_sequences), str(part.n_steps), str(part.length_min), f"{part.length_median:g}", str(part.length_max))
    console.print(table)
    if summary.classes:
        held = ("validation",) if summary.validation else ()
        classes = _numbers_table("class", "label", "train", *held, "test", title="classes")
        for index, (label, n_train, n_test, *n_held) in enumerate(summary.classes):
            classes.add_row(str(index), str(label), str(n_train), *map(str, n_held), str(n_test))
        console.print(classes)
    for output, (low, mean, high) in enumerate(summary.target_range):
        console.print(f"target {output}: min {low:.4g}, mean {mean:.4g}, max {high:.4g} (training data, own units)")
    lengths = _numbers_table("L", "subsequences", "padding", title="the grid's lengths")
    for length, n_subsequences, padding in summary.subsequences:
        lengths.add_row(str(length), str(n_subsequences), f"{padding:.1%}")
    console.print(lengths)


def _numbers_table(*columns: str, title: str) -> Table:
    """A table whose first column names its rows and whose others hold numbers, right-aligned."""
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 or column == "label" else "right")
    return table


@app.command()
def create(
    study_file: Annotated[Path, typer.Argument(metavar="STUDY_FILE", help="The study file (.toml).")],
    storage: StorageOption = None,
    repeats: Annotated[Optional[int], typer.Option(min=1, help="Repeats per grid point (overrides the file).")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Training epochs (overrides the file).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Study name (overrides the file).")] = None,
    data_cap: DataCapOption = None,
) -> None:
    """Create a study and enqueue its grid without training, for `sweep worker NAME` to work on.

    Creating an existing study again checks that its settings match and adds no point twice.

    Example: sweep create studies/echo_first.toml --storage postgresql+psycopg://user@db-host/sweeps
    """
    spec = apply_overrides(load_spec(study_file), repeats=repeats, epochs=epochs, name=name)
    try:
        study = Study.create(spec, storage=storage, liveness=None, data_cap_mb=data_cap)
    except KeyboardInterrupt:
        typer.echo("interrupted: the grid is enqueued in part; run this command again to enqueue the rest", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    counts = study.counts()
    console.print(
        f"[bold]{spec.name}[/]: {len(study.points)} grid points x {spec.repeats} repeats in "
        f"{display_url(storage)}; {counts['done']} done, {counts['waiting']} waiting. "
        f"Work on it with: sweep worker {spec.name}"
    )


@app.command()
def status(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    storage: StorageOption = None,
    point: Annotated[
        Optional[str], typer.Option("--point", help="Show one grid point in full (its key, as the table names it).")
    ] = None,
    workers: Annotated[
        bool, typer.Option("--workers", help="Also list the processes working on it and their database connections.")
    ] = False,
) -> None:
    """Show a study's progress and results so far, best grid point first; with --point, one point
    in full (a failed point's whole reason, which the table cuts to one line).

    Example: sweep status echo-first --point "L=5 stateful"
    """
    study = Study.open(name, storage=storage)
    if point is None:
        _print_results(study, with_heartbeats=True)
    else:
        _print_point(study, point)
    if workers:
        _print_workers(study)


def _print_workers(study: Study) -> None:
    rows = study.workers()
    if not rows:
        console.print("no process is working on it now")
        return
    table = Table(title="processes working on it now", title_justify="left")
    for column in ("process (host:pid)", "point", "last heartbeat", "connections"):
        table.add_column(column)
    for row in rows:
        beat = f"{row.last_heartbeat:%Y-%m-%d %H:%M:%S}" if row.last_heartbeat else "-"
        connections = "-" if row.connections is None else str(row.connections)
        table.add_row(escape(row.worker), escape(row.point or "(watching)"), beat, connections)
    console.print(table)
    if rows[0].connections is None:
        console.print("connections are counted on PostgreSQL only; each process holds at most two", highlight=False)


@app.command()
def requeue(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    storage: StorageOption = None,
) -> None:
    """Put a study's failed grid points back in the queue, keeping the repeats they had finished.

    A point fails when its workers keep dying or a repeat raises an error; once the cause is
    fixed, requeue it and run `sweep worker NAME` (or `sweep run`) again. A point that diverged
    stays failed: its settings and seeds would diverge again.

    Example: sweep requeue echo-first
    """
    requeued, diverged = Study.open(name, storage=storage).requeue_failed()
    console.print(f"requeued {len(requeued)} failed point{'s' if len(requeued) != 1 else ''}" + (f": {', '.join(requeued)}" if requeued else ""))
    if diverged:
        console.print(
            f"not requeued, since the same settings and seeds would diverge again: {', '.join(diverged)}; run the "
            f"study file with a lower learning rate under a new --name"
        )


@app.command()
def report(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    storage: StorageOption = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="HTML file to write (default: NAME.html).", show_default=False)
    ] = None,
) -> None:
    """Write a study's report: one self-contained HTML file that opens offline.

    It shows every repeat of every grid point as a box plot, the mean skill against the
    subsequence length with 95% confidence intervals, and a table telling which points are
    distinguishable from the best.

    Example: sweep report echo-first -o echo-first.html
    """
    path = Study.open(name, storage=storage).write_report(output or Path(f"{name}.html"))
    console.print(f"wrote {path}")


@app.command()
def export(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The folder to write (new or empty).")],
    point: Annotated[
        Optional[str], typer.Option("--point", help="A finished point's key (default: the chosen point).", show_default=False)
    ] = None,
    repeat: Annotated[
        Optional[int], typer.Option("--repeat", min=0, help="The repeat to export (default: the median one).", show_default=False)
    ] = None,
    refit: Annotated[bool, typer.Option("--refit", help="Train the point once more instead (needs the data here).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="The refit's seed: the same seed gives the same weights.")] = 0,
    refit_on: Annotated[
        str, typer.Option("--refit-on", help="The refit's data: train (the training part) or all (with the validation part).")
    ] = "train",
    storage: StorageOption = None,
) -> None:
    """Export a trained network: model.keras (plain Keras), sweep.json (its data contract) and a
    README.md on how to use it.

    By default the chosen point (as status and the report choose it) and its representative
    repeat, the one whose score is the median of its repeats. Needs only the study's name and
    database: the weights are kept in it.

    With --refit, the point is trained once more with --seed on the training part (--refit-on
    all: the validation part too), for a study that kept no weights or a model of all the data.

    Example: sweep export echo-first -o echo-first-model
    """
    exported = Study.open(name, storage=storage).export(
        output, point=point, repeat=repeat, refit=refit, seed=seed, refit_on=refit_on
    )
    console.print(exported.describe(), markup=False, soft_wrap=True)


@app.command()
def predict(
    export_folder: Annotated[Path, typer.Argument(help="A folder that sweep export wrote.")],
    data: Annotated[Path, typer.Argument(help="The data: a table, a series or an npz, as the study's problem takes them.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The CSV file to write.")],
) -> None:
    """Predict with an exported network: one row per sequence (or per step, or per forecast
    origin of a series), the prediction in the original label or unit, and for classification
    one probability column per class.

    Example: sweep predict echo-first-model new.npz -o predictions.csv
    """
    from sweep.export.predicting import load_export, write_predictions

    frame = load_export(export_folder).predict(data)
    path = write_predictions(frame, output)
    console.print(f"wrote {len(frame)} predictions to {path}", markup=False, soft_wrap=True)


@app.command()
def dashboard(
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
) -> None:
    """Serve optuna-dashboard on the study storage, each study with a note on its grid and best point.

    Every grid point is a trial: its repeats' scores are the intermediate values, its statistics
    the user attributes. Stop with Ctrl-C.

    Example: sweep dashboard --port 8080
    """
    from sweep.report.dashboard import check_address, serve

    check_address(host, port)
    try:
        storage_object = _storage_once_it_holds_studies(storage)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    for summary in api.list_studies(storage_object):
        if summary.is_sweep:
            Study.open(summary.name, storage=storage_object).annotate()
    console.print(f"optuna-dashboard on http://{host}:{port}/ for {display_url(storage)} (Ctrl-C to stop)")
    try:
        serve(storage_object, host=host, port=port)
    except OSError as error:
        raise SweepError(f"cannot serve on {host}:{port} ({error.strerror}); choose another --port") from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


DASHBOARD_WAIT_SECONDS = 2.0


def _storage_once_it_holds_studies(storage: str | None):
    """The storage, opened to read, once it has the study tables. A dashboard often starts beside
    the database, before any study is made (docker compose up): it waits, making no table itself."""
    import time

    announced = False
    while True:
        try:
            return open_storage(storage, must_exist=True)
        except EmptyDatabaseError:
            if not announced:
                console.print(
                    f"waiting for a study in {display_url(storage)}: the database has no tables yet (sweep create or "
                    "sweep run makes them); Ctrl-C to stop", markup=False, soft_wrap=True,
                )
                announced = True
            time.sleep(DASHBOARD_WAIT_SECONDS)


@app.command("list")
def list_studies(storage: StorageOption = None) -> None:
    """List the studies in the storage with their progress and best point.

    Example: sweep list --storage sqlite:///sweep.db
    """
    if not database_exists(storage):
        console.print(f"no studies in {display_url(storage)} (no database there yet)")
        return
    try:
        summaries = api.list_studies(storage)
    except EmptyDatabaseError:
        summaries = []
    if not summaries:
        console.print(f"no studies in {display_url(storage)}")
        return
    table = Table("points", "done", "running", "waiting", "failed", "best point", "best mean", "skill")
    # A study's name is shown whole, folded where the terminal is narrow: cut short, it could not
    # be typed back into the next command.
    table.columns.insert(0, Column("study", overflow="fold"))
    for summary in summaries:
        if not summary.is_sweep:
            table.add_row(summary.name, "-", "-", "-", "-", "-", "not a sweep study", "-", "-")
            continue
        if summary.problem:
            table.add_row(summary.name, "-", "-", "-", "-", "-", summary.problem, "-", "-")
            continue
        table.add_row(
            summary.name,
            str(summary.n_points),
            *(str(summary.counts[state]) for state in ("done", "running", "waiting", "failed")),
            summary.best_key or "-",
            _number(summary.best_mean),
            _skill(summary.best_skill) + (" below baseline" if summary.is_below_baseline else ""),
        )
    console.print(table)


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    storage: StorageOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Delete even while points are running.")] = False,
) -> None:
    """Delete a study and every trial in it.

    A study with running points is refused unless --force: its workers would lose their work.

    Example: sweep delete echo-first --yes
    """
    study = Study.open(name, storage=storage)
    study.check_deletable(force=force)
    if not yes and not typer.confirm(f"delete study {name!r} and all its trials?"):
        raise typer.Exit(1)
    study.delete(force=True)
    console.print(f"deleted {name}")


class _ProgressBars:
    """A bar of the study's grid points, and one of repeats for each point being trained (several
    where workers train points side by side)."""

    def __init__(self, counts: dict[str, int], *, n_points: int) -> None:
        self._bars = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._points = self._bars.add_task("grid points", total=n_points, completed=counts["done"] + counts["failed"])
        self._repeats: dict[str, TaskID] = {}
        self._last_finished: str | None = None  # its bar stays on screen, full, until the next finishes

    def __enter__(self) -> _ProgressBars:
        self._bars.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bars.stop()

    def point_started(self, key: str, *, n_repeats: int, n_finished: int) -> None:
        self._drop(key)
        self._repeats[key] = self._bars.add_task(key, total=n_repeats, completed=n_finished)

    def repeat_finished(self, key: str) -> None:
        if key in self._repeats:
            self._bars.advance(self._repeats[key])

    def point_finished(self, key: str, *, is_complete: bool) -> None:
        self._bars.advance(self._points)
        if self._last_finished is not None and self._last_finished != key:
            self._drop(self._last_finished)
        self._last_finished = key if is_complete else None
        if not is_complete:
            self._drop(key)
            self._bars.console.print(f"[red]failed[/] {key}")

    def point_paused(self, key: str, *, n_finished: int) -> None:
        """A raced point at a stage: it waits for the others to reach it."""
        self._drop(key)

    def _drop(self, key: str) -> None:
        task = self._repeats.pop(key, None)
        if task is not None:
            self._bars.remove_task(task)


def _print_results(sweep_study: Study, *, with_heartbeats: bool = False) -> None:
    spec = sweep_study.spec
    results = sweep_study.results(with_heartbeats=with_heartbeats)
    counts = results.counts
    rows = sweep_study.rows(results=results)
    metric = f"{spec.objective.metric} per {spec.objective.per} on the {spec.ranked_on} data"
    console.print(
        f"[bold]{sweep_study.name}[/]: {len(rows)} points: {counts['done']} done, {counts['running']} running, "
        f"{counts['waiting']} waiting, {counts['failed']} failed"
    )
    grid_size = results.grid_size
    if grid_size is not None and len(rows) < grid_size:
        console.print(
            f"[yellow]only {len(rows)} of the grid's {grid_size} points are enqueued[/] (creating the study was cut "
            f"short); sweep create or sweep run with its study file enqueues the rest"
        )
    stick = sweep_study.yardstick(results=results)
    console.print(stick.describe() if stick is not None else f"{NO_BASELINE}: skill cannot be measured", highlight=False)
    console.print(_results_table(rows, title=f"{metric} ({spec.direction}d), best first"))
    if any(len(_state(row)) > STATE_WIDTH for row in rows):
        console.print(f'states cut to one line; one in full: sweep status {sweep_study.name} --point "KEY"', highlight=False)
    choice = sweep_study.chosen(results=results)
    if choice is not None:
        console.print(choice.describe(), highlight=False)
    for key, convergence in sweep_study.convergence(results=results).items():
        if convergence is not None and convergence.is_improving:
            console.print(f"[yellow]{key}[/]: {convergence.describe()}", highlight=False)
    for number, reason in results.set_aside:
        console.print(f"trial {number}: {reason}")


# The state column's width: a failed point's reason is cut to one line there (whole with --point),
# so that the table fits 100 columns.
STATE_WIDTH = 36


def _results_table(rows: list, *, title: str) -> Table:
    """The results table: one line per point (on a narrow terminal the point's name wraps)."""
    table = Table(title=title, title_justify="left")
    for column in ("#", "point", "state", "n", "mean", "skill", "std", "95% CI", "time"):
        if column == "state":
            table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=STATE_WIDTH)
        else:
            table.add_column(column, justify="left" if column == "point" else "right", no_wrap=column != "point")
    for rank, row in enumerate(rows, start=1):
        interval = f"{_short(row.ci95_low)}..{_short(row.ci95_high)}" if row.ci95_low is not None else "-"
        table.add_row(
            # Keys and reasons are the study's text, shown as written, never read as markup.
            str(rank) if row.state == "done" else "-", escape(row.key), escape(_state(row)), str(row.n), _number(row.mean),
            _skill(row.skill), _number(row.std), interval, f"{row.seconds:.0f}s" if row.seconds is not None else "-",
        )
    return table


def _state(row) -> str:
    return row.state + (f": {row.note}" if row.note else "")


def _print_point(sweep_study: Study, key: str) -> None:
    """One grid point in full: its state and whole reason or note, its statistics and skill."""
    results = sweep_study.results(with_heartbeats=True)
    rows = {row.key: row for row in sweep_study.rows(results=results)}
    if key not in rows:
        raise SweepError(f"study {sweep_study.name!r} has no point {key!r}; its points: {', '.join(rows)}")
    row = rows[key]
    interval = f"{_short(row.ci95_low)}..{_short(row.ci95_high)}" if row.ci95_low is not None else "-"
    lines = [
        f"{row.key}: {row.state}", *([row.note] if row.note else []),
        f"repeats {row.n}, mean {_number(row.mean)}, std {_number(row.std)}, 95% CI {interval}, skill {_skill(row.skill)}",
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True, markup=False)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _skill(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _short(value: float | None) -> str:
    """Four significant digits, for the ends of an interval."""
    return "-" if value is None else f"{value:.4g}"


def main() -> None:
    # --debug, anywhere on the line: an error prints its traceback too, for a bug report.
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv = [sys.argv[0], *(arg for arg in sys.argv[1:] if arg != "--debug")]
    try:
        code = _run_command(debug=debug)
    finally:
        close_storages()
    # Everything is written and closed: the collector's passes at the interpreter's exit, over the
    # 150,000 objects a run leaves (0.4 s), would only free memory that the process gives back.
    gc.freeze()
    sys.exit(code)


def _run_command(*, debug: bool) -> int:
    """Run the command line's command; its exit code, after one line on standard error for a problem."""
    try:
        return app(standalone_mode=False) or 0
    except SweepError as error:
        _print_traceback_if(debug)
        typer.echo(f"error: {error}", err=True)
        return EXIT_BAD_INPUT
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        # The database failed under a command (Optuna wraps what failed in a commit).
        _print_traceback_if(debug)
        typer.echo(f"error: {describe_database_error(error, last_opened_url())}", err=True)
        return EXIT_BAD_INPUT
    except typer.Abort:
        typer.echo("aborted", err=True)
        return EXIT_INTERRUPTED
    except TyperException as error:  # a usage error: unknown command or option, bad option value
        return _usage_error(error)


def _print_traceback_if(debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc()


def _usage_error(error: TyperException) -> int:
    """One line, like every other error, instead of the boxed usage text; help stays help."""
    message = error.format_message() if hasattr(error, "format_message") else str(error)
    if "\n" in message.strip():  # `sweep` alone: its help
        typer.echo(message, err=True)
        return EXIT_USAGE
    context = getattr(error, "ctx", None)
    command = context.command_path if context is not None else "sweep"
    typer.echo(f"error: {message.rstrip('.')}; see {command} --help", err=True)
    return EXIT_USAGE
