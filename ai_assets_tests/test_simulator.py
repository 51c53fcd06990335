"""The landing-file simulator: determinism, no labels, seasonality and exactly counted faults.

Fault counts are checked by reading the bytes the simulator wrote, not by trusting its ledger.
"""

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from ai_assets.data.datasets import LabelledText, split_banking77
from ai_assets.schemas import CHANNELS, CONTRACT_FIELDS, MAX_TEXT_CHARS
from ai_assets.simulator import (
    FAULT_KINDS,
    FILE_FAULTS,
    PII_SAMPLES,
    ROW_FAULTS,
    WEEKDAY_FACTOR,
    FaultSpecError,
    day_volume,
    load_replay_source,
    parse_fault_spec,
    simulate_day,
    write_day,
)

MONDAY = date(2024, 3, 11)
SATURDAY = date(2024, 3, 16)
SUNDAY = date(2024, 3, 17)
PER_DAY = 200


@pytest.fixture(scope="module")
def pool() -> list[LabelledText]:
    return split_banking77()["replay"]


def _lines(files: dict[str, bytes]):
    """(file, 1-based line, bytes) for every line of every file."""
    for name, data in sorted(files.items()):
        for number, line in enumerate(data.split(b"\n")[:-1], start=1):
            yield name, number, line


def _records(files: dict[str, bytes]):
    """(file, line, record) for every line that is UTF-8 JSON."""
    for name, number, line in _lines(files):
        try:
            yield name, number, json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue


def _in_day(value: object, day: date) -> bool:
    if not isinstance(value, str):
        return False
    ts = datetime.fromisoformat(value)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return ts.tzinfo is not None and start <= ts < start + timedelta(days=1)


# How to recognise each row fault in the written bytes, independently of the ledger.
def _is_invalid_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _is_unparseable(line: bytes) -> bool:
    if _is_invalid_utf8(line):
        return False
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return True
    return False


def _record_fault(record: dict, day: date) -> set[str]:
    found = set()
    required_but_text = ("message_id", "customer_id", "channel", "received_at")
    if "body" in record and "text" not in record:
        found.add("renamed_field")
    if any(f not in record for f in required_but_text):
        found.add("missing_field")
    if any(f in record and not isinstance(record[f], str) for f in (*required_but_text, "text")):
        found.add("wrong_type")
    if isinstance(record.get("text"), str) and not record["text"].strip():
        found.add("empty_text")
    if isinstance(record.get("text"), str) and len(record["text"]) > MAX_TEXT_CHARS:
        found.add("overlong_text")
    if isinstance(record.get("received_at"), str) and not _in_day(record["received_at"], day):
        found.add("out_of_window")
    if "locale" in record:
        found.add("added_field")
    return found


def observed_faults(files: dict[str, bytes], day: date) -> dict[str, set[tuple[str, int]]]:
    """Every fault found in the files: kind -> {(file, line)}; duplicates at the re-delivery."""
    found: dict[str, set[tuple[str, int]]] = {kind: set() for kind in FAULT_KINDS}
    seen_lines: dict[bytes, tuple[str, int]] = {}
    for name, number, line in _lines(files):
        if line in seen_lines:
            found["duplicate_id"].add((name, number))
            continue
        seen_lines[line] = (name, number)
        if _is_invalid_utf8(line):
            found["invalid_utf8"].add((name, number))
        elif _is_unparseable(line):
            found["unparseable"].add((name, number))
        else:
            for kind in _record_fault(json.loads(line), day):
                found[kind].add((name, number))
    found["empty_file"] = {(name, 0) for name, data in files.items() if data == b""}
    return found


# --- determinism ---------------------------------------------------------------------------

def test_same_arguments_give_byte_identical_output(pool):
    faults = parse_fault_spec("all=0.02")
    first = simulate_day(MONDAY, pool, PER_DAY, faults, seed=11)
    second = simulate_day(MONDAY, list(pool), PER_DAY, dict(faults), seed=11)
    assert first[0] == second[0]  # landing files, byte for byte
    assert first[1] == second[1]  # resolved cases
    assert first[2].to_json() == second[2].to_json()  # ledger


