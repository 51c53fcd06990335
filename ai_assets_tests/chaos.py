"""Chaos scenarios for layer 3: break the run, the database, the mail server or the policy in
the middle of acting, recover, and count what was lost, duplicated or left half-done.

Each scenario runs the real `ai-assets backfill` command in a child process against a real
operations database (a SQLite file, or a fresh PostgreSQL database), then checks the
invariants in the database itself. `make chaos` runs every scenario on both databases,
prints the table and exits non-zero when any count is not zero; the tests run the same code.

    python -m ai_assets_tests.chaos [--messages 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date
from importlib import resources
from pathlib import Path

import pandas as pd
import sqlalchemy
import yaml
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from ai_assets.actions.ledger import Tally, action_tally
from ai_assets.actions.routing_policy import load_policy
from ai_assets.data.datasets import split_banking77
from ai_assets.ops_db import AuditEvent, OpsDb
from ai_assets.ops_db.engine import normalise_url
from ai_assets.ops_db.outbox import OutboxStore
from ai_assets.ops_db.tables import Action, OutboxKind, OutboxMessage
from ai_assets.serving.intent.out_of_scope import load_out_of_scope
from ai_assets.serving.intent.text_encoders import HashingEncoder
from ai_assets.serving.intent.training import first_per_intent, train_candidate
from ai_assets.simulator import simulate_day, write_day
from ai_assets_tests.doubles.receivers import SmtpReceiver
from ai_assets_tests.doubles.tcp_proxy import TcpProxy

DAY = date(2025, 3, 3)
PG_ADMIN_URL = os.environ.get("AI_ASSETS_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
AI_ASSETS = str(Path(sys.executable).with_name("ai-assets"))
DIALECTS = ("sqlite", "postgresql")


@dataclass
class ChaosResult:
    scenario: str
    database: str
    messages: int
    lost: int
    duplicated: int
    half_done: int
    note: str = ""
    happened: bool = True  # the fault hit mid-step; if not, the scenario proved nothing

    @property
    def ok(self) -> bool:
        return self.happened and self.messages > 0 and self.lost == self.duplicated == self.half_done == 0


def delivery_tally(db: OpsDb, receiver: SmtpReceiver) -> Tally:
    """Lost: an e-mail not delivered, or delivered but never received. Duplicated: a
    Message-ID the receiver got twice."""
    with db.sessions.read() as s:
        rows = s.execute(select(OutboxMessage.idempotency_key, OutboxMessage.status)
                         .where(OutboxMessage.kind == OutboxKind.EMAIL.value)).all()
    received = {mid.strip("<>").split("@")[0] for mid in receiver.message_ids()}
    lost = sum(1 for key, status in rows if status != "delivered" or key not in received)
    return Tally(lost=lost, duplicated=len(receiver.duplicates()))


# --- the environment: data dir, Dagster home, operations database, a small real model --------

_MODEL_CACHE: dict[str, object] = {}


def use_model(candidate) -> None:
    """Serve this trained candidate (a `TrainedCandidate`) instead of training one."""
    _MODEL_CACHE["candidate"] = candidate


def _smoke_model(models_dir: Path):
    """A small real intent model (hashing encoder, 12 rows per intent), trained once per process
    (`use_model` hands one in that the caller already has)."""
    if "candidate" not in _MODEL_CACHE:
        split = split_banking77()
        _MODEL_CACHE["candidate"] = train_candidate(
            first_per_intent(split["train"], 12), split["validation"], load_out_of_scope("train"),
            load_out_of_scope("heldout"), encoder=HashingEncoder())
    candidate = _MODEL_CACHE["candidate"]
    path = models_dir / "intent_model.joblib"
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate.model.save(path)
    return candidate, path


@contextmanager
def scratch_database(dialect: str, root: Path) -> Iterator[str]:
    """A throwaway operations database of one dialect: a SQLite file under `root`, or a fresh
    PostgreSQL database dropped afterwards. Also used by benchmarks/actions.py."""
    if dialect == "sqlite":
        yield f"sqlite:///{root / 'ops.db'}"
        return
    admin_url = normalise_url(PG_ADMIN_URL)
    name = f"ai_assets_chaos_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def finish(proc: subprocess.Popen, timeout_s: float = 300) -> str:
    """Wait for a child run; one that hangs is killed and reported, never left behind."""
    try:
        return proc.communicate(timeout=timeout_s)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"the run hung for {timeout_s:.0f} s and was killed") from None


@dataclass
class ChaosEnv:
    root: Path
    db_url: str
    messages: int

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "DAGSTER_HOME": str(self.root / "dagster_home"), "AI_ASSETS_DATA_DIR": str(self.root),
                "AI_ASSETS_OPS_DB_URL": self.db_url, "AI_ASSETS_OUTBOX_BASE_BACKOFF_S": "0.5",
                "AI_ASSETS_OUTBOX_DEADLINE_S": "2", **extra}

    def backfill(self, **extra: str) -> subprocess.Popen:
        return subprocess.Popen([AI_ASSETS, "backfill", "--start", DAY.isoformat(), "--end", DAY.isoformat()],
                                env=self.env(**extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def run_backfill(self, **extra: str) -> None:
        proc = self.backfill(**extra)
        err = finish(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"backfill failed ({proc.returncode}): {err[-2000:]}")

    def message_ids(self) -> list[str]:
        frame = pd.read_parquet(self.root / "storage" / "triage_decisions" / f"{DAY.isoformat()}.parquet")
        return list(frame["message_id"])

    def db(self, url: str | None = None) -> OpsDb:
        return OpsDb.open(url or self.db_url)


@contextmanager
def chaos_env(dialect: str, messages: int) -> Iterator[ChaosEnv]:
    with tempfile.TemporaryDirectory(prefix="ai_assets_chaos_") as tmp, scratch_database(dialect, Path(tmp)) as url:
        root = Path(tmp)
        (root / "dagster_home").mkdir()
        (root / "dagster_home" / "dagster.yaml").write_text("")  # the embedded SQLite default
        env = ChaosEnv(root, url, messages)
        candidate, path = _smoke_model(root / "models")
        with env.db() as db:
            record = db.registry.register_candidate(
                "intent_model", metrics=candidate.metrics, artifact_uri=str(path),
                training_data_fingerprint=candidate.fingerprint, confidence_threshold=candidate.model.threshold)
            db.registry.promote("intent_model", record.version, actor="chaos", reason="chaos fixture")
        files, resolved, ledger = simulate_day(DAY, split_banking77()["replay"], messages, {}, seed=11)
        write_day(root / "landing", DAY, files, resolved, ledger)
        yield env


def _wait_for_actions(env: ChaosEnv, at_least: int, proc: subprocess.Popen, timeout_s: float = 600) -> int:
    """Poll the ledger until it holds `at_least` rows (the step is mid-way), or the run ends."""
    engine = sqlalchemy.create_engine(normalise_url(env.db_url), poolclass=sqlalchemy.pool.NullPool)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                with engine.connect() as conn:
                    n = conn.scalar(select(func.count()).select_from(Action.__table__))
            except sqlalchemy.exc.DBAPIError:
                n = 0  # table not there yet
            if n >= at_least or proc.poll() is not None:
                return n
            time.sleep(0.005)
        raise TimeoutError("the run never reached case_actions")
    finally:
        engine.dispose()


# --- the scenarios -----------------------------------------------------------------------------

class Missed(Exception):
    """The fault did not land where the scenario needs it."""


def _step_retries(env: ChaosEnv) -> int:
    from dagster import DagsterEventType, DagsterInstance

    with DagsterInstance.from_config(str(env.root / "dagster_home")) as instance:
        return sum(len(instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY).records)
                   for run in instance.get_runs())


def sigkill_mid_case_actions(env: ChaosEnv) -> tuple[Tally, str]:
    proc = env.backfill()
    seen = _wait_for_actions(env, max(1, env.messages // 10), proc)
    if proc.poll() is not None or seen >= env.messages:
        raise Missed("case_actions ended before the run could be killed in it: raise --messages")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    env.run_backfill()
    with env.db() as db:
        return action_tally(db, env.message_ids(), load_policy().version), f"killed after {seen} actions"


def postgres_unreachable_mid_run(env: ChaosEnv) -> tuple[Tally, str]:
    url = make_url(env.db_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        proc = env.backfill(AI_ASSETS_OPS_DB_URL=through_proxy)
        seen = _wait_for_actions(env, max(1, env.messages // 10), proc)
        if proc.poll() is not None:
            raise Missed("the run ended before the database could be cut: raise --messages")
        proxy.cut()
        time.sleep(1.0)  # unreachable for a second: the step fails, Dagster retries it after 2 s
        proxy.restore()
        err = finish(proc)
    retries = _step_retries(env)
    if retries == 0:
        raise Missed(f"the cut after {seen} actions did not fail a step")
    note = f"cut after {seen} actions; {retries} step retry; run {'succeeded' if proc.returncode == 0 else 'FAILED'}"
    with env.db() as db:
        tally = action_tally(db, env.message_ids(), load_policy().version)
    if proc.returncode != 0:
        return tally + Tally(lost=1), note + f": {err[-500:]}"
    return tally, note


def smtp_down_then_back(env: ChaosEnv) -> tuple[Tally, str]:
    with SmtpReceiver() as smtp:
        smtp.stop()
        env.run_backfill(AI_ASSETS_SMTP_HOST="127.0.0.1", AI_ASSETS_SMTP_PORT=str(smtp.port))
        with env.db() as db:
            pending = OutboxStore(db.sessions).counts()["pending"]
        if pending == 0:
            raise Missed("no e-mail was waiting while the server was down")
        smtp.start()
        done = subprocess.run([AI_ASSETS, "outbox", "deliver", "--deadline", "60"], capture_output=True, text=True,
                              env=env.env(AI_ASSETS_SMTP_HOST="127.0.0.1", AI_ASSETS_SMTP_PORT=str(smtp.port)),
                              timeout=300)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        with env.db() as db:
            tally = action_tally(db, env.message_ids(), load_policy().version) + delivery_tally(db, smtp)
        return tally, (f"{pending} rows pending while the server was down; {len(smtp.message_ids())} e-mails "
                       "received once it was back")


def policy_change_between_runs(env: ChaosEnv) -> tuple[Tally, str]:
    env.run_backfill()
    v1 = load_policy().version
    with env.db() as db, db.sessions.read() as s:
        before = sorted(tuple(r) for r in s.execute(select(Action.id, Action.idempotency_key, Action.outcome,
                                                           Action.case_id)).all())
    document = yaml.safe_load(resources.files("ai_assets.actions").joinpath("routing_policy.yaml").read_text())
    document["version"] = v2 = f"{v1}-chaos"
    path = env.root / "routing-v2.yaml"
    path.write_text(yaml.safe_dump(document))
    env.run_backfill(AI_ASSETS_ROUTING_POLICY=str(path))
    ids = env.message_ids()
    with env.db() as db:
        tally = action_tally(db, ids, v1) + action_tally(db, ids, v2)
        with db.sessions.read() as s:
            after = sorted(tuple(r) for r in s.execute(
                select(Action.id, Action.idempotency_key, Action.outcome, Action.case_id)
                .where(Action.policy_version == v1)).all())
            new_keys = set(s.scalars(select(Action.idempotency_key).where(Action.policy_version == v2)))
        changes = len(db.audit.entries(event=AuditEvent.POLICY_CHANGE))
    untouched = after == before
    fresh_keys = not new_keys & {key for _, key, _, _ in before}
    visible = changes == len(ids)
    tally = tally + Tally(half_done=(not untouched) + (not fresh_keys) + (not visible))
    return tally, (f"v1 actions untouched: {untouched}; new keys: {fresh_keys}; "
                   f"{changes} policy_change audit rows for {len(ids)} messages")


SCENARIOS: dict[str, tuple[Callable[[ChaosEnv], tuple[Tally, str]], tuple[str, ...]]] = {
    "sigkill_mid_case_actions": (sigkill_mid_case_actions, DIALECTS),
    "postgres_unreachable_mid_run": (postgres_unreachable_mid_run, ("postgresql",)),
    "smtp_down_then_back": (smtp_down_then_back, DIALECTS),
    "policy_change_between_runs": (policy_change_between_runs, DIALECTS),
}


def run_scenario(name: str, dialect: str, messages: int) -> ChaosResult:
    scenario, dialects = SCENARIOS[name]
    if dialect not in dialects:
        raise ValueError(f"{name} runs on {dialects}, not {dialect}")
    with chaos_env(dialect, messages) as env:
        try:
            tally, note = scenario(env)
        except Missed as exc:
            return ChaosResult(name, dialect, 0, 0, 0, 0, str(exc), happened=False)
        return ChaosResult(name, dialect, len(env.message_ids()), tally.lost, tally.duplicated, tally.half_done, note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages in the simulated day")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [run_scenario(name, dialect, args.messages)
               for name, (_, dialects) in SCENARIOS.items() for dialect in dialects]
    if args.json:
        print(json.dumps([asdict(r) | {"ok": r.ok} for r in results], indent=1))
    else:
        header = f"{'scenario':<30} {'database':<11} {'messages':>8} {'lost':>5} {'duplicated':>10} {'half_done':>9}  result"
        print(header)
        print("-" * len(header))
        for r in results:
            print(f"{r.scenario:<30} {r.database:<11} {r.messages:>8} {r.lost:>5} {r.duplicated:>10} "
                  f"{r.half_done:>9}  {'ok' if r.ok else 'FAILED' if r.happened else 'MISSED'}  {r.note}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
