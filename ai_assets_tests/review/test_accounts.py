"""Reviewer accounts: scrypt hashes, validation, sign-in with lockout by name and by address,
disable, password change, and the `ai-assets review` account commands — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from ai_assets.cli import main
from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.tables import LoginAttempt, Reviewer
from ai_assets.ops_db.types import utcnow
from ai_assets.review.accounts import (
    AccountError,
    LoginLocked,
    ReviewerAccounts,
    hash_password,
    verify_password,
)
from ai_assets_tests.ops_db import conftest as ops_db_fixtures

# The operations database on SQLite and PostgreSQL (ai_assets_tests/ops_db/conftest.py).
pg_module_database, db_url, engine, ops = (ops_db_fixtures.pg_module_database, ops_db_fixtures.db_url,
                                           ops_db_fixtures.engine, ops_db_fixtures.ops)

PASSWORD = "correct horse battery"
FAST = 2**10  # hashes of the lockout tests: the stored cost is what verification pays; production is 2**15


def fast(ops, **limits) -> ReviewerAccounts:
    return ReviewerAccounts(ops.sessions, scrypt_n=FAST, **limits)


@pytest.fixture(scope="module")
def sqlite_ops(tmp_path_factory):
    """One SQLite database for the tests that are refused before any write."""
    with OpsDb.open(f"sqlite:///{tmp_path_factory.mktemp('accounts') / 'ops.db'}") as db:
        yield db


def test_a_hash_is_scrypt_salted_and_verifies_only_the_right_password():
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**15), "8", "1")
    assert first != second, "a fresh salt per hash"
    assert PASSWORD not in first
    assert verify_password(PASSWORD, first) and verify_password(PASSWORD, second)
    assert not verify_password(PASSWORD + " ", first)
    assert not verify_password("", first)


@pytest.mark.parametrize("stored", [
    "", "plain", "scrypt$32768$8$1$c2FsdA==", "bcrypt$32768$8$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,
    "scrypt$1073741824$8$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,  # n far too large: refused, not run
    "scrypt$1000$8$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,        # n not a power of two
    "scrypt$32768$8$1$not base64!$" + "A" * 44, "scrypt$x$8$1$c2FsdA==$c2FsdA==",
])
def test_a_malformed_or_hostile_stored_hash_never_verifies_and_never_raises(stored):
    started = time.perf_counter()
    assert verify_password(PASSWORD, stored) is False
    assert time.perf_counter() - started < 30  # it returned at all (no gigabyte allocation)


@pytest.mark.parametrize("name", ["", "a" * 65, "al ice", "<script>", "bob/../x", "pipeline-bot", "Pipeline run 1",
                                  "ünicode"])
def test_names_are_validated(sqlite_ops, name):
    with pytest.raises(AccountError):
        ReviewerAccounts(sqlite_ops.sessions).add(name, "reviewer", PASSWORD)
    assert ReviewerAccounts(sqlite_ops.sessions).list() == []


def test_passwords_roles_and_duplicates_are_refused_with_a_reason(ops):
    accounts = fast(ops)
    with pytest.raises(AccountError, match="at least 12"):
        accounts.add("alice", "reviewer", "short")
    with pytest.raises(AccountError, match="unknown role"):
        accounts.add("alice", "boss", PASSWORD)
    added = accounts.add("alice", "reviewer", PASSWORD)
    assert (added.name, added.role, added.disabled) == ("alice", "reviewer", False)
    with pytest.raises(AccountError, match="exists already"):
        accounts.add("alice", "senior", PASSWORD + "!")
    with ops.sessions.read() as s:
        stored = s.scalar(select(Reviewer.password_hash).where(Reviewer.name == "alice"))
    assert stored.startswith("scrypt$") and PASSWORD not in stored
    assert [a.name for a in accounts.list()] == ["alice"]


def test_sign_in_takes_the_right_password_of_an_enabled_account_only(ops):
    accounts = ReviewerAccounts(ops.sessions)
    accounts.add("alice", "senior", PASSWORD)
    assert accounts.authenticate("alice", PASSWORD, "10.0.0.1").role == "senior"
    assert accounts.authenticate("alice", "wrong password!", "10.0.0.1") is None
    assert accounts.authenticate("nobody", PASSWORD, "10.0.0.1") is None
    assert accounts.authenticate("bad name!", PASSWORD, "10.0.0.1") is None
    accounts.disable("alice")
    assert accounts.get("alice").disabled
    assert accounts.authenticate("alice", PASSWORD, "10.0.0.1") is None, "a disabled account cannot sign in"
    accounts.enable("alice")
    assert accounts.authenticate("alice", PASSWORD, "10.0.0.1") is not None
    with pytest.raises(AccountError):
        accounts.disable("nobody")


def test_five_failures_lock_the_name_even_for_the_right_password(ops):
    accounts = fast(ops)
    accounts.add("alice", "reviewer", PASSWORD)
    accounts.add("bob", "reviewer", PASSWORD)
    for _ in range(5):
        assert accounts.authenticate("alice", "guess guess guess", "10.0.0.1") is None
    with pytest.raises(LoginLocked) as locked:
        accounts.authenticate("alice", PASSWORD, "10.0.0.2")
    assert 0 < locked.value.retry_after_s <= 15 * 60 + 1
    assert "try again" in str(locked.value)
    assert accounts.authenticate("bob", PASSWORD, "10.0.0.1") is not None, "only that name is locked"


def test_an_unknown_name_locks_like_a_known_one(ops):
    accounts = fast(ops)
    for _ in range(5):
        assert accounts.authenticate("ghost", PASSWORD, "10.0.0.1") is None
    with pytest.raises(LoginLocked):
        accounts.authenticate("ghost", PASSWORD, "10.0.0.1")


def test_failures_from_one_address_lock_that_address_for_every_name(ops):
    accounts = fast(ops, max_failures_per_ip=3)
    accounts.add("alice", "reviewer", PASSWORD)
    for name in ("x1", "x2", "x3"):
        assert accounts.authenticate(name, PASSWORD, "203.0.113.9") is None
    with pytest.raises(LoginLocked):
        accounts.authenticate("alice", PASSWORD, "203.0.113.9")
    assert accounts.authenticate("alice", PASSWORD, "198.51.100.7") is not None, "other addresses are not locked"


def test_a_lock_ends_when_its_failures_leave_the_window_and_a_success_clears_a_name(ops):
    accounts = fast(ops)
    accounts.add("alice", "reviewer", PASSWORD)
    old = utcnow() - timedelta(minutes=16)
    with ops.sessions.write() as s:
        s.add_all([LoginAttempt(key="name:alice", succeeded=False, at=old) for _ in range(5)])
    assert accounts.authenticate("alice", PASSWORD, "10.0.0.1") is not None, "failures 16 minutes ago do not count"
    for _ in range(4):
        accounts.authenticate("alice", "typo typo typo", "10.0.0.1")
    assert accounts.authenticate("alice", PASSWORD, "10.0.0.1") is not None
    for _ in range(4):
        accounts.authenticate("alice", "typo typo typo", "10.0.0.1")
    assert accounts.authenticate("alice", PASSWORD, "10.0.0.1") is not None, "the success cleared the name's count"


def test_attempts_are_recorded_per_name_and_address_and_old_ones_pruned(ops):
    accounts = fast(ops)
    with ops.sessions.write() as s:
        s.add(LoginAttempt(key="name:alice", succeeded=False, at=utcnow() - timedelta(days=3)))
    accounts.authenticate("alice", "wrong password!", "10.0.0.1")
    with ops.sessions.read() as s:
        rows = s.execute(select(LoginAttempt.key, LoginAttempt.succeeded)).all()
    assert sorted(rows) == [("ip:10.0.0.1", False), ("name:alice", False)]


def test_a_new_password_replaces_the_old_and_changes_the_session_stamp(ops):
    accounts = fast(ops)
    before = accounts.add("alice", "reviewer", PASSWORD)
    accounts.set_password("alice", "another long password")
    assert accounts.authenticate("alice", PASSWORD, "10.0.0.1") is None
    after = accounts.authenticate("alice", "another long password", "10.0.0.1")
    assert after is not None and after.session_stamp != before.session_stamp
    with pytest.raises(AccountError):
        accounts.set_password("alice", "short")
    with pytest.raises(AccountError):
        accounts.set_password("nobody", "another long password")


def test_the_cli_adds_lists_and_disables_reviewers(db_url, monkeypatch):
    monkeypatch.setenv("AI_ASSETS_OPS_DB_URL", db_url)
    runner = CliRunner()
    added = runner.invoke(main, ["review", "add-user", "carol", "--role", "senior", "--password-stdin"],
                          input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    prompted = runner.invoke(main, ["review", "add-user", "dave", "--role", "reviewer"],
                             input=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    assert PASSWORD not in prompted.output, "the prompt hides the password"
    short = runner.invoke(main, ["review", "add-user", "erin", "--role", "reviewer", "--password-stdin"],
                          input="short\n")
    assert short.exit_code == 1 and "at least 12" in short.output
    bad_role = runner.invoke(main, ["review", "add-user", "erin", "--role", "root", "--password-stdin"], input=PASSWORD)
    assert bad_role.exit_code == 2
    listed = runner.invoke(main, ["review", "list-users", "--json"])
    assert [(u["name"], u["role"], u["disabled"]) for u in json.loads(listed.output)] == [
        ("carol", "senior", False), ("dave", "reviewer", False)]
    assert runner.invoke(main, ["review", "disable-user", "dave"]).exit_code == 0
    assert runner.invoke(main, ["review", "disable-user", "nobody"]).exit_code == 1
    assert [u["disabled"] for u in json.loads(runner.invoke(main, ["review", "list-users", "--json"]).output)] == [
        False, True]
    with OpsDb.open(db_url) as db:
        assert ReviewerAccounts(db.sessions).authenticate("carol", PASSWORD, "127.0.0.1") is not None
        with db.sessions.read() as s:
            assert s.scalar(select(func.count()).select_from(Reviewer)) == 2
