"""The resolved-cases feed is validated like any source, and every line is accounted for."""

import json
import os
from datetime import date

import pandas as pd

from ai_assets.data.datasets import load_categories, split_banking77
from ai_assets.ingestion.landing_files import (
    DAY_FOLDER_IS_SYMLINK,
    FILE_TOO_LARGE,
    HARD_LINK,
    NOT_A_REGULAR_FILE,
    SYMLINK,
)
from ai_assets.ingestion.parsing import MAX_LINE_BYTES, parse_lines
from ai_assets.ingestion.resolved_cases import (
    CONFLICTING_LABEL,
    DUPLICATE,
    LABEL_COLUMNS,
    match_labels,
    read_resolved_files,
    resolved_file_path,
    valid_categories,
    validate_resolved,
)
from ai_assets.schemas import QUARANTINE_COLUMNS
from ai_assets.simulator import parse_fault_spec, simulate_day, write_day

DAY = date(2026, 3, 2)
NEXT = "2026-03-03T09:00:00Z"
FILE = "resolved-2026-03-02.jsonl"


def line(message_id: object = "m-1", category: object = "card_arrival", resolved_at: object = NEXT, **extra) -> bytes:
    record = {"message_id": message_id, "category": category, "resolved_at": resolved_at, **extra}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def feed(*lines: bytes) -> dict[str, bytes]:
    return {FILE: b"".join(chunk + b"\n" for chunk in lines)}


def test_categories_are_the_77_intents_and_out_of_scope():
    assert valid_categories() == frozenset(load_categories()) | {"out_of_scope"}
    assert len(valid_categories()) == 78


def test_the_simulators_feed_is_read_and_accepted_whole(tmp_path):
    files, resolved, ledger = simulate_day(DAY, split_banking77()["replay"], 120, {}, seed=3)
    write_day(tmp_path, DAY, files, resolved, ledger)
    files_in, refused = read_resolved_files(tmp_path, DAY)
    assert resolved_file_path(tmp_path, DAY) == tmp_path / "resolved_cases" / "2026-03-03" / FILE
    assert list(files_in) == [FILE] and refused == []
    outcome = validate_resolved(files_in, DAY)
    assert list(outcome.labels.columns) == list(LABEL_COLUMNS)
    assert len(outcome.labels) == len(resolved) == ledger.messages and outcome.quarantined.empty
    assert dict(zip(outcome.labels["message_id"], outcome.labels["category"], strict=True)) == {
        r["message_id"]: r["category"] for r in resolved}
    dtype = outcome.labels["resolved_at"].dtype
    assert isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"
    assert outcome.balance().balanced


HOSTILE = [
    # (line bytes, expected stage, expected reason); None: a valid label
    (line("m-1"), None, None),
    (b'{"message_id": "m-2", "category": "card_arrival"', "parse", "invalid_json"),
    (b"[1, 2]", "parse", "not_a_json_object"),
    (line("m-3", resolved_at=...), "validate", "missing_field(resolved_at)"),
    (line(12345), "validate", "wrong_type(message_id)"),
    (line("has space"), "validate", "invalid_message_id"),
    (line("4111111111111111"), "validate", "invalid_message_id"),  # a card number as the id
    (line("m-4", resolved_at="yesterday"), "validate", "invalid_timestamp"),
    (line("m-5", resolved_at="2026-03-03T09:00:00"), "validate", "invalid_timestamp"),  # no offset
    (line("m-6", category="teleportation"), "validate", "unknown_category"),
    (line("m-7", category="oos"), "validate", "unknown_category"),  # aliases are not guessed at
    (line("m-8", category=None), "validate", "missing_field(category)"),
    (line("m-9", note="x" * (MAX_LINE_BYTES + 10)), "parse", "line_too_long"),
    (b'{"message_id":"m-10","category":"\xff\xfe","resolved_at":"2026-03-03T09:00:00Z"}', "parse", "invalid_utf8"),
    (b"", "parse", "blank_line"),
    (b'{"message_id":"m-11","message_id":"m-12","category":"card_arrival","resolved_at":"2026-03-03T09:00:00Z"}',
     "parse", "duplicate_json_key"),
    (b'{"message_id":"m-13","category":"\\ud800","resolved_at":"2026-03-03T09:00:00Z"}', "parse", "lone_surrogate"),
    (b'{"message_id":"m-14","x":' + b"[" * 40 + b"]" * 40 + b"}", "parse", "nesting_too_deep"),
    (line("m-15", resolved_at="2026-03-01T23:59:59Z"), "validate", "resolved_before_day"),
    (line(1, category="x", resolved_at="bad"), "validate", "wrong_type(message_id); unknown_category; invalid_timestamp"),
    (line("m-16", category="out_of_scope"), None, None),  # an agent may say: not a banking request
    (line("m-17", category="card_arrival", channel="crm"), None, None),  # an extra field is tolerated
]


