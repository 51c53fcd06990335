"""The `ai-assets` command: simulate traffic, run the demo or a backfill, read status."""

import csv
import json
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ai_assets.config import Settings
from ai_assets.ingestion.parsing import NOT_A_JSON_OBJECT, parse_line
from ai_assets.serving.intent.intent_model import INTENT_MODEL
from ai_assets.simulator import (
    FaultSpecError,
    load_replay_source,
    parse_fault_spec,
    simulate_day,
    write_day,
)

if TYPE_CHECKING:  # imported lazily at run time: the CLI starts fast
    from ai_assets.ops_db import ModelRegistry
    from ai_assets.serving.live import LiveServing

# The demo's faulty day: every row-level fault that should be quarantined or de-duplicated,
# plus an empty file. Schema-change faults are left to the tests: they fail a warning check.
DEMO_FAULTS = ("unparseable=0.01,missing_field=0.01,wrong_type=0.01,duplicate_id=0.01,"
               "empty_text=0.01,overlong_text=0.01,invalid_utf8=0.01,out_of_window=0.01,empty_file=0.01")


def _landing_dir() -> Path:
    return Settings.from_env().landing_dir


def _instance():
    from dagster import DagsterInstance

    if not Settings.from_env().dagster_home:
        raise click.ClickException("DAGSTER_HOME is not set: run through `make` or export it")
    return DagsterInstance.get()


def _defs():
    from ai_assets.definitions import defs

    return defs


def _simulate(start: date, days: int, per_day: int, faults: str | None, source: Path | None,
              seed: int, pii_rate: float) -> list[dict]:
    try:
        rates = parse_fault_spec(faults)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    if source is not None:
        _require_regular_file(source)
    try:
        pool = load_replay_source(source)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--from") from None
    except (RecursionError, csv.Error) as exc:  # a line nested too deep, a CSV field over the limit
        raise click.BadParameter(f"{source}: unreadable: {exc}", param_hint="--from") from None
    ledgers = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        files, resolved, ledger = simulate_day(day, pool, per_day, rates, seed=seed, pii_rate=pii_rate)
        write_day(_landing_dir(), day, files, resolved, ledger)
        ledgers.append(json.loads(ledger.to_json()))
    return ledgers


@click.group()
def main() -> None:
    """ai_assets operations: the bank support-inbox pipeline on Dagster."""


@main.command()
@click.option("--start", "start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (UTC).")
@click.option("--days", default=1, show_default=True, type=click.IntRange(1, 366))
@click.option("--per-day", default=1000, show_default=True, type=click.IntRange(1, 5_000_000),
              help="Messages on a Monday; other weekdays scale by seasonality.")
@click.option("--faults", default=None, help="kind=rate,... or all=rate (e.g. all=0.01).")
@click.option("--from", "source", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay this CSV/JSONL (text[, category]) instead of the built-in pool.")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--pii-rate", default=0.02, show_default=True, type=click.FloatRange(0, 0.5),
              help="Share of messages that get a synthetic card number, IBAN, e-mail or phone.")
def simulate(start: datetime, days: int, per_day: int, faults: str | None, source: Path | None,
             seed: int, pii_rate: float) -> None:
    """Write landing files (and the resolved-cases feed) the way the upstream system does."""
    for ledger in _simulate(start.date(), days, per_day, faults, source, seed, pii_rate):
        click.echo(f"{ledger['day']}: {sum(ledger['files'].values())} lines in {len(ledger['files'])} "
                   f"files, faults {ledger['faults'] or 'none'} -> {_landing_dir()}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list for machines.")
def status(as_json: bool) -> None:
    """Every asset partition in the instance with its metadata and latest check results."""
    from ai_assets.cli.instance_status import asset_status

    rows = asset_status(_instance(), _defs())
    if as_json:
        click.echo(json.dumps(rows, indent=1, sort_keys=True))
        return
    for row in rows:
        failed = [c["name"] for c in row["checks"] if c["passed"] is False]
        rows = row["metadata"].get("dagster/row_count", "?")
        click.echo(f"{row['asset']:<22} {row['partition'] or '-':<11} rows={rows:<7}"
                   f" checks={len(row['checks'])} failed={failed or 'none'}")


