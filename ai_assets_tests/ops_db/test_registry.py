"""Model registry: candidate -> production -> retired, rollback, one production at a time."""

from __future__ import annotations

import threading
from datetime import UTC

import pytest
import sqlalchemy
from sqlalchemy import text

from ai_assets.ops_db import NoRollbackTarget, OpsDb, UnknownModelVersion, create_engine_for
from ai_assets.ops_db.registry import ProductionChanged


def register(ops: OpsDb, name: str = "intent", accuracy: float = 0.9, **overrides):
    fields = dict(metrics={"accuracy": accuracy, "coverage_at_target": 0.86}, artifact_uri=f"file:///models/{name}",
                  training_data_fingerprint="sha256:abc", confidence_threshold=0.71)
    return ops.registry.register_candidate(name, **{**fields, **overrides})


def statuses(ops: OpsDb, name: str = "intent") -> dict[int, str]:
    return {v.version: v.status for v in ops.registry.list_versions(name)}


def test_lifecycle_promote_promote_rollback(ops: OpsDb):
    reg = ops.registry
    v1 = register(ops, accuracy=0.91, notes="first")
    assert (v1.version, v1.status, v1.target_precision, v1.notes) == (1, "candidate", 0.98, "first")
    assert v1.metrics == {"accuracy": 0.91, "coverage_at_target": 0.86}
    assert v1.created_at.tzinfo is UTC and v1.promoted_at is None
    assert reg.get_production("intent") is None

    promoted = reg.promote("intent", 1, actor="ci", reason="first model")
    assert promoted.status == "production" and promoted.promoted_at is not None
    assert reg.get_production("intent").version == 1

    v2 = register(ops, accuracy=0.93)
    assert v2.version == 2 and v2.status == "candidate"
    assert reg.get_production("intent").version == 1  # a candidate changes nothing

    reg.promote("intent", 2, actor="ci", reason="better on validation")
    assert statuses(ops) == {1: "retired", 2: "production"}
    assert reg.get("intent", 1).retired_at is not None

    restored = reg.rollback("intent", actor="oncall", reason="accuracy dropped in production")
    assert restored.version == 1 and restored.status == "production" and restored.retired_at is None
    assert statuses(ops) == {1: "production", 2: "retired"}
    assert reg.get_production("intent").confidence_threshold == 0.71

    events = [(e.action, e.from_version, e.to_version, e.actor) for e in reg.events("intent")]
    assert events == [("promote", None, 1, "ci"), ("promote", 1, 2, "ci"), ("rollback", 2, 1, "oncall")]
    assert reg.events("intent")[-1].reason == "accuracy dropped in production"

    with pytest.raises(NoRollbackTarget, match="no earlier production version"):
        reg.rollback("intent", actor="oncall", reason="again")
    assert statuses(ops) == {1: "production", 2: "retired"}  # the failed rollback changed nothing


def test_rollback_walks_back_through_promotions_and_skips_retired(ops: OpsDb):
    reg = ops.registry
    for _ in range(4):
        register(ops)
    for v in (1, 2, 3):
        reg.promote("intent", v, actor="ci", reason=f"v{v}")
    assert reg.rollback("intent", actor="a", reason="r").version == 2
    assert reg.rollback("intent", actor="a", reason="r").version == 1
    reg.promote("intent", 4, actor="ci", reason="v4")
    reg.retire("intent", 1, actor="qa", reason="found a data leak in v1")
    # v1 was deliberately retired: the rollback from v4 has nowhere to go.
    with pytest.raises(NoRollbackTarget):
        reg.rollback("intent", actor="a", reason="r")
    assert reg.get_production("intent").version == 4


def test_no_production_means_nothing_to_roll_back(ops: OpsDb):
    with pytest.raises(NoRollbackTarget, match="no production version"):
        ops.registry.rollback("intent", actor="a", reason="r")
    register(ops)
    ops.registry.promote("intent", 1, actor="a", reason="r")
    ops.registry.retire("intent", 1, actor="a", reason="switch the model off")
    assert ops.registry.get_production("intent") is None
    with pytest.raises(NoRollbackTarget):
        ops.registry.rollback("intent", actor="a", reason="r")


def test_promote_is_idempotent_and_checks_the_version(ops: OpsDb):
    register(ops)
    ops.registry.promote("intent", 1, actor="a", reason="r")
    again = ops.registry.promote("intent", 1, actor="a", reason="retried step")
    assert again.status == "production"
    assert len(ops.registry.events("intent")) == 1
    with pytest.raises(UnknownModelVersion):
        ops.registry.promote("intent", 9, actor="a", reason="r")
    with pytest.raises(UnknownModelVersion):
        ops.registry.get("other", 1)


