"""The embedded mode: no broker, the API process runs the relay and the consumers."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import func, select

from app.building_blocks.infrastructure.persistence.database import create_engine
from app.main import create_app
from app.users.persistence.tables import user_activity_table
from tests.conftest import make_settings
from tests.helpers import USERS, unique_email


async def test_a_clean_stop_drains_the_in_process_broker(private_database_url: str) -> None:
    app = create_app(make_settings(private_database_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        assert app.state.messaging.embedded
        ids = [
            (await http.post(USERS, json={"email": unique_email("drain"), "name": "D"})).json()["id"]
            for _ in range(20)
        ]
    # stopped right after the last write: every event still reached the activity log
    engine = create_engine(private_database_url)
    try:
        async with engine.connect() as connection:
            projected = (
                await connection.execute(
                    select(func.count()).where(user_activity_table.c.user_id.in_([uuid.UUID(i) for i in ids]))
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert projected == len(ids)
