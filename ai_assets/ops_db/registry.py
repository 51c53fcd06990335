"""The model registry: versions, their evidence, and gated, audited status changes.

Statuses: candidate -> production -> retired. At most one production version per model
name: every write to a name is serialised (on PostgreSQL a transaction-scoped advisory
lock per name plus SELECT ... FOR UPDATE of its rows; on SQLite BEGIN IMMEDIATE), and a
partial unique index backs it up in the database.

Rollback undoes the last promotion: the registry replays the name's events as a stack
(promote pushes, rollback pops, retire removes the version), so a second rollback goes
one step further back, and a version someone retired on purpose is never restored.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import ModelAction, ModelEvent, ModelStatus, ModelVersion
from ai_assets.ops_db.types import utcnow


class RegistryError(Exception):
    """A registry operation that cannot be done as asked."""


class UnknownModelVersion(RegistryError, LookupError):
    pass


class NoRollbackTarget(RegistryError):
    pass


class ProductionChanged(RegistryError):
    """The production version is no longer the one a promotion was decided against."""


class _Unchecked(Enum):
    ANY = "any"


# `promote(..., expected_current=ANY_PRODUCTION)`: promote whatever is production now.
ANY_PRODUCTION = _Unchecked.ANY


@dataclass(frozen=True)
class ModelRecord:
    id: int
    name: str
    version: int
    status: str
    created_at: datetime
    promoted_at: datetime | None
    retired_at: datetime | None
    metrics: dict[str, Any]
    artifact_uri: str
    training_data_fingerprint: str
    confidence_threshold: float
    target_precision: float
    notes: str | None

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    @classmethod
    def of(cls, row: ModelVersion) -> ModelRecord:
        return cls(id=row.id, name=row.name, version=row.version, status=row.status,
                   created_at=row.created_at, promoted_at=row.promoted_at, retired_at=row.retired_at,
                   metrics=dict(row.metrics), artifact_uri=row.artifact_uri,
                   training_data_fingerprint=row.training_data_fingerprint,
                   confidence_threshold=row.confidence_threshold, target_precision=row.target_precision,
                   notes=row.notes)


@dataclass(frozen=True)
class ModelEventRecord:
    id: int
    name: str
    action: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    at: datetime

    @classmethod
    def of(cls, row: ModelEvent) -> ModelEventRecord:
        return cls(id=row.id, name=row.name, action=row.action, from_version=row.from_version,
                   to_version=row.to_version, actor=row.actor, reason=row.reason, at=row.at)


def _unit_interval(label: str, value: float, *, open_at_zero: bool = False) -> float:
    value = float(value)
    low_ok = value > 0 if open_at_zero else value >= 0
    if not (math.isfinite(value) and low_ok and value <= 1):
        raise ValueError(f"{label} must be in {'(0, 1]' if open_at_zero else '[0, 1]'}, got {value!r}")
    return value


def _required(label: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{label} is required")
    return value


class ModelRegistry:
    def __init__(self, sessions: Sessions):
        self._sessions = sessions

    # -- reads -------------------------------------------------------------------------

    def get(self, name: str, version: int) -> ModelRecord:
        with self._sessions.read() as s:
            row = s.scalar(select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version))
            if row is None:
                raise UnknownModelVersion(f"no model {name} v{version}")
            return ModelRecord.of(row)

    def get_production(self, name: str) -> ModelRecord | None:
        with self._sessions.read() as s:
            row = s.scalar(select(ModelVersion).where(ModelVersion.name == name,
                                                      ModelVersion.status == ModelStatus.PRODUCTION.value))
            return ModelRecord.of(row) if row is not None else None

    def list_versions(self, name: str) -> list[ModelRecord]:
        """Every version of `name`, oldest first."""
        with self._sessions.read() as s:
            rows = s.scalars(select(ModelVersion).where(ModelVersion.name == name).order_by(ModelVersion.version))
            return [ModelRecord.of(r) for r in rows]

    def model_names(self) -> list[str]:
        with self._sessions.read() as s:
            return list(s.scalars(select(ModelVersion.name).distinct().order_by(ModelVersion.name)))

    def events(self, name: str) -> list[ModelEventRecord]:
        """The audit trail of `name`, oldest first."""
        with self._sessions.read() as s:
            rows = s.scalars(select(ModelEvent).where(ModelEvent.name == name).order_by(ModelEvent.id))
            return [ModelEventRecord.of(r) for r in rows]

    # -- writes ------------------------------------------------------------------------

    def register_candidate(self, name: str, *, metrics: dict[str, Any], artifact_uri: str,
                           training_data_fingerprint: str, confidence_threshold: float,
                           target_precision: float = 0.98, notes: str | None = None) -> ModelRecord:
        """Record a newly trained version as a candidate; its version number is the next for `name`."""
        _required("name", name)
        _required("artifact_uri", artifact_uri)
        _required("training_data_fingerprint", training_data_fingerprint)
        values = dict(
            name=name, status=ModelStatus.CANDIDATE.value, metrics=dict(metrics), artifact_uri=artifact_uri,
            training_data_fingerprint=training_data_fingerprint,
            confidence_threshold=_unit_interval("confidence_threshold", confidence_threshold),
            target_precision=_unit_interval("target_precision", target_precision, open_at_zero=True),
            notes=notes)
        with self._sessions.write() as s:
            self._serialise(s, name)  # concurrent registrations of a name take turns
            latest = s.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name))
            row = ModelVersion(version=(latest or 0) + 1, **values)
            s.add(row)
            s.flush()
            return ModelRecord.of(row)

    def promote(self, name: str, version: int, *, actor: str, reason: str,
                expected_current: int | None | Literal[_Unchecked.ANY] = ANY_PRODUCTION) -> ModelRecord:
        """Make `version` production; the previous production version is retired. Atomic and
        audited. Promoting the current production version changes nothing.

        `expected_current` makes it a compare-and-swap: the production version (None: none)
        the decision to promote was based on, e.g. what the promotion gate compared against.
        If another promotion or rollback changed it since, this raises `ProductionChanged`
        and changes nothing; the comparison happens under the same lock as the write."""
        _required("actor", actor)
        with self._sessions.write() as s:
            rows = self._lock(s, name)
            target = self._find(rows, name, version)
            current = self._production(rows)
            if current is not None and current.version == version:
                return ModelRecord.of(target)
            current_version = current.version if current is not None else None
            if expected_current is not ANY_PRODUCTION and current_version != expected_current:
                raise ProductionChanged(
                    f"{name} production is {f'v{current_version}' if current else 'none'}, not "
                    f"{f'v{expected_current}' if expected_current is not None else 'none'} as expected: "
                    f"v{version} was not promoted (decide again against the current version)")
            self._switch(s, current, target)
            s.add(ModelEvent(name=name, action=ModelAction.PROMOTE.value, actor=actor, reason=reason,
                             from_version=current.version if current else None, to_version=version))
            s.flush()
            return ModelRecord.of(target)

    def rollback(self, name: str, *, actor: str, reason: str) -> ModelRecord:
        """Retire the production version and restore the one that was production before it."""
        _required("actor", actor)
        with self._sessions.write() as s:
            rows = self._lock(s, name)
            current = self._production(rows)
            if current is None:
                raise NoRollbackTarget(f"{name} has no production version to roll back")
            history = self._production_history(s, name)
            while history and history[-1] == current.version:
                history.pop()
            if not history:
                raise NoRollbackTarget(f"{name} v{current.version} has no earlier production version "
                                       "to roll back to")
            target = self._find(rows, name, history[-1])
            self._switch(s, current, target)
            s.add(ModelEvent(name=name, action=ModelAction.ROLLBACK.value, actor=actor, reason=reason,
                             from_version=current.version, to_version=target.version))
            s.flush()
            return ModelRecord.of(target)

    def retire(self, name: str, version: int, *, actor: str, reason: str) -> ModelRecord:
        """Retire `version` (a candidate, the production version, or one already superseded):
        it is never restored by a rollback. Retiring production leaves `name` without one."""
        _required("actor", actor)
        with self._sessions.write() as s:
            rows = self._lock(s, name)
            target = self._find(rows, name, version)
            if target.status != ModelStatus.RETIRED.value:
                target.status = ModelStatus.RETIRED.value
                target.retired_at = utcnow()
            s.add(ModelEvent(name=name, action=ModelAction.RETIRE.value, actor=actor, reason=reason,
                             from_version=version, to_version=None))
            s.flush()
            return ModelRecord.of(target)

    # -- internals ---------------------------------------------------------------------

    @staticmethod
    def _serialise(s: Session, name: str) -> None:
        """Hold the per-name registry lock until the transaction ends. PostgreSQL: an
        advisory lock (row locks cannot cover a version that does not exist yet). SQLite:
        the write transaction began IMMEDIATE and already holds the database write lock."""
        if s.get_bind().dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(f"model_versions:{name}".encode()).digest()[:8], "big", signed=True)
            s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    @classmethod
    def _lock(cls, s: Session, name: str) -> list[ModelVersion]:
        """All versions of `name`, locked until the transaction ends."""
        cls._serialise(s, name)
        stmt = select(ModelVersion).where(ModelVersion.name == name).order_by(ModelVersion.id).with_for_update()
        return list(s.scalars(stmt))

    @staticmethod
    def _find(rows: list[ModelVersion], name: str, version: int) -> ModelVersion:
        for row in rows:
            if row.version == version:
                return row
        raise UnknownModelVersion(f"no model {name} v{version}")

    @staticmethod
    def _production(rows: list[ModelVersion]) -> ModelVersion | None:
        production = [r for r in rows if r.status == ModelStatus.PRODUCTION.value]
        if len(production) > 1:  # the partial unique index makes this impossible
            raise RegistryError(f"{len(production)} production versions of {rows[0].name}")
        return production[0] if production else None

    @staticmethod
    def _switch(s: Session, current: ModelVersion | None, target: ModelVersion) -> None:
        now = utcnow()
        if current is not None:
            current.status = ModelStatus.RETIRED.value
            current.retired_at = now
            s.flush()  # retire first: the one-production index is checked row by row
        target.status = ModelStatus.PRODUCTION.value
        target.promoted_at = now
        target.retired_at = None
        s.flush()

    @staticmethod
    def _production_history(s: Session, name: str) -> list[int]:
        stack: list[int] = []
        events = s.execute(select(ModelEvent.action, ModelEvent.from_version, ModelEvent.to_version)
                           .where(ModelEvent.name == name).order_by(ModelEvent.id))
        for action, from_version, to_version in events:
            if action == ModelAction.PROMOTE.value:
                stack.append(to_version)
            elif action == ModelAction.ROLLBACK.value:
                if stack and stack[-1] == from_version:
                    stack.pop()
            elif action == ModelAction.RETIRE.value:
                stack = [v for v in stack if v != from_version]
        return stack