def _print_day_summary(rows: list[dict], day: str) -> bool:
    by_asset = {r["asset"]: r for r in rows if r["partition"] == day}
    raw, val, qua, enr, tri, act, out = (by_asset.get(a) for a in (
        "raw_messages", "validated_messages", "quarantined_messages", "enriched_messages", "triage_decisions",
        "case_actions", "outbox_deliveries"))
    if not (raw and val and qua and enr and tri and act and out):
        click.echo(f"{day}: not materialized")
        return False
    checks = [c for r in (raw, val, qua, enr, tri, act, out) for c in r["checks"] if c["partitioned"]]
    failed = [c["name"] for c in checks if c["passed"] is not True]
    m = val["metadata"]
    empty = len(raw["metadata"].get("empty_files", []))
    click.echo(f"{day}: files={raw['metadata']['files']} ({empty} empty) rows_in={m['rows_in']} "
               f"validated={m['validated']} quarantined={m['quarantined']} duplicates={m['duplicates']} "
               f"pii_masked={sum(m.get('pii_masked', {}).values())} "
               f"checks={len(checks) - len(failed)}/{len(checks)} passed")
    for reason, n in qua["metadata"].get("quarantined_by_reason", {}).items():
        click.echo(f"    quarantined {n:>4} x {reason}")
    e = enr["metadata"]
    click.echo(f"    enriched {e['dagster/row_count']} by {e['local_model']}: tiers {e['per_tier']}, "
               f"automated {e['automated']} ({e['automated_share']:.1%}), cost ${e['cost_usd']}, "
               f"latency p50/p95 {e['latency_ms_p50']}/{e['latency_ms_p95']} ms")
    a, o = act["metadata"], out["metadata"]
    click.echo(f"    decisions {tri['metadata']['decisions']}: acted {a['acted']}, review {a['review']}, "
               f"conflict {a['conflict']}, already done {a['already_done']}; outbox delivered {o['delivered']}, "
               f"pending {o['pending']}, dead {o['dead']}")
    for name in failed:
        click.echo(f"    CHECK FAILED: {name}")
    return not failed


def _pct(figure) -> str:
    return "n/a" if figure is None else f"{figure:.1%}"


def _interval(meta: dict, key: str) -> str:
    if meta.get(key) is None:
        return "n/a"
    return f"{_pct(meta[key])} [{_pct(meta.get(f'{key}_low'))}, {_pct(meta.get(f'{key}_high'))}]"


def _print_monitoring(rows: list[dict], day: str) -> None:
    """The day's layer-4 figures: quality estimated and realised, drift, cost and business."""
    by_asset = {r["asset"]: r for r in rows if r["partition"] == day}
    quality, estimate = by_asset.get("model_quality"), by_asset.get("quality_estimate")
    if estimate:
        q = quality["metadata"] if quality else {}
        click.echo(f"    quality: estimated accuracy {_interval(estimate['metadata'], 'estimated_accuracy')}, "
                   f"realised {_interval(q, 'accuracy')} on {_pct(q.get('labelled_share'))} labelled, "
                   f"automated precision {_interval(q, 'automated_precision')}")
    for name in ("input_drift", "prediction_drift"):
        drift = by_asset.get(name)
        if drift:
            m = drift["metadata"]
            moved = ", ".join(str(x.get("feature")) for x in (m.get("moved") or [])[:4]) or "nothing"
            click.echo(f"    {name}: {m.get('status')} (moved: {moved})")
    cost, business = by_asset.get("cost_report"), by_asset.get("business_metrics")
    if cost and business:
        c, b = cost["metadata"], business["metadata"]
        click.echo(f"    cost ${c.get('partition_cost_usd')} (${c.get('cost_per_1000_messages_usd')} per 1,000), "
                   f"month forecast ${c.get('forecast_month_usd')} of ${c.get('monthly_budget_usd')}; "
                   f"automation {_pct(b.get('automation_rate'))}, {b.get('agent_hours_saved')} agent hours saved, "
                   f"{b.get('errors_caught_before_customer')} errors caught before a customer")
    monitoring = [c for a in ("resolved_cases", "model_quality", "cost_report", "input_drift", "prediction_drift")
                  for c in (by_asset.get(a) or {}).get("checks", []) if c["partitioned"] and c["passed"] is False]
    for check in monitoring:
        click.echo(f"    MONITORING CHECK FAILED ({check['severity']}): {check['name']} (an alert was raised)")


