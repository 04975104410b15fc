"""The service's readiness: parked outbox events make it degraded, still ready (both databases)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.infrastructure.messaging import InProcessBroker, OutboxConfig, OutboxRelay
from app.building_blocks.infrastructure.messaging.outbox_admin import discard_parked, list_parked
from app.building_blocks.infrastructure.persistence.database import create_engine
from app.main import create_app
from tests.conftest import make_settings
from tests.outbox_helpers import FlakyProducer, drain, write_user_history


@pytest.fixture(scope="module")
async def engine(private_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(private_database_url)
    yield engine
    await engine.dispose()


async def readiness(database_url: str) -> httpx.Response:
    app = create_app(make_settings(database_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        return await http.get("/health/ready")


async def test_readiness_shows_parked_events_as_degraded(
    private_database_url: str, engine: AsyncEngine
) -> None:
    topic = f"ready-{uuid.uuid4().hex[:8]}"
    producer = FlakyProducer(InProcessBroker())
    relay = OutboxRelay(engine, producer, OutboxConfig())
    await drain(relay)
    for parked in await list_parked(engine):  # other tests' parked rows, if any
        await discard_parked(engine, parked.event_id, "cleared by the readiness test")
    ready = (await readiness(private_database_url)).json()
    assert ready["status"] == "ok"
    assert ready["checks"]["outbox"]["details"] == {"parked": 0, "waiting_behind_parked": 0}

    stuck = await write_user_history(engine, topic)
    producer.refused = {str(stuck.id)}
    await drain(relay)
    response = await readiness(private_database_url)
    assert response.status_code == 200  # degraded, still ready: the rest of the service works
    ready = response.json()
    assert ready["status"] == "degraded"
    assert ready["checks"]["outbox"] == {
        "status": "degraded",
        "duration_ms": ready["checks"]["outbox"]["duration_ms"],
        "details": {"parked": 1, "waiting_behind_parked": 2},
    }
    assert ready["checks"]["database"]["status"] == "ok"
