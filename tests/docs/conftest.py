"""A live server for the documentation's ``curl`` examples, owned by the docs tests.

The docs tests start their own server (fresh, migrated SQLite database; free port) so they do not
depend on how the other suites provide ``base_url``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.migrate import upgrade
from app.settings import DatabaseSettings
from tests.conftest import running_server


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
    workdir = tmp_path_factory.mktemp("docs-server")
    database_url = f"sqlite+aiosqlite:///{workdir / 'docs.db'}"
    migrate(database_url)
    log_path = workdir / "server.log"
    # The default registration limit (other suites' servers switch it off): docs/REDIS_API_GUIDE.md
    # shows its headers and a real 429.
    with running_server(database_url, log_path, RATE_LIMIT_REGISTRATIONS="20/minute") as url:
        yield DocsServer(url=url, log_path=log_path)
