"""Where the test suite finds real services, and what it does when one is missing.

``REQUIRE_SERVICES=1`` (set by CI) turns a missing service into a failure; without it the tests
that need the service are skipped with a reason naming it, and everything else still runs.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.building_blocks.infrastructure.persistence.database import describe_url

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://app:app@127.0.0.1:5432/postgres"


def require_services() -> bool:
    return os.environ.get("REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}


def missing(service: str, reason: str) -> None:
    message = f"{service} is not available ({reason}); run `make services` to start it"
    if require_services():
        pytest.fail(f"REQUIRE_SERVICES=1: {message}", pytrace=False)
    pytest.skip(message)


def postgres_admin_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)


async def create_postgres_database() -> str:
    """Create a fresh database for this run and return its URL (isolation per run)."""
    admin_url = make_url(postgres_admin_url())
    name = f"test_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"timeout": 3})
    try:
        async with asyncio.timeout(5), engine.connect() as connection:
            await connection.execute(
                text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0 LOCALE 'C.UTF-8'")
            )
    except Exception as error:  # unreachable, refused, bad credentials: all mean "missing"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        missing("PostgreSQL", f"{describe_url(admin_url)}: {reason}")
    finally:
        await engine.dispose()
    return admin_url.set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(url: str) -> None:
    target = make_url(url)
    engine = create_async_engine(
        make_url(postgres_admin_url()), isolation_level="AUTOCOMMIT", connect_args={"timeout": 3}
    )
    try:
        # WITH (FORCE) cannot end an autovacuum worker for a role that is not superuser; such a
        # worker gives way to a plain DROP within moments, so retry briefly.
        for attempt in range(20):
            force = " WITH (FORCE)" if attempt % 2 == 0 else ""
            try:
                async with engine.connect() as connection:
                    await connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}"{force}'))
                return
            except DBAPIError:
                if attempt == 19:
                    raise
                await asyncio.sleep(0.25)
    finally:
        await engine.dispose()


async def terminate_backends_matching(
    admin: AsyncEngine, statement: str, params: dict[str, object]
) -> list[int]:
    """Run ``statement`` (it selects the pids it terminates) and wait until those backends are
    gone from ``pg_stat_activity``; return their pids."""
    async with admin.connect() as connection:
        pids = list((await connection.execute(text(statement), params)).scalars())
        for _ in range(200):
            alive = (
                await connection.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"), {"pids": pids}
                )
            ).scalar_one()
            if alive == 0:
                return pids
            await asyncio.sleep(0.05)
    raise AssertionError(f"backends {pids} still alive after pg_terminate_backend")
