"""The learning loop end to end: reviewers' corrections -> the retraining sensor -> a candidate
trained on the shipped data plus them -> the shadow test on the recent days' traffic -> its
gate -> promoted; then decisions that teach the model to miss a never-automated intent ->
the same loop -> refused with the reason in the check's metadata, production untouched.

Real training (hashing encoder, 12 rows per intent), a real day through the daily job and the
label-feedback job, a real registry and instance; the sensor is evaluated as the daemon does and
the run it asks for is executed in process. Decisions are written as the apply run leaves
them (status applied), on the review items the day's run wrote. The sensor's own rules (count,
watermark, run key, one training at a time) are the fast tests at the end."""

from datetime import date

import pytest
from dagster import DagsterRunStatus, build_sensor_context
from dagster._core.storage.dagster_run import DagsterRun
from sqlalchemy import select

from ai_assets.data.datasets import split_banking77
from ai_assets.defs.common import MODEL_TRAINING_JOB
from ai_assets.defs.review.retraining import retraining_sensor
from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.tables import DecisionStatus, ReviewDecision, ReviewItem, ReviewStatus
from ai_assets.ops_db.types import utcnow
from ai_assets.resources import OpsDatabaseResource
from ai_assets_tests.defs.test_ingestion_assets import checks_by_name, output
from ai_assets_tests.review.test_training_rows import add_item
from ai_assets_tests.review.test_training_rows import decide as add_decision

DAY = date(2025, 3, 3)
SHADOW_GATE = "candidate_not_worse_in_shadow"
VALIDATION_GATE = "candidate_not_worse_than_production"
CORRECTIONS = 60  # reviewed items of the day
MIN_NEW_LABELS = 10
FRAUD = "lost_or_stolen_card"  # never automated (routing_policy.yaml)


def training(workspace, **changes):
    # The smoke model's validation figures move by a few tenths of a point with a few dozen
    # rows more or less; the comparison with production allows for that (tolerance).
    return workspace.smoke_training(**{"retrain_min_new_labels": MIN_NEW_LABELS, "shadow_days": 7, "tolerance": 0.02,
                                       **changes})


def tick(workspace, instance, model_training):
    context = build_sensor_context(instance=instance, resources={
        "ops_database": OpsDatabaseResource(url=workspace.ops_db_url), "model_training": model_training})
    return retraining_sensor.evaluate_tick(context)


def metadata(result, asset: str) -> dict:
    [event] = [m for m in result.get_asset_materialization_events() if m.asset_key.path == [asset]]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def production_version(workspace) -> int | None:
    with OpsDb.open(workspace.ops_db_url) as db:
        record = db.registry.get_production("intent_model")
        return record.version if record else None


def decide(workspace, labels: dict[int, str], reviewer: str = "alice") -> None:
    """Applied decisions on these review items (id -> the person's intent), as the apply run
    leaves them: approve where the person agrees with the model, correct where not, reject as
    out of scope for `out_of_scope`."""
    with OpsDb.open(workspace.ops_db_url) as db, db.sessions.write() as s:
        for item in s.scalars(select(ReviewItem).where(ReviewItem.id.in_(labels)).order_by(ReviewItem.id)):
            label = labels[item.id]
            kind = "reject_out_of_scope" if label == "out_of_scope" else "approve" if label == item.intent else "correct"
            decision = ReviewDecision(
                review_item_id=item.id, message_id=item.message_id, customer_id=item.customer_id, text=item.text,
                kind=kind, intent=label, reviewer=reviewer,
                reviewer_role="reviewer", item_version_seen=item.version, case_id=item.case_id,
                model_intent=item.intent, model_confidence=item.confidence, model_version=item.model_version,
                model_suggestions=item.suggestions, status=DecisionStatus.APPLIED.value, applied_at=utcnow(),
                applied_run_id="apply-run")
            s.add(decision)
            s.flush()
            item.status, item.resolved_at, item.resolved_by = ReviewStatus.RESOLVED.value, utcnow(), reviewer
            item.resolution = {"decision_id": decision.id, "kind": decision.kind, "intent": label}


def add_items(workspace, texts: list[str], model_intent: str) -> list[int]:
    """Review items for messages of another day (the model said `model_intent`); their ids."""
    with OpsDb.open(workspace.ops_db_url) as db, db.sessions.write() as s:
        items = [ReviewItem(idempotency_key=f"poison-{i}", message_id=f"m-poison-{i}", customer_id=f"c-{i:06d}",
                            reason="below_threshold", intent=model_intent, confidence=0.4, queue="cards",
                            priority="P1", text=text, status=ReviewStatus.OPEN.value, model_version="intent_model v2",
                            suggestions=[], due_at=utcnow())
                 for i, text in enumerate(texts)]
        s.add_all(items)
        s.flush()
        return [item.id for item in items]


