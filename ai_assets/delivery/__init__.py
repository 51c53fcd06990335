"""Delivering the outbox: transports (SMTP, webhook, demo file sinks) and the deliverer.

No Dagster here: the Dagster asset calls `deliver_until_settled` with a short deadline.

    store = OutboxStore(db.sessions)
    transports = {"email": SmtpMailer("smtp.bank.example", 587, username=..., password=..., starttls=True),
                  "webhook": WebhookPoster("https://crm.bank.example/hooks", secret=...)}
    report = deliver_until_settled(store, transports, deadline_s=30, audit=AuditContext("deliverer", run_id))
"""

from ai_assets.delivery.deliver import (DeliveryReport, EventCallback, backoff_delay, deliver_due,
                                        deliver_until_settled)
from ai_assets.delivery.transports import (DEFAULT_SENDER, DeliveryFailed, FileEventSink, FileMailSink, SmtpMailer,
                                           Transport, WebhookPoster, build_email, message_id_for, redact, sign_body,
                                           webhook_body)
from ai_assets.ops_db.outbox import DeliveryRecord, OutboxRow, OutboxStore

__all__ = [
    "DEFAULT_SENDER", "DeliveryFailed", "DeliveryRecord", "DeliveryReport", "EventCallback", "FileEventSink",
    "FileMailSink", "OutboxRow", "OutboxStore", "SmtpMailer", "Transport", "WebhookPoster", "backoff_delay",
    "build_email", "deliver_due", "deliver_until_settled", "message_id_for", "redact", "sign_body", "webhook_body",
]
