"""Cases as people edit them (the CRM side): read, and change with optimistic concurrency.

Every change names the version it read; the UPDATE only matches that version, so a change
made meanwhile by someone else (the pipeline included) is never overwritten: the caller
gets `CaseConflict` and re-reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update

from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import Case, CaseHistory, CaseStatus
from ai_assets.ops_db.types import utcnow

EDITABLE = frozenset({"status", "assignee", "notes", "priority"})
CaseKey = tuple[str, str]  # (customer_id, queue): one open case each
# Actors of the pipeline's own writes. A case another pipeline run changed is not a person's
# edit: acting on top of it loses nothing (each run only adds its message to the case).
PIPELINE_ACTOR_PREFIX = "pipeline"


def pipeline_actor(run_id: str) -> str:
    return f"{PIPELINE_ACTOR_PREFIX} run {run_id}"


class CaseConflict(RuntimeError):
    pass


@dataclass(frozen=True)
class CaseRef:
    id: int
    version: int


def open_case_refs(sessions: Sessions, customer_ids: Iterable[str]) -> dict[CaseKey, CaseRef]:
    """The open cases of these customers as they are now: what the pipeline 'read'."""
    ids = sorted(set(customer_ids))
    refs: dict[CaseKey, CaseRef] = {}
    with sessions.read() as s:
        for start in range(0, len(ids), 500):  # bounded IN lists
            rows = s.execute(select(Case.customer_id, Case.queue, Case.id, Case.version)
                             .where(Case.customer_id.in_(ids[start:start + 500]),
                                    Case.status != CaseStatus.CLOSED.value))
            refs.update({(c, q): CaseRef(i, v) for c, q, i, v in rows})
    return refs


class CaseStore:
    def __init__(self, sessions: Sessions):
        self._sessions = sessions

    def get(self, case_id: int) -> Case | None:
        with self._sessions.read() as s:
            return s.get(Case, case_id)

    def all(self) -> list[Case]:
        with self._sessions.read() as s:
            return list(s.scalars(select(Case).order_by(Case.id)))

    def history(self, case_id: int) -> list[CaseHistory]:
        with self._sessions.read() as s:
            return list(s.scalars(select(CaseHistory).where(CaseHistory.case_id == case_id)
                                  .order_by(CaseHistory.version)))

    def edit(self, case_id: int, expected_version: int, *, actor: str, **changes: str | None) -> int:
        """A person's change: applied only if the case is still at `expected_version`.
        Returns the new version; raises `CaseConflict` when someone changed it meanwhile."""
        if actor.startswith(PIPELINE_ACTOR_PREFIX) or not actor.strip():
            raise ValueError(f"actor {actor!r}: a person's name, not empty and not the pipeline's")
        unknown = set(changes) - EDITABLE
        if unknown or not changes:
            raise ValueError(f"editable fields are {sorted(EDITABLE)}, got {sorted(changes)}")
        if "status" in changes and changes["status"] not in {s.value for s in CaseStatus}:
            raise ValueError(f"unknown status {changes['status']!r}")
        with self._sessions.write() as s:
            done = s.execute(update(Case).where(Case.id == case_id, Case.version == expected_version)
                             .values(**changes, version=Case.version + 1, updated_at=utcnow(), updated_by=actor))
            if done.rowcount != 1:
                current = s.get(Case, case_id)
                raise CaseConflict(f"case {case_id} is at version {current.version if current else 'none'}, "
                                   f"not {expected_version}: re-read it")
            s.add(CaseHistory(case_id=case_id, version=expected_version + 1, actor=actor, change=dict(changes)))
            return expected_version + 1