@pytest.mark.slow
def test_corrections_retrain_shadow_test_and_promote_then_a_fraud_blind_candidate_is_refused(workspace, instance):
    defs = workspace.defs(training=training(workspace))
    first = workspace.train(defs, instance)  # v1: the shipped data alone, nothing to shadow against
    assert first.success and production_version(workspace) == 1
    shadow = checks_by_name(first)[SHADOW_GATE]
    assert shadow.passed and "no production model" in shadow.description
    assert metadata(first, "training_data")["rows"] == 0 and metadata(first, "intent_model")["labels_watermark"] == 0
    assert tick(workspace, instance, training(workspace)).skip_message.startswith("0 new reviewed label(s)")

    # A day of traffic through the daily job, and its resolved cases a day later.
    workspace.simulate(DAY, per_day=300)
    assert workspace.run(defs, instance, DAY).success
    assert workspace.run(defs, instance, DAY, job="label_feedback_job").success
    truth = dict(zip(output(workspace, "resolved_cases", DAY)["message_id"],
                     output(workspace, "resolved_cases", DAY)["category"], strict=True))
    with OpsDb.open(workspace.ops_db_url) as db, db.sessions.read() as s:
        items = [(i.id, i.message_id, i.intent) for i in s.scalars(select(ReviewItem).order_by(ReviewItem.id))]
    reviewed = {item_id: truth[message_id] for item_id, message_id, _ in items if message_id in truth}
    reviewed = dict(list(reviewed.items())[:CORRECTIONS])
    assert len(reviewed) == CORRECTIONS
    decide(workspace, reviewed)
    corrections = sum(truth_label != intent for (item_id, _, intent) in items
                      for truth_label in [reviewed.get(item_id)] if truth_label is not None)

    # The sensor sees the labels and asks for a training named after the newest decision.
    data = tick(workspace, instance, training(workspace))
    [request] = data.run_requests
    with OpsDb.open(workspace.ops_db_url) as db, db.sessions.read() as s:
        newest = max(s.scalars(select(ReviewDecision.id)))
    assert request.run_key == f"retrain-{newest}" and request.job_name == MODEL_TRAINING_JOB
    second = defs.resolve_job_def(request.job_name).execute_in_process(instance=instance, tags=request.tags,
                                                                       raise_on_error=False)
    assert second.success, [e.message for e in second.all_events if e.is_failure]
    labels = metadata(second, "training_data")
    assert labels["rows"] == CORRECTIONS and labels["newest_decision_id"] == newest
    assert labels["corrections"] == corrections > 0
    trained = metadata(second, "intent_model")
    assert trained["reviewed_rows"] == CORRECTIONS and trained["labels_watermark"] == newest
    assert trained["training_data_fingerprint"] != metadata(first, "intent_model")["training_data_fingerprint"]
    gate = checks_by_name(second)[SHADOW_GATE]
    assert gate.passed, gate.description
    assert gate.description.startswith("intent_model v2 may replace intent_model v1")
    assert gate.metadata["production_version"].value == 1
    shadowed = metadata(second, "shadow_evaluation")
    assert shadowed["days"] == [DAY.isoformat()] and shadowed["messages"] == shadowed["messages_stored"]
    # Judged on the day's labelled messages the candidate was not trained on.
    report = shadowed["report"]
    # (the simulator repeats texts: a reviewed text's repeats were trained on too)
    assert report["labelled"]["left_out_seen_in_training"] >= CORRECTIONS
    assert shadowed["labelled_rows"] == report["labelled"]["judged_rows"] >= 50
    assert 0 < shadowed["agreement_with_production"] <= 1 and shadowed["latency_ratio"] > 0
    assert set(report["never_automated"]) >= {FRAUD, "compromised_card"}
    assert production_version(workspace) == 2
    with OpsDb.open(workspace.ops_db_url) as db:
        assert db.registry.get("intent_model", 2).metrics["labels_watermark"] == newest
    assert tick(workspace, instance, training(workspace)).skip_message.startswith(
        f"0 new reviewed label(s) since decision {newest}")

    # A careless reviewer rejects lost-card reports as out of scope: the candidate learns to
    # answer them out of scope. That costs little on the whole (the validation gate, with some
    # tolerance, lets it through: an out-of-scope answer is never automated, so precision holds)
    # but loses a never-automated intent, which the shadow gate refuses.
    split = split_banking77()
    poison = [r.text for r in split["replay"] if r.category == FRAUD]
    poison += [r.text for r in split["train"] if r.category == FRAUD][12:]  # beyond the smoke model's 12
    decide(workspace, dict.fromkeys(add_items(workspace, poison, FRAUD), "out_of_scope"), reviewer="mallory")
    lax = training(workspace, tolerance=0.05)
    data = tick(workspace, instance, lax)
    [request] = data.run_requests
    third = workspace.defs(training=lax).resolve_job_def(MODEL_TRAINING_JOB).execute_in_process(
        instance=instance, tags=request.tags, raise_on_error=False)
    assert not third.success
    assert metadata(third, "intent_model")["reviewed"]["reviewed_out_of_scope"] == len(poison)
    assert checks_by_name(third)[VALIDATION_GATE].passed, checks_by_name(third)[VALIDATION_GATE].description
    refused = checks_by_name(third)[SHADOW_GATE]
    assert not refused.passed
    assert f"never-automated intent {FRAUD}: recall" in refused.description
    [reason] = [f for f in refused.metadata["failures"].value if FRAUD in f]
    assert "worse than production's" in reason
    fraud = refused.metadata["never_automated"].value[FRAUD]
    assert fraud["candidate_recall"] < fraud["production_recall"] - 0.05 and fraud["rows"] >= 12
    assert not any(e.step_key == "production_intent_model" for e in third.get_step_success_events())
    assert production_version(workspace) == 2
    with OpsDb.open(workspace.ops_db_url) as db:
        assert db.registry.get("intent_model", 3).status == "candidate"


