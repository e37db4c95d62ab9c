"""Working through a study: claim a grid point, train its missing repeats on the worker pool,
record each as it finishes, then store the point's record. Only this process writes to the study.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Protocol

import optuna

from sweep.data.problems import Dataset
from sweep.errors import StorageError
from sweep.run.packs import PackMemory, check_memory, pack_jobs
from sweep.run.racing import Race
from sweep.spec import GridPoint, Spec
from sweep.store import protocol, record
from sweep.store.connection import WORKER, DatabaseLostError, kept_alive
from sweep.train.jobs import PackJob, PackResult
from sweep.train.memory import default_memory_per_worker, memory_from_environment
from sweep.train.pool import RepeatPool, WorkerDied

__all__ = ["Progress", "Run", "run_study"]

# A worker that dies (killed, out of memory) gets its repeats run again this many times before
# the point is failed; what finished before is kept either way.
MAX_WORKER_DEATHS = 2


class Progress(Protocol):
    def point_started(self, key: str, *, n_repeats: int, n_finished: int) -> None: ...

    def repeat_finished(self, key: str) -> None: ...

    def point_finished(self, key: str, *, is_complete: bool) -> None: ...

    def point_paused(self, key: str, *, n_finished: int) -> None: ...


class NoProgress:
    def point_started(self, key: str, *, n_repeats: int, n_finished: int) -> None:
        pass

    def repeat_finished(self, key: str) -> None:
        pass

    def point_finished(self, key: str, *, is_complete: bool) -> None:
        pass

    def point_paused(self, key: str, *, n_finished: int) -> None:
        pass


@dataclass(frozen=True)
class Run:
    """Everything one run works with, built once: the study and its spec, the data, the grid,
    the worker pool, how repeats train (`is_fused`), the race (None: not raced), who hears
    of progress, and what each worker's packs may take in memory."""

    study: optuna.Study
    spec: Spec
    dataset: Dataset
    points: Sequence[GridPoint]
    pool: RepeatPool
    is_fused: bool
    race: Race | None
    progress: Progress
    memory: PackMemory

    @property
    def ranked_by(self) -> str:
        """The key of the score a repeat is ranked by."""
        return record.objective_key(self.spec)


def run_study(
    study: optuna.Study,
    spec: Spec,
    dataset: Dataset,
    *,
    points: Sequence[GridPoint],
    n_workers: int,
    is_fused: bool = True,
    progress: Progress | None = None,
    memory_per_worker: int | None = None,
) -> int:
    """Train grid points until none is waiting or running; returns how many this call finished.

    With heartbeats on, a worker that finds nothing waiting keeps watching the points other
    workers run: one whose worker died is failed after the grace period and queued again with
    its finished repeats, and this worker takes it over. Packs are no larger than
    `memory_per_worker` bytes hold (default: $SWEEP_MEMORY_PER_WORKER, else a share of the
    memory available); MemoryBudgetError, before any training, where one repeat of a point
    cannot fit.
    """
    if spec.validation.is_on != dataset.has_validation:
        raise ValueError("the dataset's validation split is not the spec's: load the data with sweep.data.problems.load_data(spec)")
    memory = pack_memory(dataset, n_workers=n_workers, memory_per_worker=memory_per_worker)
    if is_fused:
        check_memory(spec, points, memory)
    try:
        with RepeatPool(dataset, n_workers=n_workers) as pool:
            run = Run(
                study=study, spec=spec, dataset=dataset, points=points, pool=pool, is_fused=is_fused,
                race=race_of(spec, len(points)), progress=progress or NoProgress(), memory=memory,
            )
            return _work_through(run)
    except DatabaseLostError as error:
        raise error.but(database=protocol.database_of(study)) from None
    except (KeyError, optuna.exceptions.OptunaError, StorageError):
        if not protocol.study_exists(study):
            raise StorageError(
                f"study {study.study_name!r} was deleted while this run worked on it; there is nothing left to train"
            ) from None
        raise


def pack_memory(dataset: Dataset, *, n_workers: int, memory_per_worker: int | None) -> PackMemory:
    """What sizes this run's packs: the budget given, $SWEEP_MEMORY_PER_WORKER, or a share of
    the memory available, with the data's shape."""
    budget = memory_per_worker or memory_from_environment() or default_memory_per_worker(
        n_workers, data_bytes=dataset.n_bytes
    )
    return PackMemory(
        budget=budget, n_features=dataset.n_features, n_outputs=dataset.n_outputs, longest=dataset.sequence_length
    )


