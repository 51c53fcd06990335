"""Counts that must balance, the schema report and the volume verdict."""

import json

import pytest

from ai_assets.ingestion.accounting import balance, duplicate_locations, schema_report, volume_verdict
from ai_assets.ingestion.parsing import schema_fingerprint
from ai_assets.schemas import CONTRACT_FIELDS

RAW = [("app.jsonl", n) for n in range(1, 6)] + [("chat.jsonl", 1), ("chat.jsonl", 2)]


def contract_record(**extra) -> dict:
    return {"message_id": "m", "customer_id": "c", "channel": "app", "received_at": "t", "text": "x", **extra}


# --- balance -------------------------------------------------------------------------------

def test_every_row_in_one_place_balances():
    result = balance(RAW, duplicates={("app.jsonl", 5)},
                     validated=[("app.jsonl", 1), ("app.jsonl", 2), ("chat.jsonl", 2)],
                     quarantined=[("app.jsonl", 3), ("app.jsonl", 4), ("chat.jsonl", 1)])
    assert result.balanced
    assert (result.rows_in, result.validated, result.quarantined, result.duplicates) == (7, 3, 3, 1)
    assert result.unaccounted == [] and result.counted_twice == []


def test_a_missing_row_is_found_and_named():
    result = balance(RAW, duplicates=set(),
                     validated=[("app.jsonl", 1), ("app.jsonl", 2), ("chat.jsonl", 2)],
                     quarantined=[("app.jsonl", 3), ("app.jsonl", 4), ("chat.jsonl", 1)])
    assert not result.balanced
    assert result.unaccounted == [("app.jsonl", 5)]
    assert result.counted_twice == []


def test_a_double_counted_row_is_found_even_when_the_totals_add_up():
    # app.jsonl:2 validated *and* quarantined, app.jsonl:5 nowhere: 7 == 3 + 3 + 1 still holds.
    result = balance(RAW, duplicates={("app.jsonl", 2)},
                     validated=[("app.jsonl", 1), ("app.jsonl", 2), ("chat.jsonl", 2)],
                     quarantined=[("app.jsonl", 3), ("app.jsonl", 4), ("chat.jsonl", 1)])
    assert result.rows_in == result.validated + result.quarantined + result.duplicates
    assert not result.balanced
    assert result.counted_twice == [("app.jsonl", 2)]
    assert result.unaccounted == [("app.jsonl", 5)]


def test_the_same_row_listed_twice_in_one_output_is_double_counted():
    result = balance(RAW[:2], duplicates=set(), validated=[RAW[0], RAW[0], RAW[1]], quarantined=[])
    assert not result.balanced
    assert result.counted_twice == [RAW[0]]


def test_an_invented_row_breaks_the_balance():
    result = balance(RAW[:1], duplicates=set(), validated=[RAW[0], ("ghost.jsonl", 1)], quarantined=[])
    assert not result.balanced
    assert result.unaccounted == [] and result.counted_twice == []


def test_an_empty_day_balances():
    assert balance([], set(), [], []).balanced


# --- duplicates ----------------------------------------------------------------------------

def test_duplicate_locations_are_the_repeats_not_the_first_delivery():
    a = json.dumps({"message_id": "a", "text": "hi"})
    a_reordered = json.dumps({"text": "hi", "message_id": "a"})
    b = json.dumps({"message_id": "b", "text": "hi"})
    rows = [
        ("app.jsonl", 1, a, None),
        ("app.jsonl", 2, b, None),
        ("app.jsonl", 3, a_reordered, None),  # same record, other key order
        ("app.jsonl", 4, "{broken", "invalid_json"),
        ("app.jsonl", 5, "{broken", "invalid_json"),  # unparseable lines are never duplicates
        ("chat.jsonl", 1, a, None),  # across files too
    ]
    assert duplicate_locations(rows) == {("app.jsonl", 3), ("chat.jsonl", 1)}


def test_same_id_with_different_content_is_not_a_duplicate():
    rows = [("f", 1, json.dumps({"message_id": "a", "text": "one"}), None),
            ("f", 2, json.dumps({"message_id": "a", "text": "two"}), None)]
    assert duplicate_locations(rows) == set()


# --- schema report -------------------------------------------------------------------------

def test_records_on_contract_match_it():
    report = schema_report({"app.jsonl": [contract_record()], "chat.jsonl": [contract_record()]})
    assert report.matches_contract
    assert report.observed == sorted(CONTRACT_FIELDS)
    assert report.added == [] and report.missing_by_file == {}
    assert report.fingerprint == schema_fingerprint(set(CONTRACT_FIELDS))


def test_an_added_field_is_reported():
    report = schema_report({"app.jsonl": [contract_record(), contract_record(locale="en-GB")]})
    assert not report.matches_contract
    assert report.added == ["locale"]
    assert report.missing_by_file == {}
    assert "locale" in report.observed
    assert report.fingerprint != schema_fingerprint(set(CONTRACT_FIELDS))


def test_a_renamed_field_shows_as_added_and_missing_in_its_file():
    renamed = contract_record()
    renamed["body"] = renamed.pop("text")
    report = schema_report({"app.jsonl": [renamed, dict(renamed)], "chat.jsonl": [contract_record()]})
    assert report.added == ["body"]
    assert report.missing_by_file == {"app.jsonl": ["text"]}
    assert not report.matches_contract


def test_a_field_missing_from_only_some_records_is_not_a_schema_change():
    partial = contract_record()
    del partial["customer_id"]
    report = schema_report({"app.jsonl": [contract_record(), partial]})
    assert report.matches_contract  # row-level problem: validation quarantines that row


def test_files_without_records_report_nothing_missing():
    report = schema_report({"app-retry.jsonl": [], "app.jsonl": [contract_record()]})
    assert report.matches_contract
    assert schema_report({}).observed == []


def test_fingerprint_ignores_file_and_record_order():
    one = schema_report({"a": [contract_record()], "b": [contract_record(locale="x")]})
    two = schema_report({"b": [contract_record(locale="y")], "a": [contract_record()]})
    assert one.fingerprint == two.fingerprint


# --- volume verdict ------------------------------------------------------------------------

@pytest.mark.parametrize("rows, passed", [
    (100, True),
    (50, True),  # exactly the low bound
    (200, True),  # exactly the high bound
    (49, False),
    (201, False),
    (0, False),
])
def test_volume_band_against_the_trailing_median(rows, passed):
    verdict = volume_verdict(rows, [90, 100, 110], low=0.5, high=2.0)
    assert verdict.passed is passed
    assert verdict.baseline == 100
    assert verdict.ratio == round(rows / 100, 3)
    assert ("within" if passed else "outside") in verdict.reason


def test_median_is_robust_to_one_odd_day():
    verdict = volume_verdict(100, [100, 100, 100, 5000], low=0.5, high=2.0)
    assert verdict.passed and verdict.baseline == 100


def test_days_without_data_are_not_history():
    verdict = volume_verdict(100, [0, 0, 100, 0], low=0.5, high=2.0)
    assert verdict.passed and verdict.baseline == 100


@pytest.mark.parametrize("trailing", [[], [0, 0, 0]])
def test_no_history_passes_and_says_why(trailing):
    verdict = volume_verdict(12345, trailing, low=0.5, high=2.0)
    assert verdict.passed
    assert verdict.baseline is None and verdict.ratio is None
    assert "no trailing days" in verdict.reason
    assert verdict.rows == 12345
