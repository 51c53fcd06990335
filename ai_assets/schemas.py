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

# Columns of enriched_messages, in order: one row per validated message.
ENRICHED_COLUMNS: dict[str, str] = {
    "message_id": "string",
    "customer_id": "string",
    "channel": "string",
    "received_at": "timestamp[UTC]",
    "text": "string (as validated: PII-masked)",
    "intent": "string (one of the 77 intents, out_of_scope, or needs_human)",
    "confidence": "float (calibrated for the local model; the LLM's own for LLM tiers)",
    "automated": "bool (may be acted on without a person)",
    "review_reason": "string or null (why a person must look: below_threshold, out_of_scope, ...)",
    "queue": "string (routing policy)",
    "priority": "string (P1 | P2 | P3)",
    "summary": "string (the LLM's, or a template from the intent for lower tiers)",
    "tier": "string (local | <claude model> | keyword_rules | human)",
    "answered_by": "string (model version or name that gave the answer)",
    "fallback_reason": "string or null (why earlier tiers did not answer)",
    "latency_ms": "float (measured; varies run to run)",
    "input_tokens": "int",
    "output_tokens": "int",
    "cost_usd": "float",
    "cache_hit": "bool (LLM answer served from the cache, no call paid)",
    "batch": "bool (answered through the Message Batches API)",
    "local_model_version": "string (registry version used, or none)",
    "prompt_version": "string",
    "policy_version": "string (routing policy)",
    "suggestions": "string (JSON [[intent, score], ...]: the local model's 5 best labels, calibrated, best first)",
}

# Columns of triage_decisions, in order: one row per enriched message.
TRIAGE_COLUMNS: dict[str, str] = {
    "message_id": "string",
    "customer_id": "string",
    "intent": "string",
    "confidence": "float",
    "decision": "string (act | act_and_notify | review)",
    "action": "string (auto_reply | open_case | fraud_escalation | review)",
    "reason": "string or null (why not fully automatic)",
    "queue": "string",
    "priority": "string (P1 | P2 | P3)",
    "policy_version": "string (routing policy the decision was made under)",
    "idempotency_key": "string (sha256 of message id, action, policy version, content hash)",
    "content_hash": "string (sha256 of customer id, channel, text: tells a re-delivery from a reused id)",
    "text": "string (PII-masked, for reviewers)",
    "tier": "string (which tier answered)",
    "answered_by": "string (model version or name)",
    "input_tokens": "int",
    "output_tokens": "int",
    "cost_usd": "float",
    "latency_ms": "float",
    "cache_hit": "bool",
    "suggestions": "string (JSON [[intent, score], ...], as enriched: offered to reviewers)",
}

# Columns of case_actions, in order: one row per triaged message.
ACTION_COLUMNS: dict[str, str] = {
    "message_id": "string",
    "decision": "string",
    "outcome": "string (acted | review | conflict | id_conflict: the ledger's record, whichever run wrote it)",
    "case_id": "int or null",
    "idempotency_key": "string",
}
