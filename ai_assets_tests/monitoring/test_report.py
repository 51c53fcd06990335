"""The static report: hostile text stays text, the same figures give the same bytes, gaps and
intervals are drawn, an empty report renders; and the gatherer maps a real Dagster instance's
materializations into it end to end."""

import math
import random
import re
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import AssetKey, AssetMaterialization, DagsterInstance, MetadataValue

from ai_assets.cli.report import (
    DRIFT_ASSETS,
    build_report,
    entries,
    gather_report,
    lookup,
    read_figures,
    report,
    window,
)
from ai_assets.config import Settings
from ai_assets.monitoring.intervals import Proportion
from ai_assets.monitoring.report import (
    CONTENT_SECURITY_POLICY,
    NO_DATA,
    Panel,
    Point,
    Report,
    Section,
    Series,
    Table,
    format_value,
    render_html,
    render_svg,
    write_report,
)

END = date(2025, 3, 14)
DAYS = window(END, 14)
SETTINGS = Settings.from_env({})  # the defaults, whatever this shell exports
HOSTILE = [
    '</script><script>window.__pwned=1</script>',
    '"><svg onload="window.__pwned=1">',
    "'><img src=x onerror=alert(1)>",
    "</title></svg><iframe src='https://evil.example/'></iframe>",
    "<style>body{background:url(https://evil.example/x)}</style>",
    "&amp; &lt;already escaped&gt; & ]]> <!-- -->",
]
# Elements render_html may produce; anything else in the output is injected markup.
ALLOWED_TAGS = {"html", "head", "meta", "link", "title", "style", "body", "header", "h1", "h2", "h3", "p", "nav",
                "a", "main", "section", "div", "figure", "figcaption", "svg", "rect", "text", "line", "path",
                "circle", "ul", "li", "span", "table", "thead", "tbody", "tr", "th", "td"}


