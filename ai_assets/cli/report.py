"""`ai-assets report`: the static monitoring report, gathered from the Dagster instance.

The monitoring assets record their figures as materialization metadata, one materialization per
daily partition (UTC). This module reads the latest materialization of each partition in the
window and maps the metadata into `ai_assets.monitoring.report.Report` through one table
(`entries`), so a figure is added or renamed in one line. It is tolerant on purpose: an asset
not yet built, a partition not yet run, a key missing or of the wrong type each leave a gap or an
empty panel that says "no data yet", never a failed report.

The contract (what the monitoring assets emit; `{value, low, high}` is a proportion with its
Wilson interval, as `ai_assets.monitoring.intervals.Proportion.to_dict` writes it). The last
column is read when the contract's key is absent: the spellings the assets use today.

| asset | metadata key | type | report | also read |
|---|---|---|---|---|
| model_quality | accuracy | {value, low, high} | Accuracy: realised | accuracy, accuracy_low/_high |
| model_quality | estimated_accuracy | {value, low, high} | Accuracy: estimated (2nd source) | same, flat |
| model_quality | automated_precision | {value, low, high} | Automated precision | same, flat |
| model_quality | target_precision | float | its "target" line | |
| model_quality | estimate_gap | float | Estimate gap (line: AI_ASSETS_ESTIMATE_GAP_MARGIN) | |
| quality_estimate | estimated_accuracy | {value, low, high} | Accuracy: estimated (1st source) | same, flat |
| input_drift, prediction_drift | score, threshold | float | drift score, threshold line | |
| input_drift, prediction_drift | status | str | Drift by day | |
| input_drift, prediction_drift | moved | [{feature, statistic, value, threshold}] | what moved | |
| input_drift, prediction_drift | examples, telltale_words | list[str] | telltale words and examples | |
| input_drift, prediction_drift | top_intents | [{intent, reference_share, current_share, chi2_contribution}] | | |
| pipeline_metrics | latency_ms_p50, _p95, _p99 | float (ms) | Latency per message (log) | |
| pipeline_metrics | messages_per_s | float | Throughput | throughput_msgs_per_s |
| pipeline_metrics | error_rate | float (share) | Errors, fallbacks and cache | llm_error_rate |
| pipeline_metrics | fallback_rate, cache_hit_rate | float (share) | Errors, fallbacks and cache | |
| cost_report | cost_usd, daily_budget_usd | float (USD) | Daily LLM cost, budget line | cost_today_usd |
| cost_report | month_to_date_usd, monthly_budget_usd | float (USD) | Month to date, budget | cost_month_to_date_usd |
| cost_report | month_forecast_usd | float (USD) | Month to date: forecast | forecast_month_usd, _low_usd, _high_usd |
| cost_report | cost_per_1000_usd | float (USD) | Cost per 1,000 messages | cost_per_1000_messages_usd |
| cost_report | per_tier | {tier: usd} | Cost per tier, a line each | cost_today_usd__<model> |
| business_metrics | automation_rate, escalation_rate, override_rate | float (share) | Automation ... | |
| business_metrics | receipt_to_action_p50_s | float (s) | Receipt to action | receipt_to_action_s_p50 |
| business_metrics | agent_minutes_saved | float (min) | Agent minutes saved | |
| business_metrics | errors_caught | int | Errors caught | errors_caught_before_customer |

Metadata values are Dagster `MetadataValue`s (Float, Int, Json, Text ...): their `.value` is
read. A threshold given as a key is taken from the latest day in the window that has it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ai_assets.config import Settings
from ai_assets.monitoring.report import (
    NO_DATA,
    Cell,
    Panel,
    Point,
    Report,
    Section,
    Series,
    Table,
    finite,
    format_value,
    write_report,
)

if TYPE_CHECKING:  # Dagster is imported when the command runs: the CLI starts fast
    from dagster import DagsterInstance

KeyPath = tuple[str, ...]
Metadata = dict[str, object]
Figures = Mapping[str, Mapping[date, Metadata]]  # {asset: {day: metadata of its latest materialization}}

REPORT_TITLE = "ai_assets monitoring report"
DEFAULT_DAYS = 14
DRIFT_ASSETS = (("input_drift", "Input drift"), ("prediction_drift", "Prediction drift"))
MAX_EXAMPLES = 10  # example messages quoted per drift table: enough to see the pattern
PAGE = 100  # materialization records read per query


@dataclass(frozen=True)
class Entry:
    """One line of the mapping: a series of `panel` in `section`, read from `asset`'s metadata.

    `value`, `low`, `high` are key paths into the metadata (a dict found at the end of `value` is
    read at its "value" key). `threshold` is a key path into the same asset's metadata, or a
    number. Entries with the same section, panel and series are one series: for each day the
    first entry that has a value gives the point, which is how an alias (another spelling of
    the same figure) stands behind the contract's key.

    Wide entries give one series per name: with `expand`, `value` holds {name: number}; with
    `prefix`, every top-level key `prefix + name` is one. `log_scale` on any entry of a panel
    draws the panel's y axis logarithmic."""

    section: str
    panel: str
    series: str
    asset: str
    value: KeyPath
    low: KeyPath | None = None
    high: KeyPath | None = None
    unit: str = ""
    threshold: KeyPath | float | None = None
    threshold_label: str = "threshold"
    expand: bool = False
    prefix: str | None = None
    log_scale: bool = False

    @property
    def wide(self) -> bool:
        return self.expand or self.prefix is not None

    @property
    def key(self) -> str:
        """Where the entry reads, for a note saying what is missing."""
        return f"{self.asset}.{self.prefix}*" if self.prefix is not None else f"{self.asset}.{self.value[0]}"


