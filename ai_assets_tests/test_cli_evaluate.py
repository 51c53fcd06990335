"""`ai-assets evaluate` on an operator's labelled file, through the production routing."""

import csv
import json
import os
import subprocess
from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import pandas as pd
import pytest

from ai_assets.data.datasets import split_banking77
from ai_assets.ingestion.validation import validate_partition
from ai_assets.ops_db import OpsDb
from ai_assets.resources import ModelServing
from ai_assets.schemas import MAX_TEXT_CHARS
from ai_assets.serving.evaluation import evaluate_file, guarantee_check
from ai_assets.serving.intent.out_of_scope import load_out_of_scope
from ai_assets_tests.conftest import install_model
from ai_assets_tests.doubles import MessagesAPIServer
from ai_assets_tests.doubles.oracle import banking77_labels
from ai_assets_tests.test_cli import AI_ASSETS, Cli

KEYS = {"accuracy", "macro_f1", "automated_share", "automated_precision", "out_of_scope_automated",
        "per_tier", "latency_ms", "cost_usd"}


@pytest.fixture
def cli(tmp_path) -> Cli:
    return Cli(tmp_path)


def labelled_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "category"])
        writer.writerows(rows)
    return path


def sample(n_in=60, n_oos=20):
    # Rows from outside the training split, and out-of-scope messages never trained on.
    return [(r.text, r.category) for r in split_banking77()["replay"][:n_in]] + \
        [(t, "oos") for t in load_out_of_scope("heldout")[:n_oos]]


@pytest.mark.slow
def test_evaluate_json_reports_what_live_routing_does(cli, smoke_model, tmp_path):
    cli.install_model(smoke_model)
    data = labelled_csv(tmp_path / "labelled.csv", sample() + [("   ", "card_arrival")])
    report = json.loads(cli("evaluate", "--data", str(data), "--json").stdout)
    assert KEYS <= set(report)
    assert report["n"] == 80 and report["n_out_of_scope"] == 20 and report["rows_in_file"] == 81
    assert report["not_servable"] == {"empty_text": 1}
    assert report["per_tier"] == {"local": 80} and report["cost_usd"] == "0.000000"
    assert report["local_model"] == "intent_model v1"
    assert 0.3 < report["accuracy"] < 1 and 0 < report["macro_f1"] < 1
    assert report["automated_share"] < 0.5  # the smoke model is unsure of most messages
    assert report["automated_precision"] is None or report["automated_precision"] > 0.8
    assert report["out_of_scope_automated"] <= 0.1
    assert report["latency_ms"]["p95"] >= report["latency_ms"]["p50"] > 0
    # The judged figures with their exact intervals, counted on the same rows.
    figures = report["intervals"]
    assert figures["out_of_scope_automated"]["n"] == 20 and figures["in_scope_accuracy"]["n"] == 60
    assert figures["out_of_scope_automated"]["value"] == report["out_of_scope_automated"]
    assert figures["automated_precision"]["value"] == report["automated_precision"]
    for figure in figures.values():
        assert figure["value"] is None or figure["low"] <= figure["value"] <= figure["high"]
    assert figures["in_scope_coverage"]["k"] + figures["out_of_scope_automated"]["k"] == \
        round(report["automated_share"] * 80)
    assert set(report["guarantee"]) >= {"promised_precision", "kept", "refuted"}
    text = cli("evaluate", "--data", str(data)).stdout
    assert "in_scope_coverage" in text and "95% [" in text and "guarantee" in text


@pytest.mark.slow
def test_evaluate_with_the_llm_tier_pays_for_the_unsure_ones(cli, smoke_model, tmp_path):
    cli.install_model(smoke_model)
    data = labelled_csv(tmp_path / "labelled.csv", sample(30, 5))
    with MessagesAPIServer(banking77_labels()) as server:
        report = json.loads(cli("evaluate", "--data", str(data), "--json", ANTHROPIC_API_KEY="test-key",
                                ANTHROPIC_BASE_URL=server.base_url).stdout)
        calls = server.stats().messages_requests
    llm_rows = sum(n for tier, n in report["per_tier"].items() if tier.startswith("claude"))
    assert llm_rows > 0 and calls > 0 and float(report["cost_usd"]) > 0
    text = cli("evaluate", "--data", str(data)).stdout
    assert "accuracy" in text and "out_of_scope_automated" in text and "per 1,000" in text
    # Evaluations are recorded with their cost, but live traffic may still spend its whole day.
    with OpsDb.open(cli.ops_db_url) as db:
        assert db.usage.spent_usd() >= Decimal(report["cost_usd"]) > 0
        assert ModelServing().budget(db).daily_spent == 0