def _work_through(run: Run) -> int:
    if _points_side_by_side(run):
        return _work_side_by_side(run)
    interval = protocol.liveness_interval(run.study)
    n_points = 0
    while True:
        trial = protocol.claim_next(run.study, fewest_repeats_first=run.race is not None)
        if trial is None:
            if interval is None or not protocol.others_alive(run.study):
                return n_points
            time.sleep(min(interval, 5))
            continue
        with kept_alive(trial, interval=interval):
            try:
                is_finished = run_point(run, trial)
            except optuna.exceptions.UpdateFinishedTrialError:
                # Silent too long (a network partition): another worker has taken the point over.
                continue
            except BaseException as error:
                # Interrupted: the point goes back to the queue with the repeats it finished.
                _put_back(run, trial, after=error)
                raise
        n_points += is_finished


def _put_back(run: Run, trial: optuna.Trial, *, after: BaseException) -> None:
    """Queue the point again after `after` stopped its work. When the database itself is what
    failed, one try (the outage's budget is spent): the error that stopped the run is the one to
    tell, and a point left claimed is taken over once its heartbeats stop."""
    try:
        protocol.release_trial(run.study, trial)
    except StorageError:
        if not isinstance(after, StorageError):
            raise


def race_of(spec: Spec, n_points: int) -> Race | None:
    """The study's race, or None when its repeats are not raced."""
    if spec.racing is None:
        return None
    return Race(
        stages=tuple(spec.racing.stages), repeats=spec.repeats, alpha=spec.racing.alpha,
        n_points=n_points, maximize=spec.is_maximized,
    )


def run_point(run: Run, trial: optuna.Trial) -> bool:
    """Train the claimed point's missing repeats and store its record; False when a race only
    paused it at a stage, back in the queue."""
    started = time.perf_counter()
    opened = _open_point(run, trial)
    if opened is None:
        return True
    point, finished = opened
    if run.race is not None and run.race.is_boundary(len(finished)):
        verdict = run.race.judge(point.key, _contenders(run))
        if verdict.is_stopped:
            _finish(run, trial, point, finished, started=started, stop=verdict)
            return True
    target = run.race.target(len(finished)) if run.race is not None else run.spec.repeats
    missing = [repeat for repeat in range(target) if repeat not in finished]
    run.progress.point_started(point.key, n_repeats=run.spec.repeats, n_finished=len(finished))
    if not _train_missing(run, trial, point, missing):
        return True
    if target < run.spec.repeats:
        # A stage of a race: back to the queue, to be judged once the other points reach it too.
        protocol.release_trial(run.study, trial)
        run.progress.point_paused(point.key, n_finished=target)
        return False
    _finish(run, trial, point, protocol.stored_repeats(trial), started=started)
    return True


def _open_point(run: Run, trial: optuna.Trial) -> tuple[GridPoint, dict[int, dict]] | None:
    """The claimed trial's grid point and the repeats it already holds (scores mended where a cut
    left them out); None for a trial enqueued by hand with Optuna, set aside as no point of this grid."""
    point = protocol.suggest_point(trial, run.spec, run.points)
    if point is None:
        protocol.set_aside(run.study, trial)
        return None
    protocol.restore_missing_scores(trial, run.ranked_by)
    return point, record.finished_repeats(trial)


def _train_missing(run: Run, trial: optuna.Trial, point: GridPoint, missing: list[int]) -> bool:
    """Train the `missing` repeats, each stored as it finishes, running again the jobs of workers
    that died; False when the point failed instead (stored as such)."""
    jobs = pack_jobs(
        run.spec, point, missing, n_features=run.dataset.n_features, n_workers=run.pool.n_workers, is_fused=run.is_fused,
        memory=run.memory,
    )
    for _ in range(MAX_WORKER_DEATHS + 1):
        jobs, failure, kind = _train_jobs(run, trial, jobs)
        if failure is not None:
            _fail(run, trial, point, failure, kind=kind)
            return False
        if not jobs:
            return True
    _fail(run, trial, point, f"worker processes died {MAX_WORKER_DEATHS + 1} times training this point")
    return False