ACCURACY, DRIFT, SERVING, COST, BUSINESS = (
    "Accuracy", "Drift", "Serving: latency and reliability", "Cost against budget", "Automation and business")
SECTION_NOTES = {
    ACCURACY: "Realised accuracy comes from resolved cases, which arrive days late; the estimate is what the "
              "model's confidence predicts before they do. Bands are 95% intervals: a small day is a wide band.",
    DRIFT: "A score above its threshold means the day's traffic or predictions differ from the reference.",
    SERVING: "Per message, across every tier of the cascade.",
    COST: "LLM spend; the local model costs nothing per call.",
    BUSINESS: "What the automation does for the bank and its customers.",
}
PANEL_NOTES = {
    "Accuracy: realised and estimated": "Share of messages whose predicted intent matches the agent's final one.",
    "Automated precision": "Of the messages acted on without a person, the share that was right.",
    "Estimate gap": "Estimated minus realised accuracy; the dashed line is the largest gap tolerated.",
    "Input drift score": "How far the day's messages moved from the reference; the tables say what moved.",
    "Prediction drift score": "How far the day's predicted intents and confidences moved from the reference.",
    "Latency per message": "Per message, percentiles of the day; log scale, so median and tail both read.",
    "Throughput": "Messages enriched per second of pipeline time.",
    "Errors, fallbacks and cache": "Shares of the day's messages.",
    "Daily LLM cost": "The dashed line is the daily budget: at it, the cascade degrades to the local tier.",
    "Month to date": "Spend so far this month and its forecast for the whole month.",
    "Cost per 1,000 messages": "",
    "Cost per tier": "One line per model tier.",
    "Automation, escalation and overrides": "Shares of the day's messages.",
    "Receipt to action (median)": "From the message arriving to the case being acted on.",
    "Agent minutes saved": "Automated messages times the minutes an agent spends on one.",
    "Errors caught": "Mistakes the platform stopped before they reached a customer.",
}


