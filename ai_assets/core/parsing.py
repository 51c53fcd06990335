"""Landing files to raw rows: every line becomes exactly one row, parsed or not.

A line that is not UTF-8, not JSON, or not a JSON object keeps its place with a reason,
so nothing is lost between the file and the quarantine.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field

EXCERPT_CHARS = 200


@dataclass
class RawRow:
    source_file: str
    line: int
    raw: str  # the line, decoded (invalid bytes replaced)
    parse_error: str | None


@dataclass
class ParsedFile:
    rows: list[RawRow]
    records: list[dict | None]  # the parsed object per row, None where parsing failed
    key_types: Counter[str] = field(default_factory=Counter)  # "field:jsontype" -> rows


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def parse_lines(source_file: str, data: bytes) -> ParsedFile:
    rows: list[RawRow] = []
    records: list[dict | None] = []
    key_types: Counter[str] = Counter()
    chunks = data.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()  # the final newline ends the last line; it starts no new one
    for number, chunk in enumerate(chunks, start=1):
        chunk = chunk.removesuffix(b"\r")
        error: str | None = None
        record: dict | None = None
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            text, error = chunk.decode("utf-8", errors="replace"), "invalid_utf8"
        if error is None:
            if not text.strip():
                error = "blank_line"
            else:
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    error = "invalid_json"
                else:
                    if isinstance(value, dict):
                        record = value
                        key_types.update(f"{k}:{_json_type(v)}" for k, v in value.items())
                    else:
                        error = "not_a_json_object"
        rows.append(RawRow(source_file, number, text, error))
        records.append(record)
    return ParsedFile(rows, records, key_types)


def schema_fingerprint(fields: set[str]) -> str:
    """A short stable hash of the set of top-level fields seen in a partition."""
    return hashlib.sha256(json.dumps(sorted(fields)).encode()).hexdigest()[:16]
