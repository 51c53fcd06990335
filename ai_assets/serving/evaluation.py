"""`ai-assets evaluate`: an operator's labelled file through the production routing.

Texts get the same preparation as live traffic, in the same order: normalisation, the
length contract on the normalised text (the ingestion policy's `max_text_chars`), then PII
masking; rows the live pipeline would quarantine are counted, not scored.

Besides the cascade's figures, the report gives the figures the model is judged by, each with
its exact 95% interval (`intervals`): accuracy on the in-scope rows, the share of in-scope rows
automated and how precise the automated rows are, the share of out-of-scope rows automated;
and whether this file kept the production version's precision guarantee (`guarantee`).
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
from ai_assets.serving.intent.automation import LOCAL_TIER
from ai_assets.serving.intent.guarantee import proportion_interval
from ai_assets.serving.intent.out_of_scope import OUT_OF_SCOPE, is_out_of_scope_label
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
        "intervals": judged_figures(labels, records),
        "guarantee": guarantee_check(labels, records, live),
        "rows_in_file": len(rows),
        "not_servable": dict(sorted(rejected.items())),
        "messages_per_second": round(len(texts) / seconds, 1) if seconds > 0 else None,
        "local_model": live.local_version,
        "confidence_threshold": live.automation.local_threshold,
        "policy_version": live.policy.version,
        "prompt_version": live.prompt_version,
    }


def judged_figures(labels: list[str], records: list[dict]) -> dict[str, dict]:
    """The figures the intent model is judged by, each as value with its exact 95% interval:
    `in_scope_accuracy` (in-scope rows answered with their intent), `in_scope_coverage`
    (in-scope rows automated), `automated_precision` (automated rows answered right, an
    automated out-of-scope row counting as wrong) and `out_of_scope_automated`."""
    truth = [OUT_OF_SCOPE if is_out_of_scope_label(label) else label for label in labels]
    in_scope = [t != OUT_OF_SCOPE for t in truth]
    right = [t == r["intent"] for t, r in zip(truth, records, strict=True)]
    auto = [bool(r["automated"]) for r in records]
    n_in = sum(in_scope)
    return {
        "in_scope_accuracy": proportion_interval(sum(r for r, i in zip(right, in_scope, strict=True) if i), n_in),
        "in_scope_coverage": proportion_interval(sum(a for a, i in zip(auto, in_scope, strict=True) if i), n_in),
        "automated_precision": proportion_interval(sum(r for r, a in zip(right, auto, strict=True) if a), sum(auto)),
        "out_of_scope_automated": proportion_interval(
            sum(a for a, i in zip(auto, in_scope, strict=True) if not i), len(truth) - n_in),
    }


def guarantee_check(labels: list[str], records: list[dict], live: LiveServing) -> dict:
    """Did this file keep the production version's promise (intent_model's `guarantee`:
    in-scope messages the local model automates are at least `level` precise)?

    Judged on the in-scope rows the local tier automated. `kept`: the observed precision
    reaches the level. `refuted`: even the upper end of its 95% interval is below it, i.e.
    the shortfall is not sampling noise. The promise is for traffic drawn like the
    validation split: a file unlike it (another channel, a drift) may break it, which is
    what this check is for."""
    metrics = live.model.record.metrics if live.model else {}
    promise = metrics.get("guarantee") if isinstance(metrics, dict) else None
    if not isinstance(promise, dict) or not promise.get("holds"):
        return {"promised_precision": None, "confidence": None, "kept": None, "refuted": None,
                "note": "the production version states no precision guarantee"}
    level = float(promise["level"])
    judged = [(OUT_OF_SCOPE if is_out_of_scope_label(label) else label) == r["intent"]
              for label, r in zip(labels, records, strict=True)
              if r["automated"] and r["tier"] == LOCAL_TIER and not is_out_of_scope_label(label)]
    observed = proportion_interval(sum(judged), len(judged))
    return {
        "promised_precision": level,
        "confidence": promise.get("confidence"),
        "method": promise.get("method"),
        "observed": observed,
        "kept": None if not judged else observed["value"] >= level,
        "refuted": None if not judged else observed["high"] < level,
    }
