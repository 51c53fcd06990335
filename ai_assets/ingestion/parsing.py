"""Landing files to raw rows: every line becomes exactly one row, parsed or not.

`parse_lines` and `decode_record` are total functions over bytes: whatever a line holds, it
comes back as a row with a record or with a reason, never as an exception. The bounds that
make that so are checked before the expensive step they protect — the line's size before
decoding, its nesting depth before the JSON decoder recurses, an integer's digits before
Python converts it — so a hostile line costs no more than a long valid one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field

EXCERPT_CHARS = 200
# A valid message is well under 10 KB (text is at most 2,000 characters, JSON-escaped up to
# six bytes each); anything over 64 KiB is refused before it is decoded. Only the start of a
# refused line is kept in `raw` (enough for the excerpt), so one 5 MB line costs 4 KB.
MAX_LINE_BYTES = 64 * 1024
KEPT_BYTES_OF_LONG_LINE = EXCERPT_CHARS * 20
# The contract is a flat object; a little nesting in extra fields is tolerated, deeper is refused
# (Python's decoder would recurse ~1,000 levels and every later walk of the value with it).
MAX_NESTING = 16
# Longer integer literals are refused before int() sees them (Python refuses > 4,300 digits
# with a ValueError, and conversion time is quadratic below that).
MAX_NUMBER_CHARS = 100

# Parse reasons, in the order they are checked.
LINE_TOO_LONG = "line_too_long"
INVALID_UTF8 = "invalid_utf8"
BLANK_LINE = "blank_line"
NESTING_TOO_DEEP = "nesting_too_deep"
NUMBER_TOO_LONG = "number_too_long"
DUPLICATE_KEY = "duplicate_json_key"
INVALID_JSON = "invalid_json"
NOT_A_JSON_OBJECT = "not_a_json_object"
LONE_SURROGATE = "lone_surrogate"
PARSE_REASONS = (LINE_TOO_LONG, INVALID_UTF8, BLANK_LINE, NESTING_TOO_DEEP, NUMBER_TOO_LONG, DUPLICATE_KEY,
                 INVALID_JSON, NOT_A_JSON_OBJECT, LONE_SURROGATE)

# Field names recorded in metadata (the Dagster event log) only when they look like a field
# name: a key can carry anything, an e-mail address or a card number included.
_SAFE_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
UNSAFE_FIELD = "<unsafe_field_name>"


@dataclass
class RawRow:
    source_file: str
    line: int
    raw: str  # the line, decoded (invalid bytes replaced; only the start of an over-long line)
    parse_error: str | None


@dataclass
class ParsedFile:
    rows: list[RawRow]
    records: list[dict | None]  # the parsed object per row, None where parsing failed
    key_types: Counter[str] = field(default_factory=Counter)  # "field:jsontype" -> rows


class _Refused(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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


def safe_field_name(name: str) -> str:
    """The name itself when it is an identifier-like field name, else a fixed placeholder."""
    return name if _SAFE_FIELD.fullmatch(name) else UNSAFE_FIELD


def _nesting_depth(text: str) -> int:
    """The deepest bracket nesting outside strings, without recursion (linear in the text)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _Refused(NUMBER_TOO_LONG)
    return int(literal)


def _parse_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _Refused(NUMBER_TOO_LONG)
    return float(literal)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    record = dict(pairs)
    if len(record) != len(pairs):  # last-wins would silently pick one of two values
        raise _Refused(DUPLICATE_KEY)
    return record


def _has_lone_surrogate(value: object) -> bool:
    """Any string (key or value) holding a lone surrogate (a `\\ud800` escape): it cannot be
    encoded as UTF-8, so Parquet, the database and every log line would fail on it."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def decode_record(text: str) -> tuple[dict | None, str | None]:
    """One decoded line to (record, None) or (None, reason). Never raises."""
    if not text.strip():
        return None, BLANK_LINE
    # Cheap upper bound first: a line with few brackets cannot be deeply nested.
    if text.count("[") + text.count("{") > MAX_NESTING and _nesting_depth(text) > MAX_NESTING:
        return None, NESTING_TOO_DEEP
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                           object_pairs_hook=_unique_keys)
    except _Refused as refused:
        return None, refused.reason
    except RecursionError:  # unreachable after the depth bound; kept so the function stays total
        return None, NESTING_TOO_DEEP
    except ValueError:  # JSONDecodeError and anything else the decoder refuses
        return None, INVALID_JSON
    if not isinstance(value, dict):
        return None, NOT_A_JSON_OBJECT
    if _has_lone_surrogate(value):
        return None, LONE_SURROGATE
    return value, None


def parse_line(chunk: bytes) -> tuple[str, dict | None, str | None]:
    """One line's bytes (without its newline) to (raw text kept, record, reason)."""
    if len(chunk) > MAX_LINE_BYTES:
        return chunk[:KEPT_BYTES_OF_LONG_LINE].decode("utf-8", errors="replace"), None, LINE_TOO_LONG
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        return chunk.decode("utf-8", errors="replace"), None, INVALID_UTF8
    record, error = decode_record(text)
    return text, record, error


def parse_lines(source_file: str, data: bytes) -> ParsedFile:
    rows: list[RawRow] = []
    records: list[dict | None] = []
    key_types: Counter[str] = Counter()
    chunks = data.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()  # the final newline ends the last line; it starts no new one
    for number, chunk in enumerate(chunks, start=1):
        text, record, error = parse_line(chunk.removesuffix(b"\r"))
        if record is not None:
            key_types.update(f"{safe_field_name(k)}:{_json_type(v)}" for k, v in record.items())
        rows.append(RawRow(source_file, number, text, error))
        records.append(record)
    return ParsedFile(rows, records, key_types)


def record_identity(record: dict) -> str:
    """The canonical form two deliveries of the same record share (key order ignored)."""
    return json.dumps(record, sort_keys=True)


def schema_fingerprint(fields: set[str]) -> str:
    """A short stable hash of the set of top-level fields seen in a partition."""
    return hashlib.sha256(json.dumps(sorted(fields)).encode()).hexdigest()[:16]
