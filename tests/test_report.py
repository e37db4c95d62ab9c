"""The report's numbers against hand-computed ones, on a synthetic study, and the HTML it writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sweep.report.html import write_html
from tests.conftest import collect
from tests.conftest import SYNTHETIC_SCORES, SYNTHETIC_SPEC

@pytest.fixture
def report(synthetic_study):
    return collect(synthetic_study, SYNTHETIC_SPEC, 6)


def test_points_are_ranked_best_first_with_the_unfinished_last(report) -> None:
    assert [p.key for p in report.points] == [
        "L=6 stateless", "L=3 stateful", "L=4 stateful", "L=3 stateless", "L=4 stateless", "L=6 stateful",
    ]
    assert report.points[0].is_best and report.points[-1].state == "waiting"
    assert not report.is_finished and report.counts == {"done": 5, "running": 0, "waiting": 1, "failed": 0}


def test_statistics_match_hand_computed_values(report) -> None:
    best = report.points[0].summary  # scores 1, 2, 3
    assert best["n"] == 3 and best["mean"] == pytest.approx(2.0) and best["std"] == pytest.approx(1.0)
    assert best["sem"] == pytest.approx(1 / np.sqrt(3))
    half_width = 4.302652729911275 / np.sqrt(3)  # t(0.975, 2 degrees of freedom) * sem
    assert best["ci95_low"] == pytest.approx(2.0 - half_width) and best["ci95_high"] == pytest.approx(2.0 + half_width)
    assert (best["median"], best["min"], best["max"]) == (2.0, 1.0, 3.0)


def test_padding_is_measured_per_point(report) -> None:
    by_key = {p.key: p for p in report.points}
    assert by_key["L=4 stateful"].is_padded and by_key["L=4 stateful"].padding_fraction == pytest.approx(2 / 8)
    assert not by_key["L=3 stateful"].is_padded and by_key["L=3 stateful"].padding_fraction == 0.0


def test_p_values_are_mann_whitney_against_the_best_adjusted_by_benjamini_hochberg(report) -> None:
    others = report.points[1:5]
    raw = [stats.mannwhitneyu(SYNTHETIC_SCORES["L=6 stateless"], SYNTHETIC_SCORES[p.key], alternative="two-sided").pvalue for p in others]
    expected = stats.false_discovery_control(raw, method="bh")
    assert [p.p_value for p in others] == pytest.approx(list(expected))
    assert report.points[-1].p_value is None


def test_identical_scores_are_not_distinguishable(sqlite_url: str) -> None:
    from sweep.report.summary import compare_to_best, PointStats

    same = [PointStats(number=i, key=str(i), length=1, mode="m", group="m", state="done", scores=(1.0,) * 5,
                       summary={"mean": 1.0}, is_padded=False, padding_fraction=0.0, wall_seconds=None) for i in range(3)]
    compared = compare_to_best(same)
    assert compared[0].is_best and [p.p_value for p in compared[1:]] == [1.0, 1.0]
    assert [p.is_distinguishable for p in compared[1:]] == [False, False]


def test_the_html_is_self_contained_with_one_box_per_finished_point(report, tmp_path: Path) -> None:
    page = write_html(report, tmp_path / "report.html").read_text()
    assert '<script src="http' not in page and "<script src='http" not in page
    assert "Plotly.newPlot" in page and "still running" in page
    figures = [json.loads(m) for m in re.findall(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', page, flags=re.S)]
    boxes = figures[0]
    assert {trace["name"] for trace in boxes} == {"stateless", "stateful"}
    assert sum(len(trace["y"]) for trace in boxes) == 15  # every repeat of the five finished points
    assert sorted({x for trace in boxes for x in trace["x"]}) == ["L=3", "L=4", "L=6"]
    assert page.count("<tr") == 1 + 6 + 7  # table head, six grid points, seven settings
