"""Validation of one partition with the Great Expectations suite: every row accounted for.

The raw frame is built the way the `raw_messages` asset builds it, from simulator output or
from hand-written lines, and the outcome is reconciled against the simulator's ledger.
"""

import io
import json
from collections import Counter
from datetime import date

import pandas as pd
import pytest

from ai_assets.data.datasets import split_banking77
from ai_assets.ingestion.accounting import balance, duplicate_locations
from ai_assets.ingestion.parsing import EXCERPT_CHARS, parse_lines
from ai_assets.ingestion.pii import mask_pii
from ai_assets.ingestion.validation import validate_partition
from ai_assets.schemas import MAX_TEXT_CHARS, VALIDATED_COLUMNS
from ai_assets.simulator import FAULT_KINDS, FAULT_OUTCOME, PII_SAMPLES, parse_fault_spec, simulate_day
from ai_assets_tests.fault_expectations import QUARANTINE_REASON

DAY = date(2024, 3, 11)  # a Monday
PER_DAY = 200
RAW_COLUMNS = ["source_file", "line", "raw", "parse_error"]


def raw_frame(files: dict[str, bytes]) -> pd.DataFrame:
    """What `raw_messages` stores for a day: one row per landing line."""
    rows = []
    for name in sorted(files):
        rows += parse_lines(name, files[name]).rows
    frame = pd.DataFrame([r.__dict__ for r in rows], columns=RAW_COLUMNS)
    return frame.astype({"source_file": "string", "line": "int64", "raw": "string", "parse_error": "string"})


def record(n: int = 1, **changes) -> dict:
    rec = {"message_id": f"m-{n:04d}", "customer_id": f"c-{n:06d}", "channel": "app",
           "received_at": f"2024-03-11T{n % 24:02d}:15:00Z", "text": f"where is my card number {n}?"}
    rec.update(changes)
    return {k: v for k, v in rec.items() if v is not ...}


def lines_frame(*lines: bytes | dict, name: str = "app.jsonl") -> pd.DataFrame:
    data = b"".join((json.dumps(x).encode() if isinstance(x, dict) else x) + b"\n" for x in lines)
    return raw_frame({name: data})


def locations(frame: pd.DataFrame) -> set[tuple[str, int]]:
    return set(zip(frame["source_file"], frame["line"].astype(int)))


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pool():
    return split_banking77()["replay"]


@pytest.fixture(scope="module")
def simulated(pool):
    """kind -> (raw frame, ledger, outcome) for one day with only that fault, at 3%."""
    cache = {}

    def get(spec: str, per_day: int = PER_DAY, pii_rate: float = 0.02):
        key = (spec, per_day, pii_rate)
        if key not in cache:
            files, _, ledger = simulate_day(DAY, pool, per_day, parse_fault_spec(spec), pii_rate=pii_rate)
            raw = raw_frame(files)
            cache[key] = (raw, ledger, validate_partition(raw, DAY))
        return cache[key]

    return get


# --- each fault kind, reconciled with the ledger -------------------------------------------

@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_ends_where_the_ledger_says(simulated, kind):
    raw, ledger, out = simulated(f"{kind}=0.03")
    fault_rows = [r for r in ledger.fault_rows if r["kind"] == kind]
    assert fault_rows  # the fault really was injected
    quarantined = locations(out.quarantined)
    expected_quarantine = {(r["file"], r["line"]) for r in fault_rows if FAULT_OUTCOME[kind] == "quarantine"}
    assert quarantined == expected_quarantine
    assert len(out.quarantined) == len(quarantined)  # no line quarantined twice

    expected_duplicates = ledger.faults[kind] if FAULT_OUTCOME[kind] == "duplicate" else 0
    assert out.duplicates == expected_duplicates

    rows_in = len(raw)
    assert rows_in == len(out.validated) + len(out.quarantined) + out.duplicates
    assert len(out.validated) == ledger.messages - len(expected_quarantine)

    # Every raw line is in exactly one place.
    dups = duplicate_locations(raw.itertuples(index=False))
    accounted = balance(list(locations(raw)), dups, list(zip(out.validated["source_file"], out.validated["line"])),
                        list(zip(out.quarantined["source_file"], out.quarantined["line"])))
    assert accounted.balanced, accounted
    if kind == "duplicate_id":
        # The first delivery is kept, the re-delivery on the next line is the duplicate.
        assert dups == {(r["file"], r["line"] + 1) for r in fault_rows}
        assert {(r["file"], r["line"]) for r in fault_rows} <= locations(out.validated)
    if FAULT_OUTCOME[kind] == "accepted":
        assert {(r["file"], r["line"]) for r in fault_rows} <= locations(out.validated)


