"""Racing against the full count: repeats trained, wall time, and the points left tied with the best.

Runs the shipped echo-first study (12 points, 30 repeats) twice per setting in one process, each
time in a fresh SQLite file: once as shipped, once with a [racing] table, at the units given,
and prints both runs' repeats and wall time, their ratio, and whether the report finds the
same set of points indistinguishable from the best.

    python benchmarks/racing.py [--units 10 64] [--stages 5,10,20 10,20] [--workers 2] [--smoke]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sweep import Study, apply_overrides, load_spec, spec_from_dict

SHIPPED = Path(__file__).resolve().parent.parent / "studies" / "echo_first.toml"


def run(raw: dict, workers: int) -> tuple[float, int, list[str]]:
    """Wall seconds, repeats trained, and the best point with those indistinguishable from it."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        study = Study.create(spec_from_dict(raw), storage=f"sqlite:///{folder}/bench.db")
        study.run(workers=workers)
        seconds = time.perf_counter() - started
        report = study.report()
    repeats = sum(point.summary["n"] for point in report.points)
    tied = sorted(p.key for p in report.finished_points if p.is_best or p.is_distinguishable is False)
    return seconds, repeats, tied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, nargs="+", default=[10, 64])
    parser.add_argument("--stages", nargs="+", default=["5,10,20", "10,20"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="the smallest run: lengths 1 and 20, 4 units, 4 repeats of 1 epoch, one stage")
    args = parser.parse_args()
    overrides = {"repeats": 4, "epochs": 1} if args.smoke else {}
    if args.smoke:
        args.units, args.stages = [4], ["2"]
    print(f"{'units':>5} {'stages':>9} {'repeats':>13} {'wall s':>15} {'raced/full':>10}  same tied set")
    for units in args.units:
        raw = apply_overrides(load_spec(SHIPPED), name="bench", **overrides).model_dump(mode="json")
        if args.smoke:
            raw["grid"]["lengths"] = [1, 20]
        raw["model"]["units"] = units
        full_seconds, full_repeats, full_tied = run(raw, args.workers)
        for stages in args.stages:
            raced = {**raw, "racing": {"stages": [int(s) for s in stages.split(",")]}}
            seconds, repeats, tied = run(raced, args.workers)
            print(
                f"{units:>5} {stages:>9} {repeats:>5} of {full_repeats:<5} {seconds:>6.1f} vs {full_seconds:<6.1f} "
                f"{seconds / full_seconds:>9.2f}x  {'yes' if tied == full_tied else f'no: {tied} vs {full_tied}'}",
                flush=True,
            )


if __name__ == "__main__":
    main()
