"""How many machines one study database serves: M worker processes work through a study's P
points of R repeats with the real claim, heartbeat and record code, training replaced by a wait.

Each "machine" is a process that joins the study as `sweep worker` does (Study.open, then run),
with one change: its pool of training processes is a stand-in that waits --train-seconds per
pack and hands back made-up scores. Everything else is what a real worker does against the
database: the grid check at start, claims, heartbeats (every 10 s, as by default), a write per repeat,
a point's record, and the watch for dead workers once the queue is empty. The machines start
together once all have imported sweep, and the script prints points a second, the latency of a
claim (p50, p99), the most connections the server held for the study's database, and checks that
every point ended COMPLETE exactly once with all its repeats (exit status 1 otherwise).

    python benchmarks/scale.py --machines 32 --points 200 --repeats 5 --storage postgresql+psycopg://...
    python benchmarks/scale.py --machines 32 ... --storage URL-THROUGH-PGBOUNCER --monitor URL-OF-THE-SERVER
    python benchmarks/scale.py --smoke      # 4 machines, 16 points, SQLite in a temporary folder
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from sweep import Study, spec_from_dict
from sweep.store.connection import Liveness

NAME = "scale"


def study_of(points: int, repeats: int) -> dict[str, Any]:
    """A tiny built-in problem with `points` grid points (one learning rate each)."""
    return {
        "name": NAME, "repeats": repeats, "keep_weights": "none",
        "problem": {"kind": "echo-first", "length": 10, "n_train": 20, "n_test": 10},
        "grid": {"lengths": [10], "modes": ["stateless"], "learning_rate": [round(0.001 * (i + 1), 6) for i in range(points)]},
        "model": {"units": 2}, "training": {"epochs": 1, "batch_size": 10},
    }


class WaitingPool:
    """A stand-in for sweep's pool of training processes: each pack takes `seconds`, then its
    repeats come back with made-up scores, in the pool's own interface."""

    seconds = 0.1

    def __init__(self, dataset: Any, *, n_workers: int) -> None:
        self.n_workers = n_workers

    def __enter__(self) -> WaitingPool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, jobs):  # noqa: ANN001, ANN201 (the pool's interface)
        from sweep.train.jobs import PackResult, RepeatResult

        for job in jobs:
            time.sleep(self.seconds)
            results = tuple(
                RepeatResult(repeat=repeat, seed=seed, scores={"accuracy/sample": 0.5 + 0.001 * repeat},
                             validation_scores={"accuracy/sample": 0.5}, seconds=self.seconds, loss_per_epoch=(0.69,))
                for repeat, seed in zip(job.repeats, job.seeds)
            )
            yield job, PackResult(results=results)


def machine(storage: str, ready: Any, start: Any, seconds: float, output: str) -> None:
    """One machine: join the study and work until nothing is waiting or running, or until the
    benchmark that started it is gone, however it ended."""
    from sweep.run import runner
    from sweep.store import protocol
    from sweep.train.pool import end_with_parent

    end_with_parent(os.getppid())

    WaitingPool.seconds = seconds
    runner.RepeatPool = WaitingPool
    claim_next = protocol.claim_next
    latencies: list[float] = []

    def timed_claim(*args: Any, **kwargs: Any):  # noqa: ANN202
        began = time.perf_counter()
        try:
            return claim_next(*args, **kwargs)
        finally:
            latencies.append(time.perf_counter() - began)

    protocol.claim_next = timed_claim
    ready.put(True)
    start.wait()
    outcome = Study.open(NAME, storage=storage, liveness=Liveness()).run(workers=1)
    Path(output).write_text(json.dumps({"points": outcome.n_trained, "claims": latencies}))


def peak_connections(monitor: str, stop: threading.Event, seen: list[int]) -> None:
    """The most connections the server holds for the study's database, polled every 0.1 s."""
    engine = sqlalchemy.create_engine(monitor, poolclass=sqlalchemy.pool.NullPool)
    query = sqlalchemy.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    with engine.connect() as connection:
        while not stop.wait(0.1):
            seen.append(connection.execute(query).scalar())
            connection.rollback()
    engine.dispose()


def check(storage: str, points: int, repeats: int) -> list[str]:
    """What is wrong with the study after the run: points not COMPLETE exactly once, repeats missing."""
    trials = optuna.load_study(study_name=NAME, storage=storage).get_trials()
    complete = Counter(t.user_attrs["key"] for t in trials if t.state == TrialState.COMPLETE)
    problems = [f"{key}: COMPLETE {n} times" for key, n in complete.items() if n != 1]
    problems += [f"{points - len(complete)} points never COMPLETE"] if len(complete) != points else []
    problems += [
        f"{t.user_attrs['key']}: repeats {sorted(t.intermediate_values)}"
        for t in trials if t.state == TrialState.COMPLETE and sorted(t.intermediate_values) != list(range(repeats))
    ]
    other = Counter(t.state.name for t in trials if t.state != TrialState.COMPLETE)
    problems += [f"{n} trials {state}" for state, n in other.items()]
    return problems