@pytest.mark.parametrize("kind", sorted(QUARANTINE_REASON))
def test_quarantine_names_the_stage_and_reason(simulated, kind):
    _, _, out = simulated(f"{kind}=0.03")
    stage, reason = QUARANTINE_REASON[kind]
    assert set(out.quarantined["stage"]) == {stage}
    assert all(r.startswith(reason) for r in out.quarantined["reason"]), list(out.quarantined["reason"])


def test_all_faults_at_once_balance(simulated):
    raw, ledger, out = simulated("all=0.01", per_day=1000)
    expected = {(r["file"], r["line"]) for r in ledger.fault_rows if FAULT_OUTCOME[r["kind"]] == "quarantine"}
    assert locations(out.quarantined) == expected
    assert out.duplicates == ledger.faults["duplicate_id"]
    assert len(raw) == len(out.validated) + len(out.quarantined) + out.duplicates
    summary = out.suite_summary
    assert summary["success"] is False
    assert summary["unsuccessful_expectations"] > 0
    assert sum(summary["unexpected_by_expectation"].values()) >= sum(
        1 for r in ledger.fault_rows if FAULT_OUTCOME[r["kind"]] == "quarantine"
        and r["kind"] not in ("unparseable", "invalid_utf8"))


def test_clean_day_passes_the_suite(simulated):
    raw, ledger, out = simulated("")
    assert out.quarantined.empty and out.duplicates == 0
    assert len(out.validated) == len(raw) == ledger.messages
    assert out.suite_summary["success"] is True
    assert out.suite_summary["evaluated_expectations"] > 0
    assert set(out.suite_summary["unexpected_by_expectation"].values()) == {0}


# --- the validated output ------------------------------------------------------------------

def test_validated_output_is_byte_identical_on_rerun(pool):
    outputs = []
    for _ in range(2):
        files, _, _ = simulate_day(DAY, pool, PER_DAY, parse_fault_spec("all=0.02"))
        out = validate_partition(raw_frame(files), DAY)
        outputs.append((parquet_bytes(out.validated), parquet_bytes(out.quarantined),
                        out.duplicates, json.dumps(out.suite_summary, sort_keys=True)))
    assert outputs[0] == outputs[1]


def test_validated_output_has_the_documented_columns_sorted_by_time(simulated):
    _, _, out = simulated("all=0.02")
    assert list(out.validated.columns) == list(VALIDATED_COLUMNS)
    assert str(out.validated["received_at"].dt.tz) == "UTC"
    keys = list(zip(out.validated["received_at"], out.validated["message_id"]))
    assert keys == sorted(keys)
    assert out.validated["message_id"].is_unique
    assert list(out.validated.index) == list(range(len(out.validated)))


def test_validated_text_is_masked_and_counted(simulated):
    raw, ledger, out = simulated("", pii_rate=0.1)
    assert ledger.pii_injected == 20
    assert sum(out.pii_masked.values()) == ledger.pii_injected
    assert int(out.validated["pii_masked"].sum()) == ledger.pii_injected
    assert (out.validated["pii_masked"] > 0).sum() == ledger.pii_injected
    texts = "\n".join(out.validated["text"])
    for sample in PII_SAMPLES:
        assert sample not in texts
    for secret in ("4111 1111 1111 1111", "jane.doe@example.com", "7946 0958", "GB82"):
        assert secret not in texts
    assert set(out.pii_masked) <= {"CARD", "EMAIL", "PHONE", "IBAN"}
    for text in out.validated["text"]:
        assert mask_pii(text)[1] == Counter()  # nothing left to mask


def test_pii_counts_hold_with_faults_too(simulated):
    _, ledger, out = simulated("all=0.01", per_day=1000, pii_rate=0.05)
    # PII rows never overlap fault rows, so every injected sample reaches validated data.
    assert sum(out.pii_masked.values()) == ledger.pii_injected == 50


