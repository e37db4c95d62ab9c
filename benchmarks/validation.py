"""What scoring the validation data after every epoch costs a fused pack.

Trains the same pack of repeats twice per grid point in one process, on the same training data:
once with the validation data held out beside it (scored after each epoch, for the learning
curve and the capacity check), once without (scored on the test data only, once trained). The
networks are traced before timing, so the figures compare steady-state training, and prints each
point's seconds per pack and their ratio.

    python benchmarks/validation.py [--units 10 64] [--repeats 15] [--epochs 5] [--runs 3] [--smoke]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

from sweep import load_spec
from sweep.train.jobs import PackJob
from sweep.data.problems import load_data
from sweep.train import limit_threads, set_dataset, train_job

SHIPPED = Path(__file__).resolve().parent.parent / "studies" / "echo_first.toml"


def seconds_per_pack(job: PackJob, runs: int) -> float:
    train_job(job)  # traced (and compiled) before timing
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        train_job(job)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, nargs="+", default=[10, 64])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="the smallest run: 4 units, 2 repeats, 1 epoch, 1 run")
    args = parser.parse_args()
    if args.smoke:
        args.units, args.repeats, args.epochs, args.runs = [4], 2, 1, 1
    limit_threads(1)  # one worker's share of a 2-core machine, as a study's workers run
    spec = load_spec(SHIPPED)
    with_validation = load_data(spec)
    without = dataclasses.replace(with_validation, x_val=None, y_val=None, val_lengths=None)
    print(f"echo-first: {len(with_validation.x_train)} training, {len(with_validation.x_val)} validation sequences")
    print(f"{'units':>5} {'point':>15} {'with s':>8} {'without s':>9} {'ratio':>6}")
    for units in args.units:
        for length, mode in ((1, "stateless"), (4, "stateful"), (20, "stateless"), (20, "stateful")):
            job = PackJob(
                key=f"L={length} {mode}", length=length, mode=mode, units=units, epochs=args.epochs, batch_size=10,
                optimizer="adam", learning_rate=0.001, repeats=tuple(range(args.repeats)),
                seeds=tuple(range(args.repeats)), objective=spec.metric,
            )
            timed = {}
            for name, dataset in (("with", with_validation), ("without", without)):
                set_dataset(dataset)
                timed[name] = seconds_per_pack(job, args.runs)
            print(f"{units:>5} {job.key:>15} {timed['with']:>8.2f} {timed['without']:>9.2f} "
                  f"{timed['with'] / timed['without']:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
