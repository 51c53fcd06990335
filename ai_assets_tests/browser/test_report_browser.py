"""The static report as a person opens it: two weeks of realistic figures rendered to index.html
and opened from disk (file://) in headless Chromium. Every chart is drawn, the page asks for
nothing beyond its own file, logs no error, and the hostile text quoted from customer messages
shows as text and runs nothing. A full-page screenshot is kept for a person to look at."""

from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Page, Request, expect

from ai_assets.cli.report import build_report, entries
from ai_assets.config import Settings
from ai_assets.monitoring.report import write_report
from ai_assets_tests.monitoring.test_report import DAYS, END, HOSTILE, realistic_figures

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PANELS = 16  # the gatherer's mapping: accuracy 3, drift 2, serving 3, cost 4, business 4


def test_the_report_opens_offline_and_draws_every_panel(browser_page: Page, screenshots: Path, tmp_path: Path):
    page = browser_page
    report = build_report(realistic_figures(), DAYS, entries(Settings.from_env({})), END)
    index = write_report(report, tmp_path / "report")
    url = index.resolve().as_uri()
    requests: list[str] = []
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    def on_request(request: Request) -> None:
        requests.append(request.url)

    page.on("request", on_request)
    failed: dict[str, str] = {}
    page.on("requestfailed", lambda request: failed.__setitem__(request.url, request.failure or ""))
    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url, wait_until="load")

    expect(page.locator("h1")).to_have_text("ai_assets monitoring report")
    panels = page.locator("figure.panel")
    expect(panels).to_have_count(PANELS)
    for n in range(PANELS):
        panel = panels.nth(n)
        title = panel.locator("h3").inner_text()
        svg = panel.locator("svg.chart")
        expect(svg).to_have_count(1)
        assert svg.bounding_box()["width"] > 300, title
        lines = svg.locator("path.line")
        assert lines.count() >= 1, f"{title}: no line drawn"
        box = lines.first.bounding_box()
        assert box and box["width"] > 50, f"{title}: the line is not on screen ({box})"
        assert svg.locator("circle.marker").count() >= 2, title
    # Intervals (bands) on the proportions, thresholds as dashed lines where the figures have one.
    accuracy = panels.filter(has_text="Accuracy: realised and estimated")
    assert accuracy.locator("path.interval.band").count() >= 2
    for title in ("Automated precision", "Input drift score", "Daily LLM cost", "Month to date"):
        expect(panels.filter(has_text=title).locator("line.threshold")).to_have_count(1)

    # Hostile customer text quoted by the drift tables is shown as text and ran nothing.
    examples = page.locator(".table", has_text="telltale words and examples").first
    for hostile in HOSTILE[:3]:
        expect(examples.get_by_text(hostile, exact=True)).to_be_visible()
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("script, iframe, img").count() == 0

    page.screenshot(path=str(screenshots / "report_full_page.png"), full_page=True)
    print(f"\nreport: {index}\nscreenshot: {screenshots / 'report_full_page.png'}")
    assert errors == [], errors
    assert [r for r in requests if r != url] == [], requests

    # The Content-Security-Policy is in force: markup that slipped through could load nothing.
    page.evaluate("""() => { const img = document.createElement('img');
        img.src = 'http://127.0.0.1:9/beacon.png'; document.body.append(img); }""")
    page.wait_for_timeout(500)
    assert any("Content Security Policy" in e for e in errors), errors
    # Chromium reports the attempt and blocks it before it leaves the page.
    assert "csp" in failed.get("http://127.0.0.1:9/beacon.png", "").lower(), failed
