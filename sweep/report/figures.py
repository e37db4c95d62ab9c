"""The report's figures, drawn with Plotly from what :func:`sweep.report.summary.collect` gathered."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go

from sweep.report.convergence import NOT_CONVERGED
from sweep.report.summary import Report

__all__ = ["box_figure", "correlogram_figure", "curve_figure", "mean_figure"]

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


