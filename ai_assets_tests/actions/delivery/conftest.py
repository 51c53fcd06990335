"""A real SMTP server and a real HTTP receiver on loopback, per test; the operations database."""

from collections.abc import Iterator

import pytest

from ai_assets_tests.doubles import SmtpReceiver, WebhookReceiver

# The operations database on SQLite and PostgreSQL, as in ops_db/.
from ai_assets_tests.ops_db.conftest import db_url, engine, ops, pg_module_database  # noqa: F401


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver
