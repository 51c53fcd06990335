"""How the pipeline acts: the routing policy, and where outbox e-mail and events go."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from ai_assets.core.routing_policy import RoutingPolicy, load_policy
from ai_assets.delivery import FileEventSink, FileMailSink, SmtpMailer, Transport, WebhookPoster


class ActionSettings(ConfigurableResource):
    """Without `smtp_host` and `webhook_url` (the demo), e-mail and events are written as files
    under `outbox_dir` — the same outbox, retries and idempotency, no server needed."""

    routing_policy_path: str | None = None  # None: the shipped ai_assets/policy/routing.yaml
    recipient_domain: str = "customers.bank.example"  # stands in for the CRM's contact lookup
    outbox_dir: str
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None  # an EnvVar in production: never in the run config
    smtp_starttls: bool = False
    sender: str = "support@bank.example"
    webhook_url: str | None = None
    webhook_secret: str | None = None  # an EnvVar: signs every event (X-Signature)
    max_attempts: int = 5
    base_backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    # How long one outbox_deliveries step waits for failing receivers before leaving the rest
    # pending for the next run (or `ai-assets outbox deliver`).
    delivery_deadline_s: float = 20.0

    def policy(self) -> RoutingPolicy:
        return load_policy(self.routing_policy_path)

    def transports(self) -> dict[str, Transport]:
        root = Path(self.outbox_dir)
        mail: Transport = (SmtpMailer(self.smtp_host, self.smtp_port, username=self.smtp_username,
                                      password=self.smtp_password, starttls=self.smtp_starttls, sender=self.sender)
                           if self.smtp_host else FileMailSink(root / "mail", sender=self.sender))
        events: Transport = (WebhookPoster(self.webhook_url, secret=self.webhook_secret) if self.webhook_url
                             else FileEventSink(root / "events"))
        return {"email": mail, "webhook": events}
