"""Shared fixtures: a throwaway data directory, Dagster instance and definitions per test.

Components the suite needs (PostgreSQL, Chromium) are required: a missing one fails the
test that needs it with the reason, it never skips.
"""

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, instance_for_test

from ai_assets.data.datasets import split_banking77
from ai_assets.definitions import build_defs
from ai_assets.ops_db import OpsDb
from ai_assets.resources import (
    ActionSettings,
    IngestionPolicy,
    IntentModelTraining,
    LandingZone,
    ModelServing,
    MonitoringSettings,
    NotifierResource,
    OpsDatabaseResource,
    ParquetIOManager,
)
from ai_assets.serving.intent.out_of_scope import load_out_of_scope
from ai_assets.serving.intent.text_encoders import HashingEncoder
from ai_assets.serving.intent.training import TrainedCandidate, first_per_intent, train_candidate
from ai_assets.simulator import DayLedger, parse_fault_spec, simulate_day, write_day

PG_URL = os.environ.get("AI_ASSETS_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
CHROMIUM = os.environ.get("AI_ASSETS_CHROMIUM", "/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Workspace:
    """A data directory with its landing zone and asset storage, and Definitions bound to it."""

    root: Path
    db_url: str | None = None  # the operations database; a SQLite file in `root` by default

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def ops_db_url(self) -> str:
        return self.db_url or f"sqlite:///{self.root / 'ops.db'}"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def action_settings(self, **changes) -> ActionSettings:
        """File sinks under `outbox`, and retries short enough for a test."""
        # A deadline long enough that a loaded machine still delivers a whole day in one pass;
        # the tests of the deadline itself set their own.
        settings = dict(outbox_dir=str(self.outbox), base_backoff_s=0.05, max_backoff_s=0.2, delivery_deadline_s=60.0)
        return ActionSettings(**{**settings, **changes})

    def defs(self, serving: ModelServing | None = None, training: IntentModelTraining | None = None,
             actions: ActionSettings | None = None, landing: LandingZone | None = None,
             monitoring: MonitoringSettings | None = None, notifier: NotifierResource | None = None,
             **policy) -> Definitions:
        """No LLM unless `serving` says so; training is a quick smoke training (hashing encoder,
        12 rows per intent, floors low enough for it) unless `training` says otherwise; outbox
        to files unless `actions` says otherwise."""
        return build_defs({
            "landing_zone": landing or LandingZone(root=str(self.landing)),
            "io_manager": ParquetIOManager(base_dir=str(self.storage)),
            "ingestion_policy": IngestionPolicy(**policy),
            "ops_database": OpsDatabaseResource(url=self.ops_db_url),
            "model_serving": serving or ModelServing(),
            "model_training": training or self.smoke_training(),
            "action_settings": actions or self.action_settings(),
            "monitoring_settings": monitoring or MonitoringSettings(),
            "notifier": notifier or NotifierResource(),
        })

    def smoke_training(self, **changes) -> IntentModelTraining:
        settings = dict(models_dir=str(self.root / "models"), encoder="hashing", rows_per_intent=SMOKE_ROWS_PER_INTENT,
                        min_accuracy=0.5, min_coverage=0.02, max_out_of_scope_automated=0.2)
        return IntentModelTraining(**{**settings, **changes})

    def run(self, defs: Definitions, instance: DagsterInstance, day: date | None, job: str = "ingestion_job"):
        """One run of `job` (of `day`'s partition if given), recorded in `instance`; failures
        are returned, not raised."""
        return defs.resolve_job_def(job).execute_in_process(
            partition_key=day.isoformat() if day else None, instance=instance, raise_on_error=False)

    def train(self, defs: Definitions, instance: DagsterInstance):
        return self.run(defs, instance, None, job="model_training_job")

    def install_model(self, model: "SmokeModel") -> int:
        return install_model(self.ops_db_url, model)

    def simulate(self, day: date, per_day: int = 300, faults: str | None = None,
                 seed: int = 7, pii_rate: float = 0.02) -> DayLedger:
        files, resolved, ledger = simulate_day(day, split_banking77()["replay"], per_day,
                                               parse_fault_spec(faults), seed=seed, pii_rate=pii_rate)
        write_day(self.landing, day, files, resolved, ledger)
        return ledger


@dataclass
class SmokeModel:
    candidate: TrainedCandidate
    path: Path


SMOKE_ROWS_PER_INTENT = 12


def install_model(ops_db_url: str, model: SmokeModel) -> int:
    """Register `model` in that registry and make it production; its version."""
    with OpsDb.open(ops_db_url) as db:
        record = db.registry.register_candidate(
            "intent_model", metrics=model.candidate.metrics, artifact_uri=str(model.path),
            training_data_fingerprint=model.candidate.fingerprint,
            confidence_threshold=model.candidate.model.threshold)
        db.registry.promote("intent_model", record.version, actor="test", reason="test fixture")
    return record.version


def _train_smoke_model(directory: Path) -> SmokeModel:
    split = split_banking77()
    candidate = train_candidate(first_per_intent(split["train"], SMOKE_ROWS_PER_INTENT), split["validation"],
                                load_out_of_scope("train"), load_out_of_scope("heldout"), encoder=HashingEncoder())
    path = directory / "intent_model.joblib"
    candidate.model.save(path)
    return SmokeModel(candidate, path)


@pytest.fixture(scope="session")
def smoke_model(request, tmp_path_factory) -> SmokeModel:
    """One small real intent model (hashing encoder, 12 rows per intent, ~60% accurate), trained
    once per test session, for tests about serving rather than about the model's quality.

    Under pytest-xdist the first worker that needs it trains it (~10 s) into the session's shared
    temporary directory and the others wait for it and load the same pickle, instead of each
    training its own copy. Treat it as read-only: every worker shares the artifact file."""
    if not hasattr(request.config, "workerinput"):  # one process: no one to share with
        return _train_smoke_model(tmp_path_factory.mktemp("smoke_model"))
    import fcntl
    import pickle

    shared = tmp_path_factory.getbasetemp().parent / "smoke_model"  # common to this session's workers
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = shared / "smoke_model.pickle"
        if done.exists():
            return pickle.loads(done.read_bytes())
        model = _train_smoke_model(shared)
        tmp = shared / "smoke_model.pickle.tmp"
        tmp.write_bytes(pickle.dumps(model))
        os.replace(tmp, done)
        return model


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "var")


@pytest.fixture
def instance():
    with instance_for_test() as inst:
        yield inst


def require_postgres() -> str:
    """The PostgreSQL URL, or a failure that says why the required server is missing."""
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(PG_URL).connect() as conn:
            conn.exec_driver_sql("select 1")
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        pytest.fail(f"PostgreSQL is required at {PG_URL} (set AI_ASSETS_TEST_PG_URL): {exc}")
    return PG_URL


def require_chromium() -> str:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is required at {CHROMIUM}: apt-get install chromium (see .ci/run)")
    return CHROMIUM


__all__ = ["DagsterInstance", "Workspace", "require_chromium", "require_postgres", "REPO_ROOT"]


# Fixtures that train a model when first used (seconds each, per process).
_TRAINING_FIXTURES = frozenset({"smoke_model", "hashed_model", "minilm_model", "local_model"})


def pytest_collection_modifyitems(session, config, items):
    """Modules with a test that trains a model run first, each module kept together (so its
    fixtures are set up once), the rest in their usual order. Under pytest-xdist the run then ends
    on many short tests that both workers share, not on one worker's long tail of training while
    the other idles: about 10 s less for the fast command (`-m "not slow"`) on 2 cores."""
    def module(item) -> str:
        return item.nodeid.split("::")[0]

    heavy = {module(item) for item in items if _TRAINING_FIXTURES & set(getattr(item, "fixturenames", ()))}
    items[:] = sorted(items, key=lambda item: module(item) not in heavy)


def pytest_sessionfinish(session, exitstatus):
    """With AI_ASSETS_FAIL_ON_SKIP=1 (set by .ci/run) a skipped test fails the run: every test
    here is required, so a skip can only mean a component went missing unnoticed."""
    if os.environ.get("AI_ASSETS_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"AI_ASSETS_FAIL_ON_SKIP: {len(skipped)} test(s) skipped; failing the run")
        session.exitstatus = 1
