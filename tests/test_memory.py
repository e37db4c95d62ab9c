"""Packs sized by memory: the estimate, the budget, the setting, and that the packs a budget
makes train every repeat to the same scores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sweep
from sweep.run.packs import PackMemory, check_memory, pack_jobs
from sweep.spec import GridPoint, Spec, grid_points, spec_from_dict
from sweep.train import memory
from sweep.train.memory import MB, MemoryBudgetError, parse_memory, prediction_rows, repeat_training_bytes

LONG = {
    "name": "long", "repeats": 4, "seed": 0,
    "problem": {"kind": "lag-echo", "length": 240, "lag": 3, "n_train": 24, "n_test": 12, "seed": 0},
    "grid": {"lengths": [240, 60], "modes": ["stateless", "stateful"]},
    "model": {"units": 16},
    "training": {"epochs": 1, "batch_size": 4},
    "objective": {"metric": "rmse"},
}


@pytest.mark.parametrize(("text", "expected"), [
    ("500MB", 500 * MB), ("500 mb", 500 * MB), ("2GB", 2048 * MB), ("1.5g", int(1.5 * 1024 * MB)), ("300", 300 * MB),
    (64, 64 * MB), ("2048k", 2 * MB),
])
def test_a_memory_setting_reads_as_people_write_it(text: str | int, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "-5MB", "5TB", "", "0.5", "MB", True])
def test_a_memory_setting_that_is_no_amount_is_refused_naming_the_form(text: object) -> None:
    with pytest.raises(MemoryBudgetError, match=r"--memory-per-worker (takes an amount such as 500MB or 2GB|must be at least 1MB)"):
        parse_memory(text)  # type: ignore[arg-type]


def test_a_repeats_training_memory_grows_with_batch_window_and_units() -> None:
    base = dict(batch_size=16, window=1344, units=32, n_features=1, n_outputs=1)
    one = repeat_training_bytes(**base)
    # What was measured for this case: 46 MB kept per repeat of a pack (see sweep.train.memory).
    assert 40 * MB < one < 60 * MB
    assert repeat_training_bytes(**{**base, "window": 672}) < 0.51 * one
    assert repeat_training_bytes(**{**base, "batch_size": 32}) > 1.99 * one
    assert repeat_training_bytes(**{**base, "units": 64}) > 1.99 * one


def test_prediction_goes_through_few_sequences_at_once_within_the_budget() -> None:
    rows = prediction_rows(n_repeats=15, steps=1344, units=32, budget=8 * 1024 * MB, most=2048 // 15)
    assert rows * 15 * 1344 * 32 * memory.PREDICTION_BYTES <= memory.PREDICTION_CAP
    assert 1 <= rows < 2048 // 15
    assert prediction_rows(n_repeats=15, steps=1344, units=32, budget=MB, most=136) == 1  # at least one
    assert prediction_rows(n_repeats=1, steps=10, units=4, budget=100 * MB, most=2048) == 2048  # short: all at once
    assert prediction_rows(n_repeats=15, steps=1344, units=32, budget=None, most=136) == 136  # no budget: no bound


def _memory_for(spec: Spec, budget: int) -> PackMemory:
    return PackMemory(budget=budget, n_features=1, n_outputs=1, longest=spec.problem.length)


def test_a_smaller_budget_makes_smaller_packs_of_every_repeat_once() -> None:
    spec = spec_from_dict({**LONG, "repeats": 30, "model": {"units": 32}, "training": {"epochs": 1, "batch_size": 16}})
    whole = GridPoint(length=120, mode="stateless")
    sizes = {}
    for budget in (None, 40 * MB, 10 * MB, 3 * MB):
        limit = _memory_for(spec, budget) if budget is not None else None
        jobs = pack_jobs(spec, whole, list(range(30)), n_features=1, n_workers=2, is_fused=True, memory=limit)
        assert sorted(r for job in jobs for r in job.repeats) == list(range(30))
        assert all(job.memory_bytes == budget for job in jobs)
        sizes[budget] = max(len(job.repeats) for job in jobs)
    per_repeat = _memory_for(spec, 0).per_repeat(spec, whole)
    assert sizes[None] == 15
    assert 40 * MB // per_repeat < 15  # this budget binds
    assert sizes[None] >= sizes[40 * MB] > sizes[10 * MB] > sizes[3 * MB] >= 1
    for budget in (40 * MB, 10 * MB):
        assert sizes[budget] * per_repeat <= budget
    assert sizes[3 * MB] == 1  # not even one fits: check_memory refuses it before a run


def test_a_budget_too_small_for_one_repeat_names_the_point_and_the_fixes() -> None:
    spec = spec_from_dict({**LONG, "model": {"units": 32}, "training": {"epochs": 1, "batch_size": 16}})
    points = grid_points(spec, 240)
    check_memory(spec, points, _memory_for(spec, 100 * MB))  # fits: says nothing
    with pytest.raises(MemoryBudgetError) as refused:
        check_memory(spec, points, _memory_for(spec, 1 * MB))
    line = str(refused.value)
    assert "\n" not in line
    assert line.startswith("one repeat of L=240 stateless needs about ")  # the grid's most demanding point
    assert "batches of 16 windows of 240 steps" in line and "over the 1.0 MB a worker may use" in line
    assert "--memory-per-worker" in line and "--workers" in line and "training.batch_size" in line


def test_the_default_budget_is_a_share_of_what_is_available_less_each_workers_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda: 10 * 1024 * MB)
    one, four = memory.default_memory_per_worker(1, data_bytes=0), memory.default_memory_per_worker(4, data_bytes=0)
    assert one == int(10 * 1024 * MB * memory.AVAILABLE_SHARE) - memory.WORKER_BASE
    assert four == int(10 * 1024 * MB * memory.AVAILABLE_SHARE) // 4 - memory.WORKER_BASE
    assert memory.default_memory_per_worker(1, data_bytes=100 * MB) == one - 100 * MB
    monkeypatch.setattr(memory, "available_memory", lambda: 512 * MB)  # a small container still trains
    assert memory.default_memory_per_worker(2, data_bytes=0) == memory.SMALLEST_DEFAULT


def test_a_containers_limit_counts_where_it_is_below_the_machines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    limit, used = tmp_path / "memory.max", tmp_path / "memory.current"
    limit.write_text(f"{4 * 1024 * MB}\n")
    used.write_text(f"{1024 * MB}\n")
    real_path = memory.Path
    redirected = {"/sys/fs/cgroup/memory.max": limit, "/sys/fs/cgroup/memory.current": used}
    monkeypatch.setattr(memory, "Path", lambda name: redirected.get(name, real_path(name)))
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 20 * 1024 * MB)
    assert memory.available_memory() == 3 * 1024 * MB
    limit.write_text("max\n")  # no limit: the machine's
    assert memory.available_memory() == 20 * 1024 * MB


@pytest.mark.slow
def test_a_small_budget_trains_smaller_packs_to_the_same_scores(tmp_path: Path) -> None:
    """Packs, and batches of predicted sequences, sized by a small budget: every repeat scores as
    in the packs of an unbounded run, to 1e-5."""
    scores = {}
    for budget in (None, "2MB"):
        spec = spec_from_dict({**LONG, "name": f"long-{'small' if budget else 'free'}"})
        study = sweep.Study.create(spec, storage=f"sqlite:///{tmp_path / 'studies.db'}")
        outcome = study.run(workers=2, memory_per_worker=budget)
        assert outcome.counts["done"] == 4
        records = sorted(study.repeat_records(), key=lambda row: (row["key"], row["repeat"]))
        scores[budget] = np.array([[row[name] for name in sorted(row) if "/" in name] for row in records])
    per_repeat = PackMemory(budget=0, n_features=1, n_outputs=1, longest=240).repeat_bytes(window=240, batch_size=4, units=16)
    assert 2 * MB // per_repeat < 2  # the small budget holds fewer repeats than a worker's share of 4
    assert scores[None].shape[0] == 16 and scores[None].shape[1] >= 2
    np.testing.assert_allclose(scores["2MB"], scores[None], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_sweep_run_refuses_a_budget_too_small_for_one_repeat_in_one_line_before_training(tmp_path: Path) -> None:
    study_file = tmp_path / "long.toml"
    study_file.write_text(
        '''name = "long"\nrepeats = 2\n[problem]\nkind = "lag-echo"\nlength = 400\nn_train = 8\nn_test = 4\n'''
        '''[grid]\nlengths = [400]\nmodes = ["stateless"]\n[model]\nunits = 32\n[training]\nepochs = 1\nbatch_size = 16\n[objective]\nmetric = "rmse"\n'''
    )
    done = subprocess.run(
        [sys.executable, "-m", "sweep", "run", str(study_file), "--memory-per-worker", "5MB", "--workers", "1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: one repeat of L=400 stateless needs about "), done.stderr
    assert "over the 5.0 MB a worker may use" in errors[0]
    assert "Traceback" not in done.stderr
    status = subprocess.run([sys.executable, "-m", "sweep", "status", "long"], capture_output=True, text=True, cwd=tmp_path)
    assert "0 done" in status.stdout and "1 waiting" in status.stdout, status.stdout


@pytest.mark.parametrize(("option", "environment", "said"), [
    (["--memory-per-worker", "10kb"], {}, "must be at least 1MB, not '10kb'"),
    ([], {memory.MEMORY_ENV: "lots"}, "(env var: 'SWEEP_MEMORY_PER_WORKER'): takes an amount such as 500MB or 2GB, not 'lots'"),
])
def test_a_memory_setting_that_is_no_amount_ends_the_command_before_anything_is_written(
    tiny_study: Path, tmp_path: Path, option: list[str], environment: dict[str, str], said: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sweep", "run", str(tiny_study), *option],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, **environment, "COLUMNS": "300"},
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for '--memory-per-worker'"), done.stderr
    assert said in lines[0]
    assert not list(tmp_path.glob("*.db*"))  # refused before the study was made
