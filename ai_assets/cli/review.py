"""`ai-assets review`: serve the reviewers' web app (the default), manage reviewer accounts,
export the decisions as labelled rows.

    ai-assets review                                   # serve on http://127.0.0.1:8787
    ai-assets review serve --port 9000 --proxy-headers --forwarded-allow-ips 127.0.0.1
    ai-assets review add-user alice --role reviewer    # password from a hidden prompt
    echo "$PW" | ai-assets review add-user bob --role senior --password-stdin
    ai-assets review list-users | disable-user NAME | set-password NAME
    ai-assets review export --format jsonl --out corrections.jsonl

Behind a reverse proxy that terminates TLS: keep binding 127.0.0.1, pass `--proxy-headers` (the
client address and scheme then come from X-Forwarded-For / X-Forwarded-Proto, trusted only from
`--forwarded-allow-ips`), have the proxy pass the Host header on, and set
AI_ASSETS_REVIEW_SECURE_COOKIES=true (and AI_ASSETS_REVIEW_ALLOWED_ORIGINS if the public origin
differs from the Host the app sees).
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import click

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


def _db():
    from ai_assets.ops_db import OpsDb, default_url

    return OpsDb.open(default_url())


def _secret_key() -> str:
    from ai_assets.config import secret
    from ai_assets.review.web.security import MIN_SECRET_KEY_CHARS

    key = secret("AI_ASSETS_REVIEW_SECRET_KEY")
    if key is None:
        click.echo("warning: AI_ASSETS_REVIEW_SECRET_KEY is not set: using a random key, so every session ends "
                   "when the app restarts (set it to keep sessions across restarts and processes)", err=True)
        return secrets.token_urlsafe(32)
    if len(key) < MIN_SECRET_KEY_CHARS:
        raise click.ClickException(f"AI_ASSETS_REVIEW_SECRET_KEY must have at least {MIN_SECRET_KEY_CHARS} "
                                   "characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    return key


def _serve(host: str, port: int, proxy_headers: bool, forwarded_allow_ips: str | None) -> None:
    import uvicorn

    from ai_assets.config import Settings
    from ai_assets.review.web import create_app

    settings = Settings.from_env()
    key = _secret_key()
    db = _db()
    try:
        app = create_app(db, settings, secret_key=key)
        click.echo(f"review app on http://{host}:{port} (sessions last {settings.review_session_max_age_s} s; "
                   f"secure cookies {'on' if settings.review_secure_cookies else 'off'})", err=True)
        uvicorn.run(app, host=host, port=port, proxy_headers=proxy_headers,
                    forwarded_allow_ips=forwarded_allow_ips if proxy_headers else None,
                    server_header=False, log_level="info")
    finally:
        db.dispose()


def _serve_options(fn):
    fn = click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True,
                      help="With --proxy-headers: the proxy addresses whose X-Forwarded-* headers are trusted "
                           "(comma-separated, or '*').")(fn)
    fn = click.option("--proxy-headers/--no-proxy-headers", default=False, show_default=True,
                      help="Running behind a reverse proxy: take the client address and scheme from its "
                           "X-Forwarded-For / X-Forwarded-Proto headers.")(fn)
    fn = click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535))(fn)
    fn = click.option("--host", default=DEFAULT_HOST, show_default=True,
                      help="Address to bind; keep the loopback default behind a proxy.")(fn)
    return fn


@click.group("review", invoke_without_command=True)
@_serve_options
@click.pass_context
def review(ctx: click.Context, host: str, port: int, proxy_headers: bool, forwarded_allow_ips: str) -> None:
    """The reviewers' web app: serve it (the default), manage accounts, export decisions."""
    if ctx.invoked_subcommand is None:
        _serve(host, port, proxy_headers, forwarded_allow_ips)


@review.command("serve")
@_serve_options
def serve(host: str, port: int, proxy_headers: bool, forwarded_allow_ips: str) -> None:
    """Serve the review app (sign-in required for every page)."""
    _serve(host, port, proxy_headers, forwarded_allow_ips)


