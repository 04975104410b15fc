"""POST /api/v1/users is limited per client address: exactly the budget passes, then a 429
problem with Retry-After; the IETF RateLimit fields say what is left (Redis and embedded)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import RedisSettings
from tests.conftest import make_settings
from tests.helpers import USERS, unique_email
from tests.redis_service import unique_prefix

Clients = Callable[[str], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(params=["redis", "memory"])
async def clients(
    request: pytest.FixtureRequest, postgres_url: str, redis_url: str
) -> AsyncIterator[Clients]:
    """Clients from different addresses, of one app limited to 3 registrations a minute."""
    redis = (
        RedisSettings(url=redis_url, key_prefix=unique_prefix())
        if request.param == "redis"
        else RedisSettings()
    )
    app = create_app(make_settings(postgres_url, redis=redis, rate_limit_registrations="3/minute"))

    @asynccontextmanager
    async def from_address(address: str) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http

    async with app.router.lifespan_context(app):
        yield from_address


async def register(http: httpx.AsyncClient) -> httpx.Response:
    return await http.post(USERS, json={"email": unique_email(), "name": "Rate"})


async def test_exactly_the_budget_passes_then_429_with_retry_after(clients: Clients) -> None:
    async with clients("203.0.113.7") as http:
        responses = await asyncio.gather(*(register(http) for _ in range(10)))
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201] * 3 + [429] * 7
        passed = [r for r in responses if r.status_code == 201]
        assert sorted(r.headers["RateLimit"] for r in passed) == [
            f'"registrations";r={left};t=60' for left in (0, 1, 2)
        ]
        assert {r.headers["RateLimit-Policy"] for r in responses} == {'"registrations";q=3;w=60'}
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        body: dict[str, Any] = refused.json()
        assert body["status"] == 429
        assert body["extensions"]["error_code"] == "RATE_LIMITED"
        assert refused.headers["RateLimit"].startswith('"registrations";r=0;t=')
        # Refusals do not count: the window still holds 3, and the users list shows 3 new ones.
        assert (await register(http)).status_code == 429

    async with clients("198.51.100.9") as other:  # another address has its own budget
        assert (await register(other)).status_code == 201


async def test_the_limit_can_be_turned_off(postgres_url: str) -> None:
    app = create_app(make_settings(postgres_url, rate_limit_registrations="0"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        responses = [await register(http) for _ in range(25)]
    assert {r.status_code for r in responses} == {201}
    assert not any("RateLimit" in r.headers for r in responses)
