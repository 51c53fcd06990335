"""End to end through the Dagster UI, the way an operator works: `dagster dev` on the workspace,
headless Chromium, a partition materialized from the asset page, a backfill of several days
launched from the job page and executed by the daemon, and the asset-check results shown.

The landing-zone sensor is on by default and would start its own run for every day that gets
files. The test first checks, in the UI, that it is running, then switches it off there (as an
operator would before a manual backfill) before any file lands: every ingestion run in the
instance is then one the UI launched, and the machine is not busy with 4 duplicate runs of the same
days. (The freshness sensor stays on; its small runs are left alone.)
"""

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from ai_assets_tests.browser.conftest import REPOSITORY, DagsterDev

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# From the launch until all four runs are done. Generous for a loaded 2-CPU machine (~150 s seen
# with the multiprocess executor while other suites ran); bounded so a stuck daemon fails the test.
RUNS_TIMEOUT_S = 360
UI_TIMEOUT_MS = 30_000
FAULTS = "unparseable=0.02,duplicate_id=0.02"  # some quarantine, far below the 20% ceiling
PARTITION_CHECKS = {
    "raw_messages": ["schema_matches_contract", "landing_files_all_read", "volume_within_trailing_band"],
    "validated_messages": ["counts_balance", "quarantine_share_within_ceiling"],
    "quarantined_messages": ["quarantine_rows_explained"],
    "enriched_messages": ["every_message_enriched_once"],
    "triage_decisions": ["every_message_triaged_once"],
    "case_actions": ["every_decision_acted_once"],
    "outbox_deliveries": ["no_dead_letters"],
    # The day's monitoring runs in the same job.
    "quality_estimate": [],
    "input_drift": ["input_drift_vs_training", "input_drift_vs_trailing_7_days"],
    "prediction_drift": ["prediction_drift_vs_training", "prediction_drift_vs_trailing_7_days"],
    "pipeline_metrics": [],
    "cost_report": ["within_llm_budget"],
    "business_metrics": [],
}
TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

SENSOR_QUERY = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
  __typename ... on Sensor { sensorState { status } } } }"""
RUN_QUERY = """query($id: ID!) { runOrError(runId: $id) {
  __typename ... on Run { runId jobName status tags { key value } } } }"""
BACKFILL_QUERY = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { id status partitionNames
    assetSelection { path } runs(limit: 50) { runId status tags { key value } } } } }"""
MATERIALIZATIONS_QUERY = """query($k: AssetKeyInput!, $p: [String!]) { assetOrError(assetKey: $k) {
  __typename ... on Asset { assetMaterializations(partitions: $p) { partition runId
    metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }"""
CHECKS_QUERY = """query($k: AssetKeyInput!, $c: String!, $p: String) {
  assetCheckExecutions(assetKey: $k, checkName: $c, partition: $p, limit: 10) {
    runId status partition evaluation { success partition } } }"""


def wait_for(what: str, probe: Callable[[], object], timeout_s: float, server: DagsterDev,
             interval_s: float = 1.0):
    """Poll until `probe` returns something truthy; fail with the last value and the server log."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        server.assert_alive()
        value = probe()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {value!r}\n"
                         f"{server.log_tail()}")


def tags_of(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def shoot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def open_toast_link(page: Page, message: re.Pattern, url_pattern: re.Pattern) -> str:
    """Read the 'Launched run …' / 'Created backfill …' toast and follow its View link;
    returns the id from the page it leads to."""
    toast_text = page.get_by_text(message)
    expect(toast_text).to_be_visible(timeout=UI_TIMEOUT_MS)
    # The toast's "View" is a link to the new run (/runs/<id>) or backfill (/runs/b/<id>).
    page.locator('a[href*="/runs/"]').filter(has_text=re.compile(r"^View$")).first.click()
    page.wait_for_url(url_pattern, timeout=UI_TIMEOUT_MS)
    return url_pattern.search(page.url).group(1)


def choose_partitions(page: Page, selection: str, expected: str) -> None:
    """Type a partition selection (a key or `[first...last]`) into the launch dialog."""
    dialog = page.get_by_role("dialog")
    box = dialog.get_by_role("textbox")
    box.fill(selection)
    box.press("Enter")
    expect(dialog.get_by_text(expected, exact=True)).to_be_visible()


def check_item(page: Page, check: str):
    """The entry of a check in an asset's Checks tab: its name and its latest status."""
    return page.get_by_title(check, exact=True).first.locator("xpath=..")