def test_promote_compares_and_swaps_against_the_expected_production(ops: OpsDb):
    reg = ops.registry
    for _ in range(3):
        register(ops)
    reg.promote("intent", 1, actor="ci", reason="first", expected_current=None)
    # The gate compared v2 with v1; meanwhile an operator promoted v3.
    reg.promote("intent", 3, actor="oncall", reason="hotfix")
    with pytest.raises(ProductionChanged, match="production is v3, not v1 as expected"):
        reg.promote("intent", 2, actor="ci", reason="gate passed", expected_current=1)
    with pytest.raises(ProductionChanged, match="production is v3, not none as expected"):
        reg.promote("intent", 2, actor="ci", reason="gate passed", expected_current=None)
    assert statuses(ops) == {1: "retired", 2: "candidate", 3: "production"}  # nothing changed
    assert [e.to_version for e in reg.events("intent")] == [1, 3]
    assert reg.promote("intent", 2, actor="ci", reason="gated again", expected_current=3).status == "production"
    # A retried promotion that already happened stays a no-op, whatever it expected.
    assert reg.promote("intent", 2, actor="ci", reason="retried step", expected_current=3).version == 2
    assert len(reg.events("intent")) == 3


def test_concurrent_expected_promotions_let_exactly_one_through(ops: OpsDb, db_url):
    """Two trainings gated against the same production version promote at the same moment:
    the comparison is made under the lock, so the second sees the first's promotion."""
    n = 4
    for _ in range(n + 1):
        register(ops)
    ops.registry.promote("intent", 1, actor="ci", reason="first")
    clients = [OpsDb(create_engine_for(db_url)) for _ in range(n)]
    try:
        errors = _race(lambda i: clients[i].registry.promote(
            "intent", i + 2, actor=f"worker-{i}", reason="gate passed", expected_current=1), n)
    finally:
        for c in clients:
            c.dispose()
    assert len(errors) == n - 1 and all(isinstance(e, ProductionChanged) for e in errors)
    assert list(statuses(ops).values()).count("production") == 1
    assert [(e.from_version, e.action) for e in ops.registry.events("intent")][1:] == [(1, "promote")]


def test_versions_count_per_name(ops: OpsDb):
    assert [register(ops, "intent").version for _ in range(3)] == [1, 2, 3]
    assert register(ops, "summariser").version == 1
    assert ops.registry.model_names() == ["intent", "summariser"]
    assert [v.version for v in ops.registry.list_versions("intent")] == [1, 2, 3]
    assert ops.registry.list_versions("nothing") == []


def test_invalid_candidates_are_refused(ops: OpsDb):
    for bad in [dict(confidence_threshold=1.5), dict(confidence_threshold=float("nan")),
                dict(target_precision=0.0), dict(artifact_uri=""), dict(training_data_fingerprint=" ")]:
        with pytest.raises(ValueError):
            register(ops, **bad)
    assert ops.registry.list_versions("intent") == []


def test_database_refuses_a_second_production_row(ops: OpsDb):
    """The partial unique index holds even against writes that bypass the registry."""
    register(ops)
    register(ops)
    ops.registry.promote("intent", 1, actor="a", reason="r")
    with pytest.raises(sqlalchemy.exc.IntegrityError), ops.engine.begin() as conn:
        conn.execute(text("UPDATE model_versions SET status = 'production' WHERE name = :n AND version = 2"),
                     {"n": "intent"})
    with pytest.raises(sqlalchemy.exc.IntegrityError), ops.engine.begin() as conn:
        conn.execute(text("UPDATE model_versions SET status = 'shadow' WHERE version = 2"))
    assert statuses(ops) == {1: "production", 2: "candidate"}


def _race(targets, n_threads: int) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def run(i):
        try:
            barrier.wait()
            targets(i)
        except BaseException as exc:  # noqa: BLE001 - asserted by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_concurrent_promotions_leave_exactly_one_production(ops: OpsDb, db_url):
    """Threads, each with its own engine and connection, promote different versions at the
    same moment, over several rounds: every promotion succeeds, serialised, and the event
    chain shows each one retiring the one before."""
    n = 4
    for _ in range(n):
        register(ops)
    clients = [OpsDb(create_engine_for(db_url)) for _ in range(n)]
    try:
        for round_ in range(3):
            errors = _race(lambda i, round_=round_: clients[i].registry.promote(
                "intent", i + 1, actor=f"worker-{i}", reason=f"round {round_}"), n)
            assert errors == []
            assert list(statuses(ops).values()).count("production") == 1
        events = ops.registry.events("intent")
        chain = [e for e in events if e.action == "promote"]
        for before, after in zip(chain, chain[1:]):
            assert after.from_version == before.to_version
        assert chain[-1].to_version == ops.registry.get_production("intent").version
    finally:
        for c in clients:
            c.dispose()


def test_concurrent_registrations_get_distinct_versions(ops: OpsDb, db_url):
    n = 6
    clients = [OpsDb(create_engine_for(db_url)) for _ in range(n)]
    got: list[int] = []
    try:
        errors = _race(lambda i: got.append(register(clients[i]).version), n)
    finally:
        for c in clients:
            c.dispose()
    assert errors == []
    assert sorted(got) == list(range(1, n + 1))