# --------------------------------------------------------------------------- the sensor alone


def labelled(workspace, n: int, kind: str = "correct") -> list[int]:
    with OpsDb.open(workspace.ops_db_url) as db, db.sessions.write() as s:
        first = s.query(ReviewItem).count()  # new messages each call
        return [add_decision(s, add_item(s, f"m-{first + i}", f"{kind} text {first + i}"), kind,
                             None if kind == "reject_spam" else "card_linking").id for i in range(n)]


def register(workspace, watermark: int | None) -> None:
    metrics = {} if watermark is None else {"labels_watermark": watermark}
    with OpsDb.open(workspace.ops_db_url) as db:
        db.registry.register_candidate("intent_model", metrics=metrics, artifact_uri="/nowhere.joblib",
                                       training_data_fingerprint="sha256:test", confidence_threshold=0.9)


def test_the_sensor_waits_for_enough_new_labels_then_names_the_run_after_the_newest(workspace, instance):
    config = workspace.smoke_training(retrain_min_new_labels=3)
    assert tick(workspace, instance, config).skip_message == \
        "0 new reviewed label(s) since decision 0; retraining at 3"
    labelled(workspace, 2)
    labelled(workspace, 4, kind="reject_spam")  # spam is no label
    assert tick(workspace, instance, config).skip_message.startswith("2 new reviewed label(s) since decision 0")
    ids = labelled(workspace, 1)
    [request] = tick(workspace, instance, config).run_requests
    assert request.run_key == f"retrain-{ids[0]}" and request.job_name == MODEL_TRAINING_JOB
    assert request.tags["ai_assets/new_reviewed_labels"] == "3"


def test_the_sensor_counts_from_the_latest_models_watermark(workspace, instance):
    config = workspace.smoke_training(retrain_min_new_labels=2)
    ids = labelled(workspace, 3)
    register(workspace, None)  # a version trained before labels were recorded counts from 0
    assert tick(workspace, instance, config).run_requests[0].tags["ai_assets/new_reviewed_labels"] == "3"
    register(workspace, ids[1])  # the latest version trained with the first two
    assert tick(workspace, instance, config).skip_message.startswith(
        f"1 new reviewed label(s) since decision {ids[1]}")
    more = labelled(workspace, 1)
    [request] = tick(workspace, instance, config).run_requests
    assert request.run_key == f"retrain-{more[0]}"


def test_the_sensor_starts_no_second_training_while_one_runs(workspace, instance):
    config = workspace.smoke_training(retrain_min_new_labels=1)
    labelled(workspace, 1)
    running = instance.add_run(DagsterRun(job_name=MODEL_TRAINING_JOB, status=DagsterRunStatus.STARTED))
    data = tick(workspace, instance, config)
    assert not data.run_requests and running.run_id in data.skip_message
    instance.report_run_failed(running)
    assert len(tick(workspace, instance, config).run_requests) == 1