def test_written_files_are_byte_identical_across_runs(pool, tmp_path):
    trees = []
    for run in ("a", "b"):
        files, resolved, ledger = simulate_day(MONDAY, pool, PER_DAY, parse_fault_spec("all=0.02"))
        write_day(tmp_path / run, MONDAY, files, resolved, ledger)
        root = tmp_path / run
        trees.append({p.relative_to(root).as_posix(): p.read_bytes()
                      for p in sorted(root.rglob("*")) if p.is_file()})
    assert trees[0] == trees[1]
    assert not any(Path(name).name.startswith(".") for name in trees[0])  # no temp files left


def test_rewriting_a_day_leaves_only_the_new_simulations_files(pool, tmp_path):
    """An earlier simulation's extra file (here the empty-file fault) must not linger and
    make the folder disagree with the new ledger."""
    faulty = simulate_day(MONDAY, pool, PER_DAY, parse_fault_spec("empty_file=0.01"))
    write_day(tmp_path, MONDAY, *faulty)
    clean_files, resolved, ledger = simulate_day(MONDAY, pool, PER_DAY, {})
    write_day(tmp_path, MONDAY, clean_files, resolved, ledger)
    folder = tmp_path / "messages" / MONDAY.isoformat()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == clean_files


@pytest.mark.parametrize("change", [{"seed": 8}, {"day": MONDAY + timedelta(days=7)}])
def test_different_seed_or_day_gives_different_traffic(pool, change):
    base = simulate_day(MONDAY, pool, PER_DAY, {}, seed=7)
    other = simulate_day(change.get("day", MONDAY), pool, PER_DAY, {}, seed=change.get("seed", 7))
    base_ids = {rec["message_id"] for _, _, rec in _records(base[0])}
    other_ids = {rec["message_id"] for _, _, rec in _records(other[0])}
    assert base[0] != other[0]
    assert not base_ids & other_ids


# --- the landing files ---------------------------------------------------------------------

def test_clean_day_follows_the_contract(pool):
    files, _, ledger = simulate_day(MONDAY, pool, PER_DAY, {}, pii_rate=0.0)
    records = list(_records(files))
    assert set(files) == {f"{ch}.jsonl" for ch in CHANNELS}
    assert len(records) == ledger.messages == sum(ledger.files.values()) == PER_DAY
    assert ledger.faults == {} and ledger.fault_rows == []
    pool_texts = {item.text for item in pool}
    for name, _, rec in records:
        assert set(rec) == CONTRACT_FIELDS
        assert all(isinstance(rec[f], str) for f in CONTRACT_FIELDS)
        assert name == f"{rec['channel']}.jsonl"
        assert _in_day(rec["received_at"], MONDAY)
        assert rec["text"] in pool_texts
    assert len({rec["message_id"] for _, _, rec in records}) == PER_DAY
    for name, data in files.items():
        assert data.endswith(b"\n")
        assert ledger.files[name] == data.count(b"\n")


def test_labels_never_reach_the_landing_files(pool):
    files, resolved, _ = simulate_day(MONDAY, pool, PER_DAY, parse_fault_spec("all=0.02"))
    for name, number, rec in _records(files):
        assert "category" not in rec and "_category" not in rec, (name, number)
        assert not any("categor" in key or "label" in key or "intent" in key for key in rec)
    assert b"category" not in b"".join(files.values())
    assert resolved and all("category" in case for case in resolved)


def test_resolved_feed_carries_labels_a_day_later(pool, tmp_path):
    files, resolved, ledger = simulate_day(MONDAY, pool, PER_DAY, {}, pii_rate=0.0)
    by_text = {item.text: item.category for item in pool}
    landed = {rec["message_id"]: rec for _, _, rec in _records(files)}
    assert {case["message_id"] for case in resolved} == set(landed)
    for case in resolved:
        assert datetime.fromisoformat(case["resolved_at"]).date() == MONDAY + timedelta(days=1)
        assert case["category"] == by_text[landed[case["message_id"]]["text"]]

    write_day(tmp_path, MONDAY, files, resolved, ledger)
    feed = tmp_path / "resolved_cases" / "2024-03-12" / "resolved-2024-03-11.jsonl"
    assert [json.loads(line) for line in feed.read_text().splitlines()] == resolved
    assert not (tmp_path / "resolved_cases" / "2024-03-11").exists()
    for name, data in files.items():
        assert (tmp_path / "messages" / "2024-03-11" / name).read_bytes() == data
    assert json.loads((tmp_path / "simulator_ledger" / "2024-03-11.json").read_text()) == \
        json.loads(ledger.to_json())