@pytest.mark.slow
def test_evaluate_stays_within_its_own_budget(cli, smoke_model, tmp_path):
    cli.install_model(smoke_model)
    data = labelled_csv(tmp_path / "labelled.csv", sample(10, 2))
    with MessagesAPIServer(banking77_labels()) as server:
        report = json.loads(cli("evaluate", "--data", str(data), "--json", "--budget-usd", "0",
                                ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=server.base_url).stdout)
        assert server.stats().messages_requests == 0
    assert report["per_tier"] == {"local": 12} and report["cost_usd"] == "0.000000"


@pytest.mark.parametrize("max_text_chars", [MAX_TEXT_CHARS, 120])
def test_evaluate_serves_exactly_the_rows_live_validation_accepts(tmp_path, smoke_model, max_text_chars):
    """The length contract applies to the normalised text before PII masking (which shortens
    it), with the ingestion policy's limit, as in validated_messages."""
    card = "my card 4111 1111 1111 1111 was declined "  # masked to "[CARD]": 13 characters fewer
    texts = {
        "at_the_limit": card + "x" * (max_text_chars - len(card)),
        "over_until_masked": card + "x" * (max_text_chars + 5 - len(card)),
        "short": "where is my new card?",
        "blank": "  \t ",
    }
    data = labelled_csv(tmp_path / "labelled.csv", [(t, "card_arrival") for t in texts.values()])
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    install_model(url, smoke_model)
    with OpsDb.open(url) as db:
        report = evaluate_file(data, ModelServing().live(db), max_text_chars=max_text_chars)
    assert report["n"] == 2 and report["not_servable"] == {"empty_text": 1, "overlong_text": 1}

    day = date(2025, 3, 3)
    raw = pd.DataFrame([{"source_file": "app.jsonl", "line": n, "parse_error": None, "raw": json.dumps({
        "message_id": f"m{n}", "customer_id": "c1", "channel": "app", "received_at": "2025-03-03T09:00:00+00:00",
        "text": text})} for n, text in enumerate(texts.values(), start=1)])
    live = validate_partition(raw, day, max_text_chars)  # what validated_messages does with the policy's
    assert len(live.validated) == report["n"] and len(live.quarantined) == 2


@pytest.mark.slow
def test_evaluate_refuses_rows_without_a_category(cli, smoke_model, tmp_path):
    cli.install_model(smoke_model)
    data = labelled_csv(tmp_path / "labelled.csv", [("where is my card", "card_arrival"), ("hello", "")])
    proc = cli("evaluate", "--data", str(data), check=False)
    assert proc.returncode == 1 and "1 record(s) have no category, first is record 2" in proc.stderr


def labelled_jsonl(path, lines: list[bytes]):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def jsonl_line(text: str, category: str) -> bytes:
    return json.dumps({"text": text, "category": category}).encode()


