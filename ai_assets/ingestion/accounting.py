"""Counts that must balance, and the judgements layer-1 checks make on them."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ai_assets.ingestion.parsing import decode_record, record_identity, safe_field_name, schema_fingerprint
from ai_assets.schemas import CONTRACT_FIELDS

Location = tuple[str, int]  # (source_file, line)


@dataclass
class Balance:
    rows_in: int
    validated: int
    quarantined: int
    duplicates: int
    unaccounted: list[Location] = field(default_factory=list)
    counted_twice: list[Location] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return (not self.unaccounted and not self.counted_twice
                and self.rows_in == self.validated + self.quarantined + self.duplicates)


def duplicate_locations(rows: Iterable[tuple[str, int, str, object]]) -> set[Location]:
    """Lines whose parsed record repeats an earlier line exactly (rows: file, line, raw, error)."""
    seen: set[str] = set()
    dups: set[Location] = set()
    for source_file, line, raw, error in rows:
        if isinstance(error, str):
            continue
        record, _ = decode_record(raw)
        if record is None:  # a row marked parsed that no longer decodes is not a duplicate of anything
            continue
        identity = record_identity(record)
        if identity in seen:
            dups.add((source_file, line))
        seen.add(identity)
    return dups


def balance(raw: list[Location], duplicates: set[Location], validated: list[Location],
            quarantined: list[Location]) -> Balance:
    """Every raw line must end up in exactly one place: validated, quarantined or duplicate."""
    placed: dict[Location, int] = defaultdict(int)
    for loc in [*validated, *quarantined, *duplicates]:
        placed[loc] += 1
    return Balance(
        rows_in=len(raw), validated=len(validated), quarantined=len(quarantined),
        duplicates=len(duplicates),
        unaccounted=sorted(loc for loc in raw if placed.get(loc, 0) == 0),
        counted_twice=sorted(loc for loc, n in placed.items() if n > 1),
    )


@dataclass
class SchemaReport:
    fingerprint: str
    observed: list[str]
    added: list[str]  # fields outside the contract (new or renamed)
    missing_by_file: dict[str, list[str]]  # contract fields absent from every record of a file

    @property
    def matches_contract(self) -> bool:
        return not self.added and not self.missing_by_file


def schema_report(records_by_file: dict[str, list[dict]]) -> SchemaReport:
    observed: set[str] = set()
    missing_by_file: dict[str, list[str]] = {}
    for name, records in sorted(records_by_file.items()):
        seen_here: set[str] = set()
        for record in records:
            seen_here.update(safe_field_name(name) for name in record)
        observed |= seen_here
        missing = sorted(CONTRACT_FIELDS - seen_here)
        if records and missing:
            missing_by_file[name] = missing
    return SchemaReport(schema_fingerprint(observed), sorted(observed),
                        sorted(observed - CONTRACT_FIELDS), missing_by_file)


@dataclass
class VolumeVerdict:
    passed: bool
    rows: int
    baseline: float | None
    ratio: float | None
    reason: str


def volume_verdict(rows: int, trailing: list[int], low: float, high: float) -> VolumeVerdict:
    """Today's rows against the median of the trailing days that had any data."""
    history = [n for n in trailing if n > 0]
    if not history:
        return VolumeVerdict(True, rows, None, None, "no trailing days with data: nothing to compare")
    baseline = statistics.median(history)
    ratio = rows / baseline
    passed = low <= ratio <= high
    where = "within" if passed else "outside"
    return VolumeVerdict(passed, rows, baseline, round(ratio, 3),
                         f"{rows} rows is {ratio:.2f}x the trailing median {baseline:g}, {where} [{low}, {high}]")
