"""Kafka fixtures of the integration tests, shared by every module under tests/integration:
the broker's address, a topic of the test's own, a migrated PostgreSQL database of the module's own
(see tests/messaging_harness.py and tests/kafka_service.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from app.migrate import upgrade
from app.settings import DatabaseSettings
from tests.kafka_service import delete_topics, require_kafka
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
async def topic(bootstrap: str) -> AsyncIterator[str]:
    """A fresh topic name (created by the broker, the worker or the test on first use); the topic
    and its dead-letter topic are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}.users.v1"
    yield name
    await delete_topics(bootstrap, [name, f"{name}.dlq"])
