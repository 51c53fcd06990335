"""The evaluation report over routed messages."""

from decimal import Decimal

import pytest

from ai_assets.serving.cascade_report import CascadeRow, cascade_report


def row(intent, automated, tier="local", latency=1.0, cost="0"):
    return CascadeRow(intent, automated, tier, latency, Decimal(cost))


def test_report_counts_out_of_scope_rows_as_must_not_automate():
    labels = ["card_arrival", "card_arrival", "pin_blocked", "oos", "OUT_OF_SCOPE"]
    rows = [row("card_arrival", True), row("pin_blocked", True), row("pin_blocked", False, "claude", 300, "0.004"),
            row("out_of_scope", False), row("card_arrival", True, latency=3.0)]
    report = cascade_report(labels, rows)
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["automated_share"] == pytest.approx(3 / 5)
    assert report["automated_precision"] == pytest.approx(1 / 3)
    assert report["out_of_scope_automated"] == pytest.approx(1 / 2)
    assert report["n_out_of_scope"] == 2
    assert report["per_tier"] == {"claude": 1, "local": 4}
    assert report["latency_ms"]["p50"] == 1.0 and report["latency_ms"]["mean"] == pytest.approx(61.2)
    assert report["cost_usd"] == "0.004000" and report["cost_per_1000_usd"] == "0.800000"
    assert 0 < report["macro_f1"] < 1


def test_report_without_out_of_scope_or_automation_says_none():
    report = cascade_report(["card_arrival"], [row("card_arrival", False)])
    assert report["out_of_scope_automated"] is None and report["automated_precision"] is None
    with pytest.raises(ValueError, match="1 labels but 0 routed rows"):
        cascade_report(["x"], [])
