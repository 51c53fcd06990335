"""The routing policy file: complete, versioned, and refused when wrong."""

from importlib import resources
from pathlib import Path

import pytest
import yaml

from ai_assets.actions.routing_policy import PRIORITIES, PolicyError, load_policy
from ai_assets.data.datasets import load_categories

LABELS = load_categories()


def test_shipped_policy_routes_every_intent_and_out_of_scope():
    policy = load_policy()
    assert set(policy.routes) == set(LABELS) | {"out_of_scope"}
    assert policy.version
    assert {r.priority for r in policy.routes.values()} <= set(PRIORITIES)
    # Money at risk right now goes to the fraud queue at the top priority.
    for intent in ("lost_or_stolen_card", "compromised_card", "card_payment_not_recognised"):
        assert policy.route(intent).queue == "fraud_and_security"
        assert policy.route(intent).priority == "P1"
        assert policy.route(intent).action == "fraud_escalation"
        assert intent in policy.never_automate  # a person always looks; the machine only opens the case


def test_templates_use_only_case_fields_never_message_or_model_text():
    policy = load_policy()
    subject, body = policy.templates["auto_reply"].render(case_id=7, topic="card arrival", queue="cards",
                                                          priority="P3")
    assert subject == "Your question about card arrival (case 7)" and "case 7" in body


def write(tmp_path: Path, document) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def shipped_document() -> dict:
    return yaml.safe_load(resources.files("ai_assets.actions").joinpath("routing_policy.yaml").read_text())


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["intents"].pop("card_arrival"), "does not route: \\['card_arrival'\\]"),
    (lambda d: d["intents"].update(card_arrivals={"queue": "cards", "priority": "P3"}), "unknown intents"),
    (lambda d: d["intents"]["card_arrival"].update(priority="urgent"), "priority 'urgent'"),
    (lambda d: d["intents"]["card_arrival"].update(queue=""), "queue must be"),
    (lambda d: d["intents"]["card_arrival"].update(action="auto"), "action 'auto' not in"),
    (lambda d: d["intents"]["card_arrival"].pop("action"), "expected exactly"),
    (lambda d: d["never_automate"].append("lost_my_card"), "never_automate' names unknown intents"),
    (lambda d: d["templates"].pop("fraud_escalation"), "missing \\['fraud_escalation'\\]"),
    (lambda d: d["templates"]["open_case"].update(body="Dear {customer_name}"), "unknown placeholders"),
    (lambda d: d["templates"]["open_case"].update(body="{case_id"), "not a valid template"),
    (lambda d: d["templates"]["open_case"].update(body="case {case_id:{nope}}"), "does not render"),
    (lambda d: d.update(automate_everything=True), "unknown keys"),
    (lambda d: d.update(version=""), "version"),
    (lambda d: d.update(intents=["card_arrival"]), "'intents' must map"),
])
def test_invalid_policies_are_refused_with_a_clear_error(tmp_path, mutate, message):
    document = shipped_document()
    mutate(document)
    with pytest.raises(PolicyError, match=message):
        load_policy(write(tmp_path, document))


def test_unparseable_yaml_is_refused(tmp_path):
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(write(tmp_path, "version: [unclosed"))


def test_an_operators_valid_file_is_loaded(tmp_path):
    document = shipped_document()
    document["version"] = "ops-2"
    document["intents"]["card_arrival"]["priority"] = "P1"
    policy = load_policy(write(tmp_path, document))
    assert policy.version == "ops-2" and policy.route("card_arrival").priority == "P1"
