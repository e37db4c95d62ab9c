"""optuna-dashboard on the study storage, and the note each study carries there."""

from __future__ import annotations

import errno
import os
import socket

import optuna
import optuna_dashboard

from sweep.errors import SweepError
from sweep.report.convergence import DESCRIPTION as CONVERGENCE_DESCRIPTION
from sweep.report.convergence import NOT_CONVERGED
from sweep.report.comparison import TEST_DESCRIPTION
from sweep.report.skill import BELOW_BASELINE, NO_BASELINE
from sweep.report.summary import Report, export_command
from sweep.store.connection import quiet_experimental

__all__ = ["annotate", "check_address", "serve", "study_note"]


def study_note(report: Report) -> str:
    """Markdown for the dashboard's study note: the grid, its progress and the best point."""
    counts = report.counts
    lines = [
        f"# {report.study_name}",
        "",
        f"Grid of {len(report.points)} points: {counts['done']} done, {counts['running']} running, "
        f"{counts['waiting']} waiting, {counts['failed']} failed. Objective: {report.metric} ({report.direction}d).",
        "",
        "Each trial is one grid point; its intermediate values are the repeats' scores (step = repeat index), "
        "its value their mean, and its user attributes the statistics (n, std, ci95_low, ci95_high, ...).",
        "",
    ]
    finished = report.finished_points
    if finished and report.choice is not None:
        best = finished[0]
        s = best.summary
        interval = f", 95% CI {s['ci95_low']:.4f} .. {s['ci95_high']:.4f}" if s.get("ci95_low") is not None else ""
        tied = [p.key for p in finished[1:] if p.is_distinguishable is False]
        lines += [
            f"**Best point: {best.key}**, mean {s['mean']:.4f} over {s['n']} repeats{interval}.",
            "",
            f"Not distinguishable from it: {', '.join(tied) if tied else 'none'} ({TEST_DESCRIPTION}).",
            "",
        ]
    if report.choice is not None:
        lines += [report.choice.describe(), "", f"To use it: `{export_command(report.study_name)}` (with --storage as for this study).", ""]
    lines += [report.yardstick.describe() if report.yardstick is not None else f"{NO_BASELINE}.", ""]
    below = [point.key for point in finished if point.is_below_baseline]
    if below:
        lines += [f"{BELOW_BASELINE.capitalize()}: {', '.join(below)}.", ""]
    unsettled = [point for point in finished if point.is_converging]
    if unsettled:
        lines += [
            f"{NOT_CONVERGED.capitalize()} ({CONVERGENCE_DESCRIPTION}):", "",
            *(f"- {point.key}: {point.convergence.describe()}" for point in unsettled), "",
        ]
    stopped = [point for point in report.points if point.stopped]
    if stopped:
        lines += ["Stopped by racing:", "", *(f"- {point.key}: {point.stopped}" for point in stopped), ""]
    lines += ["| setting | value |", "|---|---|", *(f"| {key} | {value} |" for key, value in report.settings)]
    return "\n".join(lines)


def annotate(study: optuna.Study, report: Report) -> None:
    """Give the study its note and its objective's name in optuna-dashboard."""
    with quiet_experimental():
        study.set_metric_names([report.metric])
    optuna_dashboard.save_note(study, study_note(report))


def check_address(host: str, port: int) -> None:
    """Refuse, before anything is printed or served, an address the server could not listen on."""
    try:
        socket.getaddrinfo(host, port)
    except socket.gaierror:
        raise SweepError(f"--host {host} is no address or known name; give an address of this machine, such as 127.0.0.1") from None
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise SweepError(f"port {port} on {host} is in use by another program; choose another --port") from None
        raise SweepError(f"cannot listen on {host}:{port} ({os.strerror(error.errno)}); give an address of this machine as --host") from None


def serve(storage: optuna.storages.BaseStorage, *, host: str, port: int) -> None:
    """Serve optuna-dashboard on the storage until interrupted."""
    optuna_dashboard.run_server(storage, host=host, port=port)