def _interval(section: str, panel: str, series: str, asset: str, key: str, **more) -> tuple[Entry, Entry]:
    """A proportion under `key`: as the contract's {value, low, high}, else as three flat floats
    `key`, `key_low`, `key_high` (how the assets write it for the Dagster UI's plots)."""
    return (Entry(section, panel, series, asset, (key, "value"), (key, "low"), (key, "high"), unit="share", **more),
            Entry(section, panel, series, asset, (key,), (f"{key}_low",), (f"{key}_high",), unit="share", **more))


def _scalar(section: str, panel: str, series: str, asset: str, *keys: str, **more) -> tuple[Entry, ...]:
    """A number under the contract's key, else under each alias in turn."""
    return tuple(Entry(section, panel, series, asset, (key,), **more) for key in keys)


def entries(settings: Settings) -> tuple[Entry, ...]:
    """The mapping from the monitoring assets' metadata to the report, in reading order."""
    acc, rates, business = "Accuracy: realised and estimated", "Errors, fallbacks and cache", \
        "Automation, escalation and overrides"
    return (
        *_interval(ACCURACY, acc, "realised", "model_quality", "accuracy"),
        *_interval(ACCURACY, acc, "estimated", "quality_estimate", "estimated_accuracy"),
        *_interval(ACCURACY, acc, "estimated", "model_quality", "estimated_accuracy"),
        *_interval(ACCURACY, "Automated precision", "automated precision", "model_quality", "automated_precision",
                   threshold=("target_precision",), threshold_label="target"),
        *_scalar(ACCURACY, "Estimate gap", "estimated − realised", "model_quality", "estimate_gap", unit="share",
                 threshold=settings.estimate_gap_margin, threshold_label="tolerated"),
        *_scalar(DRIFT, "Input drift score", "input drift", "input_drift", "score", threshold=("threshold",)),
        *_scalar(DRIFT, "Prediction drift score", "prediction drift", "prediction_drift", "score",
                 threshold=("threshold",)),
        *(entry for name in ("p50", "p95", "p99") for entry in _scalar(
            SERVING, "Latency per message", name, "pipeline_metrics", f"latency_ms_{name}", unit="ms",
            log_scale=True)),
        *_scalar(SERVING, "Throughput", "messages per second", "pipeline_metrics", "messages_per_s",
                 "throughput_msgs_per_s", unit="msg/s"),
        *_scalar(SERVING, rates, "errors", "pipeline_metrics", "error_rate", "llm_error_rate", unit="share"),
        *_scalar(SERVING, rates, "fallbacks", "pipeline_metrics", "fallback_rate", unit="share"),
        *_scalar(SERVING, rates, "cache hits", "pipeline_metrics", "cache_hit_rate", unit="share"),
        *_scalar(COST, "Daily LLM cost", "cost", "cost_report", "cost_usd", "cost_today_usd", unit="USD",
                 threshold=("daily_budget_usd",), threshold_label="daily budget"),
        *_scalar(COST, "Month to date", "month to date", "cost_report", "month_to_date_usd", "cost_month_to_date_usd",
                 unit="USD", threshold=("monthly_budget_usd",), threshold_label="monthly budget"),
        Entry(COST, "Month to date", "forecast for the month", "cost_report", ("month_forecast_usd",), unit="USD"),
        Entry(COST, "Month to date", "forecast for the month", "cost_report", ("forecast_month_usd",),
              ("forecast_month_low_usd",), ("forecast_month_high_usd",), unit="USD"),
        *_scalar(COST, "Cost per 1,000 messages", "per 1,000", "cost_report", "cost_per_1000_usd",
                 "cost_per_1000_messages_usd", unit="USD"),
        Entry(COST, "Cost per tier", "", "cost_report", ("per_tier",), unit="USD", expand=True),
        Entry(COST, "Cost per tier", "", "cost_report", (), unit="USD", prefix="cost_today_usd__"),
        *(entry for name in ("automation", "escalation", "override") for entry in _scalar(
            BUSINESS, business, name, "business_metrics", f"{name}_rate", unit="share")),
        *_scalar(BUSINESS, "Receipt to action (median)", "median", "business_metrics", "receipt_to_action_p50_s",
                 "receipt_to_action_s_p50", unit="s"),
        *_scalar(BUSINESS, "Agent minutes saved", "minutes saved", "business_metrics", "agent_minutes_saved",
                 unit="min"),
        *_scalar(BUSINESS, "Errors caught", "errors caught", "business_metrics", "errors_caught",
                 "errors_caught_before_customer"),
    )