def _write_report(instance, days: int) -> Path:
    from ai_assets.cli.report import gather_report
    from ai_assets.monitoring.report import write_report

    return write_report(gather_report(instance, days=days), Settings.from_env().data_dir / "report")


@main.command()
@click.option("--days", default=5, show_default=True, type=click.IntRange(1, 60))
@click.option("--per-day", default=1000, show_default=True, type=click.IntRange(10, 100_000))
def demo(days: int, per_day: int) -> None:
    """Replay the last DAYS days of traffic (the last one with faults), run every asset and
    check for them, and print what happened. Exits non-zero if anything failed."""
    from ai_assets.cli.instance_status import asset_status
    from ai_assets.cli.pipeline_runs import (
        LABEL_FEEDBACK_JOB,
        MODEL_TRAINING_JOB,
        evaluate_alert_sensor,
        run_job,
        run_partitions,
        run_unpartitioned_checks,
    )
    from ai_assets.cli.review import queue_summary
    from ai_assets.resources import action_settings_from_env

    instance, defs = _instance(), _defs()
    with _registry() as registry:
        production = registry.get_production(INTENT_MODEL)
    if production is None:
        click.echo("No production intent model yet: training one (model_training_job, about a minute) ...")
        if not run_job(defs, instance, MODEL_TRAINING_JOB).success:
            click.echo("demo: FAILED (model_training_job; see the run in the UI: make ui)")
            sys.exit(1)
        with _registry() as registry:
            production = registry.get_production(INTENT_MODEL)
    click.echo(f"Serving with {production.label}: validation accuracy {production.metrics.get('accuracy')}, "
               f"{production.metrics.get('coverage')} automated at threshold {production.confidence_threshold:.3f}")
    today = datetime.now(UTC).date()
    start = today - timedelta(days=days)
    _simulate(start, days - 1, per_day, None, None, 7, 0.02)
    _simulate(today - timedelta(days=1), 1, per_day, DEMO_FAULTS, None, 7, 0.02)
    day_keys = [(start + timedelta(days=i)).isoformat() for i in range(days)]
    click.echo(f"Replayed {days} days into {_landing_dir()}; materializing {day_keys[0]}..{day_keys[-1]}")
    runs = run_partitions(defs, instance, day_keys)
    wide = run_unpartitioned_checks(defs, instance)
    # The resolved cases of each day landed the next day: the quality runs their sensor starts.
    quality_runs = run_partitions(defs, instance, day_keys, job_name=LABEL_FEEDBACK_JOB)
    alert_tick = evaluate_alert_sensor(defs, instance)
    rows = asset_status(instance, defs)
    ok = all(r.success for r in runs + quality_runs) and wide.success
    for day in day_keys:
        ok = _print_day_summary(rows, day) and ok
        _print_monitoring(rows, day)
    click.echo(f"Alerts: {alert_tick}; `ai-assets alerts` lists them.")
    report_path = _write_report(instance, days)
    click.echo(f"Monitoring report (static HTML, offline): {report_path}")
    click.echo(queue_summary())
    settings = action_settings_from_env(in_dagster=False)
    events = "the webhook in AI_ASSETS_WEBHOOK_URL" if settings.webhook_url else Path(settings.outbox_dir) / "events"
    click.echo(f"Customer e-mail went to {settings.smtp_host or Path(settings.outbox_dir) / 'mail'}; case events to "
               f"{events}. "
               "`ai-assets audit MESSAGE_ID` tells one message's story.")
    wide_checks = {c["name"]: c["passed"] for r in rows for c in r["checks"] if not c["partitioned"]}
    for name, passed in sorted(wide_checks.items()):
        click.echo(f"asset-wide check {name}: {'passed' if passed else 'FAILED'}")
        ok = ok and bool(passed)
    click.echo("demo: OK" if ok else "demo: FAILED")
    sys.exit(0 if ok else 1)


