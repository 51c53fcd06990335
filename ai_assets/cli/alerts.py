"""`ai-assets alerts`: the alerts recorded in the operations database, newest first."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click


def _db():
    from ai_assets.ops_db import OpsDb, default_url

    return OpsDb.open(default_url())


def _since(value: datetime | None) -> datetime | None:
    # click.DateTime gives naive values: they are read as UTC, like every time in this project.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list for machines.")
@click.option("--open", "open_only", is_flag=True, help="Only alerts whose condition still holds.")
@click.option("--unsent", "unsent_only", is_flag=True, help="Only alerts with a notice a channel has not taken yet.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]), default=None,
              help="Only alerts raised or cleared since then (UTC).")
@click.option("--source", default=None, help="Only one source: asset_check (budget, dead letters, drift, accuracy "
              "and freshness are checks) or run_failure.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
def alerts(as_json: bool, open_only: bool, unsent_only: bool, since: datetime | None, source: str | None,
           limit: int) -> None:
    """Alerts, newest first: what fired, how often, whether people were told, whether it cleared."""
    from ai_assets.ops_db.alerts import AlertStore

    with _db() as db:
        rows = AlertStore(db.sessions).list(open_only=open_only, since=_since(since), source=source,
                                            unsent_only=unsent_only, limit=limit)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=1, sort_keys=True))
        return
    if not rows:
        click.echo("no alerts")
        return
    for r in rows:
        figure = "" if r.figure is None else f" figure={r.figure:.4g}" + (
            "" if r.threshold is None else f" threshold={r.threshold:.4g}")
        told = f"last sent {r.last_sent_at:%Y-%m-%d %H:%M}" if r.last_sent_at else "not sent yet"
        owed = f", {r.pending_kind} notice owed to {', '.join(r.pending_channels) or '-'}" if r.pending_kind else ""
        click.echo(f"{r.updated_at:%Y-%m-%d %H:%M}  {r.status:<8} {r.severity:<8} {r.source}/{r.condition} "
                   f"[{r.window}]{figure} x{r.raised_count} ({told}{owed})")
        # The summary may quote untrusted text: printed as a repr, one line, no terminal escapes.
        click.echo(f"    {r.summary!r}")
        if r.last_error:
            click.echo(f"    last error: {r.last_error}")