# --- metadata ------------------------------------------------------------------------------------


def unwrap(metadata: Mapping[str, object]) -> Metadata:
    """Dagster `MetadataValue`s as their plain values (a float, a dict, a list, a string)."""
    return {name: getattr(entry, "value", entry) for name, entry in metadata.items()}


def lookup(metadata: Mapping[str, object] | None, path: KeyPath, proportion: bool = True) -> object:
    """The value at `path`, or None when any step is missing or not a mapping. With `proportion`
    a mapping found at the end is read at its "value" key, so `("accuracy",)` means the
    proportion's value."""
    node: object = metadata
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    if proportion and isinstance(node, Mapping) and "value" in node:
        return node["value"]
    return node


def window(end: date, days: int) -> list[date]:
    return [end - timedelta(days=n) for n in range(days - 1, -1, -1)]


# --- from figures to the report (pure) ------------------------------------------------------------


def _wide(entry: Entry, metadata: Mapping[str, object] | None) -> dict[str, object]:
    """{series name: raw value} of a wide entry on one day."""
    if not isinstance(metadata, Mapping):
        return {}
    if entry.prefix is not None:
        n = len(entry.prefix)
        return {key[n:]: value for key, value in metadata.items()
                if isinstance(key, str) and key.startswith(entry.prefix) and len(key) > n}
    found = lookup(metadata, entry.value, proportion=False)
    if not isinstance(found, Mapping):
        return {}
    return {str(k): (v.get("value") if isinstance(v, Mapping) else v) for k, v in found.items()}


def _series_points(group: Sequence[Entry], figures: Figures, days: Sequence[date],
                   name: str | None = None) -> list[Point]:
    """One series' points: per day, the first entry of `group` with a finite value (for a wide
    group, the value of series `name`)."""
    points = []
    for day in days:
        for entry in group:
            metadata = figures.get(entry.asset, {}).get(day)
            value = finite(_wide(entry, metadata).get(name) if name is not None else lookup(metadata, entry.value))
            if value is None:
                continue
            low = finite(lookup(metadata, entry.low)) if entry.low else None
            high = finite(lookup(metadata, entry.high)) if entry.high else None
            points.append(Point(day, value, low, high))
            break
    return points


def _threshold(group: Sequence[Entry], figures: Figures, days: Sequence[date]) -> float | None:
    for entry in group:
        if entry.threshold is None:
            continue
        if not isinstance(entry.threshold, tuple):
            return finite(entry.threshold)
        for day in reversed(days):
            value = finite(lookup(figures.get(entry.asset, {}).get(day), entry.threshold))
            if value is not None:
                return value
    return None


def _days_text(days: Sequence[date]) -> str:
    return f"{days[0].isoformat()} to {days[-1].isoformat()}" if days else "no days"


