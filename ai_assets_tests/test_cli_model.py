"""`ai-assets model list|promote|rollback` against a real operations database."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ai_assets.ops_db import OpsDb

AI_ASSETS = str(Path(sys.executable).with_name("ai-assets"))


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AI_ASSETS_OPS_DB_URL": url}
    return subprocess.run([AI_ASSETS, "model", *args], env=env, capture_output=True, text=True, timeout=120)


def register(db: OpsDb, accuracy: float):
    return db.registry.register_candidate("intent_model", metrics={"accuracy": accuracy},
                                          artifact_uri=f"file:///models/{accuracy}.joblib",
                                          training_data_fingerprint="f" * 64, confidence_threshold=0.8)


def statuses(url: str) -> dict[int, str]:
    result = cli(url, "list", "--json")
    assert result.returncode == 0, result.stderr
    return {row["version"]: row["status"] for row in json.loads(result.stdout)}


@pytest.mark.slow
def test_promote_then_rollback_in_one_command_each(tmp_path):
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    with OpsDb.open(url) as db:
        register(db, 0.91)
        register(db, 0.93)
    assert statuses(url) == {1: "candidate", 2: "candidate"}
    assert cli(url, "promote", "1", "--reason", "first model").returncode == 0
    assert cli(url, "promote", "2", "--reason", "better on validation").returncode == 0
    assert statuses(url) == {1: "retired", 2: "production"}

    rolled = cli(url, "rollback", "--reason", "accuracy dropped in production")
    assert rolled.returncode == 0 and "v1 is production again" in rolled.stdout
    assert statuses(url) == {1: "production", 2: "retired"}
    with OpsDb.open(url) as db:
        events = [(e.action, e.from_version, e.to_version) for e in db.registry.events("intent_model")]
    assert events[-1] == ("rollback", 2, 1)


def test_errors_are_clear_and_exit_non_zero(tmp_path):
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    with OpsDb.open(url) as db:
        register(db, 0.91)
    unknown = cli(url, "promote", "7", "--reason", "x")
    assert unknown.returncode != 0 and "7" in unknown.stderr
    nothing = cli(url, "rollback", "--reason", "x")
    assert nothing.returncode != 0 and "Error" in nothing.stderr
    assert statuses(url) == {1: "candidate"}  # nothing changed
