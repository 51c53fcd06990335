"""The production instance config (deploy/dagster.yaml) loaded for real against PostgreSQL.

Each test gets its own freshly created database on the machine's PostgreSQL server
(AI_ASSETS_TEST_PG_URL), a DAGSTER_HOME holding a copy of deploy/dagster.yaml, and the
DAGSTER_PG_* variables the file reads. The database is dropped afterwards. A missing server
fails the tests (require_postgres), it never skips them.
"""

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
)
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES, RunsFilter
from dagster._utils.tags import TagConcurrencyLimitsCounter
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from sqlalchemy.engine import URL, make_url

from ai_assets.defs.actions.checks import EVERY_DECISION_ACTED_ONCE, EVERY_MESSAGE_TRIAGED_ONCE, NO_DEAD_LETTERS
from ai_assets.defs.enrichment.checks import EVERY_MESSAGE_ENRICHED_ONCE
from ai_assets.defs.ingestion.checks import (
    COUNTS_BALANCE,
    LANDING_FILES_ALL_READ,
    QUARANTINE_ROWS_EXPLAINED,
    QUARANTINE_SHARE_WITHIN_CEILING,
    SCHEMA_MATCHES_CONTRACT,
    VOLUME_WITHIN_TRAILING_BAND,
)
from ai_assets.defs.monitoring.drift import (
    INPUT_DRIFT_VS_TRAILING,
    INPUT_DRIFT_VS_TRAINING,
    PREDICTION_DRIFT_VS_TRAILING,
    PREDICTION_DRIFT_VS_TRAINING,
)
from ai_assets.defs.monitoring.metrics import WITHIN_LLM_BUDGET
from ai_assets.simulator import FAULT_OUTCOME
from ai_assets_tests.conftest import REPO_ROOT, Workspace, require_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # a PostgreSQL-backed Dagster instance per test

DEPLOY_YAML = REPO_ROOT / "deploy" / "dagster.yaml"
PG_ENV_VARS = ("DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_DB",
               "DAGSTER_PG_PORT")
DAY = "2025-03-03"  # a Monday: the simulator's full weekday volume
# Quarantined or de-duplicated faults only: schema-change faults are meant to fail a warning check.
FAULTS = "unparseable=0.01,missing_field=0.01,wrong_type=0.01,duplicate_id=0.01,empty_text=0.01,invalid_utf8=0.01"
ALL_CHECKS = {
    "raw_messages": {SCHEMA_MATCHES_CONTRACT, LANDING_FILES_ALL_READ, VOLUME_WITHIN_TRAILING_BAND},
    "validated_messages": {QUARANTINE_SHARE_WITHIN_CEILING, COUNTS_BALANCE},
    "quarantined_messages": {QUARANTINE_ROWS_EXPLAINED},
    "enriched_messages": {EVERY_MESSAGE_ENRICHED_ONCE},
    "triage_decisions": {EVERY_MESSAGE_TRIAGED_ONCE},
    "case_actions": {EVERY_DECISION_ACTED_ONCE},
    "outbox_deliveries": {NO_DEAD_LETTERS},
    # The day's monitoring runs in the same job.
    "quality_estimate": set(),
    "input_drift": {INPUT_DRIFT_VS_TRAINING, INPUT_DRIFT_VS_TRAILING},
    "prediction_drift": {PREDICTION_DRIFT_VS_TRAINING, PREDICTION_DRIFT_VS_TRAILING},
    "pipeline_metrics": set(),
    "cost_report": {WITHIN_LLM_BUDGET},
    "business_metrics": set(),
}


