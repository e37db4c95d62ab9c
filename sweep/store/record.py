"""The stored record of a study and of each grid point: every key it is stored under, its one
writer, its one reader, and the upgrades of what earlier versions stored.

A study keeps its spec, data fingerprint, sequence length, grid size, data encoding and (where
its lengths were suggested) the suggestion as user attributes. A grid point is one Optuna trial:
its repeats' objective scores are intermediate values (step = repeat index), every repeat's
details an attribute ``repeat/NNNN``, and a finished point's statistics and settings its other
attributes. The writers here say what is stored (:func:`repeat_details`, :func:`point_summary`,
:func:`failure`, :func:`claim`); :mod:`sweep.store.protocol` says when and in which
transaction. The reader (:func:`read_points`) is the one way a record comes back: the results
table, the report, the dashboard note, ``sweep list``, racing and the Python API all start from
its :class:`StoredPoint`.

Studies made by earlier versions open as they are: :data:`POINT_UPGRADES` and
:data:`SPEC_UPGRADES` are the ordered steps that bring an older record to today's format when it
is read. Reading never writes; the upgrade is made afresh each time.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from sweep.data.shaping import n_chunks, padding_share
from sweep.data.statistics import SUMMARY_KEYS, summarize
from sweep.metrics import METRICS
from sweep.metrics import metric as metric_of
from sweep.errors import StorageError
from sweep.store.connection import describe_database_error
from sweep.store.optuna_private import fixed_params, last_heartbeats, url_of

if TYPE_CHECKING:
    from sweep.data.problems import Dataset
    from sweep.spec import GridPoint, Spec
    from sweep.train.jobs import RepeatResult

__all__ = [
    "FORMAT_VERSION",
    "POINT_UPGRADES",
    "Results",
    "SPEC_UPGRADES",
    "StoredPoint",
    "Stop",
    "claim",
    "current_trials",
    "failure",
    "finished_repeats",
    "point_summary",
    "read_point",
    "read_points",
    "read_results",
    "repeat_attr",
    "repeat_details",
    "set_aside_reasons",
    "state_counts",
]

# The study's attributes -------------------------------------------------------------------------

SPEC = "spec"  # the spec as JSON
MARKER = "sweep_format"  # sweep's mark on a study it made: the version of its format
# 2: specs carry [validation], and points may be ranked on validation data.
FORMAT_VERSION = 2
FINGERPRINT = "data_fingerprint"
SEQUENCE_LENGTH = "sequence_length"
GRID_SIZE = "n_points"  # the whole grid's size, stored before its points are enqueued
ENCODING = "data_encoding"  # class names and standardization of a user's data
SUGGESTION = "suggestion"  # the lengths the data suggested, with reasons, ACF and PACF
BASELINES = "baselines"  # the naive forecasts' scores: name -> part -> "<metric>/<scope>" -> score

# A grid point's attributes ----------------------------------------------------------------------

KEY = "key"  # the grid point's name, "L=5 stateful" or "k1=5 k2=20 stateless units=32"
CLAIMED_BY = "worker"  # host:pid of the process that claimed the point last
FAIL_REASON = "fail_reason"
FAIL_KIND = "fail_kind"  # DIVERGED or ERRORED; absent for a point whose workers kept dying
DIVERGED = "diverged"
ERRORED = "errored"
SET_ASIDE = "set_aside"  # a trial that is no grid point, failed for good
REPEAT_PREFIX = "repeat/"  # + zero-padded repeat index: the repeat's details

# A finished point's summary, besides the statistics of sweep.data.statistics.
METRIC = "metric"  # the objective, "<metric>/<scope>"
RANKED_ON = "ranked_on"  # "validation" or "test": the data the objective scores come from
TEST_SUMMARY = "test"  # ranked on validation data: the point's statistics on the test data
SCORES = "scores"
SEEDS = "seeds"
TRAIN_SECONDS = "train_seconds"
WALL_SECONDS = "wall_seconds"
LENGTH = "length"
MODE = "mode"
N_CHUNKS = "n_chunks"
N_SUBSEQUENCES = "n_subsequences"
IS_PADDED = "is_padded"
PADDING_FRACTION = "padding_fraction"
N_STOPPED_EARLY = "n_stopped_early"
MEAN_OF = "mean "  # + a score's name: its mean over the repeats
STOPPED_AT = "stopped_at"  # a raced point shown worse than the leader: the repeats it stopped at
STOP_LEADER = "stop_leader"
STOP_P_VALUE = "stop_p_value"
STOP_THRESHOLD = "stop_threshold"

# A repeat's details.
SEED = "seed"
SECONDS = "seconds"
TRAINED_BY = "worker"  # host:pid of the process that stored it
LOSS_CURVE = "loss_per_epoch"  # its mean training loss in each epoch
VALIDATION_CURVE = "validation_per_epoch"  # its objective on the validation data after each epoch
STOPPED_EPOCH = "stopped_epoch"  # early stopping: the epoch at which it ran out of patience
VALIDATION_PREFIX = "validation/"  # + "<metric>/<scope>": its final scores on the validation data
_NOT_SCORES = (SEED, SECONDS, TRAINED_BY, LOSS_CURVE, VALIDATION_CURVE, STOPPED_EPOCH)

STATE_NAMES = {
    TrialState.COMPLETE: "done",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
    TrialState.FAIL: "failed",
    TrialState.PRUNED: "pruned",
}


# Writing ----------------------------------------------------------------------------------------


def repeat_attr(repeat: int) -> str:
    """The attribute a repeat's details are stored under."""
    return f"{REPEAT_PREFIX}{repeat:04d}"


