"""Fixtures of the messaging tests against real Kafka and PostgreSQL (see tests/messaging_harness.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from app.migrate import upgrade
from app.settings import DatabaseSettings
from tests.kafka_service import require_kafka
from tests.messaging_harness import dispose_engine
from tests.services import create_postgres_database, drop_postgres_database


@pytest.fixture(scope="module")
async def bootstrap() -> str:
    return await require_kafka()


@pytest.fixture(scope="module")
async def database(bootstrap: str) -> AsyncIterator[str]:
    """A database of its own: no other test's relay may touch these outbox rows."""
    url = await create_postgres_database()
    await asyncio.to_thread(upgrade, DatabaseSettings(url=url))
    yield url
    await dispose_engine(url)
    await drop_postgres_database(url)


@pytest.fixture
def topic() -> str:
    return f"test-{uuid.uuid4().hex[:10]}.users.v1"
