"""Which repeat of which point is exported, and the export folder written in one piece.

The default is the chosen point (the choice status and the report make) and its representative
repeat: the one whose score on the data the points were ranked on is the median of the point's
repeats. The best repeat would be the luckiest draw of 30, flattering the point as a whole; the
median one performs as the point does.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.data import shaping
from sweep.data.scoring import score_all
from sweep.metrics import is_maximized
from sweep.export.contract import MODEL_FILE, Contract, ExportError
from sweep.store.record import SEED, STOPPED_EPOCH, VALIDATION_PREFIX, StoredPoint
from sweep.train.pool import quiet_stderr

if TYPE_CHECKING:
    from sweep.data.problems import Dataset
    from sweep.spec import Spec

__all__ = ["Exported", "Refit", "export_repeat", "refit", "representative_repeat", "reproduced_scores", "windowed_outputs"]

# Stored scores and those of the exported model agree to float32 rounding; a larger gap means the
# model is not the network that was scored.
TOLERANCE = 1e-5


@dataclass(frozen=True)
class Exported:
    """An export folder, its contract, and one line on whether it reproduces its stored scores."""

    folder: Path
    contract: Contract
    check: str

    def describe(self) -> str:
        return f"exported {self.contract.point} to {self.folder}: {self.contract.why}; {self.check}"


def representative_repeat(point: StoredPoint) -> tuple[int, str]:
    """The repeat whose ranked score is the median of the point's (of an even count, the better of
    the middle two; ties to the lower repeat index), and one line saying so."""
    sign = -1.0 if is_maximized(point.metric or "") else 1.0
    scored = sorted((sign * details_score(point, details), repeat) for repeat, details in point.repeats.items()
                    if math.isfinite(details_score(point, details)))
    if not scored:
        raise ExportError(f"{point.key} has no finished repeat to export; run the study first")
    signed, repeat = scored[(len(scored) - 1) // 2]
    score = sign * signed
    data = "validation" if point.ranked_on == "validation" else "test"
    why = (
        f"repeat {repeat}, whose {data} {point.metric} {score:.6g} is the median of the point's {len(scored)} "
        "repeats: a representative network, not the luckiest"
    )
    return repeat, why


def details_score(point: StoredPoint, details: dict[str, Any]) -> float:
    """A repeat's score on the data its point was ranked on."""
    key = f"{VALIDATION_PREFIX}{point.metric}" if point.ranked_on == "validation" else point.metric
    value = details.get(key)
    return float(value) if isinstance(value, (int, float)) else math.nan


@dataclass(frozen=True)
class Refit:
    """A point trained once more, on the reference Keras path: its weights and its scores."""

    weights: list[np.ndarray]
    details: dict[str, Any]  # as a stored repeat's: seed, scores on the test (and validation) data
    record: dict[str, Any]  # what was done: seed, the data trained on, epochs


def refit(spec: Spec, point: StoredPoint, dataset: Dataset, *, seed: int, on_all: bool) -> Refit:
    """Train `point` once more with `seed` on `dataset` (its training part; with `on_all`, a
    dataset whose validation part was left in training), as a repeat trains: the same seed gives
    the same weights."""
    from sweep import train
    from sweep.run.packs import pack_jobs
    from sweep.spec import GridPoint
    from sweep.store.record import repeat_details

    (job,) = pack_jobs(spec, GridPoint.from_params(point.params), [0], n_features=dataset.n_features, n_workers=1, is_fused=False)
    job = replace(job, seeds=(seed,), keep_weights=True)
    with quiet_stderr():
        train.set_dataset(dataset)
        result = train.train_job(job)
    if result.failures:
        raise ExportError(f"the refit diverged: {result.failures[0][1]}")
    (trained,) = result.results
    trained_on = "the training and validation parts" if on_all else "the training part"
    record = {SEED: seed, "trained_on": trained_on, "epochs": len(trained.loss_per_epoch), STOPPED_EPOCH: trained.stopped_epoch}
    return Refit(weights=list(trained.weights), details=repeat_details(trained, worker=""), record=record)


