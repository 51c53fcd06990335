"""The intent model's lifecycle through Dagster: train a candidate, the blocking promotion
gates (validation, shadow), promotion, and a rollback that the next enrichment run uses. Real training (hashing
encoder, 12 rows per intent, so it takes seconds), real registry, real instance."""

from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import JobDefinition, ReexecutionOptions, build_reconstructable_job, execute_job

from ai_assets.cli.main import main
from ai_assets.ops_db import OpsDb
from ai_assets.serving.intent.intent_model import IntentModel
from ai_assets.serving.intent.text_encoders import HashingEncoder
from ai_assets_tests.conftest import Workspace
from ai_assets_tests.defs.test_ingestion_assets import checks_by_name, output

# Every test trains a model and runs Dagster jobs end to end (minutes on a 2-core machine).
pytestmark = pytest.mark.slow

DAY = date(2025, 3, 3)


def step_succeeded(result, step: str) -> bool:
    return any(e.step_key == step for e in result.get_step_success_events())


def test_training_registers_a_gated_candidate_and_promotes_it(workspace, instance):
    result = workspace.train(workspace.defs(), instance)
    assert result.success
    gate = checks_by_name(result)["candidate_not_worse_than_production"]
    assert gate.passed and gate.description == "intent_model v1 may replace nothing (first version)"
    trained = {m.asset_key.path[0]: {k: getattr(v, "value", v) for k, v in m.materialization.metadata.items()}
               for m in result.get_asset_materialization_events()}
    assert trained["intent_model"]["model_version"] == 1 and trained["production_intent_model"]["model_version"] == 1
    # No reviewed labels yet, and no production model to shadow-test against: validation decides.
    assert trained["training_data"]["rows"] == 0 and trained["intent_model"]["reviewed_rows"] == 0
    assert trained["intent_model"]["labels_watermark"] == 0
    shadow = checks_by_name(result)["candidate_not_worse_in_shadow"]
    assert shadow.passed and shadow.metadata["production_version"].value is None
    assert "no production model" in shadow.description and trained["shadow_evaluation"]["production"] == "none"
    with OpsDb.open(workspace.ops_db_url) as db:
        record = db.registry.get_production("intent_model")
        assert record.version == 1
        assert Path(record.artifact_uri).is_file()
        assert Path(record.artifact_uri).stat().st_size == trained["intent_model"]["artifact_bytes"]
        assert 0 < record.confidence_threshold <= 1 and record.target_precision == 0.98
        for key in ("accuracy", "macro_f1", "coverage", "automated_precision", "out_of_scope_automated",
                    "training_seconds", "n_train", "encoder", "threshold_finite"):
            assert key in record.metrics
        assert record.metrics["n_train"] == 77 * 12 and record.metrics["encoder"] == "hashing-512"
        assert record.training_data_fingerprint == trained["intent_model"]["training_data_fingerprint"]
        assert record.metrics["automated_precision"] >= 0.98  # the threshold was fixed for it
        assert record.metrics["threshold_finite"] is True
        assert [e.action for e in db.registry.events("intent_model")] == ["promote"]
    shown = gate.metadata["candidate_metrics"].value
    assert shown["out_of_scope_automated_upper95"] > shown["out_of_scope_automated"]
    assert 0 <= shown["out_of_scope_automated_training_oof"] <= 1
    # The out-of-scope share is judged on the CLINC gate share + heldout.txt, shown with its interval.
    judged = gate.metadata["out_of_scope_automated_interval"].value
    assert judged["n"] == shown["n_out_of_scope_heldout"] > 1000
    assert judged["low"] <= shown["out_of_scope_automated"] == judged["value"] <= judged["high"]
    assert "never_seen_clinc_kitchen_and_dining" in shown["out_of_scope_automated_by_source"]
    assert trained["intent_model"]["guarantee"]["level"] == 0.975


def test_gate_blocks_a_worse_candidate_and_rollback_reaches_the_next_run(workspace, instance, smoke_model,
                                                                          monkeypatch):
    assert workspace.install_model(smoke_model) == 1

    # A candidate held to floors it cannot reach: registered, gated, never promoted.
    strict = workspace.defs(training=workspace.smoke_training(min_accuracy=0.99))
    result = workspace.train(strict, instance)
    assert not result.success
    gate = checks_by_name(result)["candidate_not_worse_than_production"]
    assert not gate.passed and "below the floor 0.9900" in gate.description
    assert not step_succeeded(result, "shadow_evaluation") and not step_succeeded(result, "production_intent_model")
    with OpsDb.open(workspace.ops_db_url) as db:
        assert db.registry.get_production("intent_model").version == 1
        assert [(r.version, r.status) for r in db.registry.list_versions("intent_model")] == \
            [(1, "production"), (2, "candidate")]

    # An operator promotes v2 anyway; the next run serves with it; one command rolls back.
    monkeypatch.setenv("AI_ASSETS_OPS_DB_URL", workspace.ops_db_url)
    runner = CliRunner()
    assert runner.invoke(main, ["model", "promote", "2", "--reason", "try it"]).exit_code == 0
    workspace.simulate(DAY, per_day=60)
    defs = workspace.defs()
    assert workspace.run(defs, instance, DAY).success
    assert set(output(workspace, "enriched_messages", DAY)["local_model_version"]) == {"intent_model v2"}
    rolled = runner.invoke(main, ["model", "rollback", "--reason", "v2 misroutes"])
    assert rolled.exit_code == 0 and "intent_model v1 is production again" in rolled.output
    assert workspace.run(defs, instance, DAY).success
    enriched = output(workspace, "enriched_messages", DAY)
    assert set(enriched["local_model_version"]) == {"intent_model v1"}


