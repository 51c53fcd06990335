"""The review app as reviewers use it: the real `ai-assets review serve` on a free loopback port,
accounts made with `ai-assets review add-user`, items written by the real `ActionLedger`, and
headless Chromium (Debian's, through Playwright).

A reviewer signs in, filters the queue, corrects one item with a digit key and Enter, another with
the type-ahead and Enter, approves a third with the keyboard, rejects one as out of scope; a senior
overrides an automatic action with a reason. The database then holds the pending decisions with
reviewer, kind, intent, reason and the model's answer; applying them (`apply_pending`) lands the
case changes, outbox rows, audit rows and training rows. The median time per keyboard decision
is printed and written to `review_browser_timings.json` in the test's temporary directory.
A hostile page on another origin posting to the app is refused, and nothing is recorded."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from ai_assets.actions.ledger import ActionLedger, MessageDecision
from ai_assets.actions.routing_policy import load_policy
from ai_assets.actions.triage import content_hash, email_key, idempotency_key, triage
from ai_assets.ops_db import AuditContext, OpsDb, pipeline_actor
from ai_assets.ops_db.tables import (
    Action,
    AuditEntry,
    Case,
    CaseHistory,
    OutboxMessage,
    ReviewDecision,
    ReviewItem,
)
from ai_assets.review.apply import REVIEW_APPLIED, apply_pending, correction_email_key, decision_event_key
from ai_assets.review.training_rows import export_rows
from ai_assets_tests.browser.conftest import BIN, free_port
from ai_assets_tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

POLICY = load_policy()
PASSWORDS = {"alice": "alice's long password", "sam": "sam's longer password"}
START_TIMEOUT_S = 60


def decision(message_id: str, intent: str, customer: str, *, reason: str = "below_threshold: 0.42 < 0.70",
             automated: bool = False, text: str, suggestions: tuple[str, ...] = ()) -> MessageDecision:
    t = triage(intent, automated, None if automated else reason, POLICY)
    content = content_hash(customer, "app", text)
    scores = (0.42, 0.31, 0.12, 0.06, 0.04)
    return MessageDecision(
        message_id=message_id, customer_id=customer, intent=intent, confidence=0.96 if automated else 0.42,
        decision=t.decision, action=t.action, reason=t.reason, queue=t.queue, priority=t.priority,
        policy_version=POLICY.version, idempotency_key=idempotency_key(message_id, t.action, POLICY.version, content),
        text=text, content_hash=content, model_version="intent_model v3", model_call={"tier": "local"},
        suggestions=tuple(zip((intent, *suggestions), scores)))


SEED = [
    decision("m-arrival", "card_arrival", "cust-100001", text="My new card still has not come, it's been a week",
             suggestions=("card_delivery_estimate", "lost_or_stolen_card")),
    decision("m-rate", "exchange_rate", "cust-100002", text="What rate do I get for euros today?",
             suggestions=("exchange_charge", "card_payment_wrong_exchange_rate")),
    decision("m-broken", "card_not_working", "cust-100003", text="My card gets declined in every shop",
             suggestions=("declined_card_payment", "card_swallowed")),
    decision("m-weather", "transfer_timing", "cust-100004", reason="llm_local_disagree: local out_of_scope",
             text="Will it rain in Lisbon tomorrow?", suggestions=("out_of_scope",)),
    decision("m-stolen", "lost_or_stolen_card", "cust-100005", reason="needs_human",
             text="someone took my wallet <script>alert(1)</script>", suggestions=("compromised_card",)),
    decision("m-auto", "card_arrival", "cust-100006", automated=True, text="Where is my card? Ordered last month"),
]


@dataclass
class ReviewServer:
    url: str
    db_url: str
    log: Path
    process: subprocess.Popen

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([str(BIN / "ai-assets"), *args], cwd=REPO_ROOT, env=env, input=stdin, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"ai-assets {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@contextmanager
def review_server(tmp_path: Path, *serve_args: str) -> Iterator[ReviewServer]:
    """Seeded database, two accounts, and `ai-assets review serve` in its own process group."""
    db_url = f"sqlite:///{tmp_path / 'ops.db'}"
    with OpsDb.open(db_url) as db:
        ActionLedger(db.sessions, POLICY, AuditContext(pipeline_actor("run-1"), "run-1", "2026-11-20")).execute_all(
            SEED)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AI_ASSETS_")}
    env.update({"AI_ASSETS_DATA_DIR": str(tmp_path / "data"), "AI_ASSETS_OPS_DB_URL": db_url,
                "AI_ASSETS_REVIEW_SECRET_KEY": "browser-test-secret-key-0123456789", "PYTHONUNBUFFERED": "1"})
    _cli(env, "review", "add-user", "alice", "--role", "reviewer", "--password-stdin", stdin=PASSWORDS["alice"] + "\n")
    _cli(env, "review", "add-user", "sam", "--role", "senior", "--password-stdin", stdin=PASSWORDS["sam"] + "\n")
    port = free_port()
    log = tmp_path / "review_app.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(BIN / "ai-assets"), "review", "serve", "--port", str(port), *serve_args],
                                   cwd=REPO_ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    server = ReviewServer(f"http://127.0.0.1:{port}", db_url, log, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the review app exited with {process.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the review app did not answer within {START_TIMEOUT_S}s:\n{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=15)


def sign_in(page: Page, server: ReviewServer, name: str) -> None:
    page.goto(f"{server.url}/queue")
    expect(page).to_have_url(f"{server.url}/login?next=%2Fqueue")  # no page without a session
    page.fill("#name", name)
    page.fill("#password", PASSWORDS[name])
    page.click("#sign-in")
    expect(page).to_have_url(f"{server.url}/queue")
    expect(page.locator(".who")).to_have_text(f"{name} ({'senior' if name == 'sam' else 'reviewer'})")


def item_id_of(page: Page) -> int:
    return int(page.url.split("/items/")[1].split("?")[0].split("/")[0])


def keyboard_decision(page: Page, keys: list[tuple[str, str]]) -> tuple[int, float]:
    """Decide the open item with keys only: ("press", key) or ("type", text). The item's id and the
    seconds from the item shown to the next page shown."""
    expect(page.locator("#decision")).to_be_visible()
    item_id = item_id_of(page)
    started = time.perf_counter()
    *first, last = keys
    for how, value in first:
        page.keyboard.press(value) if how == "press" else page.keyboard.type(value)
    with page.expect_navigation(wait_until="load"):
        page.keyboard.press(last[1])
    return item_id, time.perf_counter() - started


def test_a_reviewer_clears_the_queue_with_the_keyboard_and_a_senior_overrides(browser_page: Page, tmp_path: Path,
                                                                            screenshots: Path):
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    with review_server(tmp_path) as server, OpsDb.open(server.db_url, migrate=False) as db:
        with db.sessions.read() as s:
            items = {m: i for m, i in s.execute(select(ReviewItem.message_id, ReviewItem.id))}
            auto_action = s.scalar(select(Action.id).where(Action.message_id == "m-auto"))

        sign_in(page, server, "alice")
        expect(page.locator("#queue-table tbody tr")).to_have_count(5)
        assert "<script>alert(1)</script>" in page.locator("#queue-table").inner_text(), "shown as text"
        page.screenshot(path=str(screenshots / "01_queue.png"), full_page=True)

        # Filter: below-threshold items only (three of them), the P2 one first.
        page.select_option("#f-reason", "below_threshold")
        page.click("#apply-filters")
        expect(page.locator("#queue-table tbody tr")).to_have_count(3)
        assert "reason=below_threshold" in page.url
        assert page.locator("#f-reason option:checked").inner_text() == "below_threshold (3)"
        expect(page.locator("#queue-table tbody tr").first).to_have_attribute("data-item", str(items["m-broken"]))

        timings: list[float] = []
        with page.expect_navigation():
            page.keyboard.press("Enter")  # opens the first item
        assert item_id_of(page) == items["m-broken"] and "reason=below_threshold" in page.url
        expect(page.locator("#message-text")).to_have_text("My card gets declined in every shop")
        page.screenshot(path=str(screenshots / "02_item.png"), full_page=True)

        # 1. Digit key: suggestion 2 (another intent than the model's) and Enter: a correction.
        page.keyboard.press("2")
        expect(page.locator("#choice")).to_have_text("Enter: correct to declined_card_payment")
        decided, seconds = keyboard_decision(page, [("press", "Enter")])
        timings.append(seconds)
        assert decided == items["m-broken"]
        expect(page.locator("#flash")).to_contain_text(f"item {items['m-broken']} decided")
        assert item_id_of(page) == items["m-arrival"], "the next item opens"

        # 2. Type-ahead: "/" focuses it, a few letters, Enter completes, Enter submits.
        decided, seconds = keyboard_decision(page, [("press", "/"), ("type", "card_deliv"), ("press", "Enter"),
                                                    ("press", "Enter")])
        timings.append(seconds)
        assert decided == items["m-arrival"]

        # 3. Approve: suggestion 1 is the model's own answer.
        assert item_id_of(page) == items["m-rate"]
        decided, seconds = keyboard_decision(page, [("press", "1"), ("press", "Enter")])
        timings.append(seconds)
        assert decided == items["m-rate"]
        expect(page).to_have_url(f"{server.url}/queue?reason=below_threshold")  # the filter is cleared out
        expect(page.locator("#flash")).to_contain_text("no other open item")
        expect(page.locator("#empty")).to_be_visible()

        # 4. The weather question: out of scope, with its button.
        page.goto(f"{server.url}/items/{items['m-weather']}")
        started = time.perf_counter()
        with page.expect_navigation(wait_until="load"):
            page.click("#btn-out-of-scope")
        timings.append(time.perf_counter() - started)
        assert item_id_of(page) == items["m-stolen"], "the one item left"
        assert page.locator("#message-text").inner_text() == "someone took my wallet <script>alert(1)</script>"

        # A reviewer cannot open the automatic actions.
        response = page.goto(f"{server.url}/actions")
        assert response.status == 403
        expect(page.locator("#error-message")).to_contain_text("your role may not see this page")
        errors.remove("Failed to load resource: the server responded with a status of 403 (Forbidden)")
        page.goto(f"{server.url}/queue")
        page.click(".logout button")
        expect(page).to_have_url(f"{server.url}/login")

        # 5. The senior overrides the automatic action with a reason.
        sign_in(page, server, "sam")
        page.click("text=Automatic actions")
        expect(page.locator("#actions-table tbody tr")).to_have_count(1)
        page.click(f"#actions-table a[href='/actions/{auto_action}']")
        expect(page.locator("#message-text")).to_have_text("Where is my card? Ordered last month")
        page.click("#intent")
        page.keyboard.type("card_delivery_es")
        page.keyboard.press("Enter")  # completes the label
        expect(page.locator("#intent")).to_have_value("card_delivery_estimate")
        page.select_option("#compensation", "followup_email")
        page.fill("#override-reason", "The customer asks when the card comes, not where it is")
        page.screenshot(path=str(screenshots / "03_override.png"), full_page=True)
        with page.expect_navigation():
            page.click("#btn-override")
        expect(page).to_have_url(f"{server.url}/actions")
        expect(page.locator("#flash")).to_contain_text(f"override of action {auto_action} recorded")
        expect(page.locator("#actions-table tbody tr").first).to_contain_text("pending by sam")
        page.screenshot(path=str(screenshots / "04_actions.png"), full_page=True)

        # The pending decisions, with who, what, why and what the model had said.
        with db.sessions.read() as s:
            rows = {d.message_id: d for d in s.scalars(select(ReviewDecision))}
        assert {m: (d.reviewer, d.kind, d.intent, d.model_intent, d.status) for m, d in rows.items()} == {
            "m-broken": ("alice", "correct", "declined_card_payment", "card_not_working", "pending"),
            "m-arrival": ("alice", "correct", "card_delivery_estimate", "card_arrival", "pending"),
            "m-rate": ("alice", "approve", "exchange_rate", "exchange_rate", "pending"),
            "m-weather": ("alice", "reject_out_of_scope", "out_of_scope", "transfer_timing", "pending"),
            "m-auto": ("sam", "override", "card_delivery_estimate", "card_arrival", "pending"),
        }
        override = rows["m-auto"]
        assert (override.reason, override.compensation, override.action_id, override.model_confidence) == (
            "The customer asks when the card comes, not where it is", "followup_email", auto_action, 0.96)
        assert rows["m-broken"].model_confidence == 0.42 and rows["m-broken"].model_version == "intent_model v3"
        assert rows["m-broken"].text == "My card gets declined in every shop"

        # Applied through the action path: cases, outbox, audit, training rows.
        report = apply_pending(db, POLICY, AuditContext("pipeline run apply-1", "apply-1"))
        assert report.applied == 5 and report.conflicts == 0 and report.failed == 0, report.summary()
        with db.sessions.read() as s:
            decided = {d.message_id: d for d in s.scalars(select(ReviewDecision))}
            assert {d.status for d in decided.values()} == {"applied"}
            keys = set(s.scalars(select(OutboxMessage.idempotency_key)))
            for message_id in ("m-broken", "m-arrival", "m-rate"):
                assert email_key(message_id) in keys, message_id
                assert decision_event_key(decided[message_id].id) in keys
            assert email_key("m-weather") not in keys, "out of scope: nothing sent"
            assert correction_email_key(auto_action) in keys
            broken_case = s.scalar(select(Case).where(Case.customer_id == "cust-100003"))
            assert broken_case.intent == "declined_card_payment"
            assert s.scalar(select(CaseHistory.actor).where(CaseHistory.case_id == broken_case.id)) == "alice"
            auto_case = s.get(Case, s.get(Action, auto_action).case_id)
            assert auto_case.intent == "card_delivery_estimate"
            history = list(s.scalars(select(CaseHistory).where(CaseHistory.case_id == auto_case.id)
                                     .order_by(CaseHistory.version)))
            assert [h.actor for h in history] == ["pipeline run run-1", "sam"]
            applied = list(s.scalars(select(AuditEntry).where(AuditEntry.event == REVIEW_APPLIED)))
            assert sorted(e.actor for e in applied) == ["alice"] * 4 + ["sam"]
            resolved = {i.message_id: (i.status, i.resolved_by) for i in s.scalars(select(ReviewItem))}
            assert resolved["m-broken"] == ("resolved", "alice") and resolved["m-stolen"] == ("open", None)
        exported = tmp_path / "training.jsonl"
        assert export_rows(db, "jsonl", exported) == 5
        labels = {r["input"]["message_id"]: r["human_output"]["intent"]
                  for r in map(json.loads, exported.read_text().splitlines())}
        assert labels == {"m-broken": "declined_card_payment", "m-arrival": "card_delivery_estimate",
                          "m-rate": "exchange_rate", "m-weather": "out_of_scope", "m-auto": "card_delivery_estimate"}
    assert errors == [], errors
    median = statistics.median(timings)
    figures = {"decisions": len(timings), "median_seconds_per_decision": round(median, 3),
               "seconds": [round(t, 3) for t in timings], "measured": "item page shown -> keys -> next page shown"}
    (tmp_path / "review_browser_timings.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(f"\nreview app, browser: median {median * 1000:.0f} ms per decision over {len(timings)} decisions "
          f"({tmp_path / 'review_browser_timings.json'})")


class _Hostile(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = (f'<!doctype html><form method="post" action="{self.target}">'
                '<input name="kind" value="approve"><input name="item_version" value="1">'
                '<button id="go">Claim your prize</button></form>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_form_posted_from_another_origin_is_refused(browser_page: Page, tmp_path: Path):
    """Same site (127.0.0.1, so the SameSite cookie is sent) but another origin (port): the Origin
    check refuses it before anything is read."""
    page = browser_page
    with review_server(tmp_path) as server, OpsDb.open(server.db_url, migrate=False) as db:
        with db.sessions.read() as s:
            item_id = s.scalar(select(ReviewItem.id).order_by(ReviewItem.id).limit(1))
        sign_in(page, server, "alice")
        handler = type("Hostile", (_Hostile,), {"target": f"{server.url}/items/{item_id}/decision"})
        hostile = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=hostile.serve_forever, daemon=True)
        thread.start()
        try:
            page.goto(f"http://127.0.0.1:{hostile.server_address[1]}/")
            with page.expect_response(f"{server.url}/items/{item_id}/decision") as answer:
                page.click("#go")
            assert answer.value.status == 403
            expect(page.locator("body")).to_contain_text("cross-site request refused")
        finally:
            hostile.shutdown()
            hostile.server_close()
        with db.sessions.read() as s:
            assert s.scalars(select(ReviewDecision)).all() == []
            assert s.get(ReviewItem, item_id).status == "open"


def _login_post(server: ReviewServer, origin: str, **headers: str) -> tuple[int, str]:
    request = urllib.request.Request(f"{server.url}/login", data=b"name=alice&password=x&csrf_token=none",
                                     headers={"Content-Type": "application/x-www-form-urlencoded",
                                              "Origin": origin, **headers}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


@pytest.mark.parametrize("proxied", [False, True])
def test_behind_a_proxy_the_forwarded_scheme_is_trusted_only_with_proxy_headers(tmp_path: Path, proxied: bool):
    """`--proxy-headers`: the TLS proxy's X-Forwarded-Proto makes the app's own origin https, so the
    browser's https Origin passes the origin check (and the form token is checked next). Without
    the flag the same header is ignored and that Origin is cross-site. No browser needed."""
    args = ("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1") if proxied else ()
    with review_server(tmp_path, *args) as server:
        https_origin = server.url.replace("http://", "https://")
        status, body = _login_post(server, https_origin, **{"X-Forwarded-Proto": "https"})
        assert status == 403
        if proxied:
            assert "sign-in form expired" in body, "past the origin check: refused for the missing token"
        else:
            assert "cross-site request refused" in body
        status, body = _login_post(server, server.url, **{"X-Forwarded-Proto": "https"})
        assert status == 403 and ("cross-site request refused" in body) is proxied