def one_line_error(proc) -> str:
    """The command failed with exactly one line on stderr and no traceback; that line."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


# Lines json.loads refuses in three different ways: RecursionError, ValueError (int digit
# limit), and UnicodeDecodeError before it is even called.
DEEP = b"[" * 10_000 + b"]" * 10_000
HUGE_INT = b'{"text": "where is my card", "category": "card_arrival", "n": ' + b"7" * 5_000 + b"}"
NOT_UTF8 = b'{"text": "caf\xe9", "category": "card_arrival"}'


@pytest.mark.slow
def test_evaluate_skips_and_counts_unreadable_json_lines(cli, smoke_model, tmp_path):
    cli.install_model(smoke_model)
    good = [jsonl_line(text, category) for text, category in sample(10, 2)]
    data = labelled_jsonl(tmp_path / "labelled.jsonl", [good[0], DEEP, *good[1:6], b"", HUGE_INT, *good[6:], NOT_UTF8])
    report = json.loads(cli("evaluate", "--data", str(data), "--json").stdout)
    assert report["n"] == 12 and report["unreadable"] == 3 and report["unreadable_lines"] == [2, 9, 16]
    assert report["rows_in_file"] == 15  # the blank line is no record
    text = cli("evaluate", "--data", str(data)).stdout
    assert text.startswith("12 messages through") and "3 unreadable line(s) skipped (2, 9, 16)" in text.splitlines()[0]


@pytest.mark.slow
def test_evaluate_fails_in_one_line_when_nothing_is_readable(cli, tmp_path):
    data = labelled_jsonl(tmp_path / "labelled.jsonl", [DEEP, HUGE_INT, b"{not json"])
    line = one_line_error(cli("evaluate", "--data", str(data), check=False))
    assert line == f"Error: {data}: no servable rows to evaluate (3 unreadable line(s) skipped (1, 2, 3))"


@pytest.mark.slow
def test_evaluate_with_no_servable_rows_fails_instead_of_reporting_nothing(cli, smoke_model, tmp_path):
    cli.install_model(smoke_model)
    data = labelled_csv(tmp_path / "labelled.csv", [("   ", "card_arrival"), ("", "card_arrival"),
                                                    ("x" * (MAX_TEXT_CHARS + 1), "card_arrival")])
    proc = cli("evaluate", "--data", str(data), "--json", check=False)
    line = one_line_error(proc)
    assert line == f"Error: {data}: no servable rows to evaluate (2 empty_text; 1 overlong_text)"
    assert proc.stdout == "" and "$None" not in proc.stderr


@pytest.mark.slow
def test_evaluate_names_the_csv_row_over_the_field_size_limit(cli, tmp_path):
    limit = csv.field_size_limit()
    data = labelled_csv(tmp_path / "labelled.csv", [("where is my card", "card_arrival"),
                                                    ("x" * (limit + 1), "card_arrival"),
                                                    ("top up failed", "top_up_failed")])
    line = one_line_error(cli("evaluate", "--data", str(data), check=False))
    assert line == (f"Error: {data}: the CSV row on line 3 is unreadable "
                    f"(field larger than field limit ({limit}))")
    assert csv.field_size_limit() == limit  # the limit is not raised, here or for the process


@pytest.mark.slow
def test_evaluate_refuses_a_fifo_without_waiting_for_a_writer(cli, tmp_path):
    fifo = tmp_path / "labelled.jsonl"
    os.mkfifo(fifo)
    proc = subprocess.run([AI_ASSETS, "evaluate", "--data", str(fifo)], env=cli.env, capture_output=True,
                          text=True, timeout=60)  # reading it would block for ever
    assert one_line_error(proc) == f"Error: {fifo}: not a regular file (a FIFO, device or socket is refused)"


@pytest.mark.slow
def test_evaluate_names_json_records_by_their_line(cli, tmp_path):
    data = labelled_jsonl(tmp_path / "labelled.jsonl", [jsonl_line("hi", "greeting"), b"", b'{"text": "no label"}'])
    assert one_line_error(cli("evaluate", "--data", str(data), check=False)) == (
        f"Error: {data}: 1 record(s) have no category, first is line 3")
    data = labelled_jsonl(tmp_path / "texts.jsonl", [b'["a list"]'])
    assert one_line_error(cli("evaluate", "--data", str(data), check=False)) == (
        f"Error: {data}: line 1 has no text column")


def _live_with_promise(metrics):
    record = SimpleNamespace(metrics=metrics)
    return SimpleNamespace(model=SimpleNamespace(record=record))


def test_evaluate_says_whether_the_precision_guarantee_was_kept():
    promise = {"guarantee": {"level": 0.975, "confidence": 0.95, "holds": True, "method": "fixed-sequence"}}
    live = _live_with_promise(promise)

    def rows(right, wrong, oos_automated=0):
        labels = ["card_arrival"] * (right + wrong) + ["oos"] * oos_automated
        intents = ["card_arrival"] * right + ["top_up_failed"] * wrong + ["card_arrival"] * oos_automated
        return labels, [{"intent": i, "automated": True, "tier": "local"} for i in intents]

    kept = guarantee_check(*rows(99, 1), live)
    assert kept["kept"] is True and kept["refuted"] is False and kept["observed"]["n"] == 100
    # 95 of 100: below the promise, but within sampling noise of it.
    noisy = guarantee_check(*rows(95, 5), live)
    assert noisy["kept"] is False and noisy["refuted"] is False
    broken = guarantee_check(*rows(850, 150), live)
    assert broken["kept"] is False and broken["refuted"] is True
    # The promise is about in-scope messages: automated out-of-scope rows are judged separately.
    assert guarantee_check(*rows(99, 1, oos_automated=5), live)["observed"]["n"] == 100
    assert guarantee_check(*rows(99, 1), _live_with_promise({}))["promised_precision"] is None
    assert guarantee_check(*rows(99, 1), SimpleNamespace(model=None))["kept"] is None
