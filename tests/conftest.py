"""Shared fixtures: migrated databases on both backends, an app per backend, a live server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.migrate import upgrade
from app.settings import DatabaseSettings, Settings
from tests.services import create_postgres_database, drop_postgres_database

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    url = await create_postgres_database()
    await asyncio.to_thread(upgrade, DatabaseSettings(url=url))
    yield url
    await drop_postgres_database(url)


@pytest.fixture(scope="session")
async def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    await asyncio.to_thread(upgrade, DatabaseSettings(url=url))
    return url


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Every test that takes this runs once per backend."""
    return str(request.getfixturevalue(f"{request.param}_url"))


def make_settings(database_url: str, **overrides: object) -> Settings:
    return Settings(
        environment="test",
        log_level="WARNING",
        database=DatabaseSettings(url=database_url, pool_size=20, max_overflow=40),
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client for the app on one backend (lifespan included)."""
    app = create_app(make_settings(database_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield http


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def base_url(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server over real HTTP: ``BASE_URL`` when given (compose, CI), else uvicorn started here
    on a free port with ``DATABASE_URL`` (or this run's SQLite database)."""
    given = os.environ.get("BASE_URL")
    if given:
        yield given.rstrip("/")
        return
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": os.environ.get("E2E_DATABASE_URL", sqlite_url),
        "LOG_LEVEL": "WARNING",
        "ENVIRONMENT": "test",
    }
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}; see {log.name}")
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after 30s; see {log.name}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
