"""Replays labelled texts as an upstream system's daily landing files, with faults on demand.

Everything is drawn from a random generator seeded by (seed, day), so the same arguments
give byte-identical files. Labels never enter the landing files: they go to a resolved-cases
feed dated a day later, the way an agent's final category arrives in production. A ledger
records exactly which line of which file carries which injected fault.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from ai_assets.data.datasets import LabelledText, split_banking77
from ai_assets.files import write_atomically
from ai_assets.schemas import CHANNELS, MAX_TEXT_CHARS

# Monday..Sunday volume relative to a Monday: support inboxes are quieter at weekends.
WEEKDAY_FACTOR = (1.0, 0.95, 0.92, 0.9, 0.85, 0.55, 0.5)
CHANNEL_WEIGHTS = {"app": 0.55, "chat": 0.3, "email": 0.15}
# Hour-of-day weights (UTC): little at night, a morning and an early-evening peak.
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 3, 5, 8, 9, 9, 8, 7, 7, 7, 7, 7, 8, 8, 7, 5, 4, 3, 2)

# Row-level faults: each chosen row carries exactly one; rows never share a fault.
ROW_FAULTS = (
    "unparseable",  # truncated JSON
    "missing_field",  # a required field absent
    "wrong_type",  # a required field with the wrong JSON type
    "duplicate_id",  # the same record delivered twice (at-least-once upstream)
    "empty_text",  # empty or whitespace-only text
    "overlong_text",  # text longer than the contract allows
    "invalid_utf8",  # bytes that are not UTF-8
    "out_of_window",  # received_at outside the file's day
    "renamed_field",  # schema change: `text` renamed to `body`
    "added_field",  # schema change: a new field `locale`
)
FILE_FAULTS = ("empty_file",)  # an extra landing file with no bytes
FAULT_KINDS = ROW_FAULTS + FILE_FAULTS
# What each fault should become downstream: quarantined at parse, at validation, dropped as a
# duplicate, or accepted (an added field is tolerated but flagged by the schema check).
FAULT_OUTCOME = {
    "unparseable": "quarantine",
    "missing_field": "quarantine",
    "wrong_type": "quarantine",
    "duplicate_id": "duplicate",
    "empty_text": "quarantine",
    "overlong_text": "quarantine",
    "invalid_utf8": "quarantine",
    "out_of_window": "quarantine",
    "renamed_field": "quarantine",
    "added_field": "accepted",
    "empty_file": "none",
}
SCHEMA_CHANGING_FAULTS = frozenset({"renamed_field", "added_field"})

PII_SAMPLES = (
    "My card number is 4111 1111 1111 1111.",
    "Please reply to jane.doe@example.com",
    "Call me on +44 20 7946 0958",
    "My IBAN is GB82 WEST 1234 5698 7654 32",
)


class FaultSpecError(ValueError):
    pass


def parse_fault_spec(spec: str | None) -> dict[str, float]:
    """`kind=rate,...` or `all=rate`; rates are shares of the day's rows (0..1)."""
    if not spec:
        return {}
    rates: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise FaultSpecError(f"fault '{part}' needs a rate: kind=0.01")
        try:
            rate = float(value)
        except ValueError:
            raise FaultSpecError(f"fault rate '{value}' for '{name}' is not a number") from None
        if not 0 <= rate <= 0.5:
            raise FaultSpecError(f"fault rate for '{name}' must be between 0 and 0.5, got {rate}")
        kinds = FAULT_KINDS if name == "all" else (name,)
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise FaultSpecError(f"unknown fault '{kind}'; known: all, {', '.join(FAULT_KINDS)}")
            rates[kind] = rate
    if sum(rates.get(k, 0.0) for k in ROW_FAULTS) > 0.9:
        raise FaultSpecError("row fault rates add up to more than 0.9")
    return rates


@dataclass
class DayLedger:
    """What the simulator wrote for one day, so tests and operators can reconcile counts."""

    day: str
    files: dict[str, int] = field(default_factory=dict)  # file name -> lines written
    messages: int = 0  # distinct messages before duplication
    faults: dict[str, int] = field(default_factory=dict)
    fault_rows: list[dict] = field(default_factory=list)  # {file, line, kind}
    pii_injected: int = 0

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, indent=1)


def load_replay_source(path: Path | None) -> list[LabelledText]:
    """The built-in replay pool, or any CSV/JSONL file with a `text` (and optional `category`)."""
    if path is None:
        return split_banking77()["replay"]
    rows: list[LabelledText] = []
    with path.open(encoding="utf-8", newline="") as fh:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            records = (json.loads(line) for line in fh if line.strip())
        else:
            records = csv.DictReader(fh)
        for n, rec in enumerate(records, start=1):
            text = rec.get("text") if isinstance(rec, dict) else None
            if not isinstance(text, str):
                raise ValueError(f"{path}: record {n} has no text column")
            rows.append(LabelledText(text, str(rec.get("category") or "")))
    if not rows:
        raise ValueError(f"{path}: no rows to replay")
    return rows


def _rng(seed: int, day: date) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{day.isoformat()}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def day_volume(per_day: int, day: date) -> int:
    return max(1, round(per_day * WEEKDAY_FACTOR[day.weekday()]))


def _fault_count(rate: float, n: int) -> int:
    return max(1, round(rate * n)) if rate > 0 else 0


