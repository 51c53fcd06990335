"""The static monitoring report: a small model of what a person reads (sections of panels and
tables) and a renderer to one self-contained HTML page.

Why a page and not only the Dagster UI: the report goes to people who do not run Dagster (risk,
operations leads) and must open offline, from an e-mail or a shared drive. So the page loads
nothing: no CDN, no fonts, no scripts; every chart is inline SVG drawn here.

Why everything is escaped: the text in a report is untrusted. Drift explanations quote customer
messages and model output, and a status or a series name comes from metadata anyone with a run
can write. Every string goes through `html.escape` (text and attributes, in HTML and in SVG),
and the page carries a Content-Security-Policy that allows no script, no fetch and no external
image or style, so even a missed escape could not run or load anything.

Why deterministic: the same figures give byte-identical HTML (no timestamps unless the caller
puts one in `generated_for`; fixed number formatting; no dict-order or locale dependence), so a
report can be diffed, cached and tested.

Model (plain data, no Dagster):

- `Point(day, value, low=None, high=None)`: one day's figure, with its interval if known.
  A missing or non-finite `value` is a gap.
- `Series(name, points)`: one line.
- `Panel(title, unit, series, threshold=None, note="", threshold_label="threshold",
  interval_label="95% interval", log_scale=False)`: one chart.
  `unit` "share" is a proportion in [0, 1] shown as a percentage, "USD" is money; any other unit
  is printed after the number.
- `Table(title, columns, rows, note="", empty="no data yet")`, `Section(title, panels, tables, note="")`,
  `Report(title, generated_for, sections, days=())`: `days` is the x axis every panel shares
  (missing days are gaps); empty, each panel spans its own first to last day.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from ai_assets.files import write_atomically

CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                           "base-uri 'none'; form-action 'none'")
NO_DATA = "no data yet"
# Okabe-Ito: tells apart for the common colour-vision deficiencies, and prints in grey.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
THRESHOLD_COLOUR = "#B2182B"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Chart geometry (SVG user units; the SVG scales to its box).
WIDTH, HEIGHT = 640, 250
LEFT, RIGHT, TOP, BOTTOM = 64, 18, 14, 40
MAX_X_LABELS = 8
Y_TICKS = 5

Cell = str | int | float | None


@dataclass(frozen=True)
class Point:
    """One day's figure; `low`/`high` its interval (both or neither are drawn)."""

    day: date
    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point] = ()


@dataclass(frozen=True)
class Panel:
    """One chart. `threshold` is drawn as a dashed line labelled `threshold_label`."""

    title: str
    unit: str
    series: Sequence[Series] = ()
    threshold: float | None = None
    note: str = ""
    threshold_label: str = "threshold"
    interval_label: str = "95% interval"
    log_scale: bool = False  # for figures spanning decades (latency percentiles); values <= 0 are gaps


@dataclass(frozen=True)
class Table:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]] = ()
    note: str = ""
    empty: str = NO_DATA  # what the table says when it has no rows


@dataclass(frozen=True)
class Section:
    title: str
    panels: Sequence[Panel] = ()
    tables: Sequence[Table] = ()
    note: str = ""


@dataclass(frozen=True)
class Report:
    title: str
    generated_for: str
    sections: Sequence[Section] = ()
    days: Sequence[date] = field(default=())


# --- numbers ---------------------------------------------------------------------------------------


def finite(value: object) -> float | None:
    """`value` as a float if it is a real, finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _plain(value: float) -> str:
    """A number for reading: thousands separated, about three significant digits below 100."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def format_value(value: float | None, unit: str = "") -> str:
    """How a figure is written in legends, tooltips and tables: 'share' as a percentage, 'USD'
    as dollars, anything else as the number and its unit. None (or not finite) is a dash."""
    number = finite(value)
    if number is None:
        return "–"
    if unit == "share":
        return f"{number * 100:.1f}%"
    if unit == "USD":
        if abs(number) >= 100:
            return f"${number:,.0f}"
        return f"${number:,.2f}" if abs(number) >= 1 or number == 0 else f"${number:.3g}"
    return f"{_plain(number)} {unit}" if unit else _plain(number)