def test_weekend_volume_is_lower_than_monday(pool):
    volumes = {}
    for offset in range(7):
        day = MONDAY + timedelta(days=offset)
        files, _, ledger = simulate_day(day, pool, 1000, {})
        assert ledger.messages == sum(1 for _ in _lines(files)) == day_volume(1000, day)
        volumes[day.strftime("%a")] = ledger.messages
    assert volumes["Mon"] == 1000
    assert volumes["Sat"] < volumes["Mon"] and volumes["Sun"] < volumes["Mon"]
    assert max(volumes["Sat"], volumes["Sun"]) < min(volumes[d] for d in ("Mon", "Tue", "Wed", "Thu", "Fri"))
    assert [volumes[d] for d in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")] == \
        [round(1000 * f) for f in WEEKDAY_FACTOR]


def test_every_day_has_at_least_one_message():
    assert day_volume(1, SUNDAY) == 1
    assert day_volume(0, MONDAY) == 1


def test_pii_is_injected_at_the_stated_count(pool):
    files, _, ledger = simulate_day(MONDAY, pool, PER_DAY, {}, pii_rate=0.1)
    assert ledger.pii_injected == 20
    with_pii = [rec for _, _, rec in _records(files) if any(s in rec["text"] for s in PII_SAMPLES)]
    assert len(with_pii) == 20


# --- faults --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_is_injected_exactly_as_the_ledger_says(pool, kind):
    files, _, ledger = simulate_day(MONDAY, pool, PER_DAY, parse_fault_spec(f"{kind}=0.03"))
    expected = 1 if kind in FILE_FAULTS else 6  # 3% of Monday's 200 rows
    assert ledger.faults == {kind: expected}
    found = observed_faults(files, MONDAY)
    ledger_rows = {(r["file"], r["line"]) for r in ledger.fault_rows}
    if kind == "duplicate_id":  # the ledger names the first delivery; the copy follows it
        ledger_rows = {(f, line + 1) for f, line in ledger_rows}
    assert found[kind] == ledger_rows
    assert len(found[kind]) == expected
    # ... and no other kind of fault slipped in.
    assert {k for k, where in found.items() if where} == {kind}
    rows_written = sum(1 for _ in _lines(files))
    assert rows_written == PER_DAY + (expected if kind == "duplicate_id" else 0)
    assert sum(ledger.files.values()) == rows_written


def test_all_faults_together_are_disjoint_and_exact(pool):
    files, _, ledger = simulate_day(MONDAY, pool, 1000, parse_fault_spec("all=0.01"))
    assert ledger.faults == {kind: (1 if kind in FILE_FAULTS else 10) for kind in FAULT_KINDS}
    found = observed_faults(files, MONDAY)
    locations = [(r["file"], r["line"]) for r in ledger.fault_rows]
    assert len(locations) == len(set(locations))  # no row carries two faults
    for kind in FAULT_KINDS:
        assert len(found[kind]) == ledger.faults[kind], kind
    # A missing field never hides among rows that merely changed schema, and so on: the kinds
    # found are the kinds recorded, location by location.
    recorded = {(r["file"], r["line"] + (r["kind"] == "duplicate_id")): r["kind"] for r in ledger.fault_rows}
    for kind, where in found.items():
        for loc in where:
            assert recorded[loc] == kind


def test_fault_count_rounds_but_never_drops_a_requested_fault(pool):
    _, _, ledger = simulate_day(MONDAY, pool, PER_DAY, parse_fault_spec("unparseable=0.001"))
    assert ledger.faults == {"unparseable": 1}
    _, _, ledger = simulate_day(MONDAY, pool, PER_DAY, parse_fault_spec("unparseable=0"))
    assert ledger.faults == {}


def test_empty_file_fault_adds_one_file_with_no_bytes(pool):
    clean, _, _ = simulate_day(MONDAY, pool, PER_DAY, {})
    files, _, ledger = simulate_day(MONDAY, pool, PER_DAY, parse_fault_spec("empty_file=0.01"))
    empty = [name for name, data in files.items() if data == b""]
    assert len(empty) == 1
    assert {k: v for k, v in files.items() if k not in empty} == clean
    assert ledger.files[empty[0]] == 0


# --- fault spec ----------------------------------------------------------------------------

def test_parse_fault_spec_accepts_kinds_and_all():
    assert parse_fault_spec(None) == {}
    assert parse_fault_spec("") == {}
    assert parse_fault_spec("unparseable=0.05, duplicate_id=0.1") == {"unparseable": 0.05, "duplicate_id": 0.1}
    assert parse_fault_spec("all=0.02") == {kind: 0.02 for kind in FAULT_KINDS}
    assert parse_fault_spec("all=0.01,invalid_utf8=0.05")["invalid_utf8"] == 0.05
    assert set(ROW_FAULTS) | set(FILE_FAULTS) == set(FAULT_KINDS)


@pytest.mark.parametrize("spec, message", [
    ("bogus=0.1", "unknown fault 'bogus'"),
    ("unparseable", "needs a rate"),
    ("unparseable=lots", "not a number"),
    ("unparseable=0.6", "between 0 and 0.5"),
    ("unparseable=-0.1", "between 0 and 0.5"),
    ("all=0.1", "more than 0.9"),
    ("unparseable=0.5,missing_field=0.5", "more than 0.9"),
])
def test_parse_fault_spec_rejects_bad_specs(spec, message):
    with pytest.raises(FaultSpecError, match=message):
        parse_fault_spec(spec)


def test_fault_spec_error_is_a_value_error():
    # Callers that only know ValueError (click, argparse wrappers) still catch it.
    with pytest.raises(ValueError):
        parse_fault_spec("nope=0.1")


# --- replay sources ------------------------------------------------------------------------

def test_default_replay_source_is_the_replay_pool(pool):
    assert load_replay_source(None) == pool
    assert len(pool) == 1506


def test_replay_from_csv(tmp_path):
    source = tmp_path / "mine.csv"
    source.write_text('text,category,extra\n"Where is my card, please?",card_arrival,x\n'
                      "I lost my phone,lost_or_stolen_phone,y\nno label here,,z\n", encoding="utf-8")
    assert load_replay_source(source) == [
        LabelledText("Where is my card, please?", "card_arrival"),
        LabelledText("I lost my phone", "lost_or_stolen_phone"),
        LabelledText("no label here", ""),
    ]


def test_replay_from_jsonl_without_labels(tmp_path):
    source = tmp_path / "mine.jsonl"
    source.write_text('{"text": "Bonjour, où est ma carte ?"}\n\n{"text": "second", "category": "x"}\n',
                      encoding="utf-8")
    pool = load_replay_source(source)
    assert pool == [LabelledText("Bonjour, où est ma carte ?", ""), LabelledText("second", "x")]

    files, resolved, ledger = simulate_day(MONDAY, pool, 50, {}, pii_rate=0.0)
    texts = {rec["text"] for _, _, rec in _records(files)}
    assert texts <= {"Bonjour, où est ma carte ?", "second"}
    assert "Bonjour, où est ma carte ?".encode() in b"".join(files.values())  # UTF-8, not escaped
    # Only labelled rows can be resolved; unlabelled ones never get an invented label.
    second_ids = {rec["message_id"] for _, _, rec in _records(files) if rec["text"] == "second"}
    assert {case["message_id"] for case in resolved} == second_ids
    assert all(case["category"] == "x" for case in resolved)


@pytest.mark.parametrize("name, content", [
    ("no_text.csv", "body,category\nhello,x\n"),
    ("no_text.jsonl", '{"body": "hello"}\n'),
    ("not_string.jsonl", '{"text": 42}\n'),
])
def test_replay_source_without_text_column_is_refused(tmp_path, name, content):
    source = tmp_path / name
    source.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="no text column"):
        load_replay_source(source)


def test_empty_replay_source_is_refused(tmp_path):
    source = tmp_path / "empty.csv"
    source.write_text("text,category\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no rows"):
        load_replay_source(source)
