"""Working through a study: claim a grid point, train its missing repeats on the worker pool,
record each as it finishes, then store the point's summary. Only this process writes to the study.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Sequence
from typing import Protocol

import optuna
from optuna.trial import TrialState

from sweep import study as studies
from sweep.errors import StorageError
from sweep.heartbeat import Heartbeat
from sweep.optuna_private import heartbeat_interval, last_heartbeats
from sweep.pool import RepeatPool, WorkerDied
from sweep.prepare import n_chunks, padding_share
from sweep.problems import Dataset
from sweep.racing import Race, Verdict
from sweep.results import read_points, summarize
from sweep.spec import GridPoint, Spec, point_settings
from sweep.jobs import PackJob, PackResult, RepeatResult

__all__ = ["Progress", "repeat_seed", "run_study", "split_into_packs"]

# A worker that dies (killed, out of memory) gets its repeats run again this many times before
# the point is failed; what finished before is kept either way.
MAX_WORKER_DEATHS = 2
# A pack's weights, gradients and optimizer slots should stay in a core's cache: on 2 workers, 100
# units trained 1.3x faster per repeat in packs of 3 (about 120,000 parameters) than in packs of
# 15, and 1.2x faster than one at a time (benchmarks/fused_vs_reference.py). Small networks,
# where only per-step overhead counts, are not split.
MAX_PACK_PARAMETERS = 128_000


class Progress(Protocol):
    def point_started(self, key: str, *, n_repeats: int, n_finished: int) -> None: ...

    def repeat_finished(self) -> None: ...

    def point_finished(self, key: str, *, is_complete: bool) -> None: ...

    def point_paused(self, key: str, *, n_finished: int) -> None: ...


class NoProgress:
    def point_started(self, key: str, *, n_repeats: int, n_finished: int) -> None:
        pass

    def repeat_finished(self) -> None:
        pass

    def point_finished(self, key: str, *, is_complete: bool) -> None:
        pass

    def point_paused(self, key: str, *, n_finished: int) -> None:
        pass


def repeat_seed(study_seed: int, key: str, repeat: int) -> int:
    """A seed for one repeat of one grid point, the same on every machine and every run."""
    digest = hashlib.sha256(f"{study_seed}|{key}|{repeat}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def run_study(
    study: optuna.Study,
    spec: Spec,
    dataset: Dataset,
    *,
    points: Sequence[GridPoint],
    n_workers: int,
    is_fused: bool = True,
    progress: Progress | None = None,
) -> int:
    """Train grid points until none is waiting or running; returns how many this call finished.

    With heartbeats on, a worker that finds nothing waiting keeps watching the points other
    workers run: one whose worker died is failed after the grace period and queued again with
    its finished repeats, and this worker takes it over.
    """
    try:
        return _run_study(study, spec, dataset, points=points, n_workers=n_workers, is_fused=is_fused, progress=progress)
    except (KeyError, optuna.exceptions.OptunaError, StorageError):
        if not studies.study_exists(study):
            raise StorageError(
                f"study {study.study_name!r} was deleted while this run worked on it; there is nothing left to train"
            ) from None
        raise


def _run_study(
    study: optuna.Study,
    spec: Spec,
    dataset: Dataset,
    *,
    points: Sequence[GridPoint],
    n_workers: int,
    is_fused: bool,
    progress: Progress | None,
) -> int:
    if spec.validation.is_on != dataset.has_validation:
        raise ValueError("the dataset's validation split is not the spec's: load the data with sweep.problems.load_data(spec)")
    progress = progress or NoProgress()
    interval = heartbeat_interval(study)
    n_points = 0
    with RepeatPool(dataset, n_workers=n_workers) as pool:
        while True:
            trial = studies.claim_next(study, fewest_repeats_first=spec.racing is not None)
            if trial is None:
                if interval is None or not _others_alive(study):
                    return n_points
                time.sleep(min(interval, 5))
                continue
            with _beating(study, trial, interval):
                try:
                    is_finished = run_point(
                        study, trial, spec, dataset, points=points, pool=pool, is_fused=is_fused, progress=progress
                    )
                except optuna.exceptions.UpdateFinishedTrialError:
                    # Silent too long (a network partition): another worker has taken the point over.
                    continue
                except BaseException:
                    # Interrupted: the point goes back to the queue with the repeats it finished.
                    studies.release_trial(study, trial)
                    raise
            n_points += is_finished


def _beating(study: optuna.Study, trial: optuna.Trial, interval: int | None) -> contextlib.AbstractContextManager:
    if interval is None:
        return contextlib.nullcontext()
    return Heartbeat(trial, interval=interval)


def _others_alive(study: optuna.Study) -> bool:
    """Queue again the points of dead workers; True while a point is waiting or has a live worker."""
    studies.requeue_stale(study)
    active = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    if any(trial.state == TrialState.WAITING for trial in active):
        return True
    # A point claimed before heartbeats were on never goes stale; do not wait for it forever.
    beating = last_heartbeats(study)
    return any(trial.number in beating for trial in active)


def run_point(
    study: optuna.Study,
    trial: optuna.Trial,
    spec: Spec,
    dataset: Dataset,
    *,
    points: Sequence[GridPoint],
    pool: RepeatPool,
    is_fused: bool,
    progress: Progress,
) -> bool:
    """Train the claimed point's missing repeats and finish it; False when a race only paused it
    at a stage, back in the queue."""
    started = time.perf_counter()
    point = studies.suggest_point(trial, spec, points)
    if point is None:  # enqueued by hand with Optuna: no point of this grid
        studies.set_aside(study, trial)
        return True
    metric = objective_key(spec)
    studies.restore_missing_scores(trial, metric)
    finished = studies.finished_repeats(trial)
    target = spec.repeats
    race = race_of(spec, len(points))
    if race is not None:
        if race.is_boundary(len(finished)):
            verdict = race.judge(point.key, _contenders(study, spec.metric))
            if verdict.is_stopped:
                _finish(study, trial, finished, spec=spec, dataset=dataset, point=point, metric=metric, started=started,
                        stopped=verdict)
                progress.point_finished(point.key, is_complete=True)
                return True
        target = race.target(len(finished))
    missing = [repeat for repeat in range(target) if repeat not in finished]
    jobs = _packs(spec, point, missing, dataset=dataset, n_workers=pool.n_workers, is_fused=is_fused)
    progress.point_started(point.key, n_repeats=spec.repeats, n_finished=len(finished))
    for _ in range(MAX_WORKER_DEATHS + 1):
        jobs, failure, kind = _train_jobs(trial, jobs, pool=pool, metric=metric, progress=progress)
        if failure is not None:
            studies.fail_trial(study, trial, failure, kind=kind)
            progress.point_finished(point.key, is_complete=False)
            return True
        if not jobs:
            break
    else:
        reason = f"worker processes died {MAX_WORKER_DEATHS + 1} times training this point"
        studies.fail_trial(study, trial, reason)
        progress.point_finished(point.key, is_complete=False)
        return True
    if target < spec.repeats:
        # A stage of a race: back to the queue, to be judged once the other points reach it too.
        studies.release_trial(study, trial)
        progress.point_paused(point.key, n_finished=target)
        return False
    _finish(study, trial, studies.stored_repeats(trial), spec=spec, dataset=dataset, point=point, metric=metric, started=started)
    progress.point_finished(point.key, is_complete=True)
    return True


def objective_key(spec: Spec) -> str:
    """The score a repeat is ranked by, as its details key it: the objective on the validation
    data, or on the test data with the split off."""
    return f"{studies.VALIDATION_PREFIX}{spec.metric}" if spec.validation.is_on else spec.metric


def race_of(spec: Spec, n_points: int) -> Race | None:
    """The study's race, or None when its repeats are not raced."""
    if spec.racing is None:
        return None
    return Race(
        stages=tuple(spec.racing.stages), repeats=spec.repeats, alpha=spec.racing.alpha,
        n_points=n_points, maximize=spec.direction == "maximize",
    )