def _contenders(run: Run) -> dict[str, list[float]]:
    """Every point still in the race, by key, with its scores in repeat order: not failed, not
    stopped at an earlier stage."""
    return {
        point.key: list(point.scores)
        for point in record.read_points(run.study, maximize=run.spec.is_maximized, metric=run.spec.metric)
        if point.state != "failed" and not point.stopped
    }


def _finish(
    run: Run, trial: optuna.Trial, point: GridPoint, repeats: dict[int, dict], *, started: float,
    stop: record.Stop | None = None,
) -> None:
    """Store the point's record over `repeats` and complete it."""
    summary = record.point_summary(
        repeats, spec=run.spec, dataset=run.dataset, point=point, wall_seconds=time.perf_counter() - started, stop=stop,
    )
    protocol.finish_trial(run.study, trial, summary=summary, value=summary["mean"])
    run.progress.point_finished(point.key, is_complete=True)


def _fail(run: Run, trial: optuna.Trial, point: GridPoint, reason: str, *, kind: str = "") -> None:
    protocol.fail_trial(run.study, trial, reason, kind=kind)
    run.progress.point_finished(point.key, is_complete=False)


def _train_jobs(run: Run, trial: optuna.Trial, jobs: list[PackJob]) -> tuple[list[PackJob], str | None, str]:
    """Train `jobs`, storing each finished repeat at once. Returns the jobs lost to dead workers,
    and a failure reason and kind if a repeat failed (the jobs not yet started are then cancelled):
    record.DIVERGED for a repeat whose loss became infinite, which its seed makes certain again."""
    lost: list[PackJob] = []
    with contextlib.closing(run.pool.run(jobs)) as outcomes:
        for job, outcome in outcomes:
            if isinstance(outcome, WorkerDied):
                lost.append(job)
                continue
            failure, kind = _record_outcome(run, trial, job, outcome)
            if failure is not None:
                return lost, failure, kind
    return lost, None, ""


def _record_outcome(run: Run, trial: optuna.Trial, job: PackJob, outcome: PackResult | BaseException) -> tuple[str | None, str]:
    """Store the repeats a job finished; the reason and kind of its failure, if it failed (None, "" if not)."""
    if not isinstance(outcome, PackResult):
        return f"{job.key} repeats {list(job.repeats)}: {type(outcome).__name__}: {outcome}", record.ERRORED
    finished = []
    for result in outcome.results:
        details = record.repeat_details(result, worker=WORKER)
        finished.append(
            protocol.FinishedRepeat(repeat=result.repeat, score=details[run.ranked_by], details=details, weights=result.weights)
        )
    protocol.record_repeats(trial, finished)
    for _ in finished:
        run.progress.repeat_finished(job.key)
    if outcome.failures:
        return outcome.failures[0][1], record.DIVERGED
    return None, ""


# Side by side: each worker trains whole points, one pack of all their repeats, instead of every
# worker a share of one point. Small networks cost little more in a pack of 30 than of 15 (the
# overhead is per step, not per repeat), and each point's loops are traced by one worker, not
# by all: the default study's 12 points cost 51.5 s of one core in packs of 30 against 2 x
# 38.9 s in packs of 15. Workers that would find no point waiting share the last ones instead.


def _points_side_by_side(run: Run) -> bool:
    """Whether this run trains several points at once: fused, not raced (a race judges a stage
    once every point has reached it), more than one worker, and every point's repeats in one pack."""
    if not run.is_fused or run.race is not None or run.pool.n_workers < 2:
        return False
    everything = list(range(run.spec.repeats))
    return all(
        len(pack_jobs(run.spec, point, everything, n_features=run.dataset.n_features, n_workers=1, is_fused=True,
                      memory=run.memory)) == 1
        for point in run.points
    )


@dataclass
class _Claimed:
    """A point claimed to be trained side by side with others: its trial and heartbeat, and once
    its jobs are made, the point, how many of its jobs are not yet settled, whether it failed
    and how often a worker died under it."""

    trial: optuna.Trial
    heartbeat: contextlib.ExitStack
    point: GridPoint | None = None
    started: float = 0.0
    jobs_left: int = 0
    has_failed: bool = False
    deaths: int = 0


def _shapes(point: GridPoint) -> tuple:
    """What fixes a point's traced programs in a worker: its settings and lengths, not its state
    mode (both modes of one length share their programs)."""
    return point.length, point.backward, point.settings


def _work_side_by_side(run: Run) -> int:
    return _SideBySide(run).work()


