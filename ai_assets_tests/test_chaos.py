"""The chaos scenarios of `make chaos`, as tests: zero lost, duplicated or half-done actions
after a SIGKILL, a database cut, a mail server outage and a policy change — on SQLite and
PostgreSQL (the database cut on PostgreSQL only)."""

import pytest

from ai_assets_tests.chaos import SCENARIOS, run_scenario, use_model

CASES = [pytest.param(name, dialect, id=f"{name}-{dialect}",
                      marks=[pytest.mark.postgres] if dialect == "postgresql" else [])
         for name, (_, dialects) in SCENARIOS.items() for dialect in dialects]

pytestmark = pytest.mark.slow  # 600 messages per scenario, real SIGKILLs and outages: minutes


@pytest.mark.parametrize("name, dialect", CASES)
def test_chaos_scenario_loses_doubles_and_half_does_nothing(name, dialect, smoke_model):
    use_model(smoke_model.candidate)  # the suite's small real model, trained once per process
    result = run_scenario(name, dialect, messages=600)
    assert result.happened, result.note
    assert (result.lost, result.duplicated, result.half_done) == (0, 0, 0), result.note
    assert result.messages == 600