def _contenders(study: optuna.Study, metric: str) -> dict[str, list[float]]:
    """Every point still in the race, by key, with its scores in repeat order: not failed, not
    stopped at an earlier stage."""
    return {
        point.key: list(point.scores)
        for point in read_points(study, metric=metric)
        if point.state != "failed" and not point.stopped
    }


def _finish(
    study: optuna.Study, trial: optuna.Trial, repeats: dict[int, dict], *, spec: Spec, dataset: Dataset,
    point: GridPoint, metric: str, started: float, stopped: Verdict | None = None,
) -> None:
    """Store the point's summary over `repeats` and complete it; for a raced point `stopped` at a
    stage, also where and why."""
    summary = _summary(repeats, spec=spec, dataset=dataset, point=point, metric=metric)
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    if stopped is not None:
        summary.update({
            studies.STOPPED_AT_ATTR: stopped.stage,
            "stop_leader": stopped.leader,
            "stop_p_value": stopped.p_value,
            "stop_threshold": stopped.threshold,
        })
    studies.finish_trial(study, trial, summary=summary, value=summary["mean"])


def _packs(
    spec: Spec, point: GridPoint, repeats: list[int], *, dataset: Dataset, n_workers: int, is_fused: bool
) -> list[PackJob]:
    """The repeats as fused packs (see :func:`split_into_packs`), or one job each unfused."""
    settings = point_settings(spec, point)
    if is_fused and spec.racing is not None:
        packs = _stage_packs(repeats, spec.repeats, n_workers=n_workers, units=settings["units"], n_features=dataset.n_features)
    elif is_fused:
        packs = split_into_packs(repeats, n_workers=n_workers, units=settings["units"], n_features=dataset.n_features)
    else:
        packs = [[repeat] for repeat in repeats]
    return [
        PackJob(
            key=point.key,
            length=point.length,
            backward=point.backward,
            mode=point.mode,
            repeats=tuple(pack),
            seeds=tuple(repeat_seed(spec.seed, point.key, repeat) for repeat in pack),
            is_fused=is_fused,
            objective=spec.metric,
            patience=spec.validation.patience,
            **settings,
        )
        for pack in packs
    ]