class _SideBySide:
    """The points a run trains at once. `held` is every point claimed and not yet settled, by
    trial number, from the moment it is claimed: those go back to the queue if the run stops,
    whatever it was doing. `ready` holds jobs made and not yet started, `in_flight` the point of
    each job training."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.interval = protocol.liveness_interval(run.study)
        self.held: dict[int, _Claimed] = {}
        self.ready: deque[tuple[_Claimed, PackJob]] = deque()
        self.in_flight: dict[Future, tuple[_Claimed, PackJob]] = {}
        # The shapes each worker process has trained, by its process id: a point of the same
        # shapes runs there without tracing its loops again.
        self.traced: dict[int, set[tuple]] = {}
        self.n_points = 0

    def work(self) -> int:
        """Keep every worker busy until no point is waiting (or, with heartbeats, running
        elsewhere); how many points this call finished."""
        try:
            while True:
                self._keep_workers_busy()
                if not self.in_flight:
                    if self.interval is None or not protocol.others_alive(self.run.study):
                        return self.n_points
                    time.sleep(min(self.interval, 5))
                    continue
                done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
                finished = self._take(done)
                # The free workers get their next job first: storing a pack's repeats takes a while.
                self._keep_workers_busy(free=self._note_traced(finished))
                for claimed, job, outcome in finished:
                    self._settle(claimed, job, outcome)
        except BaseException as error:
            # Interrupted: every point held goes back to the queue with the repeats it finished.
            self._put_back_all(after=error)
            raise

    def _submit(self, claimed: _Claimed, job: PackJob) -> None:
        self.in_flight[self.run.pool.submit(job)] = (claimed, job)

    def _claim_next(self, worker: int | None = None) -> bool:
        """Claim the next waiting point, the one best for `worker` (a process id; None: any),
        and make its jobs ready; False when none is waiting. A point that needs no training
        (enqueued by hand, or every repeat stored) is settled here."""
        trial = protocol.claim_next(self.run.study, prefer=self._preference(worker))
        if trial is None:
            return False
        claimed = _Claimed(trial=trial, heartbeat=contextlib.ExitStack())
        self.held[trial.number] = claimed
        try:
            claimed.heartbeat.enter_context(kept_alive(trial, interval=self.interval))
            jobs = self._jobs_of(claimed)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._let_go(claimed)  # silent too long (a network partition): taken over elsewhere
            return True
        if not jobs:
            self._let_go(claimed)
            self.n_points += 1
            return True
        claimed.jobs_left = len(jobs)
        self.ready.extend((claimed, job) for job in jobs)
        return True

    def _jobs_of(self, claimed: _Claimed) -> list[PackJob]:
        """The point's jobs, of the repeats it lacks: one, or where fewer points are waiting than
        workers are free, a share for each worker that would otherwise wait. None where it needs
        none (then it is settled here)."""
        run, trial = self.run, claimed.trial
        claimed.started = time.perf_counter()
        opened = _open_point(run, trial)
        if opened is None:
            return []
        point, finished = opened
        claimed.point = point
        missing = [repeat for repeat in range(run.spec.repeats) if repeat not in finished]
        run.progress.point_started(point.key, n_repeats=run.spec.repeats, n_finished=len(finished))
        idle = run.pool.n_workers - len(self.in_flight) - len(self.ready) - protocol.count_waiting(run.study)
        jobs = pack_jobs(
            run.spec, point, missing, n_features=run.dataset.n_features, n_workers=max(1, idle),
            is_fused=True, memory=run.memory,
        )
        if not jobs:
            _finish(run, trial, point, protocol.stored_repeats(trial), started=claimed.started)
        return jobs

    def _keep_workers_busy(self, free: list[int] | None = None) -> None:
        """Start ready jobs, claiming points for more, until every worker has one or none is
        waiting. `free` holds the process ids of workers that just finished a job: each of the
        next claims is for one of them, as the free worker is the one that takes the job."""
        free = list(free or [])
        while len(self.in_flight) < self.run.pool.n_workers and (
            self.ready or self._claim_next(free.pop(0) if free else None)
        ):
            if self.ready:
                self._submit(*self.ready.popleft())

    def _note_traced(self, finished: list[tuple[_Claimed, PackJob, PackResult | BaseException]]) -> list[int]:
        """Note the shapes each finished job's worker has trained; the process ids of those workers."""
        workers = []
        for claimed, _, outcome in finished:
            if isinstance(outcome, PackResult) and outcome.process and claimed.point is not None:
                self.traced.setdefault(outcome.process, set()).add(_shapes(claimed.point))
                workers.append(outcome.process)
        return workers

    def _preference(self, worker: int | None) -> Callable[[dict], int]:
        """How a waiting point ranks for `worker`, by its parameters: first the shapes it has
        trained (it runs them without tracing again, about a second a length saved), then shapes
        no worker has trained nor is training (one traces them, where taking another's shapes
        would trace them twice), then the rest."""
        own = self.traced.get(worker, set()) if worker is not None else set()
        elsewhere = {shapes for other, traced in self.traced.items() if other != worker for shapes in traced}
        elsewhere |= {_shapes(claimed.point) for claimed, _ in self.in_flight.values() if claimed.point is not None}

        def rank(params: dict) -> int:
            if not params:
                return 1
            shapes = _shapes(GridPoint.from_params(params))
            return 0 if shapes in own else 2 if shapes in elsewhere else 1

        return rank

    def _take(self, done: set[Future]) -> list[tuple[_Claimed, PackJob, PackResult | BaseException]]:
        """The finished jobs with what they brought back, to be stored. A dead worker breaks the
        whole pool: the jobs it ended are started again on a new one."""
        outcomes = {future: self.run.pool.outcome(self.in_flight[future][1], future) for future in done}
        if any(isinstance(outcome, WorkerDied) for outcome in outcomes.values()):
            wait(self.in_flight)  # every other job in flight ends at once, some perhaps finished first
            outcomes = {future: self.run.pool.outcome(job, future) for future, (_, job) in self.in_flight.items()}
        died = [future for future, outcome in outcomes.items() if isinstance(outcome, WorkerDied)]
        finished = [(*self.in_flight.pop(future), outcome) for future, outcome in outcomes.items() if future not in died]
        if died:
            self._start_again(died)
        return finished

    def _settle(self, claimed: _Claimed, job: PackJob, outcome: PackResult | BaseException) -> None:
        """Store a finished job's repeats; once the point's last job is in, complete it, or fail
        it at its first failed job (what its other jobs bring back then is not stored)."""
        if claimed.has_failed:
            return
        run = self.run
        claimed.jobs_left -= 1
        try:
            failure, kind = _record_outcome(run, claimed.trial, job, outcome)
            if failure is not None:
                self._fail(claimed, failure, kind=kind)
            elif claimed.jobs_left == 0:
                _finish(run, claimed.trial, claimed.point, protocol.stored_repeats(claimed.trial), started=claimed.started)
                self.n_points += 1
                self._let_go(claimed)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Silent too long (a network partition): another worker has taken the point over.
            claimed.has_failed = True
            self._let_go(claimed)

    def _start_again(self, died: list[Future]) -> None:
        """Restart the pool and the jobs a dead worker ended (they stored nothing); a point whose
        workers died too often fails."""
        self.run.pool.restart()
        for future in died:
            claimed, job = self.in_flight.pop(future)
            if claimed.has_failed:
                continue
            claimed.deaths += 1
            if claimed.deaths > MAX_WORKER_DEATHS:
                self._fail(claimed, f"worker processes died {MAX_WORKER_DEATHS + 1} times training this point")
                continue
            self._submit(claimed, job)

    def _fail(self, claimed: _Claimed, reason: str, *, kind: str = "") -> None:
        """Fail the point, its jobs not yet started dropped and those in flight disregarded."""
        claimed.has_failed = True
        self.ready = deque(item for item in self.ready if item[0] is not claimed)
        _fail(self.run, claimed.trial, claimed.point, reason, kind=kind)
        self._let_go(claimed)

    def _let_go(self, claimed: _Claimed) -> None:
        self.held.pop(claimed.trial.number, None)
        claimed.heartbeat.close()

    def _put_back_all(self, *, after: BaseException) -> None:
        """Every point held back to the queue; the first problem doing so is raised once all were tried."""
        problems = []
        for claimed in list(self.held.values()):
            claimed.heartbeat.close()
            try:
                _put_back(self.run, claimed.trial, after=after)
            except Exception as problem:  # noqa: BLE001 - raised below, once the others are back
                problems.append(problem)
        self.held.clear()
        if problems:
            raise problems[0]
