"""`ai-assets review add-user | list-users | apply | export` as a person runs them: the real
command in a subprocess, against a data directory and Dagster instance of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.tables import ReviewDecision, Reviewer, ReviewItem
from ai_assets_tests.conftest import REPO_ROOT
from ai_assets_tests.defs.test_review_defs import decide, to_review

AI_ASSETS = str(Path(sys.executable).with_name("ai-assets"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ASSETS_", "DAGSTER_"))}
    return {**base, "DAGSTER_HOME": str(home), "AI_ASSETS_DATA_DIR": str(tmp_path / "var"),
            "GX_ANALYTICS_ENABLED": "false"}


def cli(env: dict[str, str], *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([AI_ASSETS, "review", *args], input=stdin, env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done


def ops_url(env: dict[str, str]) -> str:
    return f"sqlite:///{Path(env['AI_ASSETS_DATA_DIR']) / 'ops.db'}"


def test_accounts_are_made_listed_and_never_show_their_password(env):
    cli(env, "add-user", "alice", "--role", "admin", "--password-stdin", stdin="correct horse battery\n")
    short = cli(env, "add-user", "bob", "--role", "reviewer", "--password-stdin", stdin="short\n", ok=False)
    assert "12" in short.stdout + short.stderr  # says how long a password must be
    listed = json.loads(cli(env, "list-users", "--json").stdout)
    assert [(u["name"], u["role"]) for u in listed] == [("alice", "admin")]
    assert "correct horse" not in json.dumps(listed) and "scrypt" not in json.dumps(listed)
    with OpsDb.open(ops_url(env)) as db, db.sessions.read() as s:
        [stored] = s.scalars(select(Reviewer))
    assert stored.password_hash.startswith("scrypt$") and "correct horse" not in stored.password_hash


@pytest.mark.slow  # a Dagster run in a fresh process
def test_apply_runs_the_review_job_once_and_export_writes_the_labelled_rows(env, tmp_path):
    with OpsDb.open(ops_url(env)) as db:
        items = to_review(db, ("m-1", "card_arrival", "c-1"), ("m-2", "card_arrival", "c-2"))
        decide(db, items["m-1"], "approve")
        decide(db, items["m-2"], "correct", "card_not_working")
    applied = cli(env, "apply").stdout
    assert "2 decision(s) taken, 2 applied, 0 conflict(s)" in applied, applied
    assert "0 decision(s) taken" in cli(env, "apply").stdout  # nothing is applied twice
    with OpsDb.open(ops_url(env)) as db, db.sessions.read() as s:
        assert {d.status for d in s.scalars(select(ReviewDecision))} == {"applied"}
        assert {i.status for i in s.scalars(select(ReviewItem))} == {"resolved"}
    out = tmp_path / "rows.jsonl"
    assert "2 row(s)" in cli(env, "export", "--format", "jsonl", "--out", str(out)).stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and "card_not_working" in json.dumps(rows)
