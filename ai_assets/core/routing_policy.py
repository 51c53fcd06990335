"""The routing policy: intent -> queue and priority, versioned, validated at load.

A policy that does not cover every allowed intent, names an unknown intent, or uses an
unknown priority is refused with a message that says which entry is wrong — a typo must
not silently send fraud reports to the general queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ai_assets.core.dataset import load_categories
from ai_assets.core.llm_prompt import OUT_OF_SCOPE

PRIORITIES = ("P1", "P2", "P3")


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Route:
    queue: str
    priority: str


@dataclass(frozen=True)
class RoutingPolicy:
    version: str
    routes: dict[str, Route]

    def route(self, intent: str) -> Route:
        return self.routes[intent]


def parse_policy(document: object, labels: list[str]) -> RoutingPolicy:
    if not isinstance(document, dict):
        raise PolicyError("policy must be a mapping with 'version' and 'intents'")
    version = document.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PolicyError("policy 'version' must be a non-empty string")
    intents = document.get("intents")
    if not isinstance(intents, dict):
        raise PolicyError("policy 'intents' must map each intent to {queue, priority}")
    expected = set(labels) | {OUT_OF_SCOPE}
    unknown = sorted(set(intents) - expected)
    missing = sorted(expected - set(intents))
    if unknown:
        raise PolicyError(f"policy names unknown intents: {unknown}")
    if missing:
        raise PolicyError(f"policy does not route: {missing}")
    routes = {}
    for intent, entry in intents.items():
        if not isinstance(entry, dict) or set(entry) != {"queue", "priority"}:
            raise PolicyError(f"intent {intent!r}: expected exactly {{queue, priority}}, got {entry!r}")
        if not isinstance(entry["queue"], str) or not entry["queue"]:
            raise PolicyError(f"intent {intent!r}: queue must be a non-empty string")
        if entry["priority"] not in PRIORITIES:
            raise PolicyError(f"intent {intent!r}: priority {entry['priority']!r} not in {PRIORITIES}")
        routes[intent] = Route(entry["queue"], entry["priority"])
    return RoutingPolicy(version, routes)


def load_policy(path: Path | None = None, labels: list[str] | None = None) -> RoutingPolicy:
    """The shipped policy, or an operator's file at `path`."""
    source = path.read_text(encoding="utf-8") if path else \
        resources.files("ai_assets.policy").joinpath("routing.yaml").read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy is not valid YAML: {exc}") from None
    return parse_policy(document, labels if labels is not None else load_categories())
