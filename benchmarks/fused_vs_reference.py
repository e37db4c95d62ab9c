"""Fused repeat packs against one model at a time, on the same data, in one run.

Prints per-repeat throughput and the ratio for

  (a) echo-first, T = 20, L = 10, 10 units, 30 repeats, 5 epochs (both state modes), and
  (b) a larger network: 100 units, T = 100, L = 20, 30 repeats, 1 epoch (stateful);

each against two ways of training one model at a time: plain Keras, the usual way (a new
Sequential model per repeat, model.fit for a stateless split, a stateful LSTM fed with
train_on_batch for stateful TBPTT), and sweep's reference path (`sweep run --reference`: one Keras
LSTM at a time, its compiled training loop reused across repeats). Every path trains on the same
worker pool, warmed up first: process start-up and sweep's own tracing are not counted, plain
Keras's per-model compilation is, since the usual way pays it for every repeat. Then it runs the
whole default sweep (`sweep run studies/echo_first.toml`) in a temporary directory, which counts
everything, and prints its wall time and the peak resident memory of its largest process.

    python benchmarks/fused_vs_reference.py [--reference-repeats 6] [--rounds 3] [--skip-sweep | --sweep-only] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean, median

from sweep.train.jobs import PackJob
from sweep.train.pool import RepeatPool, default_workers
from sweep.data.problems import Dataset, load_data, load_problem
from sweep.run.packs import repeat_seed, split_into_packs
from sweep.spec import EchoFirstProblem, grid_points, load_spec

from plain_keras import plain_echo_first

ROOT = Path(__file__).resolve().parent.parent
N_REPEATS = 30
FUSED = "fused"
REFERENCE = "one at a time, sweep --reference"
PLAIN = "one at a time, plain Keras"


def packs(settings: dict, repeats: list[int], *, n_workers: int, n_features: int, is_fused: bool) -> list[PackJob]:
    """The jobs sweep itself makes: fused packs as the runner splits them, or one repeat each."""
    if is_fused:
        groups = split_into_packs(repeats, n_workers=n_workers, units=settings["units"], n_features=n_features)
    else:
        groups = [[repeat] for repeat in repeats]
    return [
        PackJob(repeats=tuple(g), seeds=tuple(repeat_seed(0, settings["key"], r) for r in g), is_fused=is_fused, **settings)
        for g in groups
    ]


def timed(pool: RepeatPool, jobs: list[PackJob]) -> tuple[float, list[float]]:
    started = time.perf_counter()
    scores = []
    for _, outcome in pool.run(jobs):
        if isinstance(outcome, BaseException):
            raise outcome
        scores.extend(r.scores["accuracy/sample"] for r in outcome.results)
    return time.perf_counter() - started, scores


def compare(pool: RepeatPool, dataset: Dataset, settings: dict, *, n_reference: int, rounds: int) -> None:
    """Time the three paths `rounds` times, interleaved, so that a slow spell of the machine hits
    all of them; report each path's median throughput and the ratio of the medians."""
    shape = dict(n_workers=pool.n_workers, n_features=dataset.n_features)
    fused_jobs = packs(settings, list(range(N_REPEATS)), is_fused=True, **shape)
    reference_jobs = packs(settings, list(range(n_reference)), is_fused=False, **shape)
    plain_jobs = [(dataset, settings, seed) for seed in range(n_reference)]
    rates: dict[str, list[float]] = {FUSED: [], REFERENCE: [], PLAIN: []}
    scores: dict[str, list[float]] = {}
    for _ in range(rounds):
        seconds, scores[FUSED] = timed(pool, fused_jobs)
        rates[FUSED].append(N_REPEATS / seconds)
        seconds, scores[REFERENCE] = timed(pool, reference_jobs)
        rates[REFERENCE].append(n_reference / seconds)
        started = time.perf_counter()
        scores[PLAIN] = list(pool._executor.map(plain_echo_first, plain_jobs))
        rates[PLAIN].append(n_reference / (time.perf_counter() - started))
    sizes = sorted({len(job.repeats) for job in fused_jobs})
    counts = {FUSED: f"{N_REPEATS} repeats in {len(fused_jobs)} packs of {sizes}", REFERENCE: f"{n_reference} repeats",
              PLAIN: f"{n_reference} repeats"}
    fused_rate = median(rates[FUSED])
    for path in (FUSED, REFERENCE, PLAIN):
        rate = median(rates[path])
        ratio = "" if path == FUSED else f"; fused is {fused_rate / rate:5.1f}x faster per repeat"
        print(f"  {path:34s} {rate:7.3f} repeats/s (median of {rounds}, {min(rates[path]):.3f}-{max(rates[path]):.3f}; "
              f"{counts[path]}; mean accuracy {mean(scores[path]):.3f}){ratio}")