def training_job(root: str) -> JobDefinition:
    """model_training_job over the workspace at `root`; `execute_job` (which re-executes runs)
    rebuilds it from this module-level function."""
    return Workspace(Path(root)).defs().resolve_job_def("model_training_job")


def reconstructable_training(workspace):
    return build_reconstructable_job(__name__, "training_job", reconstructable_kwargs={"root": str(workspace.root)})


def production_version(workspace) -> int | None:
    with OpsDb.open(workspace.ops_db_url) as db:
        record = db.registry.get_production("intent_model")
        return record.version if record else None


def test_reexecution_from_failure_promotes_the_version_its_parent_run_trained(workspace, instance, smoke_model):
    # v1 claims figures no candidate reaches, so the gate blocks every candidate.
    with OpsDb.open(workspace.ops_db_url) as db:
        db.registry.register_candidate(
            "intent_model", metrics={**smoke_model.candidate.metrics, "accuracy": 0.999, "coverage": 0.999},
            artifact_uri=str(smoke_model.path), training_data_fingerprint="sha256:unbeatable",
            confidence_threshold=0.9)
        db.registry.promote("intent_model", 1, actor="test", reason="unbeatable figures")
    job = reconstructable_training(workspace)
    with execute_job(job, instance) as blocked:
        assert not blocked.success and checks_by_name(blocked)["candidate_not_worse_than_production"].passed is False
    with execute_job(job, instance) as other:  # another training meanwhile: v3, blocked too
        assert not other.success
    # The figures were wrong: v1 is retired, and the first run re-executed from its failure.
    with OpsDb.open(workspace.ops_db_url) as db:
        db.registry.retire("intent_model", 1, actor="oncall", reason="its figures were wrong")
    options = ReexecutionOptions.from_failure(blocked.run_id, instance)
    with execute_job(job, instance, reexecution_options=options) as resumed:
        assert resumed.success
        assert not step_succeeded(resumed, "intent_model")  # trained in the parent run, not again
        gate = checks_by_name(resumed)["candidate_not_worse_than_production"]
        assert gate.passed and gate.metadata["production_version"].value is None
        shadow = checks_by_name(resumed)["candidate_not_worse_in_shadow"]  # skipped in the parent run
        assert shadow.passed and shadow.metadata["production_version"].value is None
    assert production_version(workspace) == 2  # the parent run's candidate, not the latest one (v3)


def test_promotion_is_refused_when_production_changed_after_the_gate(workspace, instance):
    job = reconstructable_training(workspace)
    with execute_job(job, instance) as first:
        assert first.success and production_version(workspace) == 1
    # Meanwhile an operator makes another version production.
    with OpsDb.open(workspace.ops_db_url) as db:
        v1 = db.registry.get("intent_model", 1)
        v2 = db.registry.register_candidate(
            "intent_model", metrics=v1.metrics, artifact_uri=v1.artifact_uri,
            training_data_fingerprint=v1.training_data_fingerprint, confidence_threshold=0.9)
        db.registry.promote("intent_model", v2.version, actor="oncall", reason="hand-picked")
    # The first run's promotion, re-executed alone: its gate compared v1 with no production.
    options = ReexecutionOptions(parent_run_id=first.run_id, step_selection=["production_intent_model"])
    with execute_job(job, instance, reexecution_options=options) as again:
        assert not again.success
        [failure] = again.get_step_failure_events()
        assert "ProductionChanged" in failure.event_specific_data.error.to_string()
        assert "production is v2, not none as expected" in failure.event_specific_data.error.to_string()
    assert production_version(workspace) == 2


def test_a_production_model_this_encoder_cannot_serve_is_replaced_by_retraining(workspace, instance):
    assert workspace.train(workspace.defs(), instance).success and production_version(workspace) == 1
    # What an upgrade to another encoder graph leaves behind: the production artifact names an
    # encoder version this installation does not reproduce, so it no longer loads.
    with OpsDb.open(workspace.ops_db_url) as db:
        artifact = Path(db.registry.get_production("intent_model").artifact_uri)
    stale = IntentModel.load(artifact, encoder=HashingEncoder())
    stale.info = {**stale.info, "encoder_version": "0-an-older-graph"}
    stale.save(artifact)
    with pytest.raises(ValueError, match="retrain it"):
        IntentModel.load(artifact, encoder=HashingEncoder())

    # Retraining is the way out: shadow has nothing to compare with, validation decides.
    result = workspace.train(workspace.defs(), instance)
    assert result.success
    shadow = checks_by_name(result)["candidate_not_worse_in_shadow"]
    assert shadow.passed and shadow.metadata["production_version"].value == 1
    assert "production cannot be served" in shadow.description and "retrain it" in shadow.description
    assert production_version(workspace) == 2
