"""The LLM result cache: an answer is paid for once per (model, prompt version, text).

The key is sha256 over the model, the prompt version and the sha256 of the normalised
text (`ai_assets.ingestion.normalise.normalise_text`: NFKC, invisible characters removed,
whitespace collapsed; case is kept, since it can carry meaning to a model). Writes are
idempotent: the first answer stored under a key stays, a second `put` is a no-op
(INSERT ... ON CONFLICT DO NOTHING), so concurrent runs that miss together both succeed.
Reads count hits (`hit_count`, `last_hit_at`) in the same statement (UPDATE ... RETURNING).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite

from ai_assets.ingestion.normalise import normalise_text
from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import LlmCacheEntry
from ai_assets.ops_db.types import utcnow

CHUNK = 500  # rows per statement: well inside SQLite's and PostgreSQL's parameter limits


def text_hash(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def cache_key(model: str, prompt_version: str, text: str) -> str:
    """sha256 of model + prompt version + normalised-text hash (JSON-encoded, so no two
    different triples can run together into the same bytes)."""
    material = json.dumps([model, prompt_version, text_hash(text)], separators=(",", ":"))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    model: str
    prompt_version: str
    response: dict[str, Any]
    created_at: datetime
    hit_count: int
    last_hit_at: datetime | None


@dataclass(frozen=True)
class CacheWrite:
    key: str
    model: str
    prompt_version: str
    response: dict[str, Any]


def _insert(dialect: str):
    if dialect == "postgresql":
        return postgresql.insert(LlmCacheEntry)
    if dialect == "sqlite":
        return sqlite.insert(LlmCacheEntry)
    raise NotImplementedError(f"no ON CONFLICT insert for {dialect}")


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class ResponseCache:
    def __init__(self, sessions: Sessions):
        self._sessions = sessions

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached response, counting the hit; None on a miss."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Cached responses by key for the keys present (each hit counted once per call)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        if not wanted:
            return found
        now = utcnow()
        with self._sessions.write() as s:
            for chunk in _chunks(wanted):
                stmt = (update(LlmCacheEntry).where(LlmCacheEntry.key.in_(chunk))
                        .values(hit_count=LlmCacheEntry.hit_count + 1, last_hit_at=now)
                        .returning(LlmCacheEntry.key, LlmCacheEntry.response))
                found.update({k: r for k, r in s.execute(stmt, execution_options={"synchronize_session": False})})
        return found

    def put(self, key: str, *, model: str, prompt_version: str, response: Mapping[str, Any]) -> bool:
        """Store `response` under `key` unless the key is already there. True if stored."""
        return self.put_many([CacheWrite(key, model, prompt_version, dict(response))]) == 1

    def put_many(self, writes: Iterable[CacheWrite]) -> int:
        """Store each new key (first write of a key wins); returns how many were stored."""
        rows: dict[str, dict[str, Any]] = {}
        now = utcnow()
        for w in writes:
            if len(w.key) != 64:
                raise ValueError(f"cache keys are sha256 hex digests (64 characters), got {w.key!r}")
            rows.setdefault(w.key, dict(key=w.key, model=w.model, prompt_version=w.prompt_version,
                                        response=dict(w.response), created_at=now, hit_count=0))
        if not rows:
            return 0
        stored = 0
        with self._sessions.write() as s:
            for chunk in _chunks(list(rows.values())):
                stmt = (_insert(self._sessions.dialect).values(chunk)
                        .on_conflict_do_nothing(index_elements=[LlmCacheEntry.key])
                        .returning(LlmCacheEntry.key))
                stored += len(s.execute(stmt).all())
        return stored

    def entry(self, key: str) -> CacheEntry | None:
        """The entry with its counters, without counting a hit."""
        with self._sessions.read() as s:
            row = s.get(LlmCacheEntry, key)
            if row is None:
                return None
            return CacheEntry(key=row.key, model=row.model, prompt_version=row.prompt_version,
                              response=dict(row.response), created_at=row.created_at,
                              hit_count=row.hit_count, last_hit_at=row.last_hit_at)
