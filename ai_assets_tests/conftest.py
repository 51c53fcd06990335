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

from ai_assets.core.dataset import split_banking77
from ai_assets.core.simulator import DayLedger, parse_fault_spec, simulate_day, write_day
from ai_assets.definitions import build_defs
from ai_assets.resources import IngestionPolicy, LandingZone, ParquetIOManager

PG_URL = os.environ.get("AI_ASSETS_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
CHROMIUM = os.environ.get("AI_ASSETS_CHROMIUM", "/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Workspace:
    """A data directory with its landing zone and asset storage, and Definitions bound to it."""

    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def defs(self, **policy) -> Definitions:
        return build_defs({
            "landing_zone": LandingZone(root=str(self.landing)),
            "io_manager": ParquetIOManager(base_dir=str(self.storage)),
            "ingestion_policy": IngestionPolicy(**policy),
        })

    def run(self, defs: Definitions, instance: DagsterInstance, day: date, job: str = "ingestion_job"):
        """One partition run of `job`, recorded in `instance`; failures are returned, not raised."""
        return defs.resolve_job_def(job).execute_in_process(
            partition_key=day.isoformat(), instance=instance, raise_on_error=False)

    def simulate(self, day: date, per_day: int = 300, faults: str | None = None,
                 seed: int = 7, pii_rate: float = 0.02) -> DayLedger:
        files, resolved, ledger = simulate_day(day, split_banking77()["replay"], per_day,
                                               parse_fault_spec(faults), seed=seed, pii_rate=pii_rate)
        write_day(self.landing, day, files, resolved, ledger)
        return ledger


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
