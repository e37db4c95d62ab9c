"""The cost of decoupled TBPTT(k1, k2) against plain TBPTT (k1 = k2) at the same k1.

lag-echo (lag 10) on 500 training sequences of 40 steps, 16 units, one stateful epoch of a
fused pack of 30 repeats, in this process. For each (k1, k2) it prints the first run (which
traces the point's loops), a second identical run, and the second run's time relative to
k1 = k2 at the same k1: k2 > k1 runs the forward pass again over windows of k2 steps every k1
steps, so its work grows about as k2 / k1; k2 < k1 does the same work as k1 = k2.

    python benchmarks/decoupled.py [--repeats 30] [--pairs 5,5 5,2 5,10 5,20 2,2 2,12] [--smoke]
"""

from __future__ import annotations

import argparse
import time

from sweep.train.jobs import PackJob
from sweep.data.problems import load_problem
from sweep.spec import LagEchoProblem
from sweep.train import limit_threads, set_dataset, train_job

SETTINGS = dict(mode="stateful", units=16, epochs=1, batch_size=20, optimizer="adam", learning_rate=0.01)


def timed(job: PackJob) -> tuple[float, float]:
    """Wall seconds of one job, and its repeats' mean test RMSE."""
    started = time.perf_counter()
    outcome = train_job(job)
    seconds = time.perf_counter() - started
    return seconds, sum(r.scores["rmse/sample"] for r in outcome.results) / len(outcome.results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--pairs", nargs="+", default=["5,5", "5,2", "5,10", "5,20", "2,2", "2,12"])
    parser.add_argument("--smoke", action="store_true", help="the smallest run: 2 repeats of two pairs, to check that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.repeats, args.pairs = 2, ["5,5", "5,10"]
    limit_threads(2)
    set_dataset(load_problem(LagEchoProblem(kind="lag-echo", length=40, lag=10, n_train=500, n_test=100)))
    plain: dict[int, float] = {}
    print(f"{'k1':>3} {'k2':>3} {'first run':>10} {'second':>8} {'vs k1=k2':>9} {'rmse':>7}")
    for pair in args.pairs:
        k1, k2 = (int(part) for part in pair.split(","))
        job = PackJob(key=f"k1={k1} k2={k2}", length=k1, backward=k2, repeats=tuple(range(args.repeats)),
                      seeds=tuple(range(args.repeats)), **SETTINGS)
        first, _ = timed(job)
        second, rmse = timed(job)
        if k1 == k2:
            plain[k1] = second
        ratio = f"{second / plain[k1]:.2f}x" if k1 in plain else "-"
        print(f"{k1:>3} {k2:>3} {first:>9.2f}s {second:>7.2f}s {ratio:>9} {rmse:>7.4f}", flush=True)


if __name__ == "__main__":
    main()