def build_panel(title: str, group: Sequence[Entry], figures: Figures, days: Sequence[date]) -> Panel:
    """The panel of one title's entries; when something is empty its note says what was read."""
    plain = [e for e in group if not e.wide]
    wide = [e for e in group if e.wide]
    series = [Series(name, _series_points([e for e in plain if e.series == name], figures, days))
              for name in dict.fromkeys(e.series for e in plain)]
    names = sorted({name for e in wide for day in days for name in _wide(e, figures.get(e.asset, {}).get(day))})
    series += [Series(name, _series_points(wide, figures, days, name)) for name in names]
    notes = [PANEL_NOTES.get(title, "")]
    if not any(s.points for s in series):
        keys = ", ".join(dict.fromkeys(e.key for e in group))
        notes.append(f"{NO_DATA}: nothing in {keys} for {_days_text(days)}.")
    elif empty := [s.name for s in series if not s.points]:
        notes.append(f"{NO_DATA} for {', '.join(empty)}.")
    return Panel(title, group[0].unit, series, threshold=_threshold(group, figures, days),
                 note=" ".join(n for n in notes if n),
                 threshold_label=next((e.threshold_label for e in group if e.threshold is not None), "threshold"),
                 log_scale=any(e.log_scale for e in group))


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _number_cell(value: object) -> Cell:
    number = finite(value)
    return number if number is not None else _text(value)


def drift_tables(figures: Figures, days: Sequence[date]) -> list[Table]:
    """The drift status of every day, and for each drift asset what moved on its latest day
    that moved (else its latest day): statistics, telltale words, example messages, intents."""
    by_day = []
    for day in reversed(days):
        metas = [figures.get(asset, {}).get(day) for asset, _ in DRIFT_ASSETS]
        if any(m is not None for m in metas):
            row: list[Cell] = [day.isoformat()]
            for meta in metas:
                row += [_number_cell(lookup(meta, ("score",))), _number_cell(lookup(meta, ("threshold",))),
                        _text(lookup(meta, ("status",)))]
            by_day.append(row)
    tables = [Table("Drift by day", ["day", "input score", "input threshold", "input status", "prediction score",
                                     "prediction threshold", "prediction status"], by_day,
                    note="" if by_day else f"{NO_DATA}: no input_drift or prediction_drift for {_days_text(days)}.")]
    for asset, label in DRIFT_ASSETS:
        seen = [day for day in days if day in figures.get(asset, {})]
        if not seen:
            continue
        moved_days = [day for day in seen if _list(lookup(figures[asset][day], ("moved",)))]
        day = (moved_days or seen)[-1]
        meta = figures[asset][day]
        moved = []
        for item in _list(lookup(meta, ("moved",))):
            if isinstance(item, Mapping):
                moved.append([_text(item.get("feature")), _text(item.get("statistic")),
                              _number_cell(item.get("value")), _number_cell(item.get("threshold"))])
            else:
                moved.append([_text(item), None, None, None])
        tables.append(Table(f"{label}: what moved on {day.isoformat()}", ["feature", "statistic", "value", "threshold"],
                            moved, empty="nothing moved beyond its threshold in the window"))
        words = [str(w) for w in _list(lookup(meta, ("telltale_words",)))]
        examples = [str(e) for e in _list(lookup(meta, ("examples",)))][:MAX_EXAMPLES]
        quoted = ([["telltale words", ", ".join(words)]] if words else []) + [["example", e] for e in examples]
        if quoted:
            tables.append(Table(f"{label} on {day.isoformat()}: telltale words and examples", ["what", "text"], quoted,
                                note="Quoted from the day's messages and the model's output (PII masked)."))
        intents = []
        for item in _list(lookup(meta, ("top_intents",))):
            if isinstance(item, Mapping):
                intents.append([_text(item.get("intent")), format_value(finite(item.get("reference_share")), "share"),
                                format_value(finite(item.get("current_share")), "share"),
                                _number_cell(item.get("chi2_contribution"))])
        if intents:
            tables.append(Table(f"{label} on {day.isoformat()}: intents that moved",
                                ["intent", "reference share", "current share", "chi-square contribution"], intents))
    return tables


def _list(value: object) -> list:
    return list(value) if isinstance(value, list | tuple) else []


