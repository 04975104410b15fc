"""Webhook fixtures: a fresh migrated PostgreSQL database per test, a real endpoint, an app in
embedded mode (relay and consumers in process) whose webhooks go to that endpoint."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks import Webhook

from app.building_blocks.infrastructure.http.breaker import BREAKERS
from app.building_blocks.infrastructure.messaging.envelope import ReceivedMessage
from app.building_blocks.infrastructure.messaging.transport import InProcessBroker
from app.main import create_app
from app.migrate import upgrade
from app.settings import DatabaseSettings
from tests.conftest import make_settings
from tests.helpers import unique_email
from tests.http_servers import ReceivedRequest, ScriptedServer
from tests.services import create_postgres_database, drop_postgres_database

TOPIC = "user-service.users.v1"
DLQ = f"{TOPIC}.dlq"
HOOK = "/hooks"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A PostgreSQL database of this test alone: no other app's relay publishes its rows, and no
    row of another test's comes to this test's endpoint."""
    url = await create_postgres_database()
    await asyncio.to_thread(upgrade, DatabaseSettings(url=url))
    yield url
    await drop_postgres_database(url)


@pytest.fixture(autouse=True)
def fresh_breakers() -> None:
    """The breaker registry is process-wide: each test starts with a closed ``webhooks`` one."""
    BREAKERS.clear()


@pytest.fixture
async def endpoint() -> AsyncIterator[ScriptedServer]:
    async with ScriptedServer() as server:
        yield server


@pytest.fixture
def fast_client(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Sets ``EXTERNAL_APIS__WEBHOOKS__*`` (read when the app is built)."""

    def configure(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"EXTERNAL_APIS__WEBHOOKS__{name.upper()}", str(value))

    return configure


@dataclass
class RunningApp:
    app: FastAPI
    http: httpx.AsyncClient

    @property
    def broker(self) -> InProcessBroker:
        broker = self.app.state.messaging.broker
        assert isinstance(broker, InProcessBroker), "not in embedded mode"
        return broker

    def dead_letters(self) -> list[ReceivedMessage]:
        return self.broker.messages(DLQ)

    def published(self) -> list[ReceivedMessage]:
        return self.broker.messages(TOPIC)

    async def register(self, name: str, *, correlation_id: str | None = None) -> str:
        """A new user's id."""
        headers = {"X-Correlation-Id": correlation_id} if correlation_id else {}
        response = await self.http.post(
            "/api/v1/users", json={"email": unique_email(name.lower()), "name": name}, headers=headers
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def rename(self, user_id: str, name: str, *, correlation_id: str | None = None) -> None:
        headers = {"X-Correlation-Id": correlation_id} if correlation_id else {}
        response = await self.http.patch(f"/api/v1/users/{user_id}", json={"name": name}, headers=headers)
        assert response.status_code == 200, response.text


@asynccontextmanager
async def running_app(database_url: str, **overrides: Any) -> AsyncIterator[RunningApp]:
    """The app (lifespan included: embedded relay and consumers) with ``overrides`` of its settings."""
    app = create_app(make_settings(database_url, **overrides))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield RunningApp(app, http)


def spec_signature(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks v1, written out: ``v1,`` + base64(HMAC-SHA256(key, "id.ts.body"))."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def assert_signed(secret: str, request: ReceivedRequest) -> None:
    """Valid by the specification's algorithm and by the reference library, and fresh."""
    headers = request.headers
    message_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    assert spec_signature(secret, message_id, timestamp, request.body) in headers["webhook-signature"].split(
        " "
    )
    Webhook(secret).verify(request.body, headers)  # raises when invalid or out of tolerance
    assert abs(time.time() - int(timestamp)) < 60


def event_of(request: ReceivedRequest) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request.body)
    return body


def user_of(request: ReceivedRequest) -> str:
    return str(event_of(request)["data"]["user_id"])


def distinct_ids(requests: list[ReceivedRequest]) -> list[str]:
    """The ``webhook-id`` s in order of first arrival."""
    return list(dict.fromkeys(request.headers["webhook-id"] for request in requests))


async def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)
