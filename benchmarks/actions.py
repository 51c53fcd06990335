"""Actions per second: 10,000 triaged messages acted on through `ActionLedger` (one
transaction each: ledger row, case opened or updated, e-mail and event in the outbox, audit
rows, or a review item), on a SQLite file and on PostgreSQL.

    python -m benchmarks.actions [--messages 10000] [--out FILE]

The baseline, in the same process and database, is the least a one-transaction-per-message
design can cost: one INSERT of the ledger row per transaction. The ratio full / baseline is
what atomicity with the case, outbox and audit adds. A second pass over the same decisions
(a re-run: every message found done by its idempotency key) is measured too.
Results: benchmarks/results/actions.json. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete, insert

from ai_assets.actions.ledger import ActionLedger, MessageDecision, outcome_counts
from ai_assets.actions.routing_policy import load_policy
from ai_assets.actions.triage import content_hash, idempotency_key, triage
from ai_assets.data.datasets import split_banking77
from ai_assets.ops_db import AuditContext, OpsDb, pipeline_actor
from ai_assets.ops_db.tables import Action
from ai_assets_tests.chaos import scratch_database

RESULTS = Path(__file__).resolve().parent / "results" / "actions.json"


def decisions(n: int) -> list[MessageDecision]:
    """The replay split's real intents, 85% automated, 3 messages per customer on average."""
    policy = load_policy()
    rows = split_banking77()["replay"]
    out = []
    for i in range(n):
        row = rows[i % len(rows)]
        automated = i % 20 >= 3
        t = triage(row.category, automated, None if automated else "below_threshold", policy)
        message_id = f"bench-{i:06d}"
        customer = f"cust-{i % (n // 3 or 1):05d}"
        content = content_hash(customer, "app", row.text)
        out.append(MessageDecision(
            message_id=message_id, customer_id=customer, intent=row.category,
            confidence=0.95, decision=t.decision, action=t.action, reason=t.reason, queue=t.queue,
            priority=t.priority, policy_version=policy.version,
            idempotency_key=idempotency_key(message_id, t.action, policy.version, content), text=row.text,
            content_hash=content,
            model_version="intent_model v1", model_call={"tier": "local", "cost_usd": 0.0}))
    return out


def baseline(db: OpsDb, batch: list[MessageDecision]) -> float:
    started = time.perf_counter()
    for d in batch:
        with db.sessions.write() as s:
            s.execute(insert(Action).values(idempotency_key="b" + d.idempotency_key[1:], message_id=d.message_id,
                                            action=d.action, decision=d.decision, outcome="review",
                                            policy_version="baseline"))
    seconds = time.perf_counter() - started
    with db.sessions.write() as s:
        s.execute(delete(Action).where(Action.policy_version == "baseline"))
    return seconds


def measure(url: str, batch: list[MessageDecision]) -> dict:
    with OpsDb.open(url) as db:
        base_s = baseline(db, batch)
        ledger = ActionLedger(db.sessions, load_policy(), AuditContext(pipeline_actor("bench"), "bench", "2025-03-03"))
        started = time.perf_counter()
        first = outcome_counts(ledger.execute_all(batch))
        full_s = time.perf_counter() - started
        started = time.perf_counter()
        again = outcome_counts(ledger.execute_all(batch))
        rerun_s = time.perf_counter() - started
    n = len(batch)
    return {
        "messages": n, "outcomes": first, "rerun_outcomes": again,
        "actions_per_second": round(n / full_s, 1), "seconds": round(full_s, 2),
        "baseline_inserts_per_second": round(n / base_s, 1),
        "full_over_baseline_time_ratio": round(full_s / base_s, 2),
        "rerun_messages_per_second": round(n / rerun_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    batch = decisions(args.messages)
    results = {"benchmark": "actions", "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    for dialect in ("sqlite", "postgresql"):
        with tempfile.TemporaryDirectory() as tmp, scratch_database(dialect, Path(tmp)) as url:
            results[dialect] = measure(url, batch)
            print(f"{dialect}: {json.dumps(results[dialect])}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
