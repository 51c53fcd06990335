"""`ai-assets evaluate`: an operator's labelled file through the production routing.

Texts get the same preparation as live traffic, in the same order: normalisation, the
length contract on the normalised text (the ingestion policy's `max_text_chars`), then PII
masking; rows the live pipeline would quarantine are counted, not scored.
"""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from ai_assets.ingestion.normalise import normalise_text
from ai_assets.ingestion.pii import mask_pii
from ai_assets.schemas import MIN_TEXT_CHARS
from ai_assets.serving.cascade_report import CascadeRow, cascade_report
from ai_assets.serving.live import LiveServing
from ai_assets.simulator import load_replay_source


def load_labelled(path: Path) -> list[tuple[str, str]]:
    """(text, category) rows of a CSV/JSONL file; every row needs both."""
    rows = load_replay_source(path)
    missing = [n for n, row in enumerate(rows, start=1) if not row.category.strip()]
    if missing:
        raise ValueError(f"{path}: {len(missing)} record(s) have no category, first is record {missing[0]}")
    return [(row.text, row.category.strip()) for row in rows]


def evaluate_file(path: Path, live: LiveServing, *, max_text_chars: int) -> dict:
    """`max_text_chars`: the ingestion policy's, so a row is servable exactly when live traffic's is."""
    return evaluate_rows(load_labelled(path), live, max_text_chars=max_text_chars)


def evaluate_rows(rows: list[tuple[str, str]], live: LiveServing, *, max_text_chars: int) -> dict:
    """(text, category) rows through live serving, as `evaluate_file` reads them from a file."""
    texts, labels, rejected = [], [], Counter()
    for text, label in rows:
        normalised = normalise_text(text)
        # validate_partition checks the length before masking (masking can shorten a text).
        if not MIN_TEXT_CHARS <= len(normalised) <= max_text_chars:
            rejected["empty_text" if not normalised else "overlong_text"] += 1
            continue
        texts.append(mask_pii(normalised)[0])
        labels.append(label)
    started = time.perf_counter()
    records = live.serve(texts)
    seconds = time.perf_counter() - started
    report = cascade_report(labels, [
        CascadeRow(r["intent"], r["automated"], r["tier"], r["latency_ms"], Decimal(str(r["cost_usd"])))
        for r in records])
    return {
        **report,
        "rows_in_file": len(rows),
        "not_servable": dict(sorted(rejected.items())),
        "messages_per_second": round(len(texts) / seconds, 1) if seconds > 0 else None,
        "local_model": live.local_version,
        "confidence_threshold": live.automation.local_threshold,
        "policy_version": live.policy.version,
        "prompt_version": live.prompt_version,
    }
