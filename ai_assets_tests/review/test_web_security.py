"""The review app over HTTP (Starlette's TestClient against the real app and a real SQLite
operations database): no page without a session, sessions that expire and end, CSRF tokens and
Origin checks on every POST, sign-in lockout, security headers, untrusted text escaped, roles,
bad input answered with a clear error — and the decision flow a reviewer goes through."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from ai_assets.actions.ledger import ActionLedger, MessageDecision
from ai_assets.actions.routing_policy import load_policy
from ai_assets.actions.triage import content_hash, idempotency_key, triage
from ai_assets.config import Settings
from ai_assets.ops_db import AuditContext, OpsDb, pipeline_actor
from ai_assets.ops_db.tables import Action, ReviewDecision, ReviewItem
from ai_assets.review.accounts import ReviewerAccounts
from ai_assets.review.web import create_app
from ai_assets.review.web.security import CSP
from ai_assets_tests.ops_db import conftest as ops_db_fixtures

pg_module_database, db_url = ops_db_fixtures.pg_module_database, ops_db_fixtures.db_url

POLICY = load_policy()
PASSWORD = "correct horse battery"
KEY = "test-secret-key-0123456789abcdef"
ORIGIN = "http://testserver"
SAME = {"Origin": ORIGIN}
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
FAST = 2**10  # the accounts' stored scrypt cost: sign-in stays quick; production hashes use 2**15


def decision(message_id: str, intent: str = "card_arrival", *, customer: str = "cust-000123", automated: bool = False,
             text: str = "where is my card", reason: str = "below_threshold: 0.41 < 0.70",
             suggestions=(("card_arrival", 0.41), ("card_delivery_estimate", 0.33))) -> MessageDecision:
    t = triage(intent, automated, None if automated else reason, POLICY)
    content = content_hash(customer, "app", text)
    return MessageDecision(
        message_id=message_id, customer_id=customer, intent=intent, confidence=0.97 if automated else 0.41,
        decision=t.decision, action=t.action, reason=t.reason, queue=t.queue, priority=t.priority,
        policy_version=POLICY.version, idempotency_key=idempotency_key(message_id, t.action, POLICY.version, content),
        text=text, content_hash=content, model_version="intent_model v3", model_call={"tier": "local"},
        suggestions=tuple(suggestions))


@dataclass
class Site:
    db: OpsDb
    root: Path
    items: dict[str, int]
    action_id: int

    def app(self, **env: str):
        settings = Settings.from_env({"AI_ASSETS_DATA_DIR": str(self.root), **env})
        return create_app(self.db, settings, secret_key=KEY)

    def client(self, app=None, base_url: str = ORIGIN) -> TestClient:
        return TestClient(app or self.app(), base_url=base_url, follow_redirects=False)

    def decisions(self) -> list[ReviewDecision]:
        with self.db.sessions.read() as s:
            return list(s.scalars(select(ReviewDecision).order_by(ReviewDecision.id)))


@contextmanager
def open_site(url: str, root: Path) -> Iterator[Site]:
    with OpsDb.open(url) as db:
        ActionLedger(db.sessions, POLICY, AuditContext(pipeline_actor("run-1"), "run-1", "2026-11-20")).execute_all([
            decision("m-1"),
            decision("m-2", "card_not_working", customer="cust-000456", text="card refused"),
            decision("m-html", "<b>bold</b>", customer="cust-000789", text=HOSTILE, reason=f"needs_human: {HOSTILE}",
                     suggestions=(("<i>x</i>", 0.5), ("card_arrival", 0.2))),
            decision("m-auto", "card_arrival", customer="cust-000999", automated=True, text=f"acted {HOSTILE}"),
        ])
        with db.sessions.read() as s:
            items = {m: i for m, i in s.execute(select(ReviewItem.message_id, ReviewItem.id))}
            action_id = s.scalar(select(Action.id).where(Action.message_id == "m-auto"))
        accounts = ReviewerAccounts(db.sessions, scrypt_n=FAST)
        accounts.add("alice", "reviewer", PASSWORD)
        accounts.add("bob", "reviewer", PASSWORD)
        accounts.add("sam", "senior", PASSWORD)
        yield Site(db, root, items, action_id)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(f"sqlite:///{tmp_path / 'ops.db'}", tmp_path) as opened:
        yield opened


def token_in(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has a form token"
    return match.group(1)


def sign_in(c: TestClient, name: str, password: str = PASSWORD, *, next_path: str = "/queue"):
    page = c.get("/login")
    assert page.status_code == 200
    return c.post("/login", data={"name": name, "password": password, "csrf_token": token_in(page.text),
                                  "next": next_path}, headers=SAME)


def signed_in(site: Site, name: str = "alice", app=None) -> TestClient:
    c = site.client(app)
    assert sign_in(c, name).status_code == 303
    return c


def session_cookie(response) -> str:
    match = re.search(r"review_session=([^;]+);", response.headers["set-cookie"])
    assert match
    return match.group(1)


PAGES = ["/", "/queue", "/queue?priority=P1", "/items/1", "/items/1/next", "/actions", "/actions/1"]
POSTS = ["/logout", "/items/1/decision", "/actions/1/override"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_without_a_session_redirects_to_sign_in(site, path):
    response = site.client().get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")
    assert "where is my card" not in response.text


@pytest.mark.parametrize("path", POSTS)
def test_every_post_without_a_session_is_refused(site, path):
    response = site.client().post(path, data={"csrf_token": "x", "kind": "approve", "item_version": "1"}, headers=SAME)
    assert response.status_code == 401
    assert site.decisions() == []


def test_health_and_static_files_need_no_session_and_carry_no_data(site):
    c = site.client()
    health = c.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    script = c.get("/static/review.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["x-content-type-options"] == "nosniff"
    assert c.get("/static/review.css").status_code == 200
    assert c.get("/static/../templates/item.html").status_code == 404


def test_signing_in_sets_a_hardened_session_cookie_and_goes_where_asked(site):
    c = site.client()
    response = sign_in(c, "alice", next_path="/items/1")
    assert response.status_code == 303 and response.headers["location"] == "/items/1"
    cookie = response.headers["set-cookie"]
    assert "review_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Max-Age=28800" in cookie and "Secure" not in cookie
    assert PASSWORD not in cookie
    page = c.get("/queue")
    assert page.status_code == 200 and "where is my card" in page.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"])
def test_sign_in_never_redirects_off_the_app(site, target):
    response = sign_in(site.client(), "alice", next_path=target)
    assert response.status_code == 303 and response.headers["location"] == "/queue"


def test_behind_tls_the_cookie_is_secure_with_the_host_prefix(site):
    c = site.client(site.app(AI_ASSETS_REVIEW_SECURE_COOKIES="true"), base_url="https://testserver")
    page = c.get("/login")
    response = c.post("/login", data={"name": "alice", "password": PASSWORD, "csrf_token": token_in(page.text)},
                      headers={"Origin": "https://testserver"})
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-review_session=") and "Secure" in cookie
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert c.get("/queue").status_code == 200


def test_a_wrong_password_gets_no_session(site):
    c = site.client()
    response = sign_in(c, "alice", "wrong password!")
    assert response.status_code == 401 and "wrong name or password" in response.text
    assert "review_session=" not in response.headers.get("set-cookie", "")
    assert c.get("/queue").status_code == 303
    assert sign_in(c, "nobody").status_code == 401


def test_repeated_failures_lock_the_sign_in_even_with_the_right_password(site):
    c = site.client()
    for _ in range(5):
        assert sign_in(c, "alice", "wrong password!").status_code == 401
    locked = sign_in(c, "alice")
    assert locked.status_code == 429 and "too many failed sign-ins" in locked.text
    assert "review_session=" not in locked.headers.get("set-cookie", "")
    assert sign_in(site.client(), "bob").status_code == 303, "other names are not locked"


def test_the_sign_in_form_needs_its_own_token_and_origin(site):
    c = site.client()
    c.get("/login")
    assert c.post("/login", data={"name": "alice", "password": PASSWORD}, headers=SAME).status_code == 403
    assert c.post("/login", data={"name": "alice", "password": PASSWORD, "csrf_token": "forged"},
                  headers=SAME).status_code == 403
    token = token_in(c.get("/login").text)
    assert c.post("/login", data={"name": "alice", "password": PASSWORD, "csrf_token": token},
                  headers={"Origin": "https://evil.example"}).status_code == 403


def test_an_expired_session_is_refused(site):
    app = site.app(AI_ASSETS_REVIEW_SESSION_MAX_AGE_S="3")
    c = site.client(app)
    response = sign_in(c, "alice")
    assert "Max-Age=3" in response.headers["set-cookie"]
    cookie = session_cookie(response)
    assert c.get("/queue").status_code == 200
    time.sleep(4.2)  # past the maximum age (the signed timestamp is in whole seconds)
    fresh = site.client(app)  # send the old cookie by hand: the server, not the browser, must refuse it
    stale = fresh.get("/queue", headers={"Cookie": f"review_session={cookie}"})
    assert stale.status_code == 303 and stale.headers["location"].startswith("/login")
    posted = fresh.post("/logout", data={"csrf_token": "x"}, headers={**SAME, "Cookie": f"review_session={cookie}"})
    assert posted.status_code == 401


def test_a_tampered_or_foreign_cookie_is_refused(site):
    cookie = session_cookie(sign_in(site.client(), "alice"))
    payload, stamp, signature = cookie.split(".")
    forged = f"{payload[:-2]}xx.{stamp}.{signature}"
    assert site.client().get("/queue", headers={"Cookie": f"review_session={forged}"}).status_code == 303
    other = create_app(site.db, Settings.from_env({"AI_ASSETS_DATA_DIR": str(site.root)}),
                       secret_key="another-key-of-enough-length")
    assert site.client(other).get("/queue", headers={"Cookie": f"review_session={cookie}"}).status_code == 303


def test_signing_out_ends_the_session_even_for_a_copy_of_the_cookie(site):
    app = site.app()
    c = site.client(app)
    cookie = session_cookie(sign_in(c, "alice"))
    token = token_in(c.get("/queue").text)
    out = c.post("/logout", data={"csrf_token": token}, headers=SAME)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert site.client(app).get("/queue", headers={"Cookie": f"review_session={cookie}"}).status_code == 303


def test_a_disabled_account_or_a_new_password_ends_open_sessions(site):
    c = signed_in(site, "alice")
    d = signed_in(site, "bob")
    ReviewerAccounts(site.db.sessions).disable("alice")
    assert c.get("/queue").status_code == 303
    ReviewerAccounts(site.db.sessions, scrypt_n=FAST).set_password("bob", "a new long password")
    assert d.get("/queue").status_code == 303


def _decide(c: TestClient, item_id: int, headers=SAME, **fields):
    page = c.get(f"/items/{item_id}")
    data = {"csrf_token": token_in(page.text), "item_version": "1", "case_version": "", **fields}
    return c.post(f"/items/{item_id}/decision", data={k: v for k, v in data.items() if v is not None}, headers=headers)


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"}, {"Origin": "null"}, {"Origin": "http://testserver.evil.example"},
    {"Referer": "https://evil.example/page"}, {},
])
def test_a_cross_site_or_unlabelled_post_is_refused(site, headers):
    c = signed_in(site)
    response = _decide(c, site.items["m-1"], headers=headers, kind="approve")
    assert response.status_code == 403
    assert site.decisions() == []


def test_a_same_origin_referer_or_an_allowed_origin_is_accepted(site):
    c = signed_in(site)
    assert _decide(c, site.items["m-1"], headers={"Referer": f"{ORIGIN}/items/1"}, kind="approve").status_code == 303
    app = site.app(AI_ASSETS_REVIEW_ALLOWED_ORIGINS="https://review.bank.example")
    d = signed_in(site, "bob", app)
    response = _decide(d, site.items["m-2"], headers={"Origin": "https://review.bank.example"}, kind="approve")
    assert response.status_code == 303
    assert [x.reviewer for x in site.decisions()] == ["alice", "bob"]


@pytest.mark.parametrize("token", [None, "", "not-the-token"])
def test_a_post_without_the_sessions_form_token_is_refused(site, token):
    c = signed_in(site)
    response = _decide(c, site.items["m-1"], kind="approve", csrf_token=token)
    assert response.status_code == 403
    assert site.decisions() == []


def test_another_sessions_form_token_is_refused(site):
    alice, bob = signed_in(site, "alice"), signed_in(site, "bob")
    bobs_token = token_in(bob.get("/queue").text)
    response = alice.post(f"/items/{site.items['m-1']}/decision", headers=SAME,
                          data={"csrf_token": bobs_token, "item_version": "1", "kind": "approve"})
    assert response.status_code == 403


def test_forms_other_than_urlencoded_or_too_large_are_refused(site):
    c = signed_in(site)
    token = token_in(c.get("/queue").text)
    assert c.post("/logout", content=b'{"csrf_token": "x"}', headers={**SAME, "Content-Type": "application/json"}
                  ).status_code == 415
    big = f"csrf_token={token}&reason=" + "x" * 70_000
    assert c.post("/logout", content=big.encode(), headers={
        **SAME, "Content-Type": "application/x-www-form-urlencoded"}).status_code == 413
    assert c.post("/logout", content=b"csrf_token=\xff\xfe", headers={
        **SAME, "Content-Type": "application/x-www-form-urlencoded"}).status_code == 400


def test_every_page_carries_the_security_headers(site):
    c = signed_in(site, "sam")
    for path in ("/login", "/queue", f"/items/{site.items['m-1']}", "/actions", f"/actions/{site.action_id}",
                 "/items/999999"):
        response = c.get(path)
        assert response.headers["content-security-policy"] == CSP, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
    assert "'unsafe-inline'" not in CSP and "frame-ancestors 'none'" in CSP


def test_no_page_has_an_inline_script_or_style(site):
    c = signed_in(site, "sam")
    for path in ("/queue", f"/items/{site.items['m-1']}", f"/actions/{site.action_id}"):
        html = c.get(path).text
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], path
        assert " style=" not in html and "<style" not in html and " onclick=" not in html


def test_message_text_reason_and_model_output_are_escaped(site):
    c = signed_in(site, "sam")
    item_id = site.items["m-html"]
    pages = [c.get("/queue").text, c.get(f"/items/{item_id}").text, c.get("/actions").text,
             c.get(f"/actions/{site.action_id}").text]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "<b>bold</b>" not in html and "<i>x</i>" not in html
    item_page = pages[1]
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in item_page
    assert 'data-model-intent="&lt;b&gt;bold&lt;/b&gt;"' in item_page
    assert 'data-intent="&lt;i&gt;x&lt;/i&gt;"' in item_page
    assert "acted &lt;script&gt;" in pages[3]


def test_customer_ids_are_masked_on_every_page(site):
    c = signed_in(site, "sam")
    for path in ("/queue", f"/items/{site.items['m-1']}", "/actions", f"/actions/{site.action_id}"):
        html = c.get(path).text
        assert "cust-000" not in html, path
    assert "…0123" in c.get(f"/items/{site.items['m-1']}").text


def test_reviewers_may_not_open_overrides_or_senior_items(site):
    c = signed_in(site, "alice")
    assert c.get("/actions").status_code == 403
    assert c.get(f"/actions/{site.action_id}").status_code == 403
    token = token_in(c.get("/queue").text)
    refused = c.post(f"/actions/{site.action_id}/override", headers=SAME, data={
        "csrf_token": token, "intent": "card_linking", "compensation": "requeue", "reason": "x"})
    assert refused.status_code == 403
    with site.db.sessions.write() as s:
        s.execute(update(ReviewItem).where(ReviewItem.id == site.items["m-2"]).values(review_queue="senior", version=2))
    assert c.get(f"/items/{site.items['m-2']}").status_code == 403
    assert c.get("/queue?queue=senior").status_code == 400
    assert "card refused" not in c.get("/queue").text
    senior = signed_in(site, "sam")
    assert "card refused" in senior.get("/queue").text
    assert senior.get(f"/items/{site.items['m-2']}").status_code == 200
    assert site.decisions() == []


@pytest.mark.parametrize("path,status", [
    ("/queue?priority=P9", 400), ("/queue?min_age_hours=soon", 400), ("/queue?page=abc", 400),
    ("/queue?page=0", 400), ("/items/999999", 404), ("/items/abc", 404), ("/actions/999999", 404),
    ("/nowhere", 404),
])
def test_bad_input_gets_a_clear_error_not_a_crash(site, path, status):
    c = signed_in(site, "sam")
    response = c.get(path, headers={"Accept": "text/html"})
    assert response.status_code == status
    assert "Internal Server Error" not in response.text


def test_a_form_with_a_broken_version_is_a_clear_error(site):
    c = signed_in(site)
    response = _decide(c, site.items["m-1"], kind="approve", item_version="one")
    assert response.status_code == 400 and site.decisions() == []


def test_a_decision_opens_the_next_item_with_a_notice(site):
    c = signed_in(site)
    first = c.get("/queue")
    ordered = [int(i) for i in re.findall(r'data-item="(\d+)"', first.text)]
    assert sorted(ordered) == sorted(site.items.values())
    response = _decide(c, ordered[0], kind="correct", intent="card_delivery_estimate", reason="asks when")
    assert response.status_code == 303 and response.headers["location"] == f"/items/{ordered[1]}"
    landed = c.get(response.headers["location"])
    assert f"item {ordered[0]} decided" in landed.text
    assert c.get(response.headers["location"]).text.count('id="flash"') == 0, "a notice shows once"
    [d] = site.decisions()
    assert (d.reviewer, d.kind, d.intent, d.reason, d.review_item_id) == (
        "alice", "correct", "card_delivery_estimate", "asks when", ordered[0])


def test_a_filter_is_kept_from_the_queue_to_the_next_item(site):
    c = signed_in(site)
    queue = c.get("/queue?priority=P2")
    assert re.findall(r'data-item="(\d+)"', queue.text) == [str(site.items["m-2"])]
    assert f'href="/items/{site.items["m-2"]}?priority=P2"' in queue.text
    page = c.get(f"/items/{site.items['m-2']}?priority=P2")
    response = c.post(f"/items/{site.items['m-2']}/decision?priority=P2", headers=SAME, data={
        "csrf_token": token_in(page.text), "item_version": "1", "kind": "approve"})
    assert response.status_code == 303 and response.headers["location"] == "/queue?priority=P2"
    assert "no other open item" in c.get("/queue?priority=P2").text


def test_the_second_reviewer_is_told_who_decided_first(site):
    alice, bob = signed_in(site, "alice"), signed_in(site, "bob")
    item_id = site.items["m-1"]
    bobs_page = bob.get(f"/items/{item_id}")
    assert _decide(alice, item_id, kind="approve").status_code == 303
    late = bob.post(f"/items/{item_id}/decision", headers=SAME, data={
        "csrf_token": token_in(bobs_page.text), "item_version": "1", "kind": "correct", "intent": "card_linking"})
    assert late.status_code == 303 and late.headers["location"] != f"/items/{item_id}"
    assert "already decided by alice" in bob.get(late.headers["location"]).text
    assert [d.reviewer for d in site.decisions()] == ["alice"]
    assert 'id="not-open"' in bob.get(f"/items/{item_id}").text, "the decided item shows no form"


def test_an_invalid_choice_returns_to_the_item_with_the_reason(site):
    c = signed_in(site)
    item_id = site.items["m-1"]
    response = _decide(c, item_id, kind="correct", intent="no_such_label")
    assert response.status_code == 303 and response.headers["location"] == f"/items/{item_id}"
    assert "not one of the 78 labels" in c.get(response.headers["location"]).text
    assert site.decisions() == []


def test_skipping_goes_to_the_next_item_without_deciding(site):
    c = signed_in(site)
    ordered = [int(i) for i in re.findall(r'data-item="(\d+)"', c.get("/queue").text)]
    response = c.get(f"/items/{ordered[0]}/next")
    assert response.status_code == 303 and response.headers["location"] == f"/items/{ordered[1]}"
    assert site.decisions() == []


def test_a_senior_overrides_an_automatic_action_with_a_reason(site):
    c = signed_in(site, "sam")
    page = c.get(f"/actions/{site.action_id}")
    assert page.status_code == 200 and 'id="override"' in page.text
    token = token_in(page.text)
    no_reason = c.post(f"/actions/{site.action_id}/override", headers=SAME, data={
        "csrf_token": token, "intent": "card_delivery_estimate", "compensation": "followup_email", "reason": " "})
    assert no_reason.status_code == 400 and "needs a reason" in no_reason.text
    assert 'value="card_delivery_estimate"' in no_reason.text, "what was typed is kept"
    done = c.post(f"/actions/{site.action_id}/override", headers=SAME, data={
        "csrf_token": token, "intent": "card_delivery_estimate", "compensation": "followup_email",
        "reason": "asked when, not where", "case_version": "1"})
    assert done.status_code == 303 and done.headers["location"] == "/actions"
    assert "override of action" in c.get("/actions").text
    [d] = site.decisions()
    assert (d.kind, d.reviewer, d.reviewer_role, d.intent, d.compensation, d.reason, d.model_intent) == (
        "override", "sam", "senior", "card_delivery_estimate", "followup_email", "asked when, not where",
        "card_arrival")
    again = c.post(f"/actions/{site.action_id}/override", headers=SAME, data={
        "csrf_token": token, "intent": "card_linking", "compensation": "requeue", "reason": "again"})
    assert again.status_code == 303
    assert "already decided by sam" in c.get(again.headers["location"]).text
    with site.db.sessions.read() as s:
        assert s.scalar(select(func.count()).select_from(ReviewDecision)) == 1


def test_two_reviewers_posting_one_item_at_once_one_is_recorded_the_other_told(db_url, tmp_path):
    """Through the app, on SQLite and PostgreSQL: the two POSTs race in two threads."""
    with open_site(db_url, tmp_path) as shared:
        app = shared.app()
        item_id = shared.items["m-1"]
        clients = [signed_in(shared, name, app) for name in ("alice", "bob")]
        forms = [{"csrf_token": token_in(c.get(f"/items/{item_id}").text), "item_version": "1", "kind": kind,
                  "intent": intent} for c, (kind, intent) in zip(clients, [("approve", ""),
                                                                            ("correct", "card_linking")])]
        barrier, answers = threading.Barrier(2), [None, None]

        def post(k: int) -> None:
            barrier.wait()
            answers[k] = clients[k].post(f"/items/{item_id}/decision", data=forms[k], headers=SAME)

        threads = [threading.Thread(target=post, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert [a.status_code for a in answers] == [303, 303]
        notices = [c.get(a.headers["location"]).text for c, a in zip(clients, answers)]
        [d] = shared.decisions()
        winner = ["alice", "bob"].index(d.reviewer)
        assert f"item {item_id} decided" in notices[winner]
        assert f"already decided by {d.reviewer}" in notices[1 - winner]