def repeat_details(result: RepeatResult, *, worker: str) -> dict[str, Any]:
    """What is stored of a repeat: its seed, time and worker, every score on the test data and
    on the validation data, and its learning curves."""
    details = {
        SEED: result.seed, SECONDS: round(result.seconds, 3), TRAINED_BY: worker, **result.scores,
        **{f"{VALIDATION_PREFIX}{name}": score for name, score in result.validation_scores.items()},
        LOSS_CURVE: [_significant(loss) for loss in result.loss_per_epoch],
    }
    if result.validation_per_epoch:
        details[VALIDATION_CURVE] = [_significant(score) for score in result.validation_per_epoch]
    if result.stopped_epoch is not None:
        details[STOPPED_EPOCH] = result.stopped_epoch
    return details


def _significant(value: float) -> float:
    """A curve's value kept to 7 significant digits: compact, and fine enough for targets of any scale."""
    return float(f"{value:.7g}")


def objective_key(spec: Spec) -> str:
    """The score a repeat is ranked by, as its details key it: the objective on the validation
    data, or on the test data with the split off."""
    return f"{VALIDATION_PREFIX}{spec.metric}" if spec.validation.is_on else spec.metric


class Stop(Protocol):
    """Where and why a race stopped a point before its full count (a race's verdict)."""

    stage: int
    leader: str
    p_value: float
    threshold: float


