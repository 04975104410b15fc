"""The migrations and the models describe the same schema, on both backends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from app.building_blocks.infrastructure.persistence.database import create_engine
from app.metadata import metadata
from app.migrate import COMPARE, alembic_config, upgrade
from app.settings import DatabaseSettings
from tests.services import create_postgres_database, drop_postgres_database


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts=COMPARE)  # what autogenerate uses
    return list(compare_metadata(context, metadata))


async def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_diff)
    finally:
        await engine.dispose()
    assert differences == [], "models and migrations differ; run alembic revision --autogenerate"


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_downgrade_to_base_and_upgrade_again(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'roundtrip.db'}"
    else:
        url = await create_postgres_database()
    try:
        await asyncio.to_thread(upgrade, DatabaseSettings(url=url))
        config = alembic_config(DatabaseSettings(url=url).url)
        await asyncio.to_thread(command.downgrade, config, "base")
        engine = create_engine(url)
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == set()
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == set(metadata.tables)  # every context's
        await engine.dispose()
    finally:
        if backend == "postgres":
            await drop_postgres_database(url)