def psycopg2_url(url: str | URL) -> URL:
    """The same server with the psycopg2 driver named: SQLAlchemy 2.1 maps a bare
    `postgresql://` to psycopg 3, which dagster-postgres does not ship."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg2") if parsed.get_backend_name() == "postgresql" else parsed


@dataclass
class PgDatabase:
    name: str
    url: URL  # psycopg2 URL of the fresh database

    def env(self) -> dict[str, str]:
        """The DAGSTER_PG_* variables deploy/dagster.yaml reads, pointing at this database."""
        return {
            "DAGSTER_PG_USERNAME": self.url.username or "postgres",
            "DAGSTER_PG_PASSWORD": self.url.password or "",
            "DAGSTER_PG_HOST": self.url.host or "127.0.0.1",
            "DAGSTER_PG_DB": self.name,
            "DAGSTER_PG_PORT": str(self.url.port or 5432),
        }

    def scalar(self, sql: str, **params):
        engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                return conn.execute(sqlalchemy.text(sql), params).scalar()
        finally:
            engine.dispose()

    def rows(self, sql: str, **params) -> list[tuple]:
        engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(sqlalchemy.text(sql), params)]
        finally:
            engine.dispose()


@pytest.fixture
def pg_database() -> Iterator[PgDatabase]:
    admin_url = psycopg2_url(require_postgres())
    name = f"ai_assets_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT",
                                     poolclass=sqlalchemy.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PgDatabase(name, admin_url.set(database=name))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def dagster_home(tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME with a copy of deploy/dagster.yaml and its variables set."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for key, value in pg_database.env().items():
        monkeypatch.setenv(key, value)
    return home


@pytest.fixture
def prod_instance(dagster_home: Path) -> Iterator[DagsterInstance]:
    instance = DagsterInstance.get()
    try:
        yield instance
    finally:
        instance.dispose()


def test_deploy_instance_is_postgres_backed_with_queue_monitoring_and_retries(
        prod_instance: DagsterInstance, pg_database: PgDatabase):
    inst = prod_instance
    assert isinstance(inst.run_storage, PostgresRunStorage)
    assert isinstance(inst.event_log_storage, PostgresEventLogStorage)
    assert isinstance(inst.schedule_storage, PostgresScheduleStorage)
    assert make_url(inst.run_storage.postgres_url).database == pg_database.name

    assert isinstance(inst.run_coordinator, QueuedRunCoordinator)
    assert isinstance(inst.run_launcher, DefaultRunLauncher)
    queue = inst.get_concurrency_config().run_queue_config
    assert queue is not None and queue.max_concurrent_runs == 8
    limits = {limit["key"]: limit for limit in queue.tag_concurrency_limits}
    assert limits["dagster/partition"] == {"key": "dagster/partition", "limit": 1,
                                           "value": {"applyLimitPerUniqueValue": True}}
    assert limits["dagster/backfill"]["limit"] == 4
    pools = inst.get_concurrency_config().pool_config
    assert pools.default_pool_limit == 2 and pools.pool_granularity.value == "op"

    assert inst.run_monitoring_enabled
    assert inst.run_monitoring_start_timeout_seconds == 300
    assert inst.run_monitoring_cancel_timeout_seconds == 180
    assert inst.run_monitoring_max_resume_run_attempts == 0  # DefaultRunLauncher cannot resume
    assert inst.run_retries_enabled and inst.run_retries_max_retries == 2
    assert not inst.run_retries_retry_on_asset_or_op_failure
    assert not inst.telemetry_enabled

    # Dagster created its schema in the fresh database: the tables are really there.
    tables = {r[0] for r in pg_database.rows(
        "select table_name from information_schema.tables where table_schema = 'public'")}
    assert {"runs", "event_logs", "asset_keys", "asset_check_executions", "jobs", "instigators",
            "concurrency_limits", "concurrency_slots", "alembic_version"} <= tables


def test_ingestion_partition_materializes_into_postgres(
        prod_instance: DagsterInstance, pg_database: PgDatabase, workspace: Workspace):
    ledger = workspace.simulate(date.fromisoformat(DAY), per_day=300, faults=FAULTS)
    job = workspace.defs().resolve_job_def("ingestion_job")
    result = job.execute_in_process(partition_key=DAY, instance=prod_instance)
    assert result.success

    # Through the instance API, i.e. read back from PostgreSQL.
    run = prod_instance.get_run_by_id(result.run_id)
    assert run.status == DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == DAY
    for asset in ALL_CHECKS:
        assert prod_instance.get_materialized_partitions(AssetKey(asset)) == {DAY}
    validated = prod_instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("validated_messages"), asset_partitions=[DAY]),
        limit=1).records[0].event_log_entry.asset_materialization.metadata
    expected_quarantine = sum(n for kind, n in ledger.faults.items() if FAULT_OUTCOME[kind] == "quarantine")
    rows_in = sum(ledger.files.values())
    assert validated["rows_in"].value == rows_in
    assert validated["quarantined"].value == expected_quarantine
    assert validated["duplicates"].value == ledger.faults["duplicate_id"]
    assert validated["validated"].value == rows_in - expected_quarantine - ledger.faults["duplicate_id"]

    check_keys = [AssetCheckKey(AssetKey(asset), name) for asset, names in ALL_CHECKS.items()
                  for name in names]
    latest = prod_instance.event_log_storage.get_latest_asset_check_execution_by_key(
        check_keys, partition_filter=PartitionKeyFilter(key=DAY))
    assert {key.name: (record.run_id, record.evaluation.passed) for key, record in latest.items()} == {
        key.name: (result.run_id, True) for key in check_keys}

    # Straight from the tables, without Dagster in between.
    assert pg_database.scalar("select status from runs where run_id = :r", r=result.run_id) == "SUCCESS"
    materialized = pg_database.rows(
        "select asset_key, partition from event_logs where run_id = :r "
        "and dagster_event_type = 'ASSET_MATERIALIZATION' order by asset_key", r=result.run_id)
    assert materialized == [(AssetKey(a).to_string(), DAY) for a in sorted(ALL_CHECKS)]
    checks = pg_database.rows(
        "select check_name, partition, execution_status from asset_check_executions "
        "where run_id = :r order by check_name", r=result.run_id)
    assert checks == sorted((key.name, DAY, "SUCCEEDED") for key in check_keys)


def test_queue_holds_a_second_run_of_the_same_partition(prod_instance: DagsterInstance):
    """The tag limits the daemon applies when dequeuing, over the runs stored in PostgreSQL.
    (Candidates are NOT_STARTED: a QUEUED run needs a code-location origin this test has not.)"""
    def add_run(partition: str, status: DagsterRunStatus) -> DagsterRun:
        return prod_instance.add_run(DagsterRun(job_name="ingestion_job", run_id=uuid.uuid4().hex,
                                                status=status, tags={"dagster/partition": partition}))

    add_run(DAY, DagsterRunStatus.STARTED)
    same_day = add_run(DAY, DagsterRunStatus.NOT_STARTED)
    other_day = add_run("2025-03-04", DagsterRunStatus.NOT_STARTED)
    in_progress = prod_instance.get_runs(RunsFilter(statuses=[s for s in IN_PROGRESS_RUN_STATUSES
                                                              if s != DagsterRunStatus.QUEUED]))
    assert len(in_progress) == 1
    limits = prod_instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    counter = TagConcurrencyLimitsCounter(limits, list(in_progress))
    assert counter.is_blocked(same_day)
    assert not counter.is_blocked(other_day)


def test_llm_pool_gets_the_default_limit_and_blocks_beyond_it(
        prod_instance: DagsterInstance, pg_database: PgDatabase):
    storage = prod_instance.event_log_storage
    storage.initialize_concurrency_limit_to_default("llm")
    assert storage.get_concurrency_info("llm").slot_count == 2  # pools.default_limit
    run_id = uuid.uuid4().hex
    claims = [storage.claim_concurrency_slot("llm", run_id, f"enrich_{i}") for i in range(3)]
    assert [c.is_claimed for c in claims] == [True, True, False]
    assert pg_database.scalar("select count(*) from concurrency_slots where concurrency_key = 'llm' "
                              "and run_id is not null") == 2
    storage.free_concurrency_slots_for_run(run_id)

    storage.set_concurrency_slots("llm", 3)  # what `dagster instance concurrency set llm 3` does
    assert storage.get_concurrency_info("llm").slot_count == 3
    assert pg_database.scalar("select count(*) from concurrency_slots where concurrency_key = 'llm'") == 3


def test_deploy_yaml_names_the_psycopg2_driver(prod_instance: DagsterInstance):
    url = make_url(prod_instance.run_storage.postgres_url)
    assert url.drivername == "postgresql+psycopg2"
    assert url.get_dialect().driver == "psycopg2"


def test_bare_postgresql_scheme_is_the_sqlalchemy_trap(dagster_home: Path):
    """Without `scheme: postgresql+psycopg2` SQLAlchemy 2.1 would load psycopg 3 for the
    instance. Where psycopg 3 is absent (dagster-postgres only brings psycopg2) that fails;
    the deploy file's explicit scheme is what makes the instance load."""
    config = dagster_home / "dagster.yaml"
    text = config.read_text()
    assert "      scheme: postgresql+psycopg2\n" in text
    config.write_text(text.replace("      scheme: postgresql+psycopg2\n", ""))

    default_driver = make_url("postgresql://u@h/d").get_dialect().driver
    try:
        import psycopg  # noqa: F401
        psycopg3 = True
    except ImportError:
        psycopg3 = False
    if default_driver == "psycopg" and not psycopg3:
        with pytest.raises(ImportError, match="psycopg"):
            DagsterInstance.get().dispose()
    else:  # an older SQLAlchemy, or psycopg 3 installed: no trap here, the instance loads
        DagsterInstance.get().dispose()
    assert psycopg2_url("postgresql://postgres@127.0.0.1:5432/x").drivername == "postgresql+psycopg2"


def test_missing_connection_variable_is_a_clear_config_error(dagster_home: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DAGSTER_PG_HOST")
    with pytest.raises(DagsterInvalidConfigError, match="DAGSTER_PG_HOST"):
        DagsterInstance.get()


def test_deploy_yaml_reads_every_connection_setting_from_the_environment():
    text = DEPLOY_YAML.read_text()
    for var in PG_ENV_VARS:
        assert f"env: {var}" in text
