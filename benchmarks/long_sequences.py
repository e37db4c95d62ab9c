"""Long sequences: fused packs against plain Keras, each grid point's fixed cost, peak memory.

100 training sequences of 2,000 steps (lag-echo: the target at each step is the input 5 steps
earlier), 32 units, 30 repeats, 1 epoch, at L = 50, 200, 1000 and 2000 in both state modes.
For every grid point it prints

* the fused packs' throughput, timed on a worker pool that has already trained other points,
  as in a sweep, and the fixed cost of the point: the first run (tracing and XLA compilation of
  the new length) less the faster of two identical runs after it, with XLA's cache of compiled programs empty,
  and again in a new pool with the programs kept (as the next run of the study would find
  them); the pool's first point is L=10 stateful, and its fixed cost also counts TensorFlow's
  first use in each worker;
* plain Keras the usual way, one new model per repeat (model.fit on the stateless split; a
  stateful LSTM fed with train_on_batch and reset after each batch of sequences), on the same
  pool, and the ratio of the two throughputs;

and at the end the peak resident memory of the largest worker process. Then it trains one
epoch on sequences of 100 to 2,000 steps with batches of similar length, as sweep makes them,
against plainly shuffled batches.

Last, memory: 30 repeats of 32 units on 1,344-step sequences in batches of 16 (the whole
sequence stateless, and stateful in chunks of 96), on a fresh pool for each memory setting:
packs sized by parameters alone and predicting 2,048 / P sequences at once (as sweep did
before packs were sized by memory), sweep's default budget, and 500 MB. For each it prints the
pack sizes chosen, the throughput of a second run (the first compiles) and every worker
process's peak resident memory.

    python benchmarks/long_sequences.py [--plain-repeats 2] [--lengths 50 200 1000 2000] [--smoke]
    python benchmarks/long_sequences.py --sequences 20 --plain-repeats 1 --skip-memory   # fixed costs
    python benchmarks/long_sequences.py --memory-only
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from unittest import mock

from sweep.train.jobs import PackJob
from sweep.train.pool import RepeatPool, default_workers
from sweep.data.problems import Dataset, load_problem
from sweep.run.packs import PackMemory, repeat_seed, split_into_packs
from sweep.train.compile_cache import CACHE_ENV
from sweep.train.memory import default_memory_per_worker, parse_memory, readable_bytes
from sweep.spec import LagEchoProblem

from plain_keras import plain_lag_echo

N_REPEATS = 30
UNITS = 32
SETTINGS = dict(units=UNITS, epochs=1, batch_size=10, optimizer="adam", learning_rate=0.001)


def fused_jobs(
    key: str, length: int, mode: str, n_workers: int, *, memory: PackMemory | None = None, settings: dict = SETTINGS
) -> list[PackJob]:
    """The packs sweep's runner makes for a point: sized by parameters, and by `memory` where given."""
    most = None
    if memory is not None:
        most = max(1, memory.budget // memory.repeat_bytes(window=length, batch_size=settings["batch_size"], units=UNITS))
    packs = split_into_packs(list(range(N_REPEATS)), n_workers=n_workers, units=UNITS, n_features=1, most=most)
    return [
        PackJob(key=key, length=length, mode=mode, repeats=tuple(p), seeds=tuple(repeat_seed(0, key, r) for r in p),
                memory_bytes=memory.budget if memory is not None else None, **settings)
        for p in packs
    ]


def run_jobs(pool: RepeatPool, jobs: list[PackJob], *, peaks: dict[int, float] | None = None) -> tuple[float, float]:
    """Wall seconds, and the mean test RMSE of the repeats; each worker's peak memory into `peaks`."""
    started = time.perf_counter()
    scores = []
    for _, outcome in pool.run(jobs):
        if isinstance(outcome, BaseException):
            raise outcome
        scores.extend(result.scores["rmse/sample"] for result in outcome.results)
        if peaks is not None:
            peaks[outcome.process] = max(peaks.get(outcome.process, 0.0), outcome.peak_memory_mb)
    return time.perf_counter() - started, sum(scores) / len(scores)


def similar_lengths(n_repeats: int = 15, length: int = 100, longest: int = 2000) -> None:
    """Batches of similar length against plainly shuffled ones, on sequences of 100 to 2,000 steps.

    One fused pack, stateful, one epoch each way, the same weights to start from. Shuffled, a
    batch must begin at the first chunk any of its sequences needs, in every repeat of the pack
    alike, so it trains more chunks of padding.
    """
    import numpy as np

    from sweep.data import shaping as prepare
    from sweep.train.pool import quiet_stderr

    with quiet_stderr():  # TensorFlow's native start-up chatter
        from sweep.train import FusedNetwork
        from sweep.train._common import Architecture

    rng = np.random.default_rng(0)
    lengths = rng.integers(100, longest + 1, size=100)
    steps = int(lengths.max())
    x = rng.uniform(size=(100, steps, 1)).astype(np.float32)
    y = np.zeros_like(x)
    y[:, 5:] = x[:, :-5]
    train = prepare.chunk(x, y, length, lengths)
    arch = Architecture(task="regression", n_features=1, n_outputs=1, is_per_step=True, units=UNITS, length=length, is_masked=True)
    network = FusedNetwork(arch, n_repeats=n_repeats, optimizer="adam", learning_rate=0.001)
    rngs = [np.random.default_rng(seed) for seed in range(n_repeats)]
    sorted_plans = [prepare.plan_batches(train.spans, n_chunks=train.n_chunks, batch_size=10, rng=r) for r in rngs]
    rngs = [np.random.default_rng(seed) for seed in range(n_repeats)]
    shuffled_groups = [prepare.index_blocks(prepare.batch_groups(train.n_sequences, 10, r)) for r in rngs]
    shuffled_plans = [
        [prepare.Block(rows=index, first_chunks=np.zeros(len(index), np.int64)) for index in blocks] for blocks in shuffled_groups
    ]
    for plan_index in range(len(shuffled_plans[0])):  # in step: the earliest first chunk of any repeat
        first = np.min([train.n_chunks - train.spans[plan[plan_index].rows].max(axis=1) for plan in shuffled_plans], axis=0)
        for plan in shuffled_plans:
            plan[plan_index] = prepare.Block(rows=plan[plan_index].rows, first_chunks=first.astype(np.int64))
    network.reset(list(range(n_repeats)))
    _epoch(network, train, sorted_plans)  # trace and compile once
    for name, plans in (("similar lengths", sorted_plans), ("shuffled", shuffled_plans)):
        network.reset(list(range(n_repeats)))
        started = time.perf_counter()
        n_updates = _epoch(network, train, plans)
        print(f"  batches of {name:16s}: {n_updates:5d} updates an epoch, {time.perf_counter() - started:6.1f} s", flush=True)


def _epoch(network, train, plans) -> int:
    import numpy as np

    n_updates = 0
    for blocks in zip(*plans):
        index = np.stack([block.rows for block in blocks])
        network.train_epoch(train.x, train.mask, train.y, index, blocks[0].first_chunks).numpy()
        n_updates += blocks[0].n_updates(train.n_chunks)
    return n_updates


def memory_case(n_workers: int, *, smoke: bool) -> None:
    """Peak memory and throughput on 1,344-step sequences, one fresh pool per memory setting."""
    steps, n_train, n_test = (200, 32, 64) if smoke else (1344, 80, 256)
    dataset = load_problem(LagEchoProblem(kind="lag-echo", length=steps, lag=5, n_train=n_train, n_test=n_test, seed=0))
    settings = dict(SETTINGS, batch_size=16)
    points = [(steps, "stateless"), (96 if not smoke else 50, "stateful")]
    print(f"memory: {n_train} training and {n_test} test sequences of {steps:,} steps, {UNITS} units, batch 16, "
          f"{N_REPEATS} repeats, 1 epoch, {n_workers} workers")
    print(f"{'memory per worker':28s} {'point':16s} {'packs':>14s} {'rep/s':>7s}  peak resident memory of each worker")
    default = default_memory_per_worker(n_workers, data_bytes=dataset.n_bytes)
    budgets = [("packs by parameters alone", None), (f"default ({readable_bytes(default)})", default),
               ("500 MB", parse_memory("500MB"))]
    if smoke:  # one setting, to check that it runs
        budgets = budgets[-1:]
    for title, budget in budgets:
        memory = None
        if budget is not None:
            memory = PackMemory(budget=budget, n_features=1, n_outputs=1, longest=steps)
        with RepeatPool(dataset, n_workers=n_workers) as pool:
            peaks: dict[int, float] = {}
            for length, mode in points:
                jobs = fused_jobs(f"L={length} {mode}", length, mode, pool.n_workers, memory=memory, settings=settings)
                run_jobs(pool, jobs, peaks=peaks)
                again, _ = run_jobs(pool, jobs, peaks=peaks)
                sizes = sorted({len(job.repeats) for job in jobs})
                print(f"{title:28s} {'L=%d %s' % (length, mode):16s} {'%d of %s' % (len(jobs), sizes):>14s} "
                      f"{N_REPEATS / again:7.2f}  " + ", ".join(f"{peak:.0f} MB" for _, peak in sorted(peaks.items())),
                      flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plain-repeats", type=int, default=2, help="repeats timed on the plain Keras path, per point")
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 200, 1000, 2000])
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--sequences", type=int, default=100, help="training sequences (20: the points' fixed costs dominate)")
    parser.add_argument("--memory-only", action="store_true", help="only the 1,344-step memory case")
    parser.add_argument("--skip-memory", action="store_true", help="not the 1,344-step memory case")
    parser.add_argument("--smoke", action="store_true", help="the smallest run: 20 sequences of 200 steps, L=50, to check that it runs")
    options = parser.parse_args()
    if options.plain_repeats < 1:
        parser.error("--plain-repeats must be at least 1")
    steps, n_train = (200, 20) if options.smoke else (2000, options.sequences)
    if options.smoke:
        options.lengths, options.plain_repeats = [50], 1
    if not options.memory_only:
        speeds(options, steps=steps, n_train=n_train)
    if not options.skip_memory:
        memory_case(options.workers, smoke=options.smoke)


def started_workers(pool: RepeatPool) -> float:
    """Start every worker of a new pool; the seconds it took. Each starts on its first job."""
    started = time.perf_counter()
    pids: set[int] = set()
    while len(pids) < pool.n_workers:
        futures = [pool._executor.submit(os.getpid) for _ in range(pool.n_workers)]
        pids.update(future.result() for future in futures)
    return time.perf_counter() - started


def speeds(options: argparse.Namespace, *, steps: int, n_train: int) -> None:
    """Fused packs against plain Keras at each length, each point's fixed cost with XLA's cache of
    compiled programs empty and then full, then batches of similar lengths."""
    dataset: Dataset = load_problem(LagEchoProblem(kind="lag-echo", length=steps, lag=5, n_train=n_train, n_test=20, seed=0))
    print(f"{options.workers} worker processes, {os.cpu_count()} CPUs; {n_train} sequences of {steps:,} steps, {UNITS} units, "
          f"{N_REPEATS} repeats, 1 epoch")
    # Packs as sweep sizes them by default: by parameters, and by a share of the memory available.
    budget = default_memory_per_worker(options.workers, data_bytes=dataset.n_bytes)
    memory = PackMemory(budget=budget, n_features=1, n_outputs=1, longest=steps)
    points = [("warm-up", 10, "stateful")] + [
        (f"L={length} {mode}", length, mode) for length in options.lengths for mode in ("stateless", "stateful")
    ]
    jobs = {key: fused_jobs(key, length, mode, options.workers, memory=memory) for key, length, mode in points}
    # The workers inherit the empty cache folder: every program is compiled anew.
    with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, {CACHE_ENV: cache}):
        with RepeatPool(dataset, n_workers=options.workers) as pool:
            print(f"the workers started (TensorFlow imported) in {started_workers(pool):.1f} s")
            first, again = {}, {}
            for key, length, mode in points:
                first[key], _ = run_jobs(pool, jobs[key])
                # The faster of two more runs: a slow spell of the machine in one is not fixed cost.
                (again[key], rmse), (other, _) = run_jobs(pool, jobs[key]), run_jobs(pool, jobs[key])
                again[key] = min(again[key], other)
                if key == "warm-up":
                    print(f"a fresh pool's first point (L=10 stateful: TensorFlow's first use, tracing, compilation): "
                          f"fixed cost {first[key] - again[key]:.1f} s")
                    print(f"{'point':18s} {'fixed cost':>10s} {'fused':>14s} {'plain Keras':>14s} {'ratio':>7s}  test RMSE")
                    continue
                started = time.perf_counter()
                list(pool._executor.map(plain_lag_echo, [(dataset, length, mode, s, SETTINGS) for s in range(options.plain_repeats)]))
                plain_rate = options.plain_repeats / (time.perf_counter() - started)
                fused_rate = N_REPEATS / again[key]
                print(f"{key:18s} {first[key] - again[key]:9.1f}s {fused_rate:9.2f} rep/s {plain_rate:9.3f} rep/s "
                      f"{fused_rate / plain_rate:6.1f}x  {rmse:.3f}", flush=True)
        # A new pool, as the next run of a study or a sweep of the same shapes starts one.
        with RepeatPool(dataset, n_workers=options.workers) as pool:
            started_workers(pool)
            cached = {key: run_jobs(pool, jobs[key])[0] - again[key] for key, _, _ in points}
    print("fixed costs in a new pool, the compiled programs kept: "
          + ", ".join(f"{key} {seconds:.1f} s" for key, seconds in cached.items()))
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak resident memory of the largest worker process: {peak_mb:.0f} MB")
    longest = steps
    print(f"variable lengths: 100 sequences of 100-{longest:,} steps, L=100, stateful, a pack of 15, {UNITS} units, one process")
    similar_lengths(longest=longest)


if __name__ == "__main__":
    main()
