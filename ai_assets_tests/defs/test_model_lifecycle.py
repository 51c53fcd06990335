"""The intent model's lifecycle through Dagster: train a candidate, the blocking promotion
gate, promotion, and a rollback that the next enrichment run uses. Real training (hashing
encoder, 12 rows per intent, so it takes seconds), real registry, real instance."""

from datetime import date
from pathlib import Path

from click.testing import CliRunner

from ai_assets.cli import main
from ai_assets.ops_db import OpsDb
from ai_assets_tests.defs.test_ingestion_assets import checks_by_name, output

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
    with OpsDb.open(workspace.ops_db_url) as db:
        record = db.registry.get_production("intent_model")
        assert record.version == 1
        assert Path(record.artifact_uri).is_file()
        assert Path(record.artifact_uri).stat().st_size == trained["intent_model"]["artifact_bytes"]
        assert 0 < record.confidence_threshold <= 1 and record.target_precision == 0.98
        for key in ("accuracy", "macro_f1", "coverage", "automated_precision", "out_of_scope_automated",
                    "training_seconds", "n_train", "encoder"):
            assert key in record.metrics
        assert record.metrics["n_train"] == 77 * 12 and record.metrics["encoder"] == "hashing-512"
        assert record.training_data_fingerprint == trained["intent_model"]["training_data_fingerprint"]
        assert record.metrics["automated_precision"] >= 0.98  # the threshold was fixed for it
        assert [e.action for e in db.registry.events("intent_model")] == ["promote"]


def test_gate_blocks_a_worse_candidate_and_rollback_reaches_the_next_run(workspace, instance, smoke_model,
                                                                          monkeypatch):
    assert workspace.install_model(smoke_model) == 1

    # A candidate held to floors it cannot reach: registered, gated, never promoted.
    strict = workspace.defs(training=workspace.smoke_training(min_accuracy=0.99))
    result = workspace.train(strict, instance)
    assert not result.success
    gate = checks_by_name(result)["candidate_not_worse_than_production"]
    assert not gate.passed and "below the floor 0.9900" in gate.description
    assert not step_succeeded(result, "production_intent_model")
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