def test_validated_text_is_normalised():
    raw = lines_frame(
        record(1, text="  ｍｙ　ｃａｒｄ\u200b is\tlost  "),
        record(2, text="\ufeffcafe\u0301 card 4111\u200b1111 1111 1111 please"),
    )
    out = validate_partition(raw, DAY)
    assert out.quarantined.empty
    by_id = dict(zip(out.validated["message_id"], out.validated["text"]))
    assert by_id == {"m-0001": "my card is lost", "m-0002": "café card [CARD] please"}
    assert dict(zip(out.validated["message_id"], out.validated["pii_masked"])) == {"m-0001": 0, "m-0002": 1}


# --- the contract, row by row ----------------------------------------------------------------

TIMESTAMPS = [
    ("2024-03-11T00:00:00Z", True),
    ("2024-03-11T23:59:59Z", True),
    ("2024-03-11T23:59:59.999999+00:00", True),
    ("2024-03-12T01:30:00+02:00", True),  # 23:30 UTC on the 11th
    ("2024-03-11T01:00:00+02:00", False),  # 23:00 UTC on the 10th
    ("2024-03-12T00:00:00Z", False),
    ("2024-03-10T23:59:59Z", False),
    ("2024-03-11T10:00:00", False),  # naive: no offset, no guessing
    ("2024-03-11 10:00:00", False),
    ("2024-03-11", False),
    ("yesterday", False),
    ("", False),
]


@pytest.fixture(scope="module")
def timestamp_outcome():
    """One partition with a row per timestamp case (line n+1, message m-000n), validated once."""
    return validate_partition(lines_frame(*(record(n, received_at=ts)
                                            for n, (ts, _) in enumerate(TIMESTAMPS, start=1))), DAY)


@pytest.mark.parametrize("n, received_at, accepted",
                         [(n, ts, ok) for n, (ts, ok) in enumerate(TIMESTAMPS, start=1)],
                         ids=[ts or "empty" for ts, _ in TIMESTAMPS])
def test_timestamps_must_carry_an_offset_and_fall_in_the_day(timestamp_outcome, n, received_at, accepted):
    out = timestamp_outcome
    message_id = f"m-{n:04d}"
    assert (message_id in set(out.validated["message_id"])) is accepted
    assert (message_id in set(out.quarantined["message_id"])) is not accepted
    if accepted:
        ts = out.validated.set_index("message_id").loc[message_id, "received_at"]
        assert ts.date() == DAY and str(ts.tz) == "UTC"
        assert ts == pd.Timestamp(received_at).tz_convert("UTC")
    else:
        reason = out.quarantined.set_index("message_id").loc[message_id, "reason"]
        assert "received_at_utc" in reason


VIOLATIONS = [
    ({"channel": "fax"}, "expect_column_values_to_be_in_set(channel)"),
    ({"channel": ...}, "expect_column_values_to_not_be_null(channel)"),
    ({"customer_id": None}, "expect_column_values_to_not_be_null(customer_id)"),
    ({"customer_id": 42}, "expect_column_values_to_be_of_type(customer_id)"),
    ({"text": ["a", "list"]}, "expect_column_values_to_be_of_type(text)"),
    ({"text": " \u200b\t"}, "expect_column_value_lengths_to_be_between(text_normalised)"),
    ({"text": "x" * (MAX_TEXT_CHARS + 1)}, "expect_column_value_lengths_to_be_between(text_normalised)"),
    ({"received_at": 1710151200}, "expect_column_values_to_be_of_type(received_at)"),
]


@pytest.fixture(scope="module")
def violation_outcome():
    """Good rows on odd lines, one violation per even line 2k, validated once."""
    lines = []
    for k, (changes, _) in enumerate(VIOLATIONS, start=1):
        lines += [record(2 * k - 1), record(2 * k, **changes)]
    return validate_partition(lines_frame(*lines), DAY)


def test_rows_around_violations_pass(violation_outcome):
    assert list(violation_outcome.validated["line"]) == list(range(1, 2 * len(VIOLATIONS), 2))
    assert list(violation_outcome.quarantined["line"]) == list(range(2, 2 * len(VIOLATIONS) + 1, 2))


@pytest.mark.parametrize("k, changes, reason", [(k, c, r) for k, (c, r) in enumerate(VIOLATIONS, start=1)],
                         ids=[r.split("(")[1].rstrip(")") + f"-{k}" for k, (_, r) in enumerate(VIOLATIONS)])