def realistic_figures(days: list[date] = DAYS, seed: int = 11) -> dict[str, dict[date, dict]]:
    """Two weeks of what the monitoring assets emit, with the gaps production has: resolved-case
    labels arrive two days late (no realised accuracy for the last two days), one day's pipeline
    run failed (no pipeline metrics), and input drift on the last three days, whose examples
    quote hostile customer text."""
    rng = random.Random(seed)
    out: dict[str, dict[date, dict]] = {a: {} for a in ("model_quality", "quality_estimate", "input_drift",
                                                        "prediction_drift", "pipeline_metrics", "cost_report",
                                                        "business_metrics")}
    month_to_date = 0.0
    for n, day in enumerate(days):
        drifting = n >= len(days) - 3
        volume = rng.randint(700, 1300) if day.weekday() < 5 else rng.randint(250, 450)
        correct = round(volume * (0.905 - (0.05 if drifting else 0) + rng.uniform(-0.015, 0.015)))
        estimate = Proportion(round(volume * (0.9 - (0.03 if drifting else 0) + rng.uniform(-0.01, 0.01))), volume)
        automated = round(volume * rng.uniform(0.55, 0.65))
        precise = Proportion(round(automated * rng.uniform(0.955, 0.985)), automated)
        if n < len(days) - 2:
            realised = Proportion(correct, volume)
            out["model_quality"][day] = {
                "accuracy": realised.to_dict(), "estimated_accuracy": estimate.to_dict(),
                "automated_precision": precise.to_dict(), "target_precision": 0.95,
                "estimate_gap": round(estimate.value - realised.value, 4)}
        out["quality_estimate"][day] = {"estimated_accuracy": estimate.to_dict()}
        score = rng.uniform(0.03, 0.09) + (0.25 if drifting else 0)
        out["input_drift"][day] = {
            "score": round(score, 4), "threshold": 0.2, "status": "drift" if drifting else "ok",
            "moved": [{"feature": "text_length", "statistic": "psi", "value": round(score * 1.4, 3), "threshold": 0.2},
                      {"feature": "vocabulary", "statistic": "js_distance", "value": round(score, 3),
                       "threshold": 0.15}] if drifting else [],
            "examples": ["my card was charged twice for the same crypto top-up", *HOSTILE[:3]] if drifting else [],
            "telltale_words": ["crypto", "top-up", "<b>wallet</b>"] if drifting else []}
        p_score = rng.uniform(0.02, 0.06) + (0.1 if drifting else 0)
        out["prediction_drift"][day] = {
            "score": round(p_score, 4), "threshold": 0.15, "status": "drift" if p_score > 0.15 else "ok",
            "moved": [], "examples": [], "telltale_words": [],
            "top_intents": [{"intent": "top_up_failed", "reference_share": 0.021, "current_share": 0.064,
                             "chi2_contribution": 0.31},
                            {"intent": "card_payment_fee_charged", "reference_share": 0.018, "current_share": 0.037,
                             "chi2_contribution": 0.12}]}
        if n != 5:
            p50 = rng.uniform(14, 22)
            out["pipeline_metrics"][day] = {
                "latency_ms_p50": round(p50, 1), "latency_ms_p95": round(p50 * 6 + rng.uniform(0, 30), 1),
                "latency_ms_p99": round(p50 * 40 + rng.uniform(0, 200), 1),
                "messages_per_s": round(rng.uniform(40, 60), 2), "error_rate": round(rng.uniform(0, 0.004), 4),
                "fallback_rate": round(rng.uniform(0.02, 0.06), 4), "cache_hit_rate": round(rng.uniform(0.1, 0.2), 4)}
        haiku = round(volume * rng.uniform(0.25, 0.35) * 0.0011, 4)
        sonnet = round(volume * rng.uniform(0.03, 0.07) * 0.012, 4)
        cost = haiku + sonnet
        month_to_date = (0.0 if day.day == 1 else month_to_date) + cost
        out["cost_report"][day] = {
            "cost_usd": round(cost, 4), "daily_budget_usd": 20.0, "month_to_date_usd": round(month_to_date, 2),
            "month_forecast_usd": round(month_to_date / day.day * 31, 2), "monthly_budget_usd": 400.0,
            "cost_per_1000_usd": round(cost / volume * 1000, 4),
            "per_tier": {"claude-haiku": haiku, "claude-sonnet": sonnet, "local": 0.0}}
        out["business_metrics"][day] = {
            "automation_rate": round(automated / volume, 4), "escalation_rate": round(rng.uniform(0.08, 0.12), 4),
            "override_rate": round(rng.uniform(0.01, 0.03), 4),
            "receipt_to_action_p50_s": round(rng.uniform(40, 90), 1),
            "agent_minutes_saved": automated * 6, "errors_caught": rng.randint(3, 15)}
    return out