def export_repeat(
    *, study: str, spec: Spec, point: StoredPoint, repeat: int | None, why: str, weights: list[np.ndarray],
    encoding: dict[str, Any], dataset: Dataset | None, sequence_length: int | None, folder: Path,
    details: dict[str, Any] | None = None, refit_record: dict[str, Any] | None = None,
) -> Exported:
    """Write `folder` (model.keras, sweep.json, README.md) for one stored repeat (or a refit, whose
    `details` and `refit_record` are given), all or nothing; with `dataset`, check that the model
    reproduces the repeat's scores."""
    with quiet_stderr():
        from sweep.export import _keras

        model = _keras.build_model(weights, task=_task(spec))
    details = details if details is not None else point.repeats[repeat]
    contract = Contract(
        study=study, point=point.key, settings=dict(point.params), task=_task(spec),
        target=_target_layout(dataset, encoding), features=_features(encoding, weights), window=_window(point),
        problem=spec.problem.model_dump(mode="json"), repeat=repeat, seed=int(details.get(SEED, 0)), why=why,
        scores=_stored_scores(details), classes=list(encoding.get("classes") or _default_classes(spec, weights)),
        standardization={name: encoding[name] for name in ("input_mean", "input_std", "target_mean", "target_std") if name in encoding},
        sequence_length=sequence_length, refit=refit_record,
    )
    with quiet_stderr():
        check = _checked(contract, model, dataset)
    _write_whole(folder, lambda staging: (model.save(staging / MODEL_FILE), contract.write(staging)))
    return Exported(folder=folder, contract=contract, check=check)


def reproduced_scores(contract: Contract, predict: Callable, dataset: Dataset, part: str = "test") -> dict[str, float]:
    """Every score of `predict` (chunk layout in, chunk layout out) on a part of the study's data,
    cut as the point was trained and scored."""
    suffix = "val" if part == "validation" else part
    x, y, lengths = getattr(dataset, f"x_{suffix}"), getattr(dataset, f"y_{suffix}"), getattr(dataset, f"{suffix}_lengths")
    per_sequence, chunks = windowed_outputs(contract.window, predict, x, y, lengths)
    return score_all(per_sequence, chunks, task=dataset.task, target_scale=dataset.target_scale)


def windowed_outputs(
    window: dict[str, Any], predict: Callable, x: np.ndarray, y: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, shaping.Chunks]:
    """`predict` (chunk layout in and out) on sequences cut as the point was trained: its outputs
    in the layout of the sequence-major chunks, (n, k, L, outputs), and those chunks."""
    chunks = shaping.cut(x, y, lengths, length=window["length"], mode=window["mode"], backward=window["backward"])
    samples = shaping.as_mode(chunks, window["mode"])
    outputs = predict(samples.x, samples.mask)
    return shaping.outputs_by_sequence(outputs, chunks, window["mode"]), chunks


def _checked(contract: Contract, model, dataset: Dataset | None) -> str:
    if dataset is None:
        return "the study's data are not at hand here, so its stored scores were not checked"
    from sweep.export import _keras

    scores = reproduced_scores(contract, _keras.chunk_predictor(model), dataset)
    stored = contract.scores["test"]
    gaps = {name: abs(scores[name] - value) for name, value in stored.items() if name in scores}
    worst = max(gaps, key=gaps.get)
    if gaps[worst] > TOLERANCE * max(1.0, abs(stored[worst])):
        raise ExportError(
            f"the exported model scores test {worst} {scores[worst]:.6g} where the repeat stored {stored[worst]:.6g}; "
            "the stored weights are not those it was scored with (report this)"
        )
    return f"it reproduces the {'refit' if contract.refit else 'repeat'}'s stored test scores (largest difference {gaps[worst]:.1g}, {worst})"


def _write_whole(folder: Path, write: Callable[[Path], object]) -> None:
    """Write into a staging folder beside `folder`, then move it into place: no half export."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ExportError(f"{folder} exists and is not an empty folder; name a new folder with -o, or remove it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(staging)
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _task(spec: Spec) -> str:
    from sweep.spec import problem_task

    return problem_task(spec.problem)


def _target_layout(dataset: Dataset | None, encoding: dict[str, Any]) -> str:
    if dataset is not None:
        return "per step" if dataset.is_per_step else "per sequence"
    if "targets" in encoding:
        return str(encoding["targets"])
    raise ExportError("the study stores no target layout and its data are not at hand here; export from where the data are")


def _features(encoding: dict[str, Any], weights: list[np.ndarray]) -> list[str]:
    return list(encoding.get("features") or [f"x{index}" for index in range(weights[0].shape[0])])


def _default_classes(spec: Spec, weights: list[np.ndarray]) -> list[int]:
    if _task(spec) != "classification":
        return []
    return list(range(max(2, weights[3].shape[1])))


def _window(point: StoredPoint) -> dict[str, Any]:
    length = point.length
    backward = point.params.get("backward")
    stateless_windows = point.mode == "stateless" and backward is not None
    return {
        "mode": point.mode, "length": length, "backward": backward,
        "width": backward if stateless_windows else length, "stride": length,
    }


def _stored_scores(details: dict[str, Any]) -> dict[str, dict[str, float]]:
    test = {name: float(value) for name, value in details.items() if "/" in name and not name.startswith(VALIDATION_PREFIX)
            and isinstance(value, (int, float))}
    validation = {name[len(VALIDATION_PREFIX):]: float(value) for name, value in details.items()
                  if name.startswith(VALIDATION_PREFIX) and isinstance(value, (int, float))}
    return {"test": test, **({"validation": validation} if validation else {})}