def _timestamp(rng: random.Random, day: date) -> datetime:
    hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
    start = datetime.combine(day, time(hour), tzinfo=UTC)
    return start + timedelta(seconds=rng.randrange(3600))


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _dump(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _faulty_line(kind: str, record: dict, rng: random.Random, day: date) -> bytes:
    rec = dict(record)
    if kind == "unparseable":
        good = _dump(rec)
        return good[: max(1, len(good) // 2)]
    if kind == "missing_field":
        rec.pop(rng.choice(["message_id", "customer_id", "channel", "received_at"]))
    elif kind == "wrong_type":
        field_name = rng.choice(["customer_id", "text", "received_at", "message_id"])
        rec[field_name] = {"customer_id": 40213, "text": ["not", "a", "string"],
                           "received_at": 1764000000, "message_id": 12345}[field_name]
    elif kind == "empty_text":
        rec["text"] = rng.choice(["", "   ", "\t\n "])
    elif kind == "overlong_text":
        rec["text"] = (rec["text"] + " ") * (MAX_TEXT_CHARS // max(1, len(rec["text"])) + 2)
    elif kind == "invalid_utf8":
        return _dump(rec).replace(b'"text":"', b'"text":"\xff\xfe', 1)
    elif kind == "out_of_window":
        shift = rng.choice([-1, 1])
        rec["received_at"] = _iso(_timestamp(rng, day + timedelta(days=shift)))
    elif kind == "renamed_field":
        rec["body"] = rec.pop("text")
    elif kind == "added_field":
        rec["locale"] = rng.choice(["en-GB", "en-IE", "de-DE"])
    return _dump(rec)


def simulate_day(
    day: date,
    pool: list[LabelledText],
    per_day: int,
    faults: dict[str, float],
    seed: int = 7,
    pii_rate: float = 0.02,
) -> tuple[dict[str, bytes], list[dict], DayLedger]:
    """One day's landing files (name -> bytes), its resolved cases, and the ledger."""
    rng = _rng(seed, day)
    n = day_volume(per_day, day)
    ledger = DayLedger(day=day.isoformat(), messages=n)
    messages = []
    for _ in range(n):
        item = pool[rng.randrange(len(pool))]
        ts = _timestamp(rng, day)
        messages.append({
            "message_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "customer_id": f"c-{rng.randrange(1, 50_000):06d}",
            "channel": rng.choices(list(CHANNEL_WEIGHTS), weights=list(CHANNEL_WEIGHTS.values()))[0],
            "received_at": _iso(ts),
            "text": item.text,
            "_category": item.category,
        })
    # Disjoint rows for each fault kind, then for PII, so every count is exact.
    free = list(range(n))
    rng.shuffle(free)
    row_fault: dict[int, str] = {}
    for kind in ROW_FAULTS:
        for _ in range(min(_fault_count(faults.get(kind, 0.0), n), len(free))):
            row_fault[free.pop()] = kind
    for _ in range(min(round(pii_rate * n), len(free))):
        idx = free.pop()
        messages[idx]["text"] = f"{messages[idx]['text']} {rng.choice(PII_SAMPLES)}"
        ledger.pii_injected += 1

    lines: dict[str, list[bytes]] = {channel: [] for channel in CHANNELS}
    for i, msg in enumerate(messages):
        record = {k: v for k, v in msg.items() if not k.startswith("_")}
        kind = row_fault.get(i)
        name = f"{msg['channel']}.jsonl"
        line = _faulty_line(kind, record, rng, day) if kind else _dump(record)
        lines[msg["channel"]].append(line)
        if kind:
            ledger.fault_rows.append({"file": name, "line": len(lines[msg["channel"]]), "kind": kind})
            if kind == "duplicate_id":  # re-delivered later in the same file
                lines[msg["channel"]].append(line)
    files = {f"{ch}.jsonl": b"".join(line + b"\n" for line in rows) for ch, rows in lines.items() if rows}
    if faults.get("empty_file", 0.0) > 0:
        files["app-retry.jsonl"] = b""
        ledger.fault_rows.append({"file": "app-retry.jsonl", "line": 0, "kind": "empty_file"})
    ledger.files = {name: data.count(b"\n") for name, data in sorted(files.items())}
    ledger.faults = dict(sorted(Counter(r["kind"] for r in ledger.fault_rows).items()))
    resolved_day = day + timedelta(days=1)
    resolved = [
        {"message_id": m["message_id"], "category": m["_category"],
         "resolved_at": _iso(datetime.combine(resolved_day, time(9), tzinfo=UTC))}
        for m in messages if m["_category"]
    ]
    return files, resolved, ledger


def write_day(
    landing_root: Path,
    day: date,
    files: dict[str, bytes],
    resolved: list[dict],
    ledger: DayLedger,
) -> list[Path]:
    """Write files atomically (temp name, then rename) so a sensor never sees half a file."""
    written = []
    # The simulator owns the days it writes: files of an earlier simulation of the same day
    # that this one does not produce are removed, so the same arguments give the same folder.
    day_dir = landing_root / "messages" / day.isoformat()
    if day_dir.is_dir():
        for stale in day_dir.glob("*.jsonl"):
            if stale.name not in files:
                stale.unlink()
    targets: list[tuple[Path, bytes]] = [
        (landing_root / "messages" / day.isoformat() / name, data) for name, data in files.items()
    ]
    resolved_bytes = b"".join(_dump(r) + b"\n" for r in resolved)
    targets.append((landing_root / "resolved_cases" / (day + timedelta(days=1)).isoformat()
                    / f"resolved-{day.isoformat()}.jsonl", resolved_bytes))
    targets.append((landing_root / "simulator_ledger" / f"{day.isoformat()}.json",
                    ledger.to_json().encode() + b"\n"))
    for path, data in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_atomically(path, data, durable=False))
    return written
