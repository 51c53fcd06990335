"""How the pipeline acts: the routing policy, and where outbox e-mail and events go."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from ai_assets.actions.delivery import (
    DEFAULT_RECIPIENT_DOMAIN,
    DeliveryReport,
    FileEventSink,
    FileMailSink,
    OutboxStore,
    SmtpMailer,
    Transport,
    WebhookPoster,
    deliver_until_settled,
)
from ai_assets.actions.routing_policy import RoutingPolicy, load_policy
from ai_assets.ops_db import AuditContext, OpsDb


class ActionSettings(ConfigurableResource):
    """Without `smtp_host` and `webhook_url` (the demo), e-mail and events are written as files
    under `outbox_dir` — the same outbox, retries and idempotency, no server needed."""

    routing_policy_path: str | None = None  # None: the shipped ai_assets/actions/routing_policy.yaml
    # Stands in for the CRM's contact lookup; the mail transports refuse any other domain.
    recipient_domain: str = DEFAULT_RECIPIENT_DOMAIN  # "customers.bank.example"
    outbox_dir: str
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None  # an EnvVar in production: never in the run config
    smtp_starttls: bool = False
    sender: str = "support@bank.example"
    webhook_url: str | None = None
    webhook_secret: str | None = None  # an EnvVar: signs every event (X-Signature)
    # Retries with full-jitter exponential backoff from 30 s up to an hour: a row is dead only
    # after ~8 failures spread over (typically) an hour or more, not after a short outage.
    max_attempts: int = 8
    base_backoff_s: float = 30.0
    max_backoff_s: float = 3600.0
    # How long one delivery step keeps retrying before leaving the rest pending for
    # `outbox_retry_job` (every 10 minutes) or `ai-assets outbox deliver`.
    delivery_deadline_s: float = 20.0

    def policy(self) -> RoutingPolicy:
        return load_policy(self.routing_policy_path)

    def deliver(self, db: OpsDb, ctx: AuditContext, *, partition: str | None = None,
                deadline_s: float | None = None) -> DeliveryReport:
        """Deliver what is due (of one day, or all), each attempt in the audit log."""
        return deliver_until_settled(
            OutboxStore(db.sessions), self.transports(),
            deadline_s=self.delivery_deadline_s if deadline_s is None else deadline_s,
            max_attempts=self.max_attempts, base_backoff_s=self.base_backoff_s, max_backoff_s=self.max_backoff_s,
            partition=partition, audit=ctx)

    def transports(self) -> dict[str, Transport]:
        root = Path(self.outbox_dir)
        # The mail transports get the same domain the outbox rows are addressed in: they refuse
        # any row that is not exactly one address there (defence in depth behind customer_address).
        mail: Transport = (SmtpMailer(self.smtp_host, self.smtp_port, username=self.smtp_username,
                                      password=self.smtp_password, starttls=self.smtp_starttls, sender=self.sender,
                                      recipient_domain=self.recipient_domain)
                           if self.smtp_host else FileMailSink(root / "mail", sender=self.sender,
                                                               recipient_domain=self.recipient_domain))
        events: Transport = (WebhookPoster(self.webhook_url, secret=self.webhook_secret) if self.webhook_url
                             else FileEventSink(root / "events"))
        return {"email": mail, "webhook": events}
