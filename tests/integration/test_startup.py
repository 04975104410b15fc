"""Start-up against a database that is not there: fail fast, one clear line."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.building_blocks.infrastructure.persistence.database import DatabaseUnavailableError
from app.main import create_app
from tests.conftest import ROOT, free_port, make_settings, running_server


def unreachable_url() -> str:
    return f"postgresql+asyncpg://app:secret@127.0.0.1:{free_port()}/nothing"


def test_migrate_fails_fast_with_one_line() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "app.migrate"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": unreachable_url(), "DATABASE_CONNECT_TIMEOUT": "2"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("migrate: cannot connect to database postgresql+asyncpg://app:***@127.0.0.1:")
    assert "secret" not in result.stderr
    assert time.monotonic() - started < 30


async def test_the_app_refuses_to_start_without_its_database() -> None:
    app = create_app(make_settings(unreachable_url()))
    with pytest.raises(DatabaseUnavailableError, match="cannot connect"):
        async with app.router.lifespan_context(app):
            pass


def test_migrate_brings_a_new_sqlite_file_to_head(tmp_path: Path) -> None:
    database = tmp_path / "nested" / "app.db"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}"}
    for _ in range(2):  # idempotent
        result = subprocess.run(
            [sys.executable, "-m", "app.migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    assert database.exists()
    with running_server(f"sqlite+aiosqlite:///{database}", tmp_path / "server.log") as url:
        import httpx

        assert httpx.get(f"{url}/health/ready").json()["checks"]["database"]["status"] == "ok"


async def test_a_started_app_has_tuned_its_garbage_collector(tmp_path: Path) -> None:
    threshold = gc.get_threshold()
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}", gc_threshold=23_456))
    try:
        assert gc.get_freeze_count() == 0
        async with app.router.lifespan_context(app):
            assert gc.get_threshold()[0] == 23_456
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_gunicorn_refuses_to_preload_the_app(tmp_path: Path) -> None:
    """Workers must build the app after the fork: a preloaded app's exporting thread and metric
    files would belong to the master."""
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--preload", "app.main:create_app()"],
        cwd=ROOT,
        env={
            **os.environ,
            "GUNICORN_BIND": f"127.0.0.1:{free_port()}",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "preload_app" in result.stdout + result.stderr
