"""The promotion gate: may a candidate intent model replace the production one?

A candidate passes when it is at least as good as production on validation accuracy and on
coverage at the target precision (within `tolerance`), clears the floors, automates no more
than the allowed share of held-out out-of-scope messages, judged on a set large enough for the
share to mean something (at least `min_out_of_scope_heldout` messages: on 137, one message
moved it by 0.73 points, a whole 1% budget), and has a confidence threshold that reaches the
target precision at all. Without a production version only the floors apply. A metric the gate
needs and the candidate lacks fails it: the gate fails closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GateRules:
    min_accuracy: float = 0.90
    min_coverage: float = 0.80
    max_out_of_scope_automated: float = 0.01
    min_out_of_scope_heldout: int = 500  # fewer held-out out-of-scope messages: not evidence enough
    tolerance: float = 0.0  # how much worse than production on accuracy or coverage still passes


def _number(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def gate_failures(candidate: dict[str, Any], production: dict[str, Any] | None, rules: GateRules) -> list[str]:
    """Why the candidate must not be promoted; empty when it may."""
    failures = []
    floors = {"accuracy": rules.min_accuracy, "coverage": rules.min_coverage}
    for key, floor in floors.items():
        value = _number(candidate, key)
        if value is None:
            failures.append(f"candidate has no {key} metric")
        elif value < floor:
            failures.append(f"{key} {value:.4f} is below the floor {floor:.4f}")
        elif production is not None:
            current = _number(production, key)
            if current is not None and value < current - rules.tolerance:
                failures.append(f"{key} {value:.4f} is worse than production's {current:.4f}")
    oos = _number(candidate, "out_of_scope_automated")
    if oos is None:
        failures.append("candidate has no out_of_scope_automated metric")
    elif oos > rules.max_out_of_scope_automated:
        failures.append(f"automates {oos:.4f} of held-out out-of-scope messages "
                        f"(at most {rules.max_out_of_scope_automated:.4f})")
    n_oos = _number(candidate, "n_out_of_scope_heldout")
    if n_oos is None:
        failures.append("candidate has no n_out_of_scope_heldout metric")
    elif n_oos < rules.min_out_of_scope_heldout:
        failures.append(f"out-of-scope share judged on {int(n_oos)} held-out messages "
                        f"(at least {rules.min_out_of_scope_heldout})")
    finite = candidate.get("threshold_finite")
    if not isinstance(finite, bool):
        failures.append("candidate has no threshold_finite metric")
    elif not finite:
        failures.append("no confidence threshold reaches the target precision")
    return failures
