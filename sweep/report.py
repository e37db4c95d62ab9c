"""The study report: numbers collected from the stored trials, then drawn with Plotly into one
self-contained HTML file that opens offline.

Collecting (:func:`collect`) is pure and tested directly; drawing (:func:`box_figure`,
:func:`mean_figure`, :func:`write_html`) only lays out what was collected. Nothing is re-trained
or guessed: every number comes from the repeats stored in the study.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import plotly.graph_objects as go
from scipy import stats

from sweep.errors import SweepError
from sweep.racing import DESCRIPTION as RACING_DESCRIPTION
from sweep.convergence import DESCRIPTION as CONVERGENCE_DESCRIPTION
from sweep.convergence import NOT_CONVERGED, Convergence
from sweep.results import Choice, StoredPoint, chosen_point, count_states, read_points
from sweep.spec import Spec, describe_spec
from sweep.study import LOSS_CURVE, SUGGESTION_ATTR, VALIDATION_CURVE

__all__ = ["PointStats", "Report", "box_figure", "collect", "correlogram_figure", "curve_figure", "mean_figure", "write_html"]

ALPHA = 0.05
TEST_DESCRIPTION = (
    "two-sided Mann-Whitney U test of each point's repeat scores against the best point's, "
    "p-values adjusted for the number of comparisons with the Benjamini-Hochberg procedure "
    f"(false discovery rate {ALPHA:g}); a point is distinguishable from the best when its adjusted p < {ALPHA:g}"
)


@dataclass(frozen=True)
class PointStats:
    """One grid point's repeat scores and their statistics."""

    number: int
    key: str
    length: int
    mode: str
    group: str  # the mode and any crossed settings: one colour in the figures
    state: str
    scores: tuple[float, ...]
    summary: dict[str, Any]
    is_padded: bool
    padding_fraction: float
    wall_seconds: float | None
    fail_reason: str = ""
    stopped: str = ""  # a raced point stopped at a stage, and why
    curves: tuple[tuple[float, ...], ...] = ()  # each repeat's training loss per epoch
    validation_curves: tuple[tuple[float, ...], ...] = ()  # each repeat's objective on the validation data per epoch
    convergence: Convergence | None = None  # the capacity check (see sweep.convergence)
    p_value: float | None = None  # adjusted, against the best point
    is_best: bool = False

    @property
    def is_distinguishable(self) -> bool | None:
        return None if self.p_value is None else self.p_value < ALPHA

    @property
    def is_converging(self) -> bool:
        """Whether the capacity check found it still clearly improving."""
        return self.convergence is not None and self.convergence.is_improving


@dataclass(frozen=True)
class Report:
    study_name: str
    metric: str
    direction: str
    settings: list[tuple[str, str]]
    counts: dict[str, int]
    points: list[PointStats] = field(default_factory=list)
    suggestion: dict[str, Any] | None = None  # as stored when the grid's lengths were suggested
    choice: Choice | None = None  # the best point, the data it was chosen on, its test score

    @property
    def is_finished(self) -> bool:
        return self.counts["running"] == 0 and self.counts["waiting"] == 0

    @property
    def finished_points(self) -> list[PointStats]:
        return [point for point in self.points if point.state == "done"]


def collect(study: optuna.Study, spec: Spec, sequence_length: int) -> Report:
    """Every grid point's statistics, best first, with its test against the best point."""
    stored = read_points(study, metric=spec.metric, sequence_length=sequence_length)
    points = [_point(point, maximize=spec.direction == "maximize") for point in stored]
    done = [point for point in points if point.state == "done"]
    # Studies stored before the validation split ranked on the test data.
    ranked_on = stored[0].ranked_on if stored and stored[0].state == "done" else spec.ranked_on
    return Report(
        study_name=study.study_name,
        metric=f"{spec.objective.metric} per {spec.objective.per} on the {ranked_on} data",
        direction=spec.direction,
        settings=list(describe_spec(spec)),
        counts=count_states(study),
        points=compare_to_best(done) + [point for point in points if point.state != "done"],
        suggestion=study.user_attrs.get(SUGGESTION_ATTR),
        choice=chosen_point(stored),
    )


def _point(point: StoredPoint, *, maximize: bool) -> PointStats:
    extras = [f"{name}={value}" for name, value in sorted(point.params.items()) if name not in ("length", "mode")]
    padding = point.padding_fraction or 0.0
    return PointStats(
        number=point.number,
        key=point.key,
        length=point.length,
        mode=point.mode,
        group=" ".join([point.mode, *extras]),
        state=point.state,
        scores=point.scores,
        summary=point.summary,
        is_padded=padding > 0,
        padding_fraction=padding,
        wall_seconds=point.wall_seconds,
        fail_reason=point.fail_reason,
        stopped=point.stopped,
        curves=_curves(point, LOSS_CURVE),
        validation_curves=_curves(point, VALIDATION_CURVE),
        convergence=point.convergence(maximize=maximize) if point.state == "done" else None,
    )