def _tick_label(value: float, step: float, unit: str) -> str:
    scale = 100.0 if unit == "share" else 1.0
    decimals = max(0, -math.floor(math.log10(step * scale) + 1e-9))
    text = f"{value * scale:,.{decimals}f}"
    if text.startswith("-") and float(text.replace(",", "")) == 0:
        text = text[1:]
    return {"share": f"{text}%", "USD": f"${text}"}.get(unit, text)


def _nice_step(span: float, ticks: int) -> float:
    """A 1, 2 or 5 x 10^k step that cuts `span` into about `ticks` intervals."""
    raw = span / max(ticks - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude * (1 + 1e-9):
            return factor * magnitude
    return 10 * magnitude


def _y_axis(values: list[float], unit: str) -> tuple[float, float, float]:
    """(bottom, top, step) of a y axis with round ticks that holds every value. Proportions
    that stay in [0, 1] keep an axis inside [0, 1]."""
    lo, hi = min(values), max(values)
    # A nearly flat series gets an axis at least a tenth of its size tall: rounding noise in
    # the third decimal must not look like a swing from the bottom of the chart to the top.
    least = max(abs(lo), abs(hi)) * 0.1 or (0.05 if unit == "share" else 1.0)
    if hi - lo < least:
        centre = (hi + lo) / 2
        lo, hi = centre - least / 2, centre + least / 2
        if min(values) >= 0 > lo:  # never below zero for figures that cannot be negative
            lo, hi = 0.0, hi - lo
    step = _nice_step(hi - lo, Y_TICKS)
    bottom = math.floor(lo / step + 1e-9) * step
    top = math.ceil(hi / step - 1e-9) * step
    if unit == "share" and min(values) >= 0 and max(values) <= 1:
        bottom, top = max(bottom, 0.0), min(top, 1.0)
    return bottom, top, step


def _log_axis(values: list[float]) -> tuple[float, float, list[float]]:
    """(bottom, top, ticks) of a logarithmic axis with ticks at 1, 2 and 5 of each decade, ending
    at the ticks just outside the values (not whole decades: 1,020 ms needs 2,000, not 10,000)."""
    lo, hi = min(values), max(values)
    first = math.floor(math.log10(lo) + 1e-9)
    candidates = [10.0 ** k * f for k in range(first, math.ceil(math.log10(hi) - 1e-9) + 1) for f in (1, 2, 5)]
    bottom = max((c for c in candidates if c <= lo * (1 + 1e-9)), default=10.0 ** first)
    top = min((c for c in candidates if c >= hi * (1 - 1e-9)), default=10.0 ** (first + 1))
    if top <= bottom:
        top = next(c for c in candidates + [bottom * 10] if c > bottom)
    return bottom, top, [c for c in candidates if bottom * (1 - 1e-9) <= c <= top * (1 + 1e-9)]


def _day_label(day: date) -> str:
    return f"{MONTHS[day.month - 1]} {day.day}"


def _domain(report_days: Sequence[date], panel: Panel) -> list[date]:
    """The days on the x axis: the report's, else this panel's first to last day (every
    calendar day in between, so a missing one is a gap, not a shorter line)."""
    if report_days:
        return sorted(set(report_days))
    days = [p.day for s in panel.series for p in s.points]
    if not days:
        return []
    first, last = min(days), max(days)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# --- SVG -------------------------------------------------------------------------------------------


def esc(text: object) -> str:
    """Text safe inside an HTML or SVG element and inside a double- or single-quoted attribute."""
    return html.escape(str(text), quote=True)


def _f(number: float) -> str:
    return f"{number:.1f}"


def _runs(indices: list[int]) -> list[list[int]]:
    """Consecutive day indices grouped: each group is one unbroken stretch of a line."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def _point_title(series: str, point: Point, unit: str) -> str:
    text = f"{series}, {point.day.isoformat()}: {format_value(point.value, unit)}"
    low, high = finite(point.low), finite(point.high)
    if low is not None and high is not None:
        text += f" ({format_value(low, unit)} to {format_value(high, unit)})"
    return text


def _series_by_day(series: Series, position: dict[date, int], log_scale: bool = False) -> dict[int, Point]:
    """Drawable points by day index; the first point of a day wins, days off the axis are left out.
    On a log scale a value <= 0 cannot be drawn (a gap), nor can an interval reaching <= 0."""
    out: dict[int, Point] = {}
    for point in series.points:
        index = position.get(point.day)
        value = finite(point.value)
        if index is None or index in out or value is None or (log_scale and value <= 0):
            continue
        if log_scale and not ((finite(point.low) or 0) > 0 and (finite(point.high) or 0) > 0):
            point = Point(point.day, value)
        out[index] = point
    return out


def render_svg(panel: Panel, days: Sequence[date]) -> str:
    """`panel` as an inline SVG line chart over `days`: intervals as a shaded band (error bars
    where a stretch is one day long), the threshold dashed, missing days as gaps."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    label = esc(panel.title)
    head = (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" '
            f'xmlns="http://www.w3.org/2000/svg">')
    frame = (f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" '
             f'fill="#fff" stroke="#bbb"/>')
    position = {day: i for i, day in enumerate(days)}
    drawn = [(s, _series_by_day(s, position, panel.log_scale)) for s in panel.series]
    threshold = finite(panel.threshold)
    if panel.log_scale and threshold is not None and threshold <= 0:
        threshold = None
    values = [v for _, pts in drawn for p in pts.values()
              for v in (finite(p.value), finite(p.low), finite(p.high)) if v is not None]
    if not values:
        return (f'{head}{frame}<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" '
                f'text-anchor="middle" class="empty">{esc(NO_DATA)}</text></svg>')
    held = values + ([threshold] if threshold is not None else [])
    if panel.log_scale:
        bottom, top, ticks = _log_axis(held)
        labels = [_tick_label(t, t, panel.unit) for t in ticks]
    else:
        bottom, top, step = _y_axis(held, panel.unit)
        ticks = [bottom + k * step for k in range(int(round((top - bottom) / step)) + 1)]
        labels = [_tick_label(t, step, panel.unit) for t in ticks]
    step_x = plot_w / len(days)

    def x(index: int) -> float:
        return LEFT + step_x * (index + 0.5)

    def y(value: float) -> float:
        if panel.log_scale:
            return TOP + plot_h * (math.log10(top) - math.log10(value)) / (math.log10(top) - math.log10(bottom))
        return TOP + plot_h * (top - value) / (top - bottom)

    parts = [head, frame]
    # Horizontal grid and y ticks.
    for value, tick in zip(ticks, labels, strict=True):
        yy = _f(y(value))
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{yy}" y2="{yy}" stroke="#eee"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{yy}" text-anchor="end" dominant-baseline="middle">'
                     f'{esc(tick)}</text>')
    # X ticks: every day marked, at most MAX_X_LABELS labelled.
    every = max(1, math.ceil(len(days) / MAX_X_LABELS))
    base = TOP + plot_h
    for index, day in enumerate(days):
        xx = _f(x(index))
        parts.append(f'<line class="xtick" x1="{xx}" x2="{xx}" y1="{base}" y2="{base + 4}" stroke="#888"/>')
        if index % every == 0:
            parts.append(f'<text class="tick" x="{xx}" y="{base + 16}" text-anchor="middle">'
                         f'{esc(_day_label(day))}</text>')
    parts.append(f'<text class="axis" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle">'
                 f'day (UTC)</text>')
    unit_name = {"share": "%", "USD": "US$"}.get(panel.unit, panel.unit)
    if panel.log_scale:
        unit_name = f"{unit_name} (log scale)".strip()
    if unit_name:
        parts.append(f'<text class="axis" transform="translate(14 {TOP + plot_h / 2:.1f}) rotate(-90)" '
                     f'text-anchor="middle">{esc(unit_name)}</text>')
    # Intervals under the lines, then lines, then markers on top.
    for number, (_, points) in enumerate(drawn):
        colour = PALETTE[number % len(PALETTE)]
        with_interval = sorted(i for i, p in points.items()
                               if finite(p.low) is not None and finite(p.high) is not None)
        for run in _runs(with_interval):
            if len(run) == 1:
                p, xx = points[run[0]], x(run[0])
                lo, hi = y(finite(p.low)), y(finite(p.high))
                parts.append(f'<path class="interval errorbar" d="M{_f(xx)} {_f(lo)}V{_f(hi)}'
                             f'M{_f(xx - 4)} {_f(lo)}H{_f(xx + 4)}M{_f(xx - 4)} {_f(hi)}H{_f(xx + 4)}" '
                             f'stroke="{colour}" stroke-width="1.5" fill="none"/>')
                continue
            upper = [f"{_f(x(i))} {_f(y(finite(points[i].high)))}" for i in run]
            lower = [f"{_f(x(i))} {_f(y(finite(points[i].low)))}" for i in reversed(run)]
            parts.append(f'<path class="interval band" d="M{"L".join(upper)}L{"L".join(lower)}Z" '
                         f'fill="{colour}" fill-opacity="0.18" stroke="none"/>')
    if threshold is not None:
        ty = _f(y(threshold))
        parts.append(f'<line class="threshold" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{ty}" y2="{ty}" '
                     f'stroke="{THRESHOLD_COLOUR}" stroke-width="1.5" stroke-dasharray="6 4"/>')
        parts.append(f'<text class="threshold-label" x="{LEFT + plot_w - 4}" y="{_f(y(threshold) - 4)}" '
                     f'text-anchor="end" fill="{THRESHOLD_COLOUR}">'
                     f'{esc(panel.threshold_label)} {esc(format_value(threshold, panel.unit))}</text>')
    for number, (series, points) in enumerate(drawn):
        colour = PALETTE[number % len(PALETTE)]
        for run in _runs(sorted(points)):
            if len(run) > 1:
                d = "L".join(f"{_f(x(i))} {_f(y(finite(points[i].value)))}" for i in run)
                parts.append(f'<path class="line" d="M{d}" stroke="{colour}" stroke-width="2" fill="none" '
                             f'stroke-linejoin="round"/>')
        for index in sorted(points):
            p = points[index]
            parts.append(f'<circle class="marker" cx="{_f(x(index))}" cy="{_f(y(finite(p.value)))}" r="3" '
                         f'fill="{colour}"><title>{esc(_point_title(series.name, p, panel.unit))}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


# --- HTML ------------------------------------------------------------------------------------------


def _legend(panel: Panel, days: Sequence[date]) -> str:
    """Each series with its colour and latest figure; the threshold; what the shading means."""
    position = {day: i for i, day in enumerate(days)}
    items = []
    has_interval = False
    for number, series in enumerate(panel.series):
        points = _series_by_day(series, position, panel.log_scale)
        colour = PALETTE[number % len(PALETTE)]
        latest = ""
        if points:
            p = points[max(points)]
            latest = f": {format_value(p.value, panel.unit)}"
            low, high = finite(p.low), finite(p.high)
            if low is not None and high is not None:
                latest += f" ({format_value(low, panel.unit)} to {format_value(high, panel.unit)})"
            latest += f" on {_day_label(p.day)}"
        else:
            latest = f": {NO_DATA}"
        has_interval = has_interval or any(finite(p.low) is not None and finite(p.high) is not None
                                           for p in points.values())
        items.append(f'<li><span class="swatch" style="background:{colour}"></span>'
                     f'{esc(series.name)}{esc(latest)}</li>')
    if finite(panel.threshold) is not None:
        items.append(f'<li><span class="swatch dashed" style="border-color:{THRESHOLD_COLOUR}"></span>'
                     f'{esc(panel.threshold_label)}: {esc(format_value(panel.threshold, panel.unit))}</li>')
    if has_interval:
        items.append(f'<li><span class="swatch band"></span>shaded band or bars: {esc(panel.interval_label)}</li>')
    return f'<ul class="legend">{"".join(items)}</ul>' if items else ""


def _cell(value: Cell) -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return format_value(value)
    return str(value)


def render_table(table: Table) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    if table.rows:
        body = "".join("<tr>" + "".join(f"<td>{esc(_cell(c))}</td>" for c in row) + "</tr>" for row in table.rows)
    else:
        body = f'<tr><td class="empty" colspan="{max(len(table.columns), 1)}">{esc(table.empty)}</td></tr>'
    note = f'<p class="note">{esc(table.note)}</p>' if table.note else ""
    return (f'<div class="table"><h3>{esc(table.title)}</h3>{note}'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def render_panel(panel: Panel, report_days: Sequence[date]) -> str:
    days = _domain(report_days, panel)
    note = f'<p class="note">{esc(panel.note)}</p>' if panel.note else ""
    return (f'<figure class="panel"><figcaption><h3>{esc(panel.title)}</h3>{note}</figcaption>'
            f"{render_svg(panel, days)}{_legend(panel, days)}</figure>")


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;
 color:#1b1b1b;background:#f6f7f9;line-height:1.4}
header{background:#10253f;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:24px}
header p{margin:0;opacity:.85}
nav{padding:10px 28px;background:#fff;border-bottom:1px solid #ddd}
nav a{margin-right:18px;color:#0b4f8a;text-decoration:none}
main{padding:8px 28px 40px}
section{margin-top:22px}
section>h2{font-size:20px;border-bottom:2px solid #10253f;padding-bottom:4px}
.panels{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:18px}
.panel{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 14px}
.panel h3,.table h3{margin:0 0 2px;font-size:16px}
.note{margin:2px 0 6px;color:#555;font-size:13px;overflow-wrap:anywhere}
svg.chart{width:100%;height:auto;display:block}
svg text{font-size:11px;fill:#333}
svg text.empty{font-size:15px;fill:#777}
svg text.threshold-label{fill:#B2182B}
.legend{list-style:none;padding:0;margin:6px 0 0;font-size:13px;overflow-wrap:anywhere}
.legend li{display:inline-block;margin:0 16px 4px 0}
.swatch{display:inline-block;width:14px;height:4px;margin:0 6px 3px 0;vertical-align:middle}
.swatch.dashed{height:0;border-top:2px dashed}
.swatch.band{height:10px;background:#0072B2;opacity:.25}
.tables{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:18px;margin-top:18px}
.table{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 14px;overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top;overflow-wrap:break-word}
th{background:#f0f2f5}
td:first-child{white-space:nowrap}
td.empty{color:#777}
"""


def render_html(report: Report) -> str:
    """The whole report as one HTML page that loads nothing and runs nothing."""
    nav = "".join(f'<a href="#section-{n}">{esc(s.title)}</a>' for n, s in enumerate(report.sections, 1))
    sections = []
    for number, section in enumerate(report.sections, 1):
        note = f'<p class="note">{esc(section.note)}</p>' if section.note else ""
        panels = "".join(render_panel(p, report.days) for p in section.panels)
        tables = "".join(render_table(t) for t in section.tables)
        sections.append(f'<section id="section-{number}"><h2>{esc(section.title)}</h2>{note}'
                        + (f'<div class="panels">{panels}</div>' if panels else "")
                        + (f'<div class="tables">{tables}</div>' if tables else "")
                        + "</section>")
    body = "\n".join(sections) if sections else f'<p class="note">{esc(NO_DATA)}</p>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CONTENT_SECURITY_POLICY)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{esc(report.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<header><h1>{esc(report.title)}</h1><p>{esc(report.generated_for)}</p></header>\n"
        + (f"<nav>{nav}</nav>\n" if nav else "")
        + f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def write_report(report: Report, out_dir: Path | str) -> Path:
    """Render `report` to `out_dir`/index.html and return its path. Written to a temporary file
    in the same directory and renamed over the old page, so a reader (or a web server) never sees
    half a report; the file's mode follows the umask like any other file the user writes."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    return write_atomically(directory / "index.html", render_html(report).encode("utf-8"))
