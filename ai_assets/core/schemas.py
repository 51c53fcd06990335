"""The landing-file contract: what an upstream system promises to send us."""

from __future__ import annotations

# Fields every message must carry; all are JSON strings (the GX suite checks the types).
CONTRACT_FIELDS = frozenset({"message_id", "customer_id", "channel", "received_at", "text"})
CHANNELS = ("app", "email", "chat")

# Text length bounds after normalisation, in characters. BANKING77's longest query is
# 433 characters; 2,000 leaves room for e-mails while stopping pasted documents.
MIN_TEXT_CHARS = 1
MAX_TEXT_CHARS = 2000

# Columns of validated_messages, in order; the parquet file and dagster/column_schema use it.
VALIDATED_COLUMNS: dict[str, str] = {
    "message_id": "string",
    "customer_id": "string",
    "channel": "string",
    "received_at": "timestamp[UTC]",
    "text": "string (NFKC-normalised, whitespace-collapsed, PII-masked)",
    "pii_masked": "int (number of PII spans masked)",
    "source_file": "string",
    "line": "int",
}

QUARANTINE_COLUMNS: dict[str, str] = {
    "source_file": "string",
    "line": "int (1-based line in the landing file)",
    "stage": "string (parse | validate)",
    "reason": "string (machine-readable reason or failed expectation)",
    "message_id": "string or null",
    "excerpt": "string (first 200 characters, PII-masked)",
}
