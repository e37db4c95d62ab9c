"""Fused repeat packs against a JAX program written the fastest known way, in one run.

Echo-first, T = 20, L = 10, 10 units, 30 repeats, batches of 10, 5 epochs, in both state modes.
Both sides train the 30 repeats on the same number of worker processes, one thread each, the
repeats split between the workers as sweep's runner splits them: sweep's fused packs on its own
worker pool, and `jax_program.train_repeats` (vmap over the repeats, lax.scan over steps,
windows and batches, one jit per epoch) on spawned processes that import JAX alone. Each side is
warmed first with the same shapes, so that neither side's tracing or compilation is timed;
rounds alternate between the two, and the medians compare.

Needs JAX (`pip install -e '.[bench]'`); the README's benchmark section gives the figures.

    python benchmarks/against_jax.py [--rounds 3] [--smoke]
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from statistics import mean, median

from sweep.data.problems import Dataset, load_problem
from sweep.run.packs import split_into_packs
from sweep.spec import EchoFirstProblem
from sweep.train.pool import RepeatPool, default_workers

import jax_program
from fused_vs_reference import N_REPEATS, packs, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timings of each side, alternating; the median is reported")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--smoke", action="store_true", help="one round of one epoch on a tenth of the data")
    options = parser.parse_args()
    if importlib.util.find_spec("jax") is None:
        raise SystemExit("JAX is not installed: pip install -e '.[bench]' (or pip install jax), then run this again")
    if options.rounds < 1:
        parser.error("--rounds must be at least 1")
    if options.smoke:
        options.rounds = 1
    print(f"{options.workers} worker processes, {os.cpu_count()} CPUs, {N_REPEATS} repeats")
    dataset = load_problem(EchoFirstProblem(kind="echo-first", length=20, n_train=100 if options.smoke else 1000, n_test=200, seed=1))
    common = dict(length=10, units=10, epochs=1 if options.smoke else 5, batch_size=10, optimizer="adam", learning_rate=0.001)
    context = multiprocessing.get_context("spawn")
    with (
        RepeatPool(dataset, n_workers=options.workers) as pool,
        ProcessPoolExecutor(
            options.workers, mp_context=context, initializer=jax_program.start_worker, initargs=(os.getpid(),)
        ) as jax_pool,
    ):
        for mode in ("stateless", "stateful"):
            settings = dict(common, key=f"echo-first {mode}", mode=mode)
            print(f"echo-first T=20 L=10 units=10 {mode}, {settings['epochs']} epochs")
            compare(pool, jax_pool, dataset, settings, rounds=options.rounds)


def compare(pool: RepeatPool, jax_pool: ProcessPoolExecutor, dataset: Dataset, settings: dict, *, rounds: int) -> None:
    shape = dict(n_workers=pool.n_workers, n_features=dataset.n_features)
    fused_jobs = packs(settings, list(range(N_REPEATS)), is_fused=True, **shape)
    jax_jobs = [
        (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test, settings, list(pack))
        for pack in split_into_packs(list(range(N_REPEATS)), n_workers=pool.n_workers, units=settings["units"], n_features=dataset.n_features)
    ]
    timed(pool, packs(dict(settings, epochs=1), list(range(N_REPEATS)), is_fused=True, **shape))
    list(jax_pool.map(jax_program.train_repeats, [(*job[:4], dict(settings, epochs=1), job[5]) for job in jax_jobs]))
    rates: dict[str, list[float]] = {"sweep": [], "jax": []}
    scores: dict[str, list[float]] = {}
    for _ in range(rounds):
        seconds, scores["sweep"] = timed(pool, fused_jobs)
        rates["sweep"].append(N_REPEATS / seconds)
        started = time.perf_counter()
        outcomes = list(jax_pool.map(jax_program.train_repeats, jax_jobs))
        rates["jax"].append(N_REPEATS / (time.perf_counter() - started))
        scores["jax"] = [score for _, pack_scores in outcomes for score in pack_scores]
    sizes = sorted({len(job.repeats) for job in fused_jobs})
    for side, title in (("sweep", "sweep, fused packs"), ("jax", "JAX, vmap + scan + jit per epoch")):
        rate = median(rates[side])
        print(f"  {title:34s} {rate:7.3f} repeats/s (median of {rounds}, {min(rates[side]):.3f}-{max(rates[side]):.3f}; "
              f"packs of {sizes}; mean accuracy {mean(scores[side]):.3f})")
    print(f"  sweep runs at {median(rates['sweep']) / median(rates['jax']):.2f}x the JAX program's rate")


if __name__ == "__main__":
    main()
