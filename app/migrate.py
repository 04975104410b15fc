"""``python -m app.migrate``: bring the database to the latest schema, or say in one line why not.

Used by ``make run`` before the server starts and by the compose ``migrate`` service, so an
unreachable database fails fast with a clear message instead of a traceback wall.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, Column

from app.building_blocks.infrastructure.persistence.database import (
    DatabaseUnavailableError,
    check_database,
    create_engine,
    describe_url,
)
from app.settings import DatabaseSettings

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False  # the caller owns logging (JSON in the app)
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def server_defaults_differ(
    _context: Any,
    inspected_column: Column[Any],
    _metadata_column: Column[Any],
    inspected_default: str | None,
    _metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Alembic's server-default comparison, except for JSON columns: it asks PostgreSQL
    ``SELECT '{}'::json = '{}'``, and json has no ``=``. Those compare as text, casts dropped."""
    if not isinstance(inspected_column.type, JSON):
        return None  # Alembic's own comparison
    return _without_casts(inspected_default) != _without_casts(rendered_metadata_default)


def _without_casts(default: str | None) -> str | None:
    return None if default is None else re.sub(r"::[a-z_ ]+$", "", default.strip())


COMPARE: dict[str, Any] = {"compare_type": True, "compare_server_default": server_defaults_differ}
"""How autogenerate and the drift test compare the models with the database."""


async def _reachable(settings: DatabaseSettings) -> None:
    engine = create_engine(
        settings.url, pool_size=1, max_overflow=0, connect_timeout=settings.connect_timeout
    )
    try:
        await check_database(engine, timeout=settings.connect_timeout)
    finally:
        await engine.dispose()


def upgrade(settings: DatabaseSettings | None = None, revision: str = "head") -> None:
    settings = settings or DatabaseSettings()
    asyncio.run(_reachable(settings))
    command.upgrade(alembic_config(settings.url), revision)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="migrate: %(message)s", stream=sys.stderr)
    settings = DatabaseSettings()
    try:
        upgrade(settings)
    except DatabaseUnavailableError as error:
        print(f"migrate: {error}", file=sys.stderr)
        return 1
    print(f"migrate: {describe_url(settings.url)} is at the latest revision", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
