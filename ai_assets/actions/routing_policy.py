"""The routing policy: intent -> queue, priority and action, versioned, validated at load.

A policy that does not cover every allowed intent, names an unknown intent, action or
template, uses an unknown priority, or a template placeholder that does not exist is
refused with a message that says which entry is wrong — a typo must not silently send
fraud reports to the general queue or an e-mail with a hole in it.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from pathlib import Path

import yaml

from ai_assets.data.datasets import load_categories
from ai_assets.serving.llm.prompt import OUT_OF_SCOPE

PRIORITIES = ("P1", "P2", "P3")
# What the pipeline may do for a message: each action opens or updates the customer's case
# in the intent's queue, sends the customer the action's e-mail template and posts an event
# to the case system's webhook.
ACTIONS = ("auto_reply", "open_case", "fraud_escalation")
# The only values a template may use: none of them comes from model output or message text.
TEMPLATE_FIELDS = frozenset({"case_id", "topic", "queue", "priority"})
# How long a review item of each priority may wait for a person before it is raised to the
# senior queue (`review_due_hours` in the policy; these apply where a policy file has none).
DEFAULT_REVIEW_DUE_HOURS = {"P1": 1.0, "P2": 8.0, "P3": 24.0}
OPTIONAL_TEMPLATES = ("correction",)  # the follow-up e-mail of an override; else the acknowledgement


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Route:
    queue: str
    priority: str
    action: str


@dataclass(frozen=True)
class Template:
    subject: str
    body: str

    def render(self, **fields: object) -> tuple[str, str]:
        return self.subject.format(**fields), self.body.format(**fields)


@dataclass(frozen=True)
class RoutingPolicy:
    version: str
    routes: dict[str, Route]
    # action -> template of the e-mail the customer gets when the action runs on its own.
    templates: dict[str, Template]
    # The e-mail for messages acted on while a person is notified (never-automated intents):
    # it acknowledges and promises a person, it never answers.
    acknowledgement: Template
    never_automate: frozenset[str]
    review_due_hours: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_REVIEW_DUE_HOURS))
    # The e-mail a customer gets when a person overrides an automatic action (a correction).
    correction: Template | None = None

    def route(self, intent: str) -> Route:
        return self.routes[intent]

    def review_due_after(self, priority: str) -> timedelta:
        """How long a review item of `priority` may wait before it is overdue."""
        return timedelta(hours=self.review_due_hours[priority])

    @property
    def correction_template(self) -> Template:
        return self.correction or self.acknowledgement


def _template(name: str, entry: object) -> Template:
    if not isinstance(entry, dict) or set(entry) != {"subject", "body"}:
        raise PolicyError(f"template {name!r}: expected exactly {{subject, body}}")
    for part in ("subject", "body"):
        if not isinstance(entry[part], str) or not entry[part].strip():
            raise PolicyError(f"template {name!r}: {part} must be a non-empty string")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(entry[part]) if f is not None}
        except ValueError as exc:
            raise PolicyError(f"template {name!r}: {part} is not a valid template: {exc}") from None
        unknown = sorted(fields - TEMPLATE_FIELDS)
        if unknown:
            raise PolicyError(f"template {name!r}: unknown placeholders {unknown}; "
                              f"allowed: {sorted(TEMPLATE_FIELDS)}")
    template = Template(entry["subject"], entry["body"])
    try:  # a format spec can hide a placeholder ("{case_id:{x}}"): render once, here, not per customer
        template.render(case_id=1, topic="card arrival", queue="cards", priority="P1")
    except (KeyError, IndexError, ValueError) as exc:
        raise PolicyError(f"template {name!r} does not render: {type(exc).__name__}: {exc}") from None
    return template


def _route(intent: str, entry: object) -> Route:
    if not isinstance(entry, dict) or set(entry) != {"queue", "priority", "action"}:
        raise PolicyError(f"intent {intent!r}: expected exactly {{queue, priority, action}}, got {entry!r}")
    if not isinstance(entry["queue"], str) or not entry["queue"]:
        raise PolicyError(f"intent {intent!r}: queue must be a non-empty string")
    if entry["priority"] not in PRIORITIES:
        raise PolicyError(f"intent {intent!r}: priority {entry['priority']!r} not in {PRIORITIES}")
    if entry["action"] not in ACTIONS:
        raise PolicyError(f"intent {intent!r}: action {entry['action']!r} not in {ACTIONS}")
    return Route(entry["queue"], entry["priority"], entry["action"])


def parse_policy(document: object, labels: list[str]) -> RoutingPolicy:
    if not isinstance(document, dict):
        raise PolicyError("policy must be a mapping with 'version', 'templates', 'never_automate' and 'intents'")
    unknown_keys = sorted(set(document) - {"version", "templates", "never_automate", "intents",
                                           "review_due_hours"})
    if unknown_keys:
        raise PolicyError(f"policy has unknown keys: {unknown_keys}")
    version = document.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PolicyError("policy 'version' must be a non-empty string")
    intents = document.get("intents")
    if not isinstance(intents, dict):
        raise PolicyError("policy 'intents' must map each intent to {queue, priority, action}")
    expected = set(labels) | {OUT_OF_SCOPE}
    unknown = sorted(set(intents) - expected)
    missing = sorted(expected - set(intents))
    if unknown:
        raise PolicyError(f"policy names unknown intents: {unknown}")
    if missing:
        raise PolicyError(f"policy does not route: {missing}")
    routes = {intent: _route(intent, entry) for intent, entry in intents.items()}

    templates = document.get("templates")
    if not isinstance(templates, dict):
        raise PolicyError("policy 'templates' must map each action, and 'acknowledgement', to {subject, body}")
    missing_templates = sorted((set(ACTIONS) | {"acknowledgement"}) - set(templates))
    unknown_templates = sorted(set(templates) - set(ACTIONS) - {"acknowledgement", *OPTIONAL_TEMPLATES})
    if missing_templates or unknown_templates:
        raise PolicyError(f"policy templates: missing {missing_templates}, unknown {unknown_templates}")
    parsed = {name: _template(name, entry) for name, entry in templates.items()}

    never = document.get("never_automate", [])
    if not isinstance(never, list) or not all(isinstance(i, str) for i in never):
        raise PolicyError("policy 'never_automate' must be a list of intents")
    unknown_never = sorted(set(never) - expected)
    if unknown_never:
        raise PolicyError(f"policy 'never_automate' names unknown intents: {unknown_never}")
    return RoutingPolicy(version, routes, {a: parsed[a] for a in ACTIONS}, parsed["acknowledgement"],
                         frozenset(never), _review_due_hours(document.get("review_due_hours")),
                         parsed.get("correction"))


def _review_due_hours(entry: object) -> dict[str, float]:
    if entry is None:
        return dict(DEFAULT_REVIEW_DUE_HOURS)
    if not isinstance(entry, dict) or set(entry) != set(PRIORITIES):
        raise PolicyError(f"policy 'review_due_hours' must give hours for exactly {list(PRIORITIES)}")
    hours = {}
    for priority, value in entry.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 24 * 30:
            raise PolicyError(f"review_due_hours {priority}: {value!r} is not a number of hours in (0, 720]")
        hours[priority] = float(value)
    return hours


def load_policy(path: Path | str | None = None, labels: list[str] | None = None) -> RoutingPolicy:
    """The shipped policy, or an operator's file at `path`."""
    source = Path(path).read_text(encoding="utf-8") if path else \
        resources.files("ai_assets.actions").joinpath("routing_policy.yaml").read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy is not valid YAML: {exc}") from None
    return parse_policy(document, labels if labels is not None else load_categories())