def _curves(point: StoredPoint, name: str) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(details[name]) for _, details in sorted(point.repeats.items()) if details.get(name))


def compare_to_best(done: list[PointStats]) -> list[PointStats]:
    """Mark the first (best) point, and give every other its adjusted p-value against it."""
    if not done:
        return []
    best, others = done[0], done[1:]
    raw = [_p_value(best.scores, point.scores) for point in others]
    adjusted = list(stats.false_discovery_control(raw, method="bh")) if raw else []
    return [replace(best, is_best=True)] + [replace(point, p_value=float(p)) for point, p in zip(others, adjusted)]


def _p_value(best: tuple[float, ...], other: tuple[float, ...]) -> float:
    if len(best) < 2 or len(other) < 2 or len(set(best) | set(other)) == 1:
        return 1.0  # nothing to tell apart: too few repeats, or every score the same
    return float(stats.mannwhitneyu(best, other, alternative="two-sided").pvalue)


# Drawing ---------------------------------------------------------------------------------------

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")


def _groups(report: Report) -> list[str]:
    return sorted({point.group for point in report.finished_points})


def box_figure(report: Report) -> go.Figure:
    """One box per grid point, every repeat drawn as a point; state modes side by side per length."""
    figure = go.Figure()
    lengths = sorted({point.length for point in report.finished_points})
    for index, group in enumerate(_groups(report)):
        members = sorted((p for p in report.finished_points if p.group == group), key=lambda p: p.length)
        figure.add_trace(
            go.Box(
                name=group,
                x=[f"L={p.length}" for p in members for _ in p.scores],
                y=[score for p in members for score in p.scores],
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"size": 4, "color": _COLOURS[index % len(_COLOURS)]},
                line={"color": _COLOURS[index % len(_COLOURS)]},
                hovertemplate="%{x}<br>" + group + "<br>score %{y:.4f}<extra></extra>",
            )
        )
    figure.update_layout(
        title=f"{report.metric}: every repeat of every grid point",
        boxmode="group",
        xaxis={"title": "subsequence length", "categoryorder": "array", "categoryarray": [f"L={n}" for n in lengths]},
        yaxis={"title": report.metric},
        legend={"title": "state mode"},
        template="plotly_white",
    )
    return figure


def mean_figure(report: Report) -> go.Figure:
    """Mean skill against subsequence length with 95% confidence intervals; padded lengths marked."""
    figure = go.Figure()
    for index, group in enumerate(_groups(report)):
        members = sorted((p for p in report.finished_points if p.group == group), key=lambda p: p.length)
        means = [p.summary["mean"] for p in members]
        high = [_or_zero(p.summary.get("ci95_high"), p.summary["mean"]) for p in members]
        low = [_or_zero(p.summary.get("ci95_low"), p.summary["mean"]) for p in members]
        figure.add_trace(
            go.Scatter(
                name=group,
                x=[p.length for p in members],
                y=means,
                mode="lines+markers",
                error_y={"type": "data", "symmetric": False, "array": high, "arrayminus": low},
                marker={
                    "size": 10,
                    "color": _COLOURS[index % len(_COLOURS)],
                    "symbol": ["circle-open" if p.is_padded else "circle" for p in members],
                },
                customdata=[["padded" if p.is_padded else "factor", p.summary["n"]] for p in members],
                hovertemplate="L=%{x} (%{customdata[0]})<br>mean %{y:.4f}, n=%{customdata[1]}<extra>"
                + group
                + "</extra>",
            )
        )
    figure.update_layout(
        title=f"mean {report.metric} with 95% confidence interval (filled: factor of the sequence length, open: padded)",
        xaxis={"title": "subsequence length", "type": "log" if _is_wide(report) else "linear"},
        yaxis={"title": report.metric},
        legend={"title": "state mode"},
        template="plotly_white",
    )
    return figure


def _or_zero(bound: float | None, mean: float) -> float:
    return 0.0 if bound is None else abs(bound - mean)


def _is_wide(report: Report) -> bool:
    lengths = [p.length for p in report.finished_points]
    return bool(lengths) and max(lengths) / max(1, min(lengths)) > 50