def run(storage: str, *, machines: int, points: int, repeats: int, seconds: float, monitor: str | None) -> int:
    Study.create(spec_from_dict(study_of(points, repeats)), storage=storage, liveness=None)
    context = multiprocessing.get_context("spawn")
    ready, start = context.Queue(), context.Event()
    with tempfile.TemporaryDirectory() as folder:
        outputs = [f"{folder}/{index}.json" for index in range(machines)]
        processes = [context.Process(target=machine, args=(storage, ready, start, seconds, out)) for out in outputs]
        for process in processes:
            process.start()
        for _ in processes:  # every machine has imported sweep and waits
            ready.get(timeout=600)
        seen: list[int] = []
        stop = threading.Event()
        watcher = threading.Thread(target=peak_connections, args=(monitor, stop, seen)) if monitor else None
        if watcher:
            watcher.start()
        began = time.perf_counter()
        start.set()
        for process in processes:
            process.join()
        wall = time.perf_counter() - began
        stop.set()
        if watcher:
            watcher.join()
        finished = [json.loads(Path(out).read_text()) for out in outputs if Path(out).exists()]
    claims = sorted(c for f in finished for c in f["claims"])
    problems = check(storage, points, repeats)
    problems += [f"{machines - len(finished)} machines ended without finishing"] if len(finished) != machines else []
    p99 = claims[min(len(claims) - 1, int(0.99 * len(claims)))] if claims else float("nan")
    print(
        f"{machines:>8} {points:>6} {repeats:>7} {wall:>7.1f} {points / wall:>9.1f} {points * repeats / wall:>10.1f} "
        f"{1000 * statistics.median(claims or [float('nan')]):>10.1f} {1000 * p99:>10.1f} {max(seen) if seen else '-':>11}  "
        f"{'ok' if not problems else '; '.join(problems[:5])}",
        flush=True,
    )
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-seconds", type=float, default=0.2, help="the wait that stands for training a pack")
    parser.add_argument("--storage", help="the study database, a fresh one per --machines value is made inside it "
                        "(PostgreSQL: a database the user may create; default: SQLite in a temporary folder)")
    parser.add_argument("--monitor", help="a direct URL of the same PostgreSQL server, to count its connections "
                        "(default: --storage; give it when --storage goes through a pooler)")
    parser.add_argument("--smoke", action="store_true", help="4 machines, 16 points of 3 repeats, SQLite")
    args = parser.parse_args()
    if args.smoke:
        args.machines, args.points, args.repeats, args.train_seconds, args.storage = [4], 16, 3, 0.05, None
    print(f"{'machines':>8} {'points':>6} {'repeats':>7} {'wall s':>7} {'points/s':>9} {'repeats/s':>10} "
          f"{'claim p50':>10} {'claim p99':>10} {'connections':>11}  check")
    status = 0
    for machines in args.machines:
        with fresh_database(args.storage) as (storage, database):
            monitor = args.monitor or (storage if database else None)
            if args.monitor and database:
                monitor = sqlalchemy.engine.make_url(args.monitor).set(database=database).render_as_string(hide_password=False)
            status |= run(storage, machines=machines, points=args.points, repeats=args.repeats,
                          seconds=args.train_seconds, monitor=monitor)
    sys.exit(status)


class fresh_database:
    """A new empty database for one run: a SQLite file in a temporary folder, or a PostgreSQL
    database made beside the one --storage names (and dropped after), reached the same way."""

    def __init__(self, storage: str | None) -> None:
        self.storage = storage

    def __enter__(self) -> tuple[str, str | None]:
        """The new database's URL, and its name on the server (None for SQLite)."""
        if self.storage is None:
            self.folder = tempfile.TemporaryDirectory()
            return f"sqlite:///{self.folder.name}/scale.db", None
        url = sqlalchemy.engine.make_url(self.storage)
        self.name = f"sweep_scale_{int(time.time() * 1000)}"
        self.admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {self.name}")
        return url.set(database=self.name).render_as_string(hide_password=False), self.name

    def __exit__(self, *exc: object) -> None:
        if self.storage is None:
            self.folder.cleanup()
            return
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE {self.name} WITH (FORCE)")
        self.admin.dispose()


if __name__ == "__main__":
    main()
