"""The `ai-assets` command as an operator runs it: the installed console script in a
subprocess, with its own DAGSTER_HOME (the repository's dagster.yaml) and data directory."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, RunsFilter

from ai_assets.simulator import FAULT_OUTCOME
from ai_assets_tests.conftest import REPO_ROOT, install_model

AI_ASSETS = str(Path(sys.executable).with_name("ai-assets"))
ASSETS = ("case_actions", "enriched_messages", "outbox_deliveries", "quarantined_messages", "raw_messages",
          "triage_decisions", "validated_messages")
# The day's monitoring (in the daily job) and the quality run a day later (the demo runs both).
DAILY_MONITORING = ("business_metrics", "cost_report", "input_drift", "pipeline_metrics", "prediction_drift",
                    "quality_estimate")
LABEL_FEEDBACK = ("model_quality", "quarantined_resolved_cases", "resolved_cases")
# Columns measured per run (and so different between two runs of the same work).
MEASURED = ["latency_ms"]


class Cli:
    def __init__(self, root: Path):
        self.home = root / "dagster_home"
        self.data = root / "var"
        self.home.mkdir(parents=True)
        shutil.copy(REPO_ROOT / "dagster.yaml", self.home / "dagster.yaml")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("AI_ASSETS_") and k != "DAGSTER_HOME"}
        self.env.update(DAGSTER_HOME=str(self.home), AI_ASSETS_DATA_DIR=str(self.data),
                        GX_ANALYTICS_ENABLED="false")

    def __call__(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([AI_ASSETS, *args], env={**self.env, **env}, cwd=self.data.parent,
                              capture_output=True, text=True, timeout=600)
        if check:
            assert proc.returncode == 0, f"ai-assets {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
        return proc

    @property
    def landing(self) -> Path:
        return self.data / "landing"

    @property
    def storage(self) -> Path:
        return self.data / "storage"

    @property
    def ops_db_url(self) -> str:
        return f"sqlite:///{self.data / 'ops.db'}"

    def install_model(self, model) -> int:
        self.data.mkdir(parents=True, exist_ok=True)
        return install_model(self.ops_db_url, model)

    def status(self) -> list[dict]:
        return json.loads(self("status", "--json").stdout)

    def ledger(self, day: str) -> dict:
        return json.loads((self.landing / "simulator_ledger" / f"{day}.json").read_text())


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# What the action steps did in this run (a re-run finds everything done): asserted separately.
RUN_SPECIFIC = frozenset({"acted", "review", "conflict", "already_done", "actions_per_second", "attempted",
                          "delivered", "failed_will_retry", "dead"})


def without_timing(rows: list[dict], also: frozenset[str] = frozenset(), skip: set[str] = frozenset()) -> list[dict]:
    """Status rows minus what legitimately differs between two runs of the same work (and minus
    the rows of the assets in `skip`)."""
    return [{**{k: v for k, v in r.items() if k not in ("materialized_at", "run_id")},
             "metadata": {k: v for k, v in r["metadata"].items()
                          if k != "duration_ms" and not k.startswith("latency_ms") and k not in also}}
            for r in rows if r["asset"] not in skip]


def contents(storage: Path) -> dict[str, str]:
    """Digest of every partition file; enriched partitions without their measured columns."""
    out = {}
    for path in sorted(storage.rglob("*.parquet")):
        name = str(path.relative_to(storage))
        if name.startswith(("enriched_messages/", "triage_decisions/")):
            frame = pd.read_parquet(path).drop(columns=MEASURED)
            out[name] = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
        else:
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_simulate_twice_gives_byte_identical_files(tmp_path):
    args = ("simulate", "--start", "2025-03-03", "--days", "2", "--per-day", "200", "--faults", "all=0.02")
    first, second = Cli(tmp_path / "a"), Cli(tmp_path / "b")
    out = first(*args).stdout
    assert "2025-03-03:" in out and "2025-03-04:" in out
    second(*args)
    files = tree_bytes(first.landing)
    assert files == tree_bytes(second.landing)
    assert {"messages/2025-03-03/app.jsonl", "messages/2025-03-04/app-retry.jsonl",
            "resolved_cases/2025-03-04/resolved-2025-03-03.jsonl",
            "simulator_ledger/2025-03-04.json"} <= set(files)
    # Again into the same place: the same bytes; another seed: different traffic.
    first(*args)
    assert tree_bytes(first.landing) == files
    first(*args, "--seed", "8")
    assert tree_bytes(first.landing)["messages/2025-03-03/app.jsonl"] != files["messages/2025-03-03/app.jsonl"]
    # Labels never reach the landing files.
    for name, data in files.items():
        if name.startswith("messages/") and data:
            assert b'"category"' not in data and b"_category" not in data


def test_simulate_replays_a_csv_file(cli, tmp_path):
    texts = {"I lost my card yesterday": "lost_or_stolen_card",
             "How do I top up with Apple Pay?": "apple_pay_or_google_pay_top_up",
             "Why was I charged twice": "transaction_charged_twice"}
    source = tmp_path / "replay.csv"
    source.write_text("text,category\n" + "".join(f'"{t}",{c}\n' for t, c in texts.items()))
    cli("simulate", "--start", "2025-03-03", "--per-day", "40", "--pii-rate", "0", "--from", str(source))
    lines = [json.loads(line) for p in sorted((cli.landing / "messages" / "2025-03-03").glob("*.jsonl"))
             for line in p.read_text().splitlines()]
    assert len(lines) == cli.ledger("2025-03-03")["messages"] == 40  # a Monday: full volume
    assert {r["text"] for r in lines} <= set(texts) and len({r["text"] for r in lines}) > 1
    assert all(set(r) == {"message_id", "customer_id", "channel", "received_at", "text"} for r in lines)
    resolved = [json.loads(line) for line in (cli.landing / "resolved_cases" / "2025-03-04"
                                              / "resolved-2025-03-03.jsonl").read_text().splitlines()]
    by_id = {r["message_id"]: r["category"] for r in resolved}
    assert all(by_id[r["message_id"]] == texts[r["text"]] for r in lines)


@pytest.mark.parametrize("spec, message", [
    ("bogus=0.1", "unknown fault 'bogus'"),
    ("unparseable", "needs a rate"),
    ("unparseable=lots", "is not a number"),
    ("unparseable=0.9", "between 0 and 0.5"),
])
def test_bad_fault_spec_is_a_clear_error(cli, spec, message):
    proc = cli("simulate", "--start", "2025-03-03", "--faults", spec, check=False)
    assert proc.returncode == 2
    assert "--faults" in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not cli.landing.exists()


def test_replay_file_without_text_column_is_a_clear_error(cli, tmp_path):
    source = tmp_path / "bad.csv"
    source.write_text("body,category\nhello,greeting\n")
    proc = cli("simulate", "--start", "2025-03-03", "--from", str(source), check=False)
    assert proc.returncode == 2 and "no text column" in proc.stderr and "Traceback" not in proc.stderr


def test_status_needs_dagster_home(cli):
    env = {k: v for k, v in cli.env.items() if k != "DAGSTER_HOME"}
    proc = subprocess.run([AI_ASSETS, "status", "--json"], env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "DAGSTER_HOME is not set" in proc.stderr


@pytest.mark.slow
def test_demo_then_status_json(cli, smoke_model):
    cli.install_model(smoke_model)  # the demo trains one when there is none (make demo does)
    demo = cli("demo", "--days", "3", "--per-day", "200")
    assert "demo: OK" in demo.stdout and "Serving with intent_model v1" in demo.stdout
    # The demo replays the last three days (yesterday with faults); read them from its output.
    match = re.search(r"materializing (\d{4}-\d\d-\d\d)\.\.(\d{4}-\d\d-\d\d)", demo.stdout)
    first_day, faulty = (date.fromisoformat(d) for d in match.groups())
    assert faulty - first_day == timedelta(days=2)
    assert faulty <= datetime.now(UTC).date() - timedelta(days=1)
    days = [(first_day + timedelta(days=i)).isoformat() for i in range(3)]
    faulty = faulty.isoformat()
    for day in days:
        assert f"{day}: files=" in demo.stdout
    assert demo.stdout.count("by intent_model v1: tiers {'local': ") == 3
    # The demo acts on its days: cases, and e-mail delivered to the file sink it names.
    acted = [int(n) for n in re.findall(r"acted (\d+), review \d+, conflict 0, already done 0; "
                                        r"outbox delivered \d+, pending 0, dead 0", demo.stdout)]
    assert len(acted) == 3 and sum(acted) > 0
    # What the demo sent to people is the review queue it points a reviewer to.
    reviews = sum(int(n) for n in re.findall(r"acted \d+, review (\d+), conflict", demo.stdout))
    assert re.search(rf"Review queue: {reviews} open item\(s\) \(P\d", demo.stdout), demo.stdout[-2000:]
    assert "ai-assets review add-user NAME --role admin" in demo.stdout
    assert len(list((cli.data / "outbox" / "mail").glob("*.eml"))) == sum(acted)

    everything = cli.status()
    assert isinstance(everything, list)
    assert sorted((r["asset"], r["partition"]) for r in everything) == sorted(
        (a, d) for a in ASSETS + DAILY_MONITORING + LABEL_FEEDBACK for d in days)
    # Layer 4 printed its figures for every day, and wrote the report.
    assert demo.stdout.count("quality: estimated accuracy") == 3 and demo.stdout.count("input_drift: ") == 3
    report = cli.data / "report" / "index.html"
    assert f"Monitoring report (static HTML, offline): {report}" in demo.stdout
    assert report.read_text().count("<svg") >= 10
    # The pipeline's own checks all passed (monitoring checks may fail: they are alerts, not errors).
    rows = [r for r in everything if r["asset"] in ASSETS]
    for row in rows:
        assert {"asset", "partition", "materialized_at", "metadata", "checks"} <= set(row)
        materialized_at = datetime.fromisoformat(row["materialized_at"])
        assert timedelta(0) <= datetime.now(UTC) - materialized_at < timedelta(hours=1)
        assert row["checks"], row["asset"]
        for check in row["checks"]:
            assert {"name", "passed", "severity"} <= set(check)
            assert check["passed"] is True, (row["asset"], row["partition"], check)
            assert check["severity"] in ("WARN", "ERROR")
    names = {r["asset"]: {c["name"] for c in r["checks"]} for r in rows if r["partition"] == faulty}
    assert names == {
        "raw_messages": {"schema_matches_contract", "landing_files_all_read", "volume_within_trailing_band",
                         "freshness_check"},
        "validated_messages": {"quarantine_share_within_ceiling", "counts_balance", "freshness_check"},
        "quarantined_messages": {"quarantine_rows_explained", "freshness_check"},
        "enriched_messages": {"every_message_enriched_once"},
        "triage_decisions": {"every_message_triaged_once"},
        "case_actions": {"every_decision_acted_once"},
        "outbox_deliveries": {"no_dead_letters"},
    }

    # The deliberately faulty day: exact counts, equal to what the simulator wrote.
    ledger = cli.ledger(faulty)
    assert "empty_file" in ledger["faults"] and "duplicate_id" in ledger["faults"]
    by_key = {(r["asset"], r["partition"]): r["metadata"] for r in rows}
    quarantined = by_key[("quarantined_messages", faulty)]
    expected_quarantine = sum(n for kind, n in ledger["faults"].items() if FAULT_OUTCOME[kind] == "quarantine")
    assert quarantined["quarantined"] == quarantined["dagster/row_count"] == expected_quarantine > 0
    assert quarantined["duplicates"] == ledger["faults"]["duplicate_id"]
    assert quarantined["rows_in"] == sum(ledger["files"].values())
    assert quarantined["validated"] == ledger["messages"] - expected_quarantine
    assert quarantined["rows_in"] == quarantined["validated"] + quarantined["quarantined"] + quarantined["duplicates"]
    reasons = quarantined["quarantined_by_reason"]
    assert sum(reasons.values()) == expected_quarantine
    assert reasons["invalid_json"] == ledger["faults"]["unparseable"]
    assert reasons["invalid_utf8"] == ledger["faults"]["invalid_utf8"]
    assert reasons["expect_column_values_to_be_between(received_at_utc)"] == ledger["faults"]["out_of_window"]
    raw = by_key[("raw_messages", faulty)]
    assert raw["files"] == len(ledger["files"]) and raw["empty_files"] == ["app-retry.jsonl"]
    for day in days[:-1]:
        clean = by_key[("quarantined_messages", day)]
        assert (clean["quarantined"], clean["duplicates"]) == (0, 0)
        assert clean["rows_in"] == sum(cli.ledger(day)["files"].values())

    text = cli("status").stdout
    assert "validated_messages" in text and "failed=none" in text and faulty in text


@pytest.mark.slow
def test_backfill_twice_gives_identical_outputs(cli, smoke_model):
    cli.install_model(smoke_model)
    cli("simulate", "--start", "2025-03-03", "--days", "3", "--per-day", "200", "--faults", "all=0.02")
    first = cli("backfill", "--start", "2025-03-03", "--end", "2025-03-05")
    for day in ("2025-03-03", "2025-03-04", "2025-03-05"):
        assert f"{day}: success" in first.stdout
    outputs = contents(cli.storage)
    assert set(outputs) == {f"{a}/{d}.parquet" for a in ASSETS if a != "outbox_deliveries"  # no stored value
                            for d in ("2025-03-03", "2025-03-04", "2025-03-05")}
    before = cli.status()
    cli("backfill", "--start", "2025-03-03", "--end", "2025-03-05")
    assert contents(cli.storage) == outputs
    after = cli.status()
    # The second backfill acted on nothing (found every message done); the rest is identical.
    for row in after:
        if row["asset"] == "case_actions":
            assert row["metadata"]["already_done"] == row["metadata"]["rows_in"] > 0
        if row["asset"] == "outbox_deliveries":
            assert row["metadata"]["attempted"] == 0 and row["metadata"]["pending"] == 0
    # pipeline_metrics measures the run itself (latencies, step times): it differs by nature.
    assert without_timing(after, RUN_SPECIFIC, skip={"pipeline_metrics"}) == without_timing(
        before, RUN_SPECIFIC, skip={"pipeline_metrics"})

    with DagsterInstance.from_config(str(cli.home)) as instance:
        runs = instance.get_runs(RunsFilter(tags={"ai_assets/backfill": "2025-03-03..2025-03-05"}))
        assert len(runs) == 6 and all(r.is_success for r in runs)
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(
            ["2025-03-03", "2025-03-04", "2025-03-05"] * 2)
        assert instance.get_materialized_partitions(AssetKey("validated_messages")) == {
            "2025-03-03", "2025-03-04", "2025-03-05"}

    bad = cli("backfill", "--start", "2025-03-05", "--end", "2025-03-03", check=False)
    assert bad.returncode == 2 and "before --start" in bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("start, end", [("1990-01-01", "1990-01-01"), ("9999-12-31", "9999-12-31"),
                                        ("2024-12-30", "2025-01-02")])
def test_backfill_outside_the_partitions_names_the_valid_range(cli, start, end):
    proc = cli("backfill", "--start", start, "--end", end, check=False)
    last = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    asked = start if start == end else f"{start}..{end}"
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"Error: no partition for {asked}: the days are 2025-01-01..{last} (UTC; a day becomes a partition "
        "once it has closed)"]
    # Refused before anything ran: no run in the instance.
    with DagsterInstance.from_config(str(cli.home)) as instance:
        assert instance.get_runs() == []


def test_simulate_refuses_a_replay_source_that_is_not_a_regular_file(cli, tmp_path):
    fifo = tmp_path / "replay.csv"
    os.mkfifo(fifo)
    proc = subprocess.run([AI_ASSETS, "simulate", "--start", "2025-03-03", "--from", str(fifo)], env=cli.env,
                          capture_output=True, text=True, timeout=60)  # reading it would block for ever
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f"Error: {fifo}: not a regular file (a FIFO, device or socket is refused)"]


def test_simulate_refuses_an_unreadable_replay_source_in_one_line(cli, tmp_path):
    source = tmp_path / "replay.jsonl"
    source.write_text("[" * 10_000 + "]" * 10_000 + "\n")
    proc = cli("simulate", "--start", "2025-03-03", "--from", str(source), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{source}: unreadable: maximum recursion depth exceeded" in proc.stderr
