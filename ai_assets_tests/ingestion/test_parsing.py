"""Landing bytes to raw rows: one row per line, parsed or with a reason, never dropped."""

import json

import pytest

from ai_assets.ingestion.parsing import RawRow, parse_lines, schema_fingerprint

GOOD = b'{"message_id":"m-1","text":"hello"}'


def _errors(data: bytes) -> list[str | None]:
    return [row.parse_error for row in parse_lines("f.jsonl", data).rows]


def test_good_lines_become_records_with_1_based_line_numbers():
    data = GOOD + b"\n" + b'{"message_id":"m-2","text":"again"}\n'
    parsed = parse_lines("app.jsonl", data)
    assert parsed.rows == [
        RawRow("app.jsonl", 1, GOOD.decode(), None),
        RawRow("app.jsonl", 2, '{"message_id":"m-2","text":"again"}', None),
    ]
    assert parsed.records == [{"message_id": "m-1", "text": "hello"}, {"message_id": "m-2", "text": "again"}]


@pytest.mark.parametrize("line, reason", [
    (b'{"text":"\xff\xfehello"}', "invalid_utf8"),
    (b"\xc3", "invalid_utf8"),  # a truncated multi-byte sequence
    (b'{"message_id":"m-1","te', "invalid_json"),
    (b"not json at all", "invalid_json"),
    (b"{'single': 'quotes'}", "invalid_json"),
    (b'["a", "list"]', "not_a_json_object"),
    (b'"a string"', "not_a_json_object"),
    (b"42", "not_a_json_object"),
    (b"null", "not_a_json_object"),
    (b"", "blank_line"),
    (b"   \t ", "blank_line"),
])
def test_each_bad_line_gets_its_reason_and_keeps_its_place(line, reason):
    data = GOOD + b"\n" + line + b"\n" + GOOD + b"\n"
    parsed = parse_lines("f.jsonl", data)
    assert [r.parse_error for r in parsed.rows] == [None, reason, None]
    assert [r.line for r in parsed.rows] == [1, 2, 3]
    assert parsed.records[1] is None
    assert parsed.records[0] == parsed.records[2] == json.loads(GOOD)


def test_invalid_utf8_line_keeps_a_readable_copy():
    row = parse_lines("f.jsonl", b'{"text":"caf\xe9"}\n').rows[0]
    assert row.parse_error == "invalid_utf8"
    assert row.raw == '{"text":"caf\ufffd"}'  # the bad byte replaced, the rest kept for the excerpt


def test_crlf_line_endings_are_accepted():
    data = GOOD + b"\r\n" + b"\r\n" + GOOD + b"\r\n"
    parsed = parse_lines("f.jsonl", data)
    assert [r.parse_error for r in parsed.rows] == [None, "blank_line", None]
    assert all(not r.raw.endswith("\r") for r in parsed.rows)
    assert parsed.rows[0].raw == GOOD.decode()


def test_carriage_return_inside_a_string_is_not_a_line_end():
    data = b'{"text":"a\\r\\nb"}\n'
    assert parse_lines("f.jsonl", data).records == [{"text": "a\r\nb"}]


def test_file_without_final_newline_keeps_its_last_line():
    parsed = parse_lines("f.jsonl", GOOD + b"\n" + GOOD)
    assert [r.line for r in parsed.rows] == [1, 2]
    assert [r.parse_error for r in parsed.rows] == [None, None]


def test_final_newline_starts_no_extra_line_but_a_blank_last_line_is_counted():
    assert _errors(GOOD + b"\n") == [None]
    assert _errors(GOOD) == [None]
    assert _errors(GOOD + b"\n\n") == [None, "blank_line"]


def test_empty_file_has_no_rows():
    parsed = parse_lines("empty.jsonl", b"")
    assert parsed.rows == [] and parsed.records == [] and not parsed.key_types


def test_lone_newline_is_one_blank_line():
    assert _errors(b"\n") == ["blank_line"]


def test_every_line_becomes_exactly_one_row():
    lines = [GOOD, b"\xff", b"{", b"[]", b"", GOOD, b"  "]
    parsed = parse_lines("mixed.jsonl", b"\n".join(lines) + b"\n")
    assert len(parsed.rows) == len(parsed.records) == len(lines)
    assert [r.line for r in parsed.rows] == list(range(1, len(lines) + 1))
    assert all(r.source_file == "mixed.jsonl" for r in parsed.rows)


def test_unicode_text_is_decoded_not_escaped():
    line = '{"text":"Où est ma carte? 💳"}'.encode()
    parsed = parse_lines("f.jsonl", line + b"\n")
    assert parsed.rows[0].raw == '{"text":"Où est ma carte? 💳"}'
    assert parsed.records[0]["text"] == "Où est ma carte? 💳"


def test_key_types_count_fields_and_json_types_of_parsed_records():
    data = b"\n".join([
        b'{"message_id":"a","n":1,"f":1.5,"b":true,"z":null,"l":[],"o":{}}',
        b'{"message_id":7}',
        b"not json",
    ]) + b"\n"
    key_types = parse_lines("f.jsonl", data).key_types
    assert dict(key_types) == {
        "message_id:string": 1, "message_id:number": 1, "n:number": 1, "f:number": 1,
        "b:boolean": 1, "z:null": 1, "l:array": 1, "o:object": 1,
    }


def test_schema_fingerprint_depends_on_the_set_of_fields_only():
    a = schema_fingerprint({"message_id", "text"})
    assert a == schema_fingerprint({"text", "message_id"})
    assert a != schema_fingerprint({"message_id", "body"})
    assert a != schema_fingerprint({"message_id", "text", "locale"})
    assert len(a) == 16 and all(c in "0123456789abcdef" for c in a)