def test_materialize_backfill_and_checks_from_the_ui(browser_page: Page, dagster_dev: DagsterDev,
                                                    screenshots: Path):
    server, page = dagster_dev, browser_page
    today = datetime.now(UTC).date()
    single_day = (today - timedelta(days=4)).isoformat()
    backfill_days = [(today - timedelta(days=n)).isoformat() for n in (3, 2, 1)]
    print(f"\nscreenshots: {screenshots}\ndagster dev log: {server.log}")
    started = time.monotonic()

    # --- 0. The landing-zone sensor runs by default; switch it off from its page. ----------------
    sensor = {**REPOSITORY, "sensorName": "landing_zone_sensor"}
    page.goto(f"{server.url}/locations/ai_assets/sensors/landing_zone_sensor")
    running_row = page.locator("tr", has_text="Running").first
    switch = running_row.get_by_role("checkbox")
    expect(switch).to_be_checked(timeout=UI_TIMEOUT_MS)
    shoot(page, screenshots, "00_sensor_running")
    running_row.locator("label:has(input[type=checkbox])").click()
    expect(switch).not_to_be_checked()
    wait_for("landing_zone_sensor to stop",
             lambda: server.graphql(SENSOR_QUERY, {"s": sensor})["sensorOrError"]["sensorState"]["status"]
             == "STOPPED", 30, server)
    shoot(page, screenshots, "01_sensor_stopped")

    # Four days of landing files: one for the single run, three for the backfill.
    server.cli("simulate", "--start", single_day, "--days", "4", "--per-day", "200", "--faults", FAULTS)

    # --- 1. A backfill of three days of the whole ingestion job, from the job page. -------------
    # First, as it is the long pole: the backfill daemon picks it up within ~30 s.
    page.goto(f"{server.url}/locations/ai_assets/jobs/ingestion_job")
    page.get_by_role("button", name="Materialize all…").click()
    # No model has been trained here: the UI warns that enrichment's upstream model is missing
    # (enriched_messages then routes to keyword rules and people), and the operator goes on.
    expect(page.get_by_role("dialog")).to_contain_text("production_intent_model")
    page.get_by_role("dialog").get_by_role("button", name="Confirm", exact=True).click()
    expect(page.get_by_text("Are you sure?")).to_have_count(0)  # the warning's dialog has closed
    expect(page.get_by_role("dialog")).to_contain_text("Launch runs to materialize 13 assets")
    choose_partitions(page, f"[{backfill_days[0]}...{backfill_days[-1]}]", "3 partitions")
    shoot(page, screenshots, "10_backfill_dialog")
    page.get_by_role("dialog").get_by_role("button", name="Launch backfill", exact=True).click()
    backfill_id = open_toast_link(page, re.compile(r"Created backfill \w+"), re.compile(r"/runs/b/(\w+)"))
    shoot(page, screenshots, "11_backfill_page")

    # --- 2. One partition of raw_messages, from its asset page, while the backfill runs. --------
    page.goto(f"{server.url}/assets/raw_messages")
    page.get_by_role("button", name="Materialize…").click()
    expect(page.get_by_role("dialog")).to_contain_text("Launch runs to materialize raw_messages")
    choose_partitions(page, single_day, "1 partition")
    shoot(page, screenshots, "20_materialize_dialog")
    page.get_by_role("dialog").get_by_role("button", name="Launch 1 run", exact=True).click()
    run_id = open_toast_link(page, re.compile(r"Launched run \w+"), re.compile(r"/runs/([0-9a-f-]{36})"))
    shoot(page, screenshots, "21_single_run_page")
    print(f"UI launched run {run_id} and backfill {backfill_id} after {time.monotonic() - started:.0f}s")
    runs_deadline = time.monotonic() + RUNS_TIMEOUT_S

    # --- The single run succeeds, for that partition, and the run page says so. -----------------
    run = wait_for(f"run {run_id} to finish",
                   lambda: (r := server.graphql(RUN_QUERY, {"id": run_id})["runOrError"])
                   .get("status") in TERMINAL_RUN and r, runs_deadline - time.monotonic(), server)
    assert run["status"] == "SUCCESS", f"run from the UI ended {run['status']}:\n{server.log_tail()}"
    assert tags_of(run)["dagster/partition"] == single_day
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text(f"partition: {single_day}")).to_be_visible()
    shoot(page, screenshots, "30_single_run_succeeded")
    print(f"single run succeeded after {time.monotonic() - started:.0f}s")

    # --- The backfill completes, one successful run per day, and its page says so. --------------
    backfill = wait_for(f"backfill {backfill_id} to finish",
                        lambda: (b := server.graphql(BACKFILL_QUERY, {"id": backfill_id})
                                 ["partitionBackfillOrError"]).get("status") in TERMINAL_BACKFILL and b,
                        runs_deadline - time.monotonic(), server, interval_s=2.0)
    assert backfill["status"] in ("COMPLETED_SUCCESS", "COMPLETED"), backfill
    assert sorted(backfill["partitionNames"]) == backfill_days
    backfill_runs = {tags_of(r)["dagster/partition"]: r for r in backfill["runs"]}
    assert sorted(backfill_runs) == backfill_days, backfill["runs"]
    assert all(r["status"] == "SUCCESS" for r in backfill["runs"]), backfill["runs"]
    assert {tuple(a["path"]) for a in backfill["assetSelection"]} == {(a,) for a in PARTITION_CHECKS}
    page.goto(f"{server.url}/runs/b/{backfill_id}")
    expect(page.get_by_text("100% completed")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("Succeeded", exact=True).first).to_be_visible()
    shoot(page, screenshots, "40_backfill_succeeded")
    print(f"backfill succeeded after {time.monotonic() - started:.0f}s")

    # --- The partitions are materialized, by those runs. ----------------------------------------
    def materializations(asset: str, day: str) -> dict[str, dict]:
        """The partition's materializations, by run id (other runs may have written it too)."""
        events = server.graphql(MATERIALIZATIONS_QUERY, {"k": {"path": [asset]}, "p": [day]})
        return {e["runId"]: e for e in events["assetOrError"]["assetMaterializations"]
                if e["partition"] == day}

    assert run_id in materializations("raw_messages", single_day)
    for asset in PARTITION_CHECKS:
        for day in backfill_days:
            assert backfill_runs[day]["runId"] in materializations(asset, day), (asset, day)
    for day in backfill_days:
        event = materializations("quarantined_messages", day)[backfill_runs[day]["runId"]]
        rows = {m["label"]: m.get("intValue") for m in event["metadataEntries"]}
        assert rows["dagster/row_count"] > 0, f"the injected faults should be quarantined on {day}"

    # --- Every partition check passed, in the instance ... --------------------------------------
    def passed(asset: str, check: str, day: str, run: str) -> bool:
        executions = server.graphql(CHECKS_QUERY, {"k": {"path": [asset]}, "c": check, "p": day})
        return any(e["runId"] == run and e["status"] == "SUCCEEDED" and e["evaluation"]["success"]
                   and e["evaluation"]["partition"] == day for e in executions["assetCheckExecutions"])

    for check in PARTITION_CHECKS["raw_messages"]:
        assert passed("raw_messages", check, single_day, run_id), (check, single_day)
    for asset, checks in PARTITION_CHECKS.items():
        for check in checks:
            for day in backfill_days:
                assert passed(asset, check, day, backfill_runs[day]["runId"]), (asset, check, day)

    # --- ... and shown in the UI: each asset's Checks tab, and each check's history per day. ----
    for asset, checks in PARTITION_CHECKS.items():
        if not checks:
            continue
        page.goto(f"{server.url}/assets/{asset}?view=checks")
        for check in checks:
            expect(check_item(page, check)).to_contain_text("Succeeded", timeout=UI_TIMEOUT_MS)
        shoot(page, screenshots, f"50_checks_{asset}")
        for check in checks:
            page.goto(f"{server.url}/assets/{asset}?view=checks&checkDetail={check}")
            page.get_by_role("tab", name="Execution history").click()
            days = backfill_days + ([single_day] if asset == "raw_messages" else [])
            for day in days:
                row = page.locator("tr").filter(has_text=day).filter(has_text="Passed")
                expect(row.first).to_be_visible(timeout=UI_TIMEOUT_MS)
            shoot(page, screenshots, f"51_history_{asset}_{check}")
    print(f"check results verified in the UI after {time.monotonic() - started:.0f}s")
