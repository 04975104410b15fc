"""Redis for the tests: the shared server (``make services``), or a private one a test may stop.

The shared server is ``TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); tests isolate
themselves by key prefix. :class:`PrivateRedis` runs its own ``redis-server`` on a free port so a
fault test can stop it (SIGKILL: the outage is real) and start it again without touching the
others. Missing Redis follows tests/services.py: a skip, or a failure with ``REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from app.building_blocks.infrastructure.cache import RedisClient, RedisConfig
from app.building_blocks.infrastructure.cache.errors import CacheUnavailableError
from tests.services import missing

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_test_url() -> str:
    return os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}:"


async def require_redis(url: str | None = None) -> str:
    url = url or redis_test_url()
    client = RedisClient(RedisConfig.from_url(url))
    try:
        await client.ping()
    except CacheUnavailableError as error:
        missing("Redis", f"{url}: {error}")
    finally:
        await client.close()
    return url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of one test: ``start()``, ``kill()`` (SIGKILL), ``start()`` again."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server", "not on PATH (apt-get install redis-server)")
        self.binary = str(binary)
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / f"redis-{self.port}.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"private redis-server on port {self.port} did not answer within 10 s")

    def kill(self) -> None:
        """The outage: the server dies at once (no shutdown handshake), its port refuses."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