def test_hostile_lines_are_quarantined_with_reasons_and_every_line_is_accounted_for():
    outcome = validate_resolved(feed(*[chunk for chunk, _, _ in HOSTILE]), DAY)
    quarantined = outcome.quarantined
    assert list(quarantined.columns) == list(QUARANTINE_COLUMNS)
    expected = {number: (stage, reason) for number, (_, stage, reason) in enumerate(HOSTILE, start=1) if stage}
    got = {int(r.line): (r.stage, r.reason) for r in quarantined.itertuples()}
    assert got == expected
    assert sorted(outcome.labels["message_id"]) == ["m-1", "m-16", "m-17"]
    assert outcome.extra_fields == {"channel": 1}
    # Reasons are counted per component, so a line failing twice counts under both.
    assert outcome.reasons["unknown_category"] == 3 and outcome.reasons["invalid_message_id"] == 2
    assert outcome.reasons["wrong_type(message_id)"] == 2 and outcome.reasons["line_too_long"] == 1
    account = outcome.balance()
    assert account.balanced and account.lines_in == len(HOSTILE) == 3 + len(expected)
    assert outcome.to_metadata()["quarantined"] == len(expected)
    json.dumps(outcome.to_metadata())


def test_quarantine_rows_keep_only_safe_ids_and_masked_excerpts():
    outcome = validate_resolved(feed(line("4111111111111111"), line("m-6", category="teleportation"),
                                     line("m-9", note="jane.doe@example.com " * 5000)), DAY)
    by_line = {int(r.line): r for r in outcome.quarantined.itertuples()}
    card = by_line[1]
    assert pd.isna(card.message_id) and "4111111111111111" not in card.excerpt and "[CARD]" in card.excerpt
    assert by_line[2].message_id == "m-6"  # a well-formed id is kept for the operator
    assert "jane.doe@example.com" not in by_line[3].excerpt and len(by_line[3].excerpt) <= 200


def test_the_same_label_again_is_a_duplicate_and_a_different_one_a_conflict_latest_wins():
    outcome = validate_resolved(feed(
        line("a", "card_arrival", "2026-03-03T09:00:00Z"),
        line("a", "card_arrival", "2026-03-03T09:00:00Z"),  # re-delivered: duplicate
        line("b", "card_arrival", "2026-03-03T09:00:00Z"),
        line("b", "lost_or_stolen_card", "2026-03-03T11:00:00Z"),  # the agent's later word wins
        line("b", "card_arrival", "2026-03-03T10:00:00+00:00"),  # overruled again: a duplicate of the conflict
        line("c", "top_up_failed", "2026-03-03T12:00:00Z"),
        line("c", "top_up_reverted", "2026-03-03T08:00:00Z"),  # earlier though later in the file: loses
        line("d", "top_up_failed", "2026-03-03T12:00:00+01:00"),  # 11:00 UTC: the offset counts
        line("d", "card_arrival", "2026-03-03T11:30:00Z"),
        line("e", "card_arrival", NEXT),
        line("e", "top_up_failed", NEXT),  # the same moment: the later line wins
    ), DAY)
    kept = dict(zip(outcome.labels["message_id"], outcome.labels["category"], strict=True))
    assert kept == {"a": "card_arrival", "b": "lost_or_stolen_card", "c": "top_up_failed",
                    "d": "card_arrival", "e": "top_up_failed"}
    outcomes = {(r.message_id, int(r.line)): r.outcome for r in outcome.superseded.itertuples()}
    assert outcomes == {("a", 1): DUPLICATE, ("b", 3): DUPLICATE, ("b", 5): CONFLICTING_LABEL,
                        ("c", 7): CONFLICTING_LABEL, ("d", 8): CONFLICTING_LABEL, ("e", 10): CONFLICTING_LABEL}
    assert set(outcome.superseded.loc[outcome.superseded["message_id"] == "b", "kept_category"]) == {
        "lost_or_stolen_card"}
    account = outcome.balance()
    assert (account.lines_in, account.labelled, account.quarantined, account.duplicates, account.conflicts) == (
        11, 5, 0, 2, 4)
    assert account.balanced and account.lines_in == account.labelled + account.quarantined + account.duplicates \
        + account.conflicts


