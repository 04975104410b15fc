"""A writer stuck behind a lock gets a 503 with Retry-After in bounded time; readers go on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.building_blocks.infrastructure.persistence.database import create_engine
from app.main import create_app
from app.users.persistence.tables import users_table
from tests.conftest import make_settings
from tests.helpers import USERS, assert_problem, unique_email


@pytest.fixture(scope="module")
async def impatient_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url)
    database = settings.database.model_copy(update={"lock_timeout": 0.5})
    app = create_app(settings.model_copy(update={"database": database}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield http


async def hold_lock(connection: AsyncConnection, user_id: str) -> None:
    """An open write transaction: the row lock on PostgreSQL, the database write lock on SQLite."""
    await connection.execute(
        update(users_table).where(users_table.c.id == UUID(user_id)).values(name=users_table.c.name)
    )


async def test_blocked_writer_gets_503_while_readers_are_served(
    impatient_client: httpx.AsyncClient, database_url: str
) -> None:
    user = (await impatient_client.post(USERS, json={"email": unique_email(), "name": "Locked"})).json()
    path = f"{USERS}/{user['id']}"
    engine = create_engine(database_url)
    try:
        async with engine.connect() as holder:
            await hold_lock(holder, user["id"])

            read = await asyncio.wait_for(impatient_client.get(path), timeout=5)
            assert read.status_code == 200

            blocked = await asyncio.wait_for(impatient_client.patch(path, json={"name": "Waits"}), timeout=10)
            body = assert_problem(blocked, 503, "TEMPORARILY_UNAVAILABLE")
            assert blocked.headers["retry-after"] == str(body["extensions"]["retry_after"])
            await holder.rollback()
    finally:
        await engine.dispose()
    after = await impatient_client.patch(path, json={"name": "Free"})
    assert after.status_code == 200
    assert after.json()["version"] == 2
