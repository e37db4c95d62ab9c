"""What a person sees, in headless Chromium: the report file offline, and the dashboard."""

from __future__ import annotations

import shutil
import socket
from dataclasses import replace
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from sweep.report.convergence import Convergence
from sweep.report.html import write_html
from tests.conftest import collect
from sweep.report.choice import Choice
from tests.conftest import SYNTHETIC_SPEC

CHROMIUM = shutil.which("chromium")
playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' brings Playwright")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator:
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def test_the_report_opens_offline_with_one_box_per_grid_point(browser, synthetic_study: optuna.Study, tmp_path: Path) -> None:
    page_file = write_html(collect(synthetic_study, SYNTHETIC_SPEC, 6), tmp_path / "report.html")
    context = browser.new_context(offline=True, viewport={"width": 1300, "height": 900})
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    page.goto(page_file.as_uri())
    page.wait_for_selector("#box .js-plotly-plot path.box", state="attached")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)

    assert page.locator("#box path.box").count() == 5  # the five finished points; one still waits
    assert page.locator("#box .xtick text").all_text_contents() == ["L=3", "L=4", "L=6"]
    assert sorted(page.locator("#box .legendtext").all_text_contents()) == ["stateful", "stateless"]
    assert page.locator("#means .js-plotly-plot .scatterlayer .trace").count() == 2
    assert page.locator("#points tbody tr").count() == 6
    assert page.locator("#points tbody tr.best td").nth(1).inner_text() == "L=6 stateless"
    assert "still running" in page.locator(".note").inner_text()
    assert all(url.startswith("file:") for url in requested)


def test_the_report_draws_learning_curves_suggested_lengths_and_stopped_points(
    browser, synthetic_study: optuna.Study, tmp_path: Path
) -> None:
    report = collect(synthetic_study, SYNTHETIC_SPEC, 6)
    drawn = [point.key for point in report.finished_points[:2]]
    points = [
        replace(point, curves=((0.9, 0.5, 0.3), (0.8, 0.6, 0.2))) if point.key in drawn
        else replace(point, stopped="stopped at 2 repeats: worse than L=6 stateless (p=0.001 < 0.005)") if point.key == "L=4 stateless"
        else point
        for point in report.points
    ]
    suggestion = {
        "candidates": [{"length": 3, "reasons": ["dominant period of the target"]}],
        "correlograms": [{"name": "target", "acf": [1.0, 0.5, 0.2, 0.4], "pacf": [1.0, 0.5, -0.1, 0.3], "band": [None, 0.3, 0.3, 0.3]}],
    }
    page_file = write_html(replace(report, points=points, suggestion=suggestion), tmp_path / "report.html")
    page = browser.new_context(offline=True, viewport={"width": 1300, "height": 900}).new_page()
    page.goto(page_file.as_uri())
    page.wait_for_selector("#curves .js-plotly-plot .scatterlayer .trace", state="attached")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)

    assert page.locator("#curves .legendtext").all_text_contents() == drawn
    assert page.locator("#curves .scatterlayer .trace").count() == 4  # a band and a median line each
    assert page.locator("#suggestion .js-plotly-plot").count() == 1
    assert page.locator("#suggested li").all_text_contents() == ["L=3: dominant period of the target"]
    assert "stopped at 2 repeats" in page.locator("#points").inner_text()
    assert "Racing stopped 1 point(s)" in page.locator(".note").all_inner_texts()[-1]


def test_the_report_shows_the_chosen_point_s_test_score_and_the_points_not_converged(
    browser, synthetic_study: optuna.Study, tmp_path: Path
) -> None:
    report = collect(synthetic_study, SYNTHETIC_SPEC, 6)
    best, other = (point.key for point in report.finished_points[:2])
    rising = Convergence(is_improving=True, curve="validation accuracy/sample", epochs=3, window=1, gain=0.1,
                         total_gain=0.3, p_value=0.004, n_repeats=2)
    points = [
        replace(point, validation_curves=((0.5, 0.6, 0.7), (0.5, 0.7, 0.8)), convergence=rising) if point.key == other
        else replace(point, validation_curves=((0.5, 0.9, 0.9), (0.6, 0.9, 0.9))) if point.key == best
        else point
        for point in report.points
    ]
    choice = Choice(key=best, metric="accuracy/sample", ranked_on="validation", mean=0.9,
                    test={"n": 3, "mean": 0.8123, "ci95_low": 0.7, "ci95_high": 0.9})
    page_file = write_html(replace(report, points=points, choice=choice), tmp_path / "report.html")
    page = browser.new_context(offline=True, viewport={"width": 1300, "height": 900}).new_page()
    page.goto(page_file.as_uri())
    page.wait_for_selector("#validation_curves .js-plotly-plot .scatterlayer .trace", state="attached")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)

    chosen = page.locator("#chosen")
    assert chosen.is_visible()
    assert f"chosen on the validation data: {best}" in chosen.inner_text()
    assert "Its test score, 0.8123, 95% CI 0.7..0.9 over 3 repeats" in chosen.inner_text()
    assert page.locator("#validation_curves .legendtext").all_text_contents() == [best, f"{other} (not converged)"]
    assert "done: not converged" in page.locator("#points").inner_text()
    assert f"Not converged: {other}." in page.locator(".note").all_inner_texts()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dashboard(synthetic_study: optuna.Study, sqlite_url: str) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sweep", "dashboard", "--storage", sqlite_url, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/studies", timeout=1)
            break
        except OSError:
            assert server.poll() is None, server.stdout.read().decode()
            time.sleep(0.3)
    yield url
    server.terminate()
    server.wait(timeout=30)


def test_the_dashboard_lists_the_study_and_shows_the_repeats_as_intermediate_values(browser, dashboard: str, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{dashboard}/dashboard")
    page.get_by_text("synthetic").first.wait_for()
    page.screenshot(path=str(tmp_path / "studies.png"))

    page.goto(f"{dashboard}/dashboard/studies/1")
    page.get_by_text("Intermediate values").wait_for()
    page.get_by_text("trial #4").first.wait_for()
    page.screenshot(path=str(tmp_path / "study.png"), full_page=True)
    assert page.get_by_text("accuracy per sample").count() > 0  # the objective carries the metric's name

    page.goto(f"{dashboard}/dashboard/studies/1/note")
    page.get_by_text("Best point: L=6 stateless").wait_for()
    page.screenshot(path=str(tmp_path / "note.png"))


def test_the_report_fits_a_1280_pixel_window_whatever_its_settings_hold(browser, synthetic_study: optuna.Study, tmp_path: Path) -> None:
    """A table study's settings row (a long path, forty features) wraps instead of widening the page."""
    report = collect(synthetic_study, SYNTHETIC_SPEC, 6)
    features = ", ".join(f"sensor_{index:02d}_current_rms" for index in range(40))
    long_row = ("problem", f"kind=table, train=/data/a/very/long/path/to/the/appliance/recordings/2026/train.csv, features=[{features}]")
    page_file = write_html(replace(report, settings=[long_row, *report.settings]), tmp_path / "report.html")
    page = browser.new_context(offline=True, viewport={"width": 1280, "height": 800}).new_page()
    page.goto(page_file.as_uri())
    page.wait_for_selector("#box .js-plotly-plot path.box", state="attached")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert "sensor_39_current_rms" in page.locator("#settings").inner_text()