def _check_partition_range(start: date, end: date) -> None:
    """Refuse days that are not partitions before any run starts (and before a range like
    1990..9999 is even listed): the only days are from the first partition to yesterday UTC."""
    from ai_assets.defs.common import daily_partitions

    first = date.fromisoformat(daily_partitions.get_first_partition_key())
    last_key = daily_partitions.get_last_partition_key()
    last = date.fromisoformat(last_key) if last_key else None
    if last is None or start < first or end > last:
        asked = f"{start}" if start == end else f"{start}..{end}"
        valid = f"{first}..{last}" if last else f"none yet (the first is {first})"
        raise click.ClickException(f"no partition for {asked}: the days are {valid} (UTC; a day "
                                   "becomes a partition once it has closed)")


@main.command()
@click.option("--start", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--end", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day, inclusive.")
def backfill(start: datetime, end: datetime) -> None:
    """Reprocess a range of days now, one run per day, recorded in the instance."""
    from ai_assets.cli.pipeline_runs import run_partitions

    if end < start:
        raise click.BadParameter("--end is before --start")
    _check_partition_range(start.date(), end.date())
    days = [(start.date() + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    outcomes = run_partitions(_defs(), _instance(), days,
                              tags={"ai_assets/backfill": f"{days[0]}..{days[-1]}"})
    for o in outcomes:
        click.echo(f"{o.partition}: {'success' if o.success else 'FAILED'} (run {o.run_id})")
    sys.exit(0 if all(o.success for o in outcomes) else 1)


# As load_replay_source decides between JSON Lines and CSV.
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson", ".json")
SHOWN_UNREADABLE = 10  # line numbers named in the output; the count is always complete


def _require_regular_file(path: Path) -> None:
    """Checked before opening: reading a FIFO blocks until a writer comes (forever, usually), and
    a device such as /dev/zero never ends."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise click.ClickException(f"{path}: not a regular file (a FIFO, device or socket is refused)")


@dataclass
class LabelledInput:
    """An operator's labelled file as read: its readable records, and the lines that were not."""

    path: Path
    rows: list[tuple[str, str]] = field(default_factory=list)  # (text, category)
    unreadable: list[int] = field(default_factory=list)  # line numbers, JSON Lines only

    def unreadable_note(self) -> str:
        shown = ", ".join(map(str, self.unreadable[:SHOWN_UNREADABLE]))
        more = ", ..." if len(self.unreadable) > SHOWN_UNREADABLE else ""
        return f"{len(self.unreadable)} unreadable line(s) skipped ({shown}{more})" if self.unreadable else ""


def _json_lines(path: Path, into: LabelledInput) -> list[tuple[str, object]]:
    """(where, record) per non-blank line, decoded with ingestion's own bounds (line size,
    nesting, number length, duplicate keys). A line that does not decode is skipped and counted,
    as live ingestion quarantines it: one bad line must not hide a whole file's evaluation."""
    records = []
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            chunk = raw.rstrip(b"\r\n")
            if line_no == 1:
                chunk = chunk.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
            if not chunk.strip():
                continue
            _, record, error = parse_line(chunk)
            if error in (None, NOT_A_JSON_OBJECT):  # JSON, but maybe not a record: "has no text column"
                records.append((f"line {line_no}", record))
            else:
                into.unreadable.append(line_no)
    return records


def _csv_records(path: Path) -> list[tuple[str, object]]:
    """(where, record) per CSV row. A row the parser rejects (a field over csv.field_size_limit,
    far longer than any message) fails the file, naming the row: after such an error the parser
    may be inside a quoted field, so the rows after it cannot be trusted."""
    records = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return records
            except csv.Error as exc:
                raise click.ClickException(f"{path}: the CSV row on line {reader.reader.line_num} is unreadable "
                                           f"({exc})") from None
            except UnicodeDecodeError:
                raise click.ClickException(f"{path}: not UTF-8 text (after line {reader.reader.line_num})") from None
            records.append((f"record {len(records) + 1}", record))


def read_labelled(path: Path) -> LabelledInput:
    """The operator's file with the checks of load_labelled, numbered as the operator sees the file."""
    _require_regular_file(path)
    labelled = LabelledInput(path)
    try:
        is_json_lines = path.suffix.lower() in JSON_LINES_SUFFIXES
        records = _json_lines(path, labelled) if is_json_lines else _csv_records(path)
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror or exc}") from None
    no_category = []
    for where, record in records:
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise click.ClickException(f"{path}: {where} has no text column")
        category = str(record.get("category") or "").strip()
        if not category:
            no_category.append(where)
        labelled.rows.append((text, category))
    if no_category:
        raise click.ClickException(f"{path}: {len(no_category)} record(s) have no category, "
                                   f"first is {no_category[0]}")
    return labelled


def _evaluate_rows(labelled: LabelledInput, live: "LiveServing", max_text_chars: int) -> dict:
    from ai_assets.serving.evaluation import evaluate_rows

    report = evaluate_rows(labelled.rows, live, max_text_chars=max_text_chars)
    return {**report, "rows_in_file": report["rows_in_file"] + len(labelled.unreadable),
            "unreadable": len(labelled.unreadable), "unreadable_lines": labelled.unreadable[:SHOWN_UNREADABLE]}


def _no_servable_rows(labelled: LabelledInput, not_servable: dict[str, int]) -> click.ClickException:
    reasons = [labelled.unreadable_note()] if labelled.unreadable else []
    reasons += [f"{n} {reason}" for reason, n in not_servable.items()]
    return click.ClickException(f"{labelled.path}: no servable rows to evaluate"
                                f"{' (' + '; '.join(reasons) + ')' if reasons else ''}")


@main.command()
@click.option("--data", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Labelled CSV/JSONL with `text` and `category` (oos/out_of_scope: must not be automated).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for machines.")
@click.option("--budget-usd", type=click.FloatRange(min=0), default=None,
              help="This evaluation's own LLM budget [default: AI_ASSETS_LLM_RUN_BUDGET_USD]. "
                   "Evaluations do not count toward live traffic's daily budget.")
def evaluate(path: Path, as_json: bool, budget_usd: float | None) -> None:
    """Run labelled messages through the production routing exactly as live traffic and report
    accuracy, automation, out-of-scope leakage (each with its 95% interval), whether the
    production version's precision guarantee was kept, tiers, latency and cost."""
    from ai_assets.ops_db import OpsDb, default_url
    from ai_assets.resources import ingestion_policy_from_env, model_serving_from_env
    from ai_assets.serving.live import ArtifactError

    labelled = read_labelled(path)  # before the model loads: a bad file fails fast
    if not labelled.rows:
        raise _no_servable_rows(labelled, {})
    try:
        with OpsDb.open(default_url()) as db:
            live = model_serving_from_env(in_dagster=False).evaluation(db, budget_usd)
            report = _evaluate_rows(labelled, live, ingestion_policy_from_env().max_text_chars)
    except (ValueError, ArtifactError) as exc:
        raise click.ClickException(str(exc)) from None
    if report["n"] == 0:  # nothing scored: every metric would be empty
        raise _no_servable_rows(labelled, report["not_servable"])
    if as_json:
        click.echo(json.dumps(report, indent=1, sort_keys=True))
        return
    click.echo(f"{report['n']} messages through {report['local_model']} (threshold "
               f"{report['confidence_threshold']:.3f}); not servable: {report['not_servable'] or 'none'}"
               f"{'; ' + labelled.unreadable_note() if labelled.unreadable else ''}")
    for key in ("accuracy", "macro_f1", "automated_share", "automated_precision", "out_of_scope_automated"):
        value = report[key]
        click.echo(f"  {key:<24} {'-' if value is None else f'{value:.4f}'}")
    for key, figure in report["intervals"].items():
        value = figure["value"]
        click.echo(f"  {key:<24} {'-' if value is None else f'{value:.4f}'}  95% [{figure['low']:.4f}, "
                   f"{figure['high']:.4f}]  ({figure['k']} of {figure['n']})")
    guarantee = report["guarantee"]
    if guarantee["promised_precision"] is None:
        click.echo(f"  guarantee                {guarantee['note']}")
    else:
        verdict = {True: "kept", False: "not kept", None: "not judged (no in-scope row automated)"}[guarantee["kept"]]
        click.echo(f"  guarantee                automated precision >= {guarantee['promised_precision']:.3f} "
                   f"({guarantee['confidence']:.0%} confidence): {verdict}"
                   f"{'; refuted beyond sampling noise' if guarantee['refuted'] else ''}")
    click.echo(f"  per tier                 {report['per_tier']}")
    click.echo(f"  latency ms               {report['latency_ms']}")
    click.echo(f"  cost                     ${report['cost_usd']} (${report['cost_per_1000_usd']} per 1,000)")


@contextmanager
def _registry() -> Iterator["ModelRegistry"]:
    """The registry of the operations database; its connections are closed afterwards."""
    from ai_assets.ops_db import OpsDb, default_url

    with OpsDb.open(default_url()) as db:
        yield db.registry


@main.group()
def model() -> None:
    """The model registry in the operations database (AI_ASSETS_OPS_DB_URL)."""


@model.command("list")
@click.option("--name", default=INTENT_MODEL, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def model_list(name: str, as_json: bool) -> None:
    """Every version with its status, threshold and validation metrics."""
    with _registry() as registry:
        records = registry.list_versions(name)
    rows = [{"version": r.version, "status": r.status, "created_at": r.created_at.isoformat(),
             "promoted_at": r.promoted_at.isoformat() if r.promoted_at else None,
             "confidence_threshold": r.confidence_threshold, "target_precision": r.target_precision,
             "metrics": r.metrics, "artifact_uri": r.artifact_uri} for r in records]
    if as_json:
        click.echo(json.dumps(rows, indent=1, sort_keys=True))
        return
    if not rows:
        click.echo(f"no versions of {name}")
    for row in rows:
        click.echo(f"{name} v{row['version']:<3} {row['status']:<10} threshold={row['confidence_threshold']:.3f} "
                   f"accuracy={row['metrics'].get('accuracy', '?')} created={row['created_at']} "
                   f"encoder={_encoder_label(row['metrics'])}")


def _encoder_label(metrics: dict) -> str:
    """`name@version`; a version trained before versions were recorded says so (it still loads)."""
    version = metrics.get("encoder_version") or "unversioned"
    return f"{metrics.get('encoder', '?')}@{version}"


@model.command()
@click.argument("version", type=int)
@click.option("--name", default=INTENT_MODEL, show_default=True)
@click.option("--reason", required=True, help="Why, for the audit trail.")
def promote(version: int, name: str, reason: str) -> None:
    """Make VERSION production; the current production version is retired."""
    from ai_assets.ops_db import RegistryError

    try:
        with _registry() as registry:
            record = registry.promote(name, version, actor=Settings.from_env().actor, reason=reason)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{name} v{record.version} is production")


@model.command()
@click.option("--name", default=INTENT_MODEL, show_default=True)
@click.option("--reason", required=True, help="Why, for the audit trail.")
def rollback(name: str, reason: str) -> None:
    """Restore the previous production version; the next run uses it."""
    from ai_assets.ops_db import RegistryError

    try:
        with _registry() as registry:
            record = registry.rollback(name, actor=Settings.from_env().actor, reason=reason)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{name} v{record.version} is production again")


def _register_action_commands() -> None:
    from ai_assets.cli.actions import audit, outbox
    from ai_assets.cli.alerts import alerts
    from ai_assets.cli.report import report
    from ai_assets.cli.review import review

    main.add_command(audit)
    main.add_command(outbox)
    main.add_command(alerts)
    main.add_command(report)
    main.add_command(review)


_register_action_commands()
