"""A live server for the documentation's ``curl`` examples, owned by the docs tests.

The docs tests start their own uvicorn (on a fresh, migrated SQLite database and a free port) so
they do not depend on how the other suites provide ``base_url``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.migrate import upgrade
from app.settings import DatabaseSettings

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class DocsServer:
    url: str
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def migrate(url: str) -> None:
    """Run the migrations in a worker thread: ``upgrade`` uses ``asyncio.run``, which cannot run
    on a thread whose event loop is already running (as when an async test requests this)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(upgrade, DatabaseSettings(url=url)).result()


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsServer]:
    """``python -m uvicorn app.main:app`` on 127.0.0.1 and a free port, with its own database."""
    workdir = tmp_path_factory.mktemp("docs-server")
    database_url = f"sqlite+aiosqlite:///{workdir / 'docs.db'}"
    migrate(database_url)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", "ENVIRONMENT": "test"}
    server = DocsServer(url=f"http://127.0.0.1:{port}", log_path=workdir / "server.log")
    with server.log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_ready(process, server)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], server: DocsServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"docs server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"docs server not ready after {READY_TIMEOUT:.0f}s:\n{server.log_tail()}")
        time.sleep(0.1)
