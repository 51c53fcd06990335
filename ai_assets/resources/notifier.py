"""Where alerts go: the log always, a Slack-compatible webhook and/or e-mail when configured.

The webhook URL (Slack's carries its token) and the SMTP password are `EnvVar` references in
Dagster, resolved at run time, never part of the stored run configuration; outside Dagster (the
CLI, tests) the resource takes the values. The sensors use `dispatcher(db, context.log)`.
"""

from __future__ import annotations

from datetime import timedelta

from dagster import ConfigurableResource, EnvVar

from ai_assets.config import Settings, secret
from ai_assets.monitoring.alerts import DEFAULT_MARGIN
from ai_assets.monitoring.notify import (
    AlertDispatcher,
    AlertLogger,
    Channel,
    EmailChannel,
    Notifier,
    WebhookChannel,
)
from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.alerts import DEFAULT_LEASE_S, DEFAULT_RETRY_AFTER_S, AlertStore


class NotifierResource(ConfigurableResource):
    """Alert channels and the de-duplication settings. E-mail goes out when `email_to` and
    `smtp_host` are both set; the webhook when `webhook_url` is. With neither, alerts are log lines
    (and rows in the operations database, which `ai-assets alerts` lists)."""

    webhook_url: str | None = None  # an EnvVar in production: a secret
    email_to: str | None = None  # comma-separated addresses
    email_from: str = "ai-assets-alerts@localhost"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None  # an EnvVar in production
    smtp_starttls: bool = False
    timeout_s: float = 10.0  # per channel and notice: a sensor tick waits at most this per channel
    cooldown_h: float = 24.0  # an unchanged alert repeats after this long
    margin: float = DEFAULT_MARGIN  # how much worse a figure must get to repeat before the cooldown
    retry_after_s: float = DEFAULT_RETRY_AFTER_S  # a failed notice is retried after this long
    lease_s: float = DEFAULT_LEASE_S
    ui_url: str = "http://127.0.0.1:3000"

    def channels(self) -> list[Channel]:
        out: list[Channel] = []
        if self.webhook_url:
            out.append(WebhookChannel(self.webhook_url, timeout_s=self.timeout_s))
        if self.email_to and self.smtp_host:
            out.append(EmailChannel(self.smtp_host, self.smtp_port, self.email_to, self.email_from,
                                    username=self.smtp_username, password=self.smtp_password,
                                    starttls=self.smtp_starttls, timeout_s=self.timeout_s))
        return out

    def notifier(self, logger: AlertLogger | None = None) -> Notifier:
        return Notifier(self.channels(), ui_url=self.ui_url, logger=logger)

    def dispatcher(self, db: OpsDb, logger: AlertLogger | None = None) -> AlertDispatcher:
        """The sensors' entry: `raise_`, `resolve`, `retry_unsent` against `db`'s alerts table."""
        return AlertDispatcher(AlertStore(db.sessions, lease_s=self.lease_s), self.notifier(logger),
                               cooldown=timedelta(hours=self.cooldown_h), margin=self.margin,
                               retry_after_s=self.retry_after_s)


def notifier_from_env(in_dagster: bool = True) -> NotifierResource:
    """From `ai_assets.config`: AI_ASSETS_ALERT_WEBHOOK_URL (secret), AI_ASSETS_ALERT_EMAIL_TO/FROM,
    the AI_ASSETS_SMTP_* settings (password secret), AI_ASSETS_ALERT_COOLDOWN_H, AI_ASSETS_UI_URL."""
    settings = Settings.from_env()

    def _secret(name: str) -> EnvVar | str | None:
        value = secret(name)
        return EnvVar(name) if value and in_dagster else value

    return NotifierResource(
        webhook_url=_secret("AI_ASSETS_ALERT_WEBHOOK_URL"),
        email_to=settings.alert_email_to,
        email_from=settings.alert_email_from,
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port,
        smtp_username=settings.smtp_username,
        smtp_password=_secret("AI_ASSETS_SMTP_PASSWORD"),
        smtp_starttls=settings.smtp_starttls,
        cooldown_h=settings.alert_cooldown_h,
        ui_url=settings.ui_url,
    )


__all__ = ["NotifierResource", "notifier_from_env"]
