"""Delivering the outbox: transports (SMTP, webhook, demo file sinks) and the deliverer.

No Dagster here: the Dagster asset calls `deliver_until_settled` with a short deadline.
E-mail rows are addressed with `customer_address(customer_id, domain)`, and the mail
transports refuse any row that is not exactly one address in their `recipient_domain`.

    store = OutboxStore(db.sessions)
    transports = {"email": SmtpMailer("smtp.bank.example", 587, username=..., password=..., starttls=True,
                                       recipient_domain="customers.bank.example"),
                  "webhook": WebhookPoster("https://crm.bank.example/hooks", secret=...)}
    report = deliver_until_settled(store, transports, deadline_s=30, audit=AuditContext("deliverer", run_id))
"""

from ai_assets.actions.delivery.deliver import (
                                        DeliveryReport,
                                        EventCallback,
                                        backoff_delay,
                                        deliver_due,
                                        deliver_until_settled,
)
from ai_assets.actions.delivery.transports import (
                                        CUSTOMER_ID_PATTERN,
                                        DEFAULT_RECIPIENT_DOMAIN,
                                        DEFAULT_SENDER,
                                        MAX_ADDRESS_CHARS,
                                        MAX_SUBJECT_CHARS,
                                        DeliveryFailed,
                                        FileEventSink,
                                        FileMailSink,
                                        SmtpMailer,
                                        Transport,
                                        WebhookPoster,
                                        build_email,
                                        customer_address,
                                        is_dns_name,
                                        message_id_for,
                                        redact,
                                        sign_body,
                                        webhook_body,
)
from ai_assets.ops_db.outbox import DeliveryRecord, OutboxRow, OutboxStore

__all__ = [
    "CUSTOMER_ID_PATTERN", "DEFAULT_RECIPIENT_DOMAIN", "DEFAULT_SENDER", "MAX_ADDRESS_CHARS", "MAX_SUBJECT_CHARS",
    "DeliveryFailed", "DeliveryRecord", "DeliveryReport", "EventCallback", "FileEventSink", "FileMailSink",
    "OutboxRow", "OutboxStore", "SmtpMailer", "Transport", "WebhookPoster", "backoff_delay", "build_email",
    "customer_address", "deliver_due", "deliver_until_settled", "is_dns_name", "message_id_for", "redact",
    "sign_body", "webhook_body",
]
