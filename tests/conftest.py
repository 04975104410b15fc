"""Shared fixtures: migrated databases on both backends, an app per backend, a live server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.migrate import upgrade
from app.settings import DatabaseSettings, Settings
from tests.redis_service import PrivateRedis, require_redis
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


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
async def private_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A migrated database for one module only: no other test's app (and its embedded outbox
    relay) runs against it, so tests of the relay see exactly their own rows."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('private') / 'private.db'}"
    else:
        url = await create_postgres_database()
    await asyncio.to_thread(upgrade, DatabaseSettings(url=url))
    yield url
    if request.param == "postgres":
        await drop_postgres_database(url)


@pytest.fixture(scope="session")
async def redis_url() -> str:
    """The shared Redis (``make services``); isolate with :func:`tests.redis_service.unique_prefix`."""
    return await require_redis()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of this test alone, started; the test may kill and restart it."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def make_settings(database_url: str, **overrides: object) -> Settings:
    defaults: dict[str, object] = {
        "environment": "test",
        "log_level": "WARNING",
        "database": DatabaseSettings(url=database_url, pool_size=20, max_overflow=40),
        "gc_threshold": 0,  # frozen objects are never collected: this process builds hundreds of apps
        "rate_limit_registrations": "0",  # tests register users by the hundred; the limit has its own
    }
    return Settings(**{**defaults, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client for the app on one backend (lifespan included)."""
    app = create_app(make_settings(database_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """E2E tests run against ``BASE_URL`` when given, else against a server per backend."""
    if "server_backend" in metafunc.fixturenames:
        backends = ["external"] if os.environ.get("BASE_URL") else ["sqlite", "postgres"]
        metafunc.parametrize("server_backend", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
def server_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def base_url(server_backend: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A server over real HTTP: ``BASE_URL`` when given (compose), else uvicorn started here on a
    free port against this run's migrated database of the backend."""
    if server_backend == "external":
        yield os.environ["BASE_URL"].rstrip("/")
        return
    database_url = str(request.getfixturevalue(f"{server_backend}_url"))
    log_dir = request.getfixturevalue("tmp_path_factory").mktemp(f"server-{server_backend}")
    with running_server(database_url, log_dir / "server.log") as url:
        yield url


@contextmanager
def running_server(database_url: str, log_path: Path, **env: str) -> Iterator[str]:
    """Start ``uvicorn --factory app.main:create_app`` on a free port and wait until it is ready."""
    with server_process(database_url, log_path, **env) as (_process, url):
        yield url


def server_environment(database_url: str, **env: str) -> dict[str, str]:
    """A test server's environment: the user's, without messaging settings (embedded mode unless
    ``env`` says otherwise), on ``database_url``, quiet, no registration limit, then ``env``."""
    inherited = {
        name: value for name, value in os.environ.items() if not name.startswith(("KAFKA_", "OUTBOX_"))
    }
    return {
        **inherited,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "ENVIRONMENT": "test",
        "RATE_LIMIT_REGISTRATIONS": "0",
        **env,
    }


@contextmanager
def server_process(
    database_url: str, log_path: Path, *uvicorn_args: str, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``running_server`` with its process, for tests that signal or kill it."""
    port = free_port()
    environment = server_environment(database_url, **env)
    url = f"http://127.0.0.1:{port}"
    with log_path.open("a") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "app.main:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *uvicorn_args,
            ],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_ready(url, process, log_path)
            yield process, url
        finally:
            stop_process(process, timeout=10)


def stop_process(process: subprocess.Popen[bytes], *, timeout: float) -> None:
    """SIGTERM (if it still runs), ``timeout`` seconds to exit, then SIGKILL."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready after 30s: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)


@contextmanager
def gunicorn_server(database_url: str, directory: Path, **env: str) -> Iterator[str]:
    """The API under gunicorn as in production (gunicorn.conf.py, 2 workers by default), its
    metric files and log in ``directory``, on a free port; its base URL once ready."""
    port = free_port()
    log_path = directory / "gunicorn.log"
    environment = server_environment(
        database_url,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(directory / "metrics"),
        **env,
    )
    url = f"http://127.0.0.1:{port}"
    with log_path.open("a") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app.main:create_app()"],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_ready(url, process, log_path)
            yield url
        finally:
            stop_process(process, timeout=30)
