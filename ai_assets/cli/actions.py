"""`ai-assets audit` and `ai-assets outbox`: one message's whole story, and the outbox by hand."""

from __future__ import annotations

import json

import click

from ai_assets.config import Settings


def _db():
    from ai_assets.ops_db import OpsDb, default_url

    return OpsDb.open(default_url())


@click.command()
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for machines.")
def audit(message_id: str, as_json: bool) -> None:
    """One message's whole story: model call, decision, action, case, review, deliveries."""
    with _db() as db:
        story = db.audit.story(message_id)
    if story.empty:
        raise click.ClickException(f"no audit record of message {message_id!r}")
    if as_json:
        click.echo(json.dumps(story.__dict__, indent=1, sort_keys=True, default=str))
        return
    click.echo(f"message {message_id}")
    for entry in story.audit:
        versions = ", ".join(f"{k}={entry[k]}" for k in ("policy_version", "model_version") if entry[k])
        click.echo(f"  {entry['at']}  {entry['event']:<17} run={entry['run_id']} partition={entry['partition']}"
                   f"{'  ' + versions if versions else ''}")
        details = {k: v for k, v in entry["detail"].items() if v is not None}
        if details:
            click.echo(f"      {json.dumps(details, sort_keys=True, default=str)}")
    for case in story.cases:
        click.echo(f"  case {case['id']}: {case['queue']} {case['priority']} {case['status']} v{case['version']} "
                   f"assignee={case['assignee'] or '-'}")
        for h in case["history"]:
            click.echo(f"      v{h['version']} by {h['actor']}: {json.dumps(h['change'], sort_keys=True)}")
    for row in story.outbox:
        click.echo(f"  outbox {row['kind']}: {row['status']} after {row['attempts']} attempt(s), "
                   f"key {row['idempotency_key'][:16]}…")
        for d in row["deliveries"]:
            click.echo(f"      attempt {d['attempt']}: {d['outcome']}{' — ' + d['error'] if d['error'] else ''}")
    for review in story.reviews:
        click.echo(f"  review: {review['status']} — {review['reason']}")


@click.group()
def outbox() -> None:
    """The outbox of e-mail and case events (normally delivered by `outbox_deliveries`)."""


@outbox.command("status")
@click.option("--partition", default=None, help="One day (YYYY-MM-DD); all by default.")
def outbox_status(partition: str | None) -> None:
    """Rows per status, and the dead letters."""
    from ai_assets.actions.delivery import OutboxStore

    with _db() as db:
        store = OutboxStore(db.sessions)
        click.echo(json.dumps({"counts": store.counts(partition),
                               "dead": [{"id": r.id, "kind": r.kind, "message_id": r.message_id,
                                         "attempts": r.attempts, "error": r.last_error}
                                        for r in store.dead_letters(partition)]}, indent=1, sort_keys=True))


@outbox.command("deliver")
@click.option("--partition", default=None, help="One day (YYYY-MM-DD); all due rows by default.")
@click.option("--deadline", "deadline_s", default=30.0, show_default=True, help="Seconds to keep retrying.")
def outbox_deliver(partition: str | None, deadline_s: float) -> None:
    """Deliver what is due now, retrying until the deadline; prints the report."""
    from ai_assets.ops_db import AuditContext
    from ai_assets.resources import action_settings_from_env

    with _db() as db:
        report = action_settings_from_env(in_dagster=False).deliver(
            db, AuditContext(f"cli outbox deliver by {Settings.from_env().actor}"), partition=partition,
            deadline_s=deadline_s)
    click.echo(json.dumps({"attempted": report.attempted, "delivered": report.delivered,
                           "failed_will_retry": report.failed, "dead": report.dead}, sort_keys=True))
    if report.dead:
        raise click.ClickException(f"{report.dead} rows became dead letters: `ai-assets outbox status`")


@outbox.command("requeue")
@click.argument("outbox_ids", nargs=-1, type=int, required=True)
def outbox_requeue(outbox_ids: tuple[int, ...]) -> None:
    """Put dead letters back to pending (after fixing the receiver). Nothing is requeued if
    any id is unknown: a mistyped id usually means the list is not the one intended."""
    from ai_assets.actions.delivery import OutboxStore
    from ai_assets.ops_db import AuditContext, AuditEvent

    with _db() as db:
        store = OutboxStore(db.sessions)
        unknown = sorted({i for i in outbox_ids if store.get(i) is None})
        if unknown:
            raise click.ClickException(f"unknown outbox id(s): {', '.join(map(str, unknown))}; nothing requeued "
                                       "(`ai-assets outbox status` lists the dead letters)")
        for outbox_id in outbox_ids:
            requeued = store.requeue(outbox_id)
            if requeued:
                row = store.get(outbox_id)
                db.audit.record(AuditContext(f"cli outbox requeue by {Settings.from_env().actor}", None, row.partition),
                                AuditEvent.REQUEUE, message_id=row.message_id, outbox_id=outbox_id, kind=row.kind)
            click.echo(f"{outbox_id}: {'requeued' if requeued else 'not dead, unchanged'}")