def test_contract_violations_are_quarantined_with_the_failed_expectation(violation_outcome, k, changes, reason):
    rows = violation_outcome.quarantined[violation_outcome.quarantined["line"] == 2 * k]
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row["source_file"], row["stage"]) == ("app.jsonl", "validate")
    assert reason in row["reason"]
    assert row["message_id"] == (f"m-{2 * k:04d}")


def test_text_at_the_length_limit_is_accepted():
    out = validate_partition(lines_frame(record(1, text="x" * MAX_TEXT_CHARS)), DAY)
    assert len(out.validated) == 1 and out.quarantined.empty
    limited = validate_partition(lines_frame(record(1, text="x" * 101)), DAY, max_text_chars=100)
    assert limited.validated.empty and len(limited.quarantined) == 1


def test_exact_redelivery_is_a_duplicate_but_a_reused_id_is_quarantined():
    same = record(1)
    reordered = dict(reversed(list(same.items())))  # same record, keys in another order
    clash = record(2, message_id="m-0001", text="a different message")
    out = validate_partition(lines_frame(same, reordered, clash, record(3)), DAY)
    assert out.duplicates == 1
    # Two different messages under one id: neither can be trusted, both go to an operator.
    assert list(out.quarantined["line"]) == [1, 3]
    assert all("expect_column_values_to_be_unique(message_id)" in r for r in out.quarantined["reason"])
    assert list(out.validated["message_id"]) == ["m-0003"]


def test_parse_errors_are_quarantined_at_the_parse_stage():
    out = validate_partition(lines_frame(record(1), b"{broken", b"[1, 2]", b"", b'{"text":"\xff"}'), DAY)
    assert list(zip(out.quarantined["line"], out.quarantined["stage"], out.quarantined["reason"])) == [
        (2, "parse", "invalid_json"), (3, "parse", "not_a_json_object"),
        (4, "parse", "blank_line"), (5, "parse", "invalid_utf8")]
    assert list(out.validated["message_id"]) == ["m-0001"]
    assert out.quarantined["message_id"].isna().all()


def test_quarantine_keeps_the_message_id_when_there_is_one():
    out = validate_partition(lines_frame(record(1, channel="fax")), DAY)
    assert list(out.quarantined["message_id"]) == ["m-0001"]


def test_day_with_only_an_empty_file_validates_to_nothing():
    out = validate_partition(raw_frame({"app-retry.jsonl": b""}), DAY)
    assert out.validated.empty and out.quarantined.empty and out.duplicates == 0
    assert list(out.validated.columns) == list(VALIDATED_COLUMNS)
    assert out.suite_summary["success"] is True


def test_day_with_only_bad_lines_validates_to_nothing():
    out = validate_partition(lines_frame(b"{", b"\xff"), DAY)
    assert out.validated.empty
    assert list(out.quarantined["reason"]) == ["invalid_json", "invalid_utf8"]


# --- quarantine excerpts ---------------------------------------------------------------------

CARD, IBAN, EMAIL, PHONE = "4111 1111 1111 1111", "GB82 WEST 1234 5698 7654 32", "jane.doe@example.com", "+44 20 7946 0958"


def test_quarantine_excerpts_carry_no_unmasked_pii():
    pii = f"card {CARD} iban {IBAN} mail {EMAIL} phone {PHONE}"
    raw = lines_frame(
        f'{{"message_id":"m-1","text":"{pii}'.encode(),  # unparseable
        f'{{"message_id":"m-2","text":"\xff{pii}"}}'.encode("latin-1"),  # invalid UTF-8
        record(3, received_at="2024-03-11T10:00:00", text=pii),  # naive timestamp
        record(4, channel="fax", text=pii),
        record(5, text=pii + " " + "x" * MAX_TEXT_CHARS),  # over-long: the PII is at the start
        record(6, channel="fax", text=f"  ｍａｉｌ {EMAIL}"),  # full-width: normalised first
        record(7, text=pii, channel="app", received_at=...),
    )
    out = validate_partition(raw, DAY)
    assert len(out.quarantined) == 7 and out.validated.empty
    for excerpt in out.quarantined["excerpt"]:
        assert len(excerpt) <= EXCERPT_CHARS
        for secret in ("4111", "1111 1111", "GB82", "WEST 1234", "jane.doe", "example.com", "7946", "0958"):
            assert secret not in excerpt, excerpt
        assert mask_pii(excerpt)[1] == Counter(), excerpt
    assert "[CARD]" in out.quarantined["excerpt"][0] and "[EMAIL]" in out.quarantined["excerpt"][5]
