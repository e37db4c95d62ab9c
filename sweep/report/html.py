"""The report as one self-contained HTML file, Plotly's JavaScript embedded, that opens offline."""

from __future__ import annotations

import html
import math
from pathlib import Path

from sweep.errors import SweepError
from sweep.report.convergence import DESCRIPTION as CONVERGENCE_DESCRIPTION
from sweep.report.convergence import NOT_CONVERGED
from sweep.report.skill import BELOW_BASELINE, NO_BASELINE
from sweep.report.figures import box_figure, correlogram_figure, curve_figure, mean_figure
from sweep.report.comparison import TEST_DESCRIPTION
from sweep.report.summary import PointStats, Report, export_command
from sweep.run.racing import DESCRIPTION as RACING_DESCRIPTION

__all__ = ["write_html"]


def write_html(report: Report, path: str | Path) -> Path:
    """One HTML file with Plotly's JavaScript embedded, so that it opens with no network."""
    path = Path(path)
    figures = {"box": box_figure(report), "means": mean_figure(report)}
    if any(point.curves for point in report.finished_points):
        figures["curves"] = curve_figure(report)
    if any(point.validation_curves for point in report.finished_points):
        figures["validation_curves"] = curve_figure(report, validation=True)
    if report.suggestion:
        figures["correlogram"] = correlogram_figure(report.suggestion)
    parts = {
        name: figure.to_html(full_html=False, include_plotlyjs=(index == 0), config={"displaylogo": False})
        for index, (name, figure) in enumerate(figures.items())
    }
    try:
        path.write_text(_page(report, parts), encoding="utf-8")
    except OSError as error:
        raise SweepError(f"cannot write the report to {str(path)!r} ({error.strerror}); choose another -o path") from None
    return path


def _page(report: Report, figures: dict[str, str]) -> str:
    name = html.escape(report.study_name)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{name}: sweep report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child, td.text {{ text-align: left; }}
td.text {{ white-space: normal; overflow-wrap: anywhere; }}
#settings {{ table-layout: fixed; width: 100%; }}
#settings td:first-child {{ width: 8em; }}
.note {{ background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.6em 1em; }}
.best {{ font-weight: bold; }}
.chosen {{ background: #e8f4ea; border-left: 4px solid #2ca02c; padding: 0.6em 1em; }}
</style></head><body>
<h1>{name}</h1>
{_choice(report)}
{_baselines(report)}
{_notes(report)}
<section id="box">{figures["box"]}</section>
<section id="means">{figures["means"]}</section>
{f'<section id="validation_curves">{figures["validation_curves"]}</section>' if "validation_curves" in figures else ""}
{f'<section id="curves">{figures["curves"]}</section>' if "curves" in figures else ""}
{_suggestion(report, figures["correlogram"]) if "correlogram" in figures else ""}
<h2>Grid points, best first</h2>
{_table(report)}
<p><small>Distinguishable from the best: {html.escape(TEST_DESCRIPTION)}.</small></p>
<h2>Settings</h2>
<table id="settings">{''.join(f'<tr><td class="text">{html.escape(k)}</td><td class="text">{html.escape(v)}</td></tr>' for k, v in report.settings)}</table>
</body></html>
"""


def _suggestion(report: Report, figure: str) -> str:
    items = "".join(
        f"<li>L={c['length']}: {html.escape('; '.join(c['reasons']))}</li>" for c in report.suggestion["candidates"]
    )
    return f'<h2>Lengths suggested by the data</h2><section id="suggestion">{figure}</section><ul id="suggested">{items}</ul>'


def _choice(report: Report) -> str:
    if report.choice is None:
        return ""
    export = html.escape(export_command(report.study_name))
    return (
        f'<p id="chosen" class="chosen">{html.escape(report.choice.describe())}</p>'
        f'<p id="export">To use it: <code>{export}</code> (with --storage as for this study) writes its '
        "representative network as a plain Keras model with its data contract.</p>"
    )


def _baselines(report: Report) -> str:
    stick = report.yardstick
    text = stick.describe() if stick is not None else f"{NO_BASELINE}: skill cannot be measured."
    return f'<p id="baselines">{html.escape(text)}</p>'


def _notes(report: Report) -> str:
    notes = []
    counts = report.counts
    if not report.is_finished:
        notes.append(
            f"This study is still running: {counts['done']} points done, {counts['running']} running, "
            f"{counts['waiting']} waiting. The figures show the finished points only."
        )
    if counts["failed"]:
        notes.append(f"{counts['failed']} point(s) failed; their reasons are in the table.")
    stopped = [point for point in report.points if point.stopped]
    if stopped:
        notes.append(
            f"Racing stopped {len(stopped)} point(s) before their full count, each shown worse than the leader "
            f"at a stage ({RACING_DESCRIPTION}); their statistics are over the repeats they trained."
        )
    unsettled = [point.key for point in report.finished_points if point.is_converging]
    if unsettled:
        notes.append(
            f"{NOT_CONVERGED.capitalize()}: {', '.join(unsettled)}. They were still improving when training stopped: "
            f"more epochs or units may change the ranking ({CONVERGENCE_DESCRIPTION})."
        )
    return "".join(f'<p class="note">{html.escape(note)}</p>' for note in notes)


_COLUMNS = ("#", "point", "state", "n", "mean", "skill", "std", "95% CI", "median", "min", "max", "padding", "time", "vs best")


def _table(report: Report) -> str:
    head = "".join(f"<th>{html.escape(column)}</th>" for column in _COLUMNS)
    rows = [_row(rank, point) for rank, point in enumerate(report.points, start=1)]
    return f'<table id="points"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _row(rank: int, point: PointStats) -> str:
    s = point.summary
    interval = f"{_fmt(s.get('ci95_low'))} .. {_fmt(s.get('ci95_high'))}" if s.get("ci95_low") is not None else "-"
    if point.is_best:
        verdict = "best"
    elif point.p_value is None:
        verdict = "-"
    else:
        verdict = f"{'yes' if point.is_distinguishable else 'no'} (p={point.p_value:.3g})"
    cells = [
        str(rank) if point.state == "done" else "-",
        html.escape(point.key),
        html.escape(_state(point)),
        str(s.get("n", 0)),
        _fmt(s.get("mean")),
        "-" if point.skill is None else f"{point.skill:+.3f}",
        _fmt(s.get("std")),
        interval,
        _fmt(s.get("median")),
        _fmt(s.get("min")),
        _fmt(s.get("max")),
        f"{point.padding_fraction:.0%}",
        f"{point.wall_seconds:.0f} s" if point.wall_seconds is not None else "-",
        verdict,
    ]
    tds = "".join(f'<td class="text">{c}</td>' if i in (1, 2, 13) else f"<td>{c}</td>" for i, c in enumerate(cells))
    return f'<tr class="{"best" if point.is_best else ""}">{tds}</tr>'


def _state(point: PointStats) -> str:
    below = BELOW_BASELINE if point.is_below_baseline else ""
    notes = [note for note in (point.fail_reason, below, point.stopped, NOT_CONVERGED if point.is_converging else "") if note]
    return point.state + (f": {'; '.join(notes)}" if notes else "")


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
