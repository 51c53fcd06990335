"""The promotion gate's rules."""

from ai_assets.serving.intent.promotion import GateRules, gate_failures

RULES = GateRules(min_accuracy=0.9, min_coverage=0.8, max_out_of_scope_automated=0.01, tolerance=0.0)
GOOD = {"accuracy": 0.93, "coverage": 0.86, "out_of_scope_automated": 0.0, "threshold_finite": True,
        "n_out_of_scope_heldout": 1233}


def test_first_version_needs_only_the_floors():
    assert gate_failures(GOOD, None, RULES) == []
    assert gate_failures({**GOOD, "accuracy": 0.89}, None, RULES) == ["accuracy 0.8900 is below the floor 0.9000"]


def test_equal_to_production_passes_worse_fails():
    assert gate_failures(GOOD, GOOD, RULES) == []
    failures = gate_failures({**GOOD, "coverage": 0.85}, GOOD, RULES)
    assert failures == ["coverage 0.8500 is worse than production's 0.8600"]
    assert gate_failures({**GOOD, "coverage": 0.855}, GOOD, GateRules(tolerance=0.01)) == []


def test_out_of_scope_leakage_and_missing_metrics_fail():
    failures = gate_failures({"accuracy": 0.95, "out_of_scope_automated": 0.02, "threshold_finite": True,
                              "n_out_of_scope_heldout": 1233}, GOOD, RULES)
    assert failures == ["candidate has no coverage metric",
                        "automates 0.0200 of held-out out-of-scope messages (at most 0.0100)"]


def test_a_missing_out_of_scope_measurement_fails_the_gate():
    candidate = {k: v for k, v in GOOD.items() if k != "out_of_scope_automated"}
    assert gate_failures(candidate, None, RULES) == ["candidate has no out_of_scope_automated metric"]
    assert gate_failures({**GOOD, "out_of_scope_automated": None}, GOOD, RULES) == \
        ["candidate has no out_of_scope_automated metric"]


def test_an_unreachable_target_precision_fails_the_gate():
    # An infinite threshold is stored as 1.0, so the metric is what tells the gate.
    assert gate_failures({**GOOD, "threshold_finite": False}, None, RULES) == \
        ["no confidence threshold reaches the target precision"]
    missing = {k: v for k, v in GOOD.items() if k != "threshold_finite"}
    assert gate_failures(missing, None, RULES) == ["candidate has no threshold_finite metric"]


def test_the_out_of_scope_share_must_rest_on_enough_messages():
    # 0 of 137 held-out messages automated is compatible with a true 2.7%: not evidence enough.
    assert gate_failures({**GOOD, "n_out_of_scope_heldout": 137}, None, RULES) == \
        ["out-of-scope share judged on 137 held-out messages (at least 500)"]
    assert gate_failures({**GOOD, "n_out_of_scope_heldout": 500}, None, RULES) == []
    missing = {k: v for k, v in GOOD.items() if k != "n_out_of_scope_heldout"}
    assert gate_failures(missing, None, RULES) == ["candidate has no n_out_of_scope_heldout metric"]