def point_summary(
    repeats: Mapping[int, Mapping[str, Any]], *, spec: Spec, dataset: Dataset, point: GridPoint,
    wall_seconds: float, stop: Stop | None = None,
) -> dict[str, Any]:
    """What a finished point stores: the statistics over `repeats` of the score it is ranked by
    (and, ranked on the validation data, of the same score on the test data), its settings, its
    padding, and for a raced point stopped at a stage, where and why."""
    ordered = [repeats[index] for index in sorted(repeats)]
    ranked_by = objective_key(spec)
    scores = [details[ranked_by] for details in ordered]
    summary: dict[str, Any] = summarize(scores, metric=spec.metric)
    if ranked_by != spec.metric:
        summary[TEST_SUMMARY] = summarize([details[spec.metric] for details in ordered], metric=spec.metric)
    if spec.validation.patience:
        summary[N_STOPPED_EARLY] = sum(STOPPED_EPOCH in details for details in ordered)
    # Stateless TBPTT(k1, k2) trains windows of k2 steps; stateful training cuts chunks of k1.
    width = point.backward if point.mode == "stateless" else None
    n_subsequences, padding = padding_share(dataset.train_lengths, point.length, width)
    summary.update({
        METRIC: spec.metric, RANKED_ON: spec.ranked_on, SCORES: scores, SEEDS: [details[SEED] for details in ordered],
        TRAIN_SECONDS: round(sum(details[SECONDS] for details in ordered), 3),
        LENGTH: point.length, MODE: point.mode, N_CHUNKS: n_chunks(dataset.sequence_length, point.length),
        N_SUBSEQUENCES: n_subsequences, IS_PADDED: padding > 0, PADDING_FRACTION: round(padding, 6),
        WALL_SECONDS: round(wall_seconds, 3),
    })
    for name in ordered[0]:
        if name not in _NOT_SCORES:
            summary[f"{MEAN_OF}{name}"] = summarize([details[name] for details in ordered])["mean"]
    if stop is not None:
        summary.update({STOPPED_AT: stop.stage, STOP_LEADER: stop.leader, STOP_P_VALUE: stop.p_value,
                        STOP_THRESHOLD: stop.threshold})
    return summary


def failure(reason: str, *, kind: str = "") -> dict[str, Any]:
    """What a failed point stores: why, and whether it diverged (DIVERGED) or raised (ERRORED)."""
    return {FAIL_REASON: reason, **({FAIL_KIND: kind} if kind else {})}


def claim(waiting: FrozenTrial, *, worker: str) -> dict[str, Any]:
    """What a claimed point stores: who holds it; a requeued point's old failure is cleared."""
    return {CLAIMED_BY: worker, **({FAIL_REASON: ""} if waiting.user_attrs.get(FAIL_REASON) else {})}


def set_aside_attr() -> tuple[str, bool]:
    """The mark of a trial that is none of the grid's points, failed for good."""
    return SET_ASIDE, True


def grid_point_attrs(key: str) -> dict[str, Any]:
    """What a grid point is enqueued with besides its parameters."""
    return {KEY: key}


def grid_size_attr(n_points: int) -> tuple[str, int]:
    return GRID_SIZE, n_points