class Markup(HTMLParser):
    """Every element and attribute of a page, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def markup(page: str) -> Markup:
    parser = Markup()
    parser.feed(page)
    parser.close()
    return parser


def hostile_report() -> Report:
    """Every text field of the model carries hostile text."""
    h = " | ".join(HOSTILE)
    points = [Point(d, 0.9 + 0.01 * (i % 3), 0.88, 0.93) for i, d in enumerate(DAYS)]
    panel = Panel(f"title {h}", h, [Series(f"series {h}", points)], threshold=0.85, note=f"note {h}",
                  threshold_label=f"label {h}", interval_label=f"interval {h}")
    table = Table(f"table {h}", [f"column {h}", "n"], [[f"cell {h}", 3], [None, 0.5]], note=f"table note {h}")
    return Report(f"report {h}", f"for {h}", [Section(f"section {h}", [panel], [table], note=f"section note {h}")],
                  days=DAYS)


def test_hostile_text_stays_text_in_html_and_svg():
    page = render_html(hostile_report())
    found = markup(page)
    tags = {tag for tag, _ in found.tags}
    assert tags <= ALLOWED_TAGS, f"injected elements: {tags - ALLOWED_TAGS}"
    assert not [(t, a) for t, a in found.tags for name in a if name.startswith("on")]
    # Hostile text may sit in an aria-label (as text); never in an attribute that loads or styles.
    loading = {"href", "src", "xlink:href", "srcset", "action", "formaction", "style", "poster", "data"}
    assert not [(t, a) for t, a in found.tags for k, v in a.items() if k in loading and "evil.example" in (v or "")]
    assert "<script" not in page.lower() and "<iframe" not in page.lower() and "<img" not in page.lower()
    assert sum(1 for tag, _ in found.tags if tag == "style") == 1  # ours only
    # ... and the text reads as it was written, every piece of it, in the page's text.
    text = "".join(found.text)
    for hostile in HOSTILE:
        assert hostile in text
    assert "&lt;/script&gt;&lt;script&gt;" in page and "&quot;&gt;&lt;svg onload=&quot;" in page


def test_the_page_loads_and_runs_nothing():
    page = render_html(hostile_report())
    head = page.split("</head>")[0]
    metas = [a for t, a in markup(head).tags if t == "meta"]
    assert metas[0] == {"charset": "utf-8"}
    assert metas[1] == {"http-equiv": "Content-Security-Policy", "content": CONTENT_SECURITY_POLICY}
    assert CONTENT_SECURITY_POLICY.startswith("default-src 'none'; style-src 'unsafe-inline'; img-src data:")
    # No reference to anything outside the page: the only URLs are the SVG namespace and data:.
    urls = set(re.findall(r"""(?:href|src)=["']([^"']*)""", page))
    assert urls <= {"data:,"} | {f"#section-{n}" for n in range(1, 10)}, urls
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page.replace("https://evil.example", "")


def test_same_figures_same_bytes(tmp_path: Path):
    figures = realistic_figures()
    first = build_report(figures, DAYS, entries(SETTINGS), END)
    second = build_report(realistic_figures(), DAYS, entries(SETTINGS), END)
    assert render_html(first) == render_html(second)
    a, b = write_report(first, tmp_path / "a"), write_report(second, tmp_path / "b")
    assert a.name == b.name == "index.html"
    assert a.read_bytes() == b.read_bytes()
    assert not re.search(r"20\d\d-\d\d-\d\dT\d\d:", a.read_text())  # no timestamp of its own


def test_missing_days_are_gaps_and_lone_points_are_markers():
    values = {0: 0.9, 1: 0.91, 2: 0.92, 4: 0.9, 6: 0.93, 7: 0.92}  # days 3 and 5 missing, day 4 alone
    points = [Point(DAYS[i], v) for i, v in values.items()] + [Point(DAYS[8], math.nan)]
    svg = render_svg(Panel("p", "share", [Series("s", points)]), DAYS[:10])
    lines = re.findall(r'<path class="line" d="([^"]+)"', svg)
    assert [d.count("L") + 1 for d in lines] == [3, 2]  # days 0-2 and 6-7; day 4 is only a marker
    assert svg.count('<circle class="marker"') == len(values)  # NaN is missing, not a point
    assert svg.count('class="xtick"') == 10  # every day of the axis, data or not


def test_intervals_are_bands_or_error_bars_and_thresholds_dashed():
    points = [Point(DAYS[0], 0.9, 0.85, 0.94), Point(DAYS[1], 0.91, 0.86, 0.95), Point(DAYS[3], 0.92, 0.8, 0.97),
              Point(DAYS[4], 0.93)]
    svg = render_svg(Panel("p", "share", [Series("s", points)], threshold=0.95, threshold_label="target"), DAYS[:5])
    bands = re.findall(r'<path class="interval band" d="([^"]+)"', svg)
    assert len(bands) == 1 and bands[0].endswith("Z") and bands[0].count("L") == 3  # 2 days: 4 corners
    assert svg.count('class="interval errorbar"') == 1  # day 3 stands alone
    assert re.search(r'<line class="threshold"[^>]*stroke-dasharray="6 4"', svg)
    assert "target 95.0%" in svg
    # The y axis holds the interval and the threshold, with labelled ticks.
    ticks = re.findall(r'<text class="tick"[^>]*text-anchor="end"[^>]*>([^<]+)</text>', svg)
    assert ticks[0] == "80%" and ticks[-1] == "100%"


def test_a_log_scale_spans_decades_and_skips_what_it_cannot_draw():
    points = [Point(DAYS[0], 12.0), Point(DAYS[1], 850.0), Point(DAYS[2], 0.0), Point(DAYS[3], 40.0, 0.0, 60.0)]
    svg = render_svg(Panel("latency", "ms", [Series("p99", points)], threshold=-1.0, log_scale=True), DAYS[:4])
    ticks = re.findall(r'<text class="tick"[^>]*text-anchor="end"[^>]*>([^<]+)</text>', svg)
    assert ticks == ["10", "20", "50", "100", "200", "500", "1,000"]
    assert svg.count('<circle class="marker"') == 3  # zero has no logarithm: a gap
    assert "interval" not in svg and "threshold" not in svg and "log scale" in svg
    ys = [float(v) for v in re.findall(r'<circle class="marker" cx="[^"]+" cy="([^"]+)"', svg)]
    assert ys[0] > ys[2] > ys[1]  # 12 ms low, 850 ms high, 40 ms in between


def test_an_empty_report_and_empty_panels_render():
    page = render_html(Report("Nothing yet", "no days"))
    assert page.startswith("<!DOCTYPE html>") and NO_DATA in page and page.endswith("</html>\n")
    svg = render_svg(Panel("empty", "ms", [Series("p50", [])], threshold=10.0), DAYS)
    assert NO_DATA in svg and "<path" not in svg
    built = build_report({}, DAYS, entries(SETTINGS), None)
    panels = [p for s in built.sections for p in s.panels]
    assert len(panels) == 16 and all(NO_DATA in p.note for p in panels)
    assert "latest monitoring data: none yet" in built.generated_for
    page = render_html(built)
    assert page.count("<svg") == 16 and page.count(NO_DATA) >= 16


def test_mapping_reads_the_contract_and_tolerates_what_is_missing():
    figures = realistic_figures()
    last = DAYS[-1]
    figures["quality_estimate"].pop(DAYS[0])  # the estimate falls back to model_quality's copy that day
    figures["input_drift"][DAYS[1]]["score"] = "n/a"  # the wrong type is a gap, not a failure
    figures["pipeline_metrics"][DAYS[2]]["latency_ms_p95"] = math.nan
    figures["cost_report"][last]["daily_budget_usd"] = 25.0  # the latest budget is the line
    built = build_report(figures, DAYS, entries(SETTINGS), last)
    panels = {p.title: p for s in built.sections for p in s.panels}
    accuracy = {s.name: s for s in panels["Accuracy: realised and estimated"].series}
    assert [p.day for p in accuracy["realised"].points] == DAYS[:-2]  # labels two days late
    assert len(accuracy["estimated"].points) == 14
    first = accuracy["estimated"].points[0]
    assert first.value == figures["model_quality"][DAYS[0]]["estimated_accuracy"]["value"]
    assert first.low < first.value < first.high
    assert panels["Automated precision"].threshold == 0.95
    assert panels["Estimate gap"].threshold == SETTINGS.estimate_gap_margin
    assert DAYS[1] not in [p.day for p in panels["Input drift score"].series[0].points]
    assert panels["Input drift score"].threshold == 0.2
    latency = {s.name: s for s in panels["Latency per message"].series}
    assert len(latency["p50"].points) == 13 and len(latency["p95"].points) == 12  # one failed day, one NaN
    assert panels["Daily LLM cost"].threshold == 25.0
    assert [s.name for s in panels["Cost per tier"].series] == ["claude-haiku", "claude-sonnet", "local"]
    assert panels["Errors caught"].series[0].points[-1].value == figures["business_metrics"][last]["errors_caught"]
    tables = {t.title: t for s in built.sections for t in s.tables}
    moved = tables[f"Input drift: what moved on {last.isoformat()}"]
    assert [r[0] for r in moved.rows] == ["text_length", "vocabulary"]
    quoted = tables[f"Input drift on {last.isoformat()}: telltale words and examples"]
    assert quoted.rows[0] == ["telltale words", "crypto, top-up, <b>wallet</b>"] and len(quoted.rows) == 5
    intents = tables[f"Prediction drift on {last.isoformat()}: intents that moved"]
    assert intents.rows[0] == ["top_up_failed", "2.1%", "6.4%", 0.31]
    by_day = tables["Drift by day"]
    assert by_day.rows[0][0] == last.isoformat() and by_day.rows[0][3] == "drift" and len(by_day.rows) == 14


def test_the_flat_spellings_the_assets_use_today_are_read_too():
    day = DAYS[-1]
    flat = {
        "model_quality": {day: {"accuracy": 0.9, "accuracy_low": 0.88, "accuracy_high": 0.92, "target_precision": 0.95,
                                "automated_precision": 0.97, "automated_precision_low": 0.95,
                                "automated_precision_high": 0.98}},
        "quality_estimate": {day: {"estimated_accuracy": 0.89, "estimated_accuracy_low": 0.86,
                                   "estimated_accuracy_high": 0.91}},
        "pipeline_metrics": {day: {"throughput_msgs_per_s": 48.0, "llm_error_rate": 0.002}},
        "cost_report": {day: {"cost_today_usd": 1.5, "daily_budget_usd": 20.0, "cost_month_to_date_usd": 20.5,
                              "forecast_month_usd": 44.0, "forecast_month_low_usd": 40.0,
                              "forecast_month_high_usd": 49.0, "cost_per_1000_messages_usd": 1.2,
                              "cost_today_usd__claude-haiku": 0.4, "cost_today_usd__claude-sonnet": 1.1}},
        "business_metrics": {day: {"receipt_to_action_s_p50": 61.0, "errors_caught_before_customer": 7}},
    }
    panels = {p.title: p for s in build_report(flat, DAYS, entries(SETTINGS), day).sections for p in s.panels}

    def last(title: str, series: int = 0) -> Point:
        return panels[title].series[series].points[-1]

    assert last("Accuracy: realised and estimated") == Point(day, 0.9, 0.88, 0.92)
    assert last("Accuracy: realised and estimated", 1) == Point(day, 0.89, 0.86, 0.91)
    assert last("Automated precision") == Point(day, 0.97, 0.95, 0.98)
    assert last("Throughput").value == 48.0 and last("Errors, fallbacks and cache").value == 0.002
    assert last("Daily LLM cost").value == 1.5 and last("Month to date").value == 20.5
    assert last("Month to date", 1) == Point(day, 44.0, 40.0, 49.0)
    assert last("Cost per 1,000 messages").value == 1.2
    assert {s.name: s.points[-1].value for s in panels["Cost per tier"].series} == {
        "claude-haiku": 0.4, "claude-sonnet": 1.1}
    assert last("Receipt to action (median)").value == 61.0 and last("Errors caught").value == 7


def test_lookup_and_formatting():
    meta = {"accuracy": {"value": 0.9, "low": 0.8}, "per_tier": {"value": 1.0, "local": 0.0}}
    assert lookup(meta, ("accuracy",)) == 0.9 and lookup(meta, ("accuracy", "low")) == 0.8
    assert lookup(meta, ("accuracy", "low", "deeper")) is None and lookup(None, ("x",)) is None
    assert lookup(meta, ("per_tier",), proportion=False) == {"value": 1.0, "local": 0.0}
    assert [format_value(v, u) for v, u in [(0.9123, "share"), (12.345, "USD"), (0.0123, "USD"), (1234.0, "ms"),
                                            (None, "ms"), (math.inf, ""), (17.25, "ms"), (3, "")]] == [
        "91.2%", "$12.35", "$0.0123", "1,234 ms", "–", "–", "17.2 ms", "3"]


def test_write_report_replaces_the_page_atomically(tmp_path: Path):
    out = tmp_path / "new" / "dir"
    path = write_report(Report("one", "first"), out)
    assert path == out / "index.html" and "<title>one</title>" in path.read_text()
    write_report(Report("two", "second"), out)
    assert "<title>two</title>" in path.read_text()
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]  # no temporary file left