def test_the_balance_catches_a_line_lost_or_placed_twice():
    outcome = validate_resolved(feed(line("a"), line("a"), b"[1]"), DAY)
    assert outcome.balance().balanced
    outcome.labels = outcome.labels.iloc[0:0]  # a line dropped on the way
    assert outcome.balance().unaccounted == [(FILE, 2)] and not outcome.balance().balanced
    again = validate_resolved(feed(line("a"), line("a"), b"[1]"), DAY)
    again.quarantined = pd.concat([again.quarantined, again.quarantined])  # one line in two places
    assert again.balance().counted_twice == [(FILE, 3)] and not again.balance().balanced


def test_unknown_ids_are_counted_never_dropped(tmp_path):
    # A day whose landing files carry unparseable lines: agents resolve those messages too, so
    # their labels arrive for ids the pipeline never validated.
    files, resolved, ledger = simulate_day(DAY, split_banking77()["replay"], 200,
                                           parse_fault_spec("unparseable=0.05"), seed=11)
    write_day(tmp_path, DAY, files, resolved, ledger)
    known = [r["message_id"] for name, data in files.items()
             for r in parse_lines(name, data).records if r is not None]
    outcome = validate_resolved(read_resolved_files(tmp_path, DAY)[0], DAY)
    match = match_labels(outcome.labels, known)
    assert len(match.unknown) == ledger.faults["unparseable"] > 0
    assert len(match.matched) == len(known) and match.unlabelled == 0
    assert match.labels_in == len(outcome.labels)
    meta = match.to_metadata()
    assert meta["unknown_message_ids"] == ledger.faults["unparseable"] and len(meta["unknown_examples"]) <= 5
    json.dumps(meta)


def test_labels_of_quarantined_messages_are_told_apart_from_strangers():
    labels = validate_resolved(feed(line("a"), line("b"), line("q"), line("zz")), DAY).labels
    match = match_labels(labels, ["a", "b", "c"], quarantined_ids=["q", None])
    assert list(match.matched["message_id"]) == ["a", "b"]
    assert list(match.of_quarantined["message_id"]) == ["q"] and list(match.unknown["message_id"]) == ["zz"]
    assert match.unlabelled == 1 and match.messages == 3 and match.labels_in == len(labels)
    assert match.to_metadata()["labelled_share"] == round(2 / 3, 4)


def test_a_feed_not_yet_arrived_is_empty_and_tampered_files_are_refused_not_read(tmp_path):
    assert read_resolved_files(tmp_path, DAY) == ({}, [])
    folder = resolved_file_path(tmp_path, DAY).parent
    folder.mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (folder / "linked.jsonl").symlink_to(secret)
    os.mkfifo(folder / "fifo.jsonl")  # would block a plain open() forever
    os.link(secret, folder / "hard.jsonl")
    (folder / "big.jsonl").write_bytes(line() * 100)
    (folder / FILE).write_bytes(line() + b"\n" + line("b") + b"\n")
    (folder / ".in-flight.jsonl").write_bytes(b"half a li")
    files, refused = read_resolved_files(tmp_path, DAY, max_file_bytes=1000)
    assert list(files) == [FILE] and files[FILE].count(b"\n") == 2
    assert {(r.name, r.reason) for r in refused} == {
        ("linked.jsonl", SYMLINK), ("fifo.jsonl", NOT_A_REGULAR_FILE), ("hard.jsonl", HARD_LINK),
        ("big.jsonl", FILE_TOO_LARGE)}


def test_a_symlinked_arrival_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / FILE).write_bytes(line() + b"\n")
    folder = resolved_file_path(tmp_path, DAY).parent
    folder.parent.mkdir(parents=True)
    folder.symlink_to(elsewhere, target_is_directory=True)
    files, refused = read_resolved_files(tmp_path, DAY)
    assert files == {} and [r.reason for r in refused] == [DAY_FOLDER_IS_SYMLINK]


def test_deterministic_and_independent_of_file_order():
    first = {"b.jsonl": line("x", "card_arrival") + b"\n[]\n", "a.jsonl": line("y", "top_up_failed") + b"\n"}
    second = dict(reversed(list(first.items())))
    one, two = validate_resolved(first, DAY), validate_resolved(second, DAY)
    pd.testing.assert_frame_equal(one.labels, two.labels)
    pd.testing.assert_frame_equal(one.quarantined, two.quarantined)
    assert one.to_metadata() == two.to_metadata()
    empty = validate_resolved({FILE: b""}, DAY)
    assert empty.labels.empty and empty.balance().balanced and empty.lines_in == 0