def baselines_attr(baselines: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The naive forecasts' scores, as a study keeps them (see sweep.data.baselines)."""
    return BASELINES, baselines


def study_attrs(spec: Spec, *, fingerprint: str, sequence_length: int | None, encoding: dict | None) -> dict[str, Any]:
    """What a new study stores about itself, in the order it is written: the marker last, so that
    a creation cut short is not taken for a whole one."""
    attrs: dict[str, Any] = {}
    if sequence_length is not None:
        attrs[SEQUENCE_LENGTH] = sequence_length
    if encoding:
        attrs[ENCODING] = encoding
    attrs[FINGERPRINT] = fingerprint
    attrs[SPEC] = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    attrs[MARKER] = FORMAT_VERSION
    return attrs


# Reading a study --------------------------------------------------------------------------------


def is_sweep_study(user_attrs: Mapping[str, Any]) -> bool:
    """Whether a study's attributes carry sweep's marker (or, made before the marker, its spec)."""
    return MARKER in user_attrs or SPEC in user_attrs


def format_version(user_attrs: Mapping[str, Any]) -> Any:
    """The format a study was stored in (studies made before the marker: taken as today's)."""
    return user_attrs.get(MARKER, FORMAT_VERSION)


def raw_spec(user_attrs: Mapping[str, Any]) -> dict | None:
    """The stored spec as its JSON holds it, keys left out included; None where it is no object."""
    raw = user_attrs.get(SPEC)
    try:
        stored = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        return None
    return stored if isinstance(stored, dict) else None


def has_spec(user_attrs: Mapping[str, Any]) -> bool:
    return user_attrs.get(SPEC) is not None


def upgraded_spec(raw: dict) -> dict:
    """A stored spec with every step of SPEC_UPGRADES applied, in order."""
    for _, step in SPEC_UPGRADES:
        raw = step(raw)
    return raw


def _npz_unstandardized(raw: dict) -> dict:
    problem = raw.get("problem")
    if isinstance(problem, dict) and problem.get("kind") == "npz":
        problem.setdefault("standardize", False)
    return raw


def _validation_off(raw: dict) -> dict:
    raw.setdefault("validation", {"fraction": 0.0})
    return raw


# Where a later version changed a default, a stored spec that left the key out gets the value its
# version had; each step is tested on a spec of its time (tests/test_record.py).
SPEC_UPGRADES: tuple[tuple[str, Callable[[dict], dict]], ...] = (
    ("npz data were not standardized before problem.standardize existed", _npz_unstandardized),
    ("points were ranked on the test data before the validation split", _validation_off),
)


def has_baselines(user_attrs: Mapping[str, Any]) -> bool:
    return BASELINES in user_attrs


def grid_size(user_attrs: Mapping[str, Any]) -> int | None:
    return user_attrs.get(GRID_SIZE)


def fingerprint(user_attrs: Mapping[str, Any]) -> str | None:
    return user_attrs.get(FINGERPRINT)


# Reading a grid point ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredPoint:
    """One grid point as its latest trial stores it."""

    number: int
    key: str
    params: dict[str, Any]  # length, mode and any crossed settings
    state: str  # done, running, waiting, failed
    scores: tuple[float, ...]  # the repeats' objective scores, by repeat index
    repeats: dict[int, dict[str, Any]]  # each repeat's seed, every metric, seconds and worker
    summary: dict[str, Any]  # n, mean, std, interval...: stored for a finished point, else of the scores so far
    padding_fraction: float | None  # share of padding steps in its training subsequences
    wall_seconds: float | None
    fail_reason: str
    worker: str | None  # host:pid of the process that claimed it last
    stopped: str = ""  # a raced point stopped at a stage: at how many repeats, and why
    metric: str | None = None  # the objective, "<metric>/<scope>"
    ranked_on: str = "test"  # the data the objective scores come from: "validation" or "test"
    test_summary: dict[str, Any] | None = None  # ranked on validation data: statistics on the test data
    fail_kind: str = ""  # DIVERGED, ERRORED, or "" (workers kept dying; or not failed)
    stopped_at: int | None = None  # a raced point: the repeats it stopped at

    @property
    def length(self) -> int:
        return int(self.params.get("length", 0))

    @property
    def mode(self) -> str:
        return str(self.params.get("mode", ""))

    @property
    def has_finite_mean(self) -> bool:
        """Whether its mean is a number (versions that let a diverged repeat count stored inf)."""
        mean = self.summary.get("mean")
        return mean is not None and math.isfinite(mean)

    @property
    def is_complete(self) -> bool:
        """Finished with its full count of repeats (not stopped by a race) and a finite mean."""
        return self.state == "done" and self.stopped_at is None and self.has_finite_mean

    @property
    def test_mean(self) -> float | None:
        """The mean of its repeats' objective on the test data (so far, for an unfinished point)."""
        if self.ranked_on == "test":
            return self.summary.get("mean")
        if self.test_summary is not None:
            return self.test_summary["mean"]
        scores = [details[self.metric] for details in self.repeats.values() if self.metric in details]
        return float(np.mean(scores)) if scores else None

    def curves(self, *, validation: bool = False, repeats: Sequence[int] | None = None) -> tuple[tuple[float, ...], ...]:
        """Each repeat's training loss per epoch (or, with `validation`, its objective on the
        validation data after each epoch), in repeat order, of every repeat or of `repeats`;
        repeats that stored none left out."""
        name = VALIDATION_CURVE if validation else LOSS_CURVE
        chosen = sorted(self.repeats) if repeats is None else repeats
        return tuple(tuple(self.repeats[index][name]) for index in chosen if self.repeats[index].get(name))

    def has_curves(self, *, validation: bool = False) -> bool:
        """Whether every repeat stored that curve."""
        name = VALIDATION_CURVE if validation else LOSS_CURVE
        return bool(self.repeats) and all(name in details for details in self.repeats.values())

    def was_stopped_early(self, repeat: int) -> bool:
        """Whether early stopping stopped that repeat before its last epoch."""
        return STOPPED_EPOCH in self.repeats[repeat]


@dataclass(frozen=True)
class _Context:
    """What a point's upgrades may need from its study."""

    metric: str | None
    sequence_length: int | None


def read_points(
    study: optuna.Study, *, maximize: bool, metric: str | None = None, sequence_length: int | None = None
) -> list[StoredPoint]:
    """Every grid point, finished ones from best to worst (see :func:`rank`), then the rest in
    grid order. `metric` and `sequence_length` serve studies that stored neither."""
    points = [read_point(trial, metric=metric, sequence_length=sequence_length) for trial in current_trials(study)]
    done = sorted((point for point in points if point.state == "done"), key=lambda point: rank(point, maximize=maximize))
    return done + [point for point in points if point.state != "done"]


# Means are shown, and tie, to this many decimals.
MEAN_DECIMALS = 4


def shown_mean(point: StoredPoint) -> float | None:
    """A point's mean as shown: two points whose shown means are equal tie."""
    return round(point.summary["mean"], MEAN_DECIMALS) if point.has_finite_mean else None


def rank(point: StoredPoint, *, maximize: bool) -> tuple:
    """Where a finished point stands, lower first: the points that trained their full count by
    their mean, then those a race stopped (the later their stage, the higher; then by mean), and
    last any whose mean is not a number (stored by versions that let a diverged repeat count).
    A stopped point's mean rests on fewer repeats than the others': it never ranks above them.
    Points whose means tie as shown stand by their forward length, then their backward length,
    then the grid's order."""
    mean = shown_mean(point)
    stage = point.stopped_at
    by_mean = (-mean if maximize else mean) if mean is not None else 0.0
    backward = point.params.get("backward") or point.length
    return (mean is None, stage is not None, -(stage or 0), by_mean, point.length, backward, point.number)


def read_point(trial: FrozenTrial, *, metric: str | None = None, sequence_length: int | None = None) -> StoredPoint:
    """A trial's record in today's format (see POINT_UPGRADES), as a StoredPoint."""
    record = _raw_record(trial)
    context = _Context(metric=metric, sequence_length=sequence_length)
    for _, step in POINT_UPGRADES:
        record = step(record, context)
    attrs = record["attrs"]
    return StoredPoint(
        number=record["number"],
        key=attrs[KEY],
        params=record["params"],
        state=STATE_NAMES.get(record["state"], record["state"].name.lower()),
        scores=record["scores"],
        repeats=record["repeats"],
        summary=_statistics(record),
        padding_fraction=attrs.get(PADDING_FRACTION),
        wall_seconds=attrs.get(WALL_SECONDS),
        fail_reason=attrs.get(FAIL_REASON, ""),
        worker=attrs.get(CLAIMED_BY),
        stopped=_stop_reason(attrs),
        metric=attrs.get(METRIC),
        ranked_on=attrs[RANKED_ON],
        test_summary=attrs.get(TEST_SUMMARY),
        fail_kind=attrs.get(FAIL_KIND, ""),
        stopped_at=attrs.get(STOPPED_AT),
    )


def _raw_record(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's record as stored, as plain data the upgrade steps can work on."""
    return {
        "number": trial.number,
        "state": trial.state,
        "value": trial.value,
        "params": dict(trial.params or fixed_params(trial)),
        "scores": tuple(trial.intermediate_values[step] for step in sorted(trial.intermediate_values)),
        "repeats": finished_repeats(trial),
        "attrs": dict(trial.user_attrs),
    }


def _statistics(record: dict[str, Any]) -> dict[str, Any]:
    """A finished point's stored statistics; those of the scores so far for any other."""
    attrs = record["attrs"]
    if record["state"] == TrialState.COMPLETE and "ci95_low" in attrs:
        return {**{name: attrs.get(name) for name in SUMMARY_KEYS}, "n": int(attrs.get("n", len(record["scores"]))),
                "mean": record["value"]}
    if record["scores"]:
        return summarize(record["scores"], metric=attrs.get(METRIC))
    return {"n": 0, "mean": record["value"]}


def _stop_reason(attrs: Mapping[str, Any]) -> str:
    """Why a raced point stopped before its full count ("" for any other point)."""
    stage = attrs.get(STOPPED_AT)
    if stage is None:
        return ""
    return (
        f"stopped at {stage} repeats: worse than {attrs.get(STOP_LEADER)} "
        f"(p={attrs.get(STOP_P_VALUE, math.nan):.2g} < {attrs.get(STOP_THRESHOLD, math.nan):.2g})"
    )


def _key_from_params(record: dict, context: _Context) -> dict:
    """A trial without a key (enqueued by hand, or by an early version) is named by its settings."""
    params, attrs = record["params"], record["attrs"]
    if KEY not in attrs:
        attrs[KEY] = f"L={params.get('length')} {params.get('mode')}" if params else f"#{record['number']}"
    return record


def _metric_of_study(record: dict, context: _Context) -> dict:
    """Points stored before the objective was: the study's."""
    record["attrs"].setdefault(METRIC, context.metric)
    return record


def _ranked_on_from_repeats(record: dict, context: _Context) -> dict:
    """Points stored before the data they were ranked on: repeats scored on validation data were
    ranked on them."""
    scored = [name for details in record["repeats"].values() for name in details]
    is_validated = any(name.startswith(VALIDATION_PREFIX) for name in scored)
    if not record["attrs"].get(RANKED_ON):
        record["attrs"][RANKED_ON] = "validation" if is_validated else "test"
    return record


def _padding_of_one_length(record: dict, context: _Context) -> dict:
    """Points stored before their padding share, in studies of sequences of one length: the
    share of padding steps when that length is cut into subsequences."""
    attrs, length = record["attrs"], record["params"].get("length")
    if PADDING_FRACTION not in attrs and length and context.sequence_length:
        steps = n_chunks(context.sequence_length, int(length)) * int(length)
        attrs[PADDING_FRACTION] = (steps - context.sequence_length) / steps
    return record


def _interval_within_range(record: dict, context: _Context) -> dict:
    """Intervals stored before they were cut to the metric's range (an accuracy's past 1.0)."""
    attrs = record["attrs"]
    name = attrs.get(METRIC)
    if name is None or name.split("/")[0] not in METRICS:
        return record
    entry = metric_of(name)
    for bound in ("ci95_low", "ci95_high"):
        if attrs.get(bound) is not None:
            attrs[bound] = entry.clip(attrs[bound])
    return record


# The steps that bring a point's record from any earlier format to today's, in order; each is
# tested on a record of the format it upgrades (tests/test_record.py).
POINT_UPGRADES: tuple[tuple[str, Callable[[dict, _Context], dict]], ...] = (
    ("trials without a key", _key_from_params),
    ("points stored before their objective", _metric_of_study),
    ("points stored before the data they were ranked on", _ranked_on_from_repeats),
    ("points stored before their padding share", _padding_of_one_length),
    ("intervals stored before they were cut to the metric's range", _interval_within_range),
)


def finished_repeats(trial: optuna.Trial | FrozenTrial) -> dict[int, dict[str, Any]]:
    """The repeats stored on a trial, by index."""
    attrs = trial.user_attrs
    return {int(name.removeprefix(REPEAT_PREFIX)): value for name, value in attrs.items() if name.startswith(REPEAT_PREFIX)}


def is_set_aside(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(SET_ASIDE))


def is_diverged(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get(FAIL_KIND) == DIVERGED


def key_of(trial: FrozenTrial) -> str:
    return trial.user_attrs.get(KEY, f"#{trial.number}")


def keys_taken(trials: Sequence[FrozenTrial]) -> set[str | None]:
    """The keys of the grid points that have a trial."""
    return {trial.user_attrs.get(KEY) for trial in trials}


def current_trials(study: optuna.Study) -> list[FrozenTrial]:
    """One trial per grid point: the latest. A point retried after its worker died, or requeued
    after it failed, leaves its earlier attempts behind as failed trials of the same key."""
    latest: dict[str, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False):
        if is_set_aside(trial):
            continue  # no grid point: enqueued by hand with Optuna, failed for good
        key = key_of(trial)
        if key not in latest or trial.number > latest[key].number:
            latest[key] = trial
    return sorted(latest.values(), key=lambda t: t.number)


def set_aside_reasons(study: optuna.Study) -> list[tuple[int, str]]:
    """Trials that are none of the grid's points, failed for good: (number, the reason stored)."""
    return [
        (trial.number, trial.user_attrs.get(FAIL_REASON, "set aside"))
        for trial in study.get_trials(deepcopy=False) if is_set_aside(trial)
    ]


def state_counts(points: Sequence[StoredPoint]) -> dict[str, int]:
    """How many of the points are done, running, waiting and failed."""
    counts = Counter(point.state for point in points)
    return {name: counts.get(name, 0) for name in ("done", "running", "waiting", "failed")}


# A whole study's record ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    """One snapshot of a study's record, read at once: every view (the results table, the choice,
    the report, the dashboard note, ``sweep list``, the Python API) reads this."""

    study_name: str
    points: list[StoredPoint]  # finished ones best first, then the rest in grid order
    set_aside: list[tuple[int, str]]  # trials that are no grid point: (number, reason)
    grid_size: int | None  # the whole grid's size as stored (None: a study made before it was)
    sequence_length: int | None
    suggestion: dict[str, Any] | None  # the data's suggestion, where the grid's lengths came from it
    heartbeats: dict[int, datetime] = field(default_factory=dict)  # each running point's last beat
    # The naive forecasts' scores (sweep.data.baselines); None for a study made before they were kept.
    baselines: dict[str, Any] | None = None
    # Class names, feature names and standardization of the data, as stored at creation.
    encoding: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """How many grid points are done, running, waiting and failed."""
        return state_counts(self.points)

    @property
    def finished(self) -> list[StoredPoint]:
        return [point for point in self.points if point.state == "done"]


def read_results(
    study: optuna.Study, *, maximize: bool, metric: str, sequence_length: int | None = None,
    with_heartbeats: bool = False,
) -> Results:
    """The study's whole record as one snapshot (see :class:`Results`); `metric` and
    `sequence_length` serve studies that stored neither. A database that fails under the read
    raises StorageError naming the problem."""
    try:
        attrs = study.user_attrs
        length = sequence_length if sequence_length is not None else attrs.get(SEQUENCE_LENGTH)
        return Results(
            study_name=study.study_name,
            points=read_points(study, maximize=maximize, metric=metric, sequence_length=length),
            set_aside=set_aside_reasons(study),
            grid_size=attrs.get(GRID_SIZE),
            sequence_length=length,
            suggestion=attrs.get(SUGGESTION),
            heartbeats=last_heartbeats(study) if with_heartbeats else {},
            baselines=attrs.get(BASELINES),
            encoding=dict(attrs.get(ENCODING) or {}),
        )
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        raise StorageError(describe_database_error(error, url_of(study))) from None