def default_sweep(workers: int) -> None:
    """The whole default study, `sweep run studies/echo_first.toml`, against plain Keras the usual
    way: one repeat of each grid point on the same number of worker processes, scaled to the
    study's repeats."""
    seconds, peak_mb = timed_sweep()
    spec = load_spec(ROOT / "studies" / "echo_first.toml")
    dataset = load_data(spec)
    points = grid_points(spec, dataset.sequence_length)
    settings = [
        dict(key=point.key, length=point.length, mode=point.mode, **spec.model.model_dump(), **spec.training.model_dump())
        for point in points
    ]
    with RepeatPool(dataset, n_workers=workers) as pool:
        list(pool._executor.map(plain_echo_first, [(dataset, settings[0], 0)] * workers))  # start the workers, load Keras
        started = time.perf_counter()
        list(pool._executor.map(plain_echo_first, [(dataset, point, 0) for point in settings]))
        plain = (time.perf_counter() - started) * spec.repeats
    print(f"whole default sweep (sweep run studies/echo_first.toml): {seconds:.1f} s wall; "
          f"peak resident memory of its largest process: {peak_mb:.0f} MB")
    print(f"plain Keras, one repeat of each of its {len(points)} points on {workers} workers, scaled to {spec.repeats} "
          f"repeats: {plain:.0f} s; sweep is {plain / seconds:.1f}x faster")


def timed_sweep() -> tuple[float, float]:
    """Wall seconds of the default sweep, counting everything, and its largest process's peak MB."""
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "sweep", "run", str(ROOT / "studies" / "echo_first.toml")],
            cwd=work, capture_output=True, text=True,
        )
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the default sweep failed:\n{done.stderr}")
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-repeats", type=int, default=6, help="repeats timed on the slow paths")
    parser.add_argument("--rounds", type=int, default=3, help="timings of each path, interleaved; the median is reported")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--skip-sweep", action="store_true", help="do not time the whole default sweep")
    parser.add_argument("--sweep-only", action="store_true", help="time the whole default sweep against plain Keras alone")
    parser.add_argument("--smoke", action="store_true", help="the smallest run of every path, to check that it runs (no sweep)")
    options = parser.parse_args()
    if options.rounds < 1 or options.reference_repeats < 1:
        parser.error("--rounds and --reference-repeats must be at least 1")
    if options.smoke:
        options.rounds, options.reference_repeats, options.skip_sweep = 1, 1, True
    print(f"{options.workers} worker processes, {os.cpu_count()} CPUs")
    for title, dataset, settings in [] if options.sweep_only else cases(smoke=options.smoke):
        print(title)
        with RepeatPool(dataset, n_workers=options.workers) as pool:
            # Trace each path's loops once in every worker, as the first grid point of a sweep does.
            warm = dict(settings, epochs=1)
            shape = dict(n_workers=options.workers, n_features=dataset.n_features)
            timed(pool, packs(warm, list(range(N_REPEATS)), is_fused=True, **shape))
            timed(pool, packs(warm, list(range(options.workers)), is_fused=False, **shape))
            compare(pool, dataset, settings, n_reference=options.reference_repeats, rounds=options.rounds)
    if not options.skip_sweep:
        default_sweep(options.workers)


def cases(*, smoke: bool) -> list[tuple[str, Dataset, dict]]:
    """What is timed: (a) small networks in both modes and (b) a larger one; with `smoke`, (a)
    stateless alone on a tenth of the data for one epoch."""
    n_train = 100 if smoke else 1000
    small = load_problem(EchoFirstProblem(kind="echo-first", length=20, n_train=n_train, n_test=200, seed=1))
    common = dict(epochs=1 if smoke else 5, batch_size=10, optimizer="adam", learning_rate=0.001)
    stateless = ("(a) echo-first T=20 L=10 units=10 stateless", small, dict(key="a stateless", length=10, mode="stateless", units=10, **common))
    if smoke:
        return [stateless]
    large = load_problem(EchoFirstProblem(kind="echo-first", length=100, n_train=1000, n_test=200, seed=1))
    return [
        stateless,
        ("(a) echo-first T=20 L=10 units=10 stateful", small, dict(key="a stateful", length=10, mode="stateful", units=10, **common)),
        ("(b) echo-first T=100 L=20 units=100 stateful, 1 epoch", large,
         dict(key="b", length=20, mode="stateful", units=100, **{**common, "epochs": 1})),
    ]


if __name__ == "__main__":
    main()