def queue_summary() -> str:
    """One line for `make demo`: what waits for people, and how to sign in to clear it."""
    from ai_assets.ops_db.tables import ReviewQueue
    from ai_assets.review.queue import QueueFilter, counts

    with _db() as db:
        open_items = counts(db.sessions, QueueFilter(visible=(ReviewQueue.STANDARD.value, ReviewQueue.SENIOR.value)))
    per_priority = ", ".join(f"{p} {n}" for p, n in sorted(open_items.priority.items()))
    return (f"Review queue: {open_items.total} open item(s) ({per_priority or 'none'}; "
            f"{open_items.overdue} overdue). Reviewers: `ai-assets review add-user NAME --role admin`, then "
            f"`ai-assets review` and sign in at http://{DEFAULT_HOST}:{DEFAULT_PORT}; `ai-assets review apply` "
            "applies the decisions (the sensor does under `make ui`).")


def _accounts(db):
    from ai_assets.review.accounts import ReviewerAccounts

    return ReviewerAccounts(db.sessions)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@review.command("add-user")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["reviewer", "senior", "admin"]),
              help="reviewer: the standard queue; senior: also the senior queue and overrides; admin: everything.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def add_user(name: str, role: str, password_stdin: bool) -> None:
    """A reviewer account (the password is hashed with scrypt; at least 12 characters)."""
    from ai_assets.review.accounts import AccountError

    password = _read_password(password_stdin)
    with _db() as db:
        try:
            account = _accounts(db).add(name, role, password)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"added {account.name} ({account.role})")


@review.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def set_password(name: str, password_stdin: bool) -> None:
    """A new password for NAME; the account's open sessions end."""
    from ai_assets.review.accounts import AccountError

    password = _read_password(password_stdin)
    with _db() as db:
        try:
            _accounts(db).set_password(name, password)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"password of {name} changed")


@review.command("list-users")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list for machines.")
def list_users(as_json: bool) -> None:
    """Reviewer accounts: name, role, whether disabled, when made and when the password changed."""
    with _db() as db:
        accounts = _accounts(db).list()
    rows = [{"name": a.name, "role": a.role, "disabled": a.disabled, "created_at": a.created_at.isoformat(),
             "password_changed_at": a.password_changed_at.isoformat()} for a in accounts]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no reviewer accounts: add one with `ai-assets review add-user NAME --role reviewer`")
    for r in rows:
        click.echo(f"{r['name']:<24} {r['role']:<9} {'disabled' if r['disabled'] else 'active':<9} "
                   f"created {r['created_at'][:16]}")


@review.command("disable-user")
@click.argument("name")
def disable_user(name: str) -> None:
    """NAME can no longer sign in; their open sessions are refused at the next request."""
    from ai_assets.review.accounts import AccountError

    with _db() as db:
        try:
            _accounts(db).disable(name)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"disabled {name}")


@review.command("export")
@click.option("--format", "fmt", required=True, type=click.Choice(["csv", "jsonl"]))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (input, model output, human output, provenance per row).")
def export(fmt: str, out: Path) -> None:
    """Reviewers' decisions as labelled rows, for evaluation or fine-tuning."""
    from ai_assets.review.training_rows import export_rows

    with _db() as db:
        try:
            written = export_rows(db, fmt, out)
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"{out}: {exc}") from None
    click.echo(f"{written} row(s) written to {out}")


@review.command("apply")
def apply() -> None:
    """Apply the recorded decisions now: one run of review_actions_job, as the
    review_decisions_sensor starts under `dagster dev` (use this without the daemon)."""
    from dagster import DagsterEventType

    from ai_assets.cli.main import _defs, _instance
    from ai_assets.cli.pipeline_runs import run_job
    from ai_assets.defs.common import REVIEW_ACTIONS_JOB

    instance = _instance()
    outcome = run_job(_defs(), instance, REVIEW_ACTIONS_JOB)
    if not outcome.success:
        raise click.ClickException(f"{REVIEW_ACTIONS_JOB} failed (run {outcome.run_id}; see it in the UI: make ui)")
    [record] = instance.get_records_for_run(outcome.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    click.echo(f"{REVIEW_ACTIONS_JOB} run {outcome.run_id}: {meta['pending_in']} decision(s) taken, "
               f"{meta['applied']} applied, {meta['conflicts']} conflict(s) (items reopened), {meta['failed']} failed")