def curve_figure(report: Report, *, validation: bool = False) -> go.Figure:
    """Each finished point's learning curve: the median over its repeats of the mean training loss
    in each epoch (or, with `validation`, of the objective on the validation data after it), with
    the band from the 25th to the 75th percentile. A point the capacity check flags is dashed."""
    figure = go.Figure()
    drawn = [p for p in report.finished_points if (p.validation_curves if validation else p.curves)]
    for index, point in enumerate(drawn):
        point_curves = point.validation_curves if validation else point.curves
        # Repeats stopped early end sooner: each epoch's percentiles are over those still training.
        epochs = max(len(curve) for curve in point_curves)
        curves = np.array([list(curve) + [np.nan] * (epochs - len(curve)) for curve in point_curves], dtype=float)
        low, median, high = np.nanpercentile(curves, [25, 50, 75], axis=0)
        x = list(range(1, epochs + 1))
        colour = _COLOURS[index % len(_COLOURS)]
        figure.add_trace(go.Scatter(
            x=x + x[::-1], y=list(high) + list(low[::-1]), fill="toself", line={"width": 0}, fillcolor=colour,
            opacity=0.15, legendgroup=point.key, showlegend=False, hoverinfo="skip",
        ))
        name = point.key + (f" ({NOT_CONVERGED})" if point.is_converging else "")
        figure.add_trace(go.Scatter(
            x=x, y=list(median), mode="lines+markers", name=name, legendgroup=point.key,
            line={"color": colour, "dash": "dash" if point.is_converging else None},
        ))
    what = report.metric if validation else "training loss"
    figure.update_layout(
        title=f"{what} per epoch: median over the repeats, 25th to 75th percentile shaded, {NOT_CONVERGED} dashed",
        xaxis={"title": "epoch", "dtick": 1},
        yaxis={"title": what, "type": "linear" if validation else "log"},
        template="plotly_white",
    )
    return figure


def correlogram_figure(suggestion: dict[str, Any]) -> go.Figure:
    """The ACF and PACF the grid's lengths were read from, their noise bands, and the suggested
    lengths marked."""
    figure = go.Figure()
    for index, gram in enumerate(suggestion["correlograms"][:4]):
        lags = list(range(1, len(gram["acf"])))
        for kind, dash in (("acf", None), ("pacf", "dot")):
            figure.add_trace(go.Scatter(
                x=lags, y=gram[kind][1:], mode="lines+markers", name=f"{gram['name']} {kind.upper()}",
                line={"color": _COLOURS[index % len(_COLOURS)], "dash": dash},
            ))
        band = [b if b is not None else math.nan for b in gram["band"][1:]]
        figure.add_trace(go.Scatter(
            x=lags + lags[::-1], y=band + [-b for b in band[::-1]], fill="toself", line={"width": 0},
            fillcolor="rgba(120,120,120,0.15)", name=f"{gram['name']} noise band", hoverinfo="skip",
        ))
    for candidate in suggestion["candidates"]:
        figure.add_vline(
            x=candidate["length"], line={"color": "#e0a800", "dash": "dash"},
            annotation_text=f"L={candidate['length']}", annotation_hovertext="; ".join(candidate["reasons"]),
        )
    figure.update_layout(
        title="autocorrelation (ACF) and partial autocorrelation (PACF) of the training data; suggested lengths dashed",
        xaxis={"title": "lag (steps)"}, yaxis={"title": "correlation"}, template="plotly_white",
    )
    return figure


def write_html(report: Report, path: str | Path) -> Path:
    """One HTML file with Plotly's JavaScript embedded, so that it opens with no network."""
    path = Path(path)
    figures = {"box": box_figure(report), "means": mean_figure(report)}
    if any(point.curves for point in report.finished_points):
        figures["curves"] = curve_figure(report)
    if any(point.validation_curves for point in report.finished_points):
        figures["validation_curves"] = curve_figure(report, validation=True)
    if report.suggestion:
        figures["suggestion"] = correlogram_figure(report.suggestion)
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
.note {{ background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.6em 1em; }}
.best {{ font-weight: bold; }}
.chosen {{ background: #e8f4ea; border-left: 4px solid #2ca02c; padding: 0.6em 1em; }}
</style></head><body>
<h1>{name}</h1>
{_choice(report)}
{_notes(report)}
<section id="box">{figures["box"]}</section>
<section id="means">{figures["means"]}</section>
{f'<section id="validation_curves">{figures["validation_curves"]}</section>' if "validation_curves" in figures else ""}
{f'<section id="curves">{figures["curves"]}</section>' if "curves" in figures else ""}
{_suggestion(report, figures["suggestion"]) if "suggestion" in figures else ""}
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
    return f'<p id="chosen" class="chosen">{html.escape(report.choice.describe())}</p>'


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


_COLUMNS = ("#", "point", "state", "n", "mean", "std", "95% CI", "median", "min", "max", "padding", "time", "vs best")


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
        _fmt(s.get("std")),
        interval,
        _fmt(s.get("median")),
        _fmt(s.get("min")),
        _fmt(s.get("max")),
        f"{point.padding_fraction:.0%}",
        f"{point.wall_seconds:.0f} s" if point.wall_seconds is not None else "-",
        verdict,
    ]
    tds = "".join(f'<td class="text">{c}</td>' if i in (1, 2, 12) else f"<td>{c}</td>" for i, c in enumerate(cells))
    return f'<tr class="{"best" if point.is_best else ""}">{tds}</tr>'


def _state(point: PointStats) -> str:
    notes = [note for note in (point.fail_reason, point.stopped, NOT_CONVERGED if point.is_converging else "") if note]
    return point.state + (f": {'; '.join(notes)}" if notes else "")


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