def build_report(figures: Figures, days: Sequence[date], mapping: Sequence[Entry],
                 latest: date | None = None) -> Report:
    """The report of `figures` over `days` as `mapping` lays it out; the drift tables added to
    the drift section. Pure: the same figures give the same report."""
    sections: dict[str, dict[str, list[Entry]]] = {}
    for entry in mapping:
        sections.setdefault(entry.section, {}).setdefault(entry.panel, []).append(entry)
    built = []
    for title, panels in sections.items():
        tables = drift_tables(figures, days) if title == DRIFT else []
        built.append(Section(title, [build_panel(p, group, figures, days) for p, group in panels.items()],
                             tables, note=SECTION_NOTES.get(title, "")))
    generated_for = (f"Daily partitions (UTC) {_days_text(days)}, {len(days)} days; "
                     f"latest monitoring data: {latest.isoformat() if latest else 'none yet'}")
    return Report(REPORT_TITLE, generated_for, built, days=list(days))


# --- from the Dagster instance --------------------------------------------------------------------


def _asset_key(asset: str):
    from dagster import AssetKey

    return AssetKey.from_user_string(asset)


def _as_day(partition: str | None) -> date | None:
    try:
        return date.fromisoformat(partition) if partition else None
    except ValueError:
        return None


def latest_partition_day(instance: DagsterInstance, assets: Iterable[str]) -> date | None:
    """The latest daily partition any of `assets` has materialized."""
    days = [day for asset in assets for p in instance.get_materialized_partitions(_asset_key(asset))
            if (day := _as_day(p)) is not None]
    return max(days, default=None)


def read_figures(instance: DagsterInstance, assets: Iterable[str], days: Sequence[date]) -> dict[str, dict]:
    """{asset: {day: unwrapped metadata}} of each partition's latest materialization in `days`."""
    from dagster import AssetRecordsFilter

    wanted = {day.isoformat(): day for day in days}
    figures: dict[str, dict[date, Metadata]] = {}
    for asset in sorted(set(assets)):
        found: dict[date, Metadata] = {}
        cursor = None
        while len(found) < len(wanted):
            result = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=_asset_key(asset), asset_partitions=sorted(wanted)),
                limit=PAGE, cursor=cursor, ascending=False)
            for record in result.records:  # newest first: the first seen of a partition is its latest
                materialization = record.event_log_entry.asset_materialization
                day = wanted.get(materialization.partition) if materialization else None
                if day is not None and day not in found:
                    found[day] = unwrap(materialization.metadata)
            if not result.has_more:
                break
            cursor = result.cursor
        figures[asset] = found
    return figures


def gather_report(instance: DagsterInstance, days: int = DEFAULT_DAYS, end: date | None = None,
                  settings: Settings | None = None) -> Report:
    """The report of the `days` days ending at `end` (default: the latest day with monitoring
    data, else today UTC), from what `instance` recorded."""
    mapping = entries(settings or Settings.from_env())
    assets = {e.asset for e in mapping} | {asset for asset, _ in DRIFT_ASSETS}
    latest = latest_partition_day(instance, assets)
    last = end or latest or datetime.now(UTC).date()
    span = window(last, days)
    return build_report(read_figures(instance, assets, span), span, mapping, latest)


@click.command("report")
@click.option("--days", default=DEFAULT_DAYS, show_default=True, type=click.IntRange(1, 366),
              help="How many daily partitions the report covers.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day (UTC) [default: the latest day with monitoring data, else today].")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write index.html into (created if missing).")
def report(days: int, end: datetime | None, out_dir: Path) -> None:
    """Write the static monitoring report (one offline HTML page): accuracy, drift, latency,
    cost against budget and business figures over the last DAYS days."""
    settings = Settings.from_env()
    if not settings.dagster_home:
        raise click.ClickException("DAGSTER_HOME is not set: run through `make` or export it")
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        built = gather_report(instance, days, end.date() if end else None, settings)
    try:
        path = write_report(built, out_dir)
    except OSError as exc:
        raise click.ClickException(f"{out_dir}: {exc.strerror or exc}") from None
    click.echo(f"{built.generated_for} -> {path}")