# --- the gatherer against a real instance ---------------------------------------------------------


def record(instance: DagsterInstance, figures: dict[str, dict[date, dict]]) -> None:
    """Report every figure as a runless materialization, the metadata typed as assets emit it."""
    for asset, by_day in figures.items():
        for day, metadata in sorted(by_day.items()):
            typed = {key: MetadataValue.float(value) if isinstance(value, float)
                     else MetadataValue.text(value) if isinstance(value, str)
                     else value for key, value in metadata.items()}
            instance.report_runless_asset_event(AssetMaterialization(
                asset_key=asset, partition=day.isoformat(), metadata=typed))


def test_gatherer_maps_a_real_instance_end_to_end(instance: DagsterInstance, tmp_path: Path):
    figures = realistic_figures()
    record(instance, figures)
    # A re-materialization of the last day supersedes the first; a day outside the window is left out.
    instance.report_runless_asset_event(AssetMaterialization(
        asset_key="input_drift", partition=END.isoformat(),
        metadata={"score": 0.5, "threshold": 0.2, "status": "drift", "moved": [], "examples": []}))
    instance.report_runless_asset_event(AssetMaterialization(
        asset_key="cost_report", partition=(DAYS[0] - timedelta(days=1)).isoformat(), metadata={"cost_usd": 99.0}))

    read = read_figures(instance, [a for a, _ in DRIFT_ASSETS] + ["missing_asset"], DAYS)
    assert read["input_drift"][END]["score"] == 0.5 and read["missing_asset"] == {}
    assert read["prediction_drift"][END]["top_intents"][0]["intent"] == "top_up_failed"  # Json unwrapped

    built = gather_report(instance, days=14, settings=SETTINGS)  # ends at the latest day with data
    assert built.days == DAYS and f"latest monitoring data: {END.isoformat()}" in built.generated_for
    panels = {p.title: p for s in built.sections for p in s.panels}
    assert panels["Input drift score"].series[0].points[-1].value == 0.5
    assert [p.value for p in panels["Daily LLM cost"].series[0].points] == [
        figures["cost_report"][d]["cost_usd"] for d in DAYS]
    realised = {s.name: s for s in panels["Accuracy: realised and estimated"].series}["realised"].points
    assert [(p.value, p.low, p.high) for p in realised] == [
        tuple(figures["model_quality"][d]["accuracy"][k] for k in ("value", "low", "high")) for d in DAYS[:-2]]
    assert all(p.series and any(s.points for s in p.series) for p in panels.values())
    # The re-materialization moved nothing on the last day, and the table says so.
    tables = {t.title for s in built.sections for t in s.tables}
    assert f"Input drift: what moved on {DAYS[-2].isoformat()}" in tables

    # The command, against the same instance (instance_for_test points DAGSTER_HOME at it).
    out = tmp_path / "report"
    result = CliRunner().invoke(report, ["--days", "7", "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text()
    assert f"{window(END, 7)[0].isoformat()} to {END.isoformat()}, 7 days" in page
    assert page.count("<svg") == 16
    again = CliRunner().invoke(report, ["--days", "7", "--out", str(out), "--end", END.isoformat()])
    assert again.exit_code == 0 and (out / "index.html").read_text() == page


def test_the_command_needs_dagster_home(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result = CliRunner().invoke(report, ["--out", str(tmp_path)])
    assert result.exit_code == 1 and "DAGSTER_HOME is not set" in result.output


@pytest.mark.parametrize("days", [1, 3])
def test_short_windows_render(days: int):
    span = window(END, days)
    built = build_report(realistic_figures(span), span, entries(SETTINGS), END)
    assert render_html(built).count("<svg") == 16


def test_asset_keys_of_the_mapping_are_plain_names():
    for entry in entries(SETTINGS):
        assert AssetKey.from_user_string(entry.asset).path == [entry.asset]