def split_into_packs(repeats: list[int], *, n_workers: int, units: int, n_features: int) -> list[list[int]]:
    """Split `repeats` into packs of nearly equal size, as few as keep every worker busy, the same
    number for each worker so that all finish together, and none over MAX_PACK_PARAMETERS."""
    if not repeats:
        return []
    n_parameters = 4 * units * (units + n_features + 1) + units + 1
    largest = max(1, MAX_PACK_PARAMETERS // n_parameters)
    n_rounds = -(-len(repeats) // (largest * n_workers))
    n_packs = min(len(repeats), n_rounds * n_workers)
    return [repeats[index::n_packs] for index in range(n_packs)]


def _stage_packs(repeats: list[int], n_repeats: int, *, n_workers: int, units: int, n_features: int) -> list[list[int]]:
    """A race's stage in packs of the size the full count would use, as few as hold it: a stage
    of 5 of 30 repeats is one pack of 5 rather than packs of 3 and 2, so that the stages of a
    point share few pack sizes (each new one is traced again, and compiled again under XLA)."""
    whole = split_into_packs(list(range(n_repeats)), n_workers=n_workers, units=units, n_features=n_features)
    size = max(len(pack) for pack in whole)
    n_packs = -(-len(repeats) // size)
    return [repeats[index::n_packs] for index in range(n_packs)]


def _train_jobs(
    trial: optuna.Trial, jobs: list[PackJob], *, pool: RepeatPool, metric: str, progress: Progress
) -> tuple[list[PackJob], str | None, str]:
    """Train `jobs`, storing each finished repeat at once. Returns the jobs lost to dead workers,
    and a failure reason and kind if a repeat failed (the jobs not yet started are then cancelled):
    studies.DIVERGED for a repeat whose loss became infinite, which its seed makes certain again."""
    lost: list[PackJob] = []
    with contextlib.closing(pool.run(jobs)) as outcomes:
        for job, outcome in outcomes:
            if isinstance(outcome, WorkerDied):
                lost.append(job)
                continue
            if not isinstance(outcome, PackResult):
                return lost, f"{job.key} repeats {list(job.repeats)}: {type(outcome).__name__}: {outcome}", studies.ERRORED
            for result in outcome.results:
                details = _details(result)
                studies.record_repeat(trial, repeat=result.repeat, score=details[metric], details=details)
                progress.repeat_finished()
            if outcome.failures:
                return lost, outcome.failures[0][1], studies.DIVERGED
    return lost, None, ""


def _details(result: RepeatResult) -> dict:
    """What is stored of a repeat: its seed, time and worker, every score on the test data and
    on the validation data, and its learning curves."""
    details = {
        "seed": result.seed, "seconds": round(result.seconds, 3), "worker": studies.WORKER, **result.scores,
        **{f"{studies.VALIDATION_PREFIX}{name}": score for name, score in result.validation_scores.items()},
        studies.LOSS_CURVE: [_significant(loss) for loss in result.loss_per_epoch],
    }
    if result.validation_per_epoch:
        details[studies.VALIDATION_CURVE] = [_significant(score) for score in result.validation_per_epoch]
    if result.stopped_epoch is not None:
        details[studies.STOPPED_EPOCH] = result.stopped_epoch
    return details


def _significant(value: float) -> float:
    """A curve's value kept to 7 significant digits: compact, and fine enough for targets of any scale."""
    return float(f"{value:.7g}")


def _summary(repeats: dict[int, dict], *, spec: Spec, dataset: Dataset, point: GridPoint, metric: str) -> dict:
    """The point's statistics over `repeats` of the score it is ranked by (`metric`); ranked on
    the validation data, also those of the same score on the test data."""
    ordered = [repeats[index] for index in sorted(repeats)]
    scores = [details[metric] for details in ordered]
    summary: dict = summarize(scores, metric=spec.metric)
    if metric != spec.metric:
        summary[studies.TEST_SUMMARY_ATTR] = summarize([details[spec.metric] for details in ordered], metric=spec.metric)
    if spec.validation.patience:
        summary["n_stopped_early"] = sum(studies.STOPPED_EPOCH in details for details in ordered)
    # Stateless TBPTT(k1, k2) trains windows of k2 steps; stateful training cuts chunks of k1.
    width = point.backward if point.mode == "stateless" else None
    n_subsequences, padding = padding_share(dataset.train_lengths, point.length, width)
    summary.update(
        metric=spec.metric,
        ranked_on=spec.ranked_on,
        scores=scores,
        seeds=[details["seed"] for details in ordered],
        train_seconds=round(sum(details["seconds"] for details in ordered), 3),
        length=point.length,
        mode=point.mode,
        n_chunks=n_chunks(dataset.sequence_length, point.length),
        n_subsequences=n_subsequences,
        is_padded=padding > 0,
        padding_fraction=round(padding, 6),
    )
    for name in ordered[0]:
        if name not in ("seed", "seconds", "worker", studies.LOSS_CURVE, studies.VALIDATION_CURVE, studies.STOPPED_EPOCH):
            summary[f"mean {name}"] = summarize([details[name] for details in ordered])["mean"]
    return summary
