"""Redis down never breaks the service: a test kills (or freezes) the real server mid-run.

Reads come from the database, registrations pass (the limiter fails open), readiness says
"degraded", no request waits on a dead Redis longer than its socket timeout, a warning is logged
once per window, and it all heals when Redis returns — with no stale entry left behind by a
change made while Redis was unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from app.building_blocks.infrastructure.cache import RedisClient, RedisConfig
from app.building_blocks.observability.metrics import CACHE_ERRORS
from app.main import create_app
from app.settings import RedisSettings
from tests.conftest import make_settings
from tests.helpers import USERS, unique_email
from tests.redis_service import PrivateRedis, unique_prefix

SOCKET_TIMEOUT = 0.2
RETRY_AFTER = 0.3


@asynccontextmanager
async def app_on(redis: PrivateRedis, postgres_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    settings = make_settings(
        postgres_url,
        redis=RedisSettings(
            url=redis.url,
            key_prefix=unique_prefix(),
            socket_timeout=SOCKET_TIMEOUT,
            connect_timeout=SOCKET_TIMEOUT,
            pool_timeout=SOCKET_TIMEOUT,
            retry_after=RETRY_AFTER,
        ),
        rate_limit_registrations="1000/minute",
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield http, app


async def cached_in_redis(redis: PrivateRedis, app: Any, user_id: str) -> bool:
    prefix = app.state.cache.redis.prefix
    async with RedisClient(RedisConfig.from_url(redis.url, key_prefix=prefix)) as client:
        return bool(await client.exists(f"reads:user:{user_id}"))


def errors_counted() -> float:
    return sum(
        sample.value
        for metric in CACHE_ERRORS.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def test_redis_killed_mid_run(
    private_redis: PrivateRedis, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with app_on(private_redis, postgres_url) as (http, app):
        users = [
            (await http.post(USERS, json={"email": unique_email(), "name": f"U{i}"})).json() for i in range(3)
        ]
        for user in users:
            assert (await http.get(f"{USERS}/{user['id']}")).status_code == 200
            assert await cached_in_redis(private_redis, app, user["id"])
        assert "RateLimit" in (await http.post(USERS, json={"email": unique_email(), "name": "L"})).headers

        private_redis.kill()
        errors_before = errors_counted()
        statuses: list[int] = []
        with caplog.at_level(logging.WARNING, logger="app.cache"):
            for round_ in range(3):
                for user in users:
                    response = await http.get(f"{USERS}/{user['id']}")
                    statuses.append(response.status_code)
                    assert response.json()["id"] == user["id"]
                unknown = await http.get(f"{USERS}/{uuid.uuid4()}")
                statuses.append(unknown.status_code)
                assert unknown.headers["content-type"] == "application/problem+json"
                registered = await http.post(USERS, json={"email": unique_email(), "name": f"Down{round_}"})
                statuses.append(registered.status_code)
                assert "RateLimit" not in registered.headers  # failed open: no budget to report
                await asyncio.sleep(RETRY_AFTER)  # each round tries Redis again
            ready = await http.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["cache"]["status"] == "degraded"
        assert ready.json()["checks"]["database"]["status"] == "ok"
        assert statuses.count(200) == 9
        assert statuses.count(404) == 3
        assert statuses.count(201) == 3
        assert not [status for status in statuses if status >= 500]
        assert errors_counted() > errors_before
        warnings = [r for r in caplog.records if r.name == "app.cache" and "unavailable" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per window (60 s)

        private_redis.start()  # empty: no persistence
        await asyncio.sleep(RETRY_AFTER)
        user = users[0]
        assert (await http.get(f"{USERS}/{user['id']}")).status_code == 200
        assert await cached_in_redis(private_redis, app, user["id"])  # the cache fills again
        assert (await http.get("/health/ready")).json()["status"] == "ok"
        assert "RateLimit" in (await http.post(USERS, json={"email": unique_email(), "name": "Back"})).headers


async def test_a_frozen_redis_costs_a_request_at_most_its_socket_timeout_and_leaves_nothing_stale(
    private_redis: PrivateRedis, postgres_url: str
) -> None:
    """SIGSTOP: Redis keeps its connections and its data but answers nothing. Requests wait at
    most the socket timeout (once per retry window); a change made meanwhile cannot drop the
    cached entry, so the process owes the invalidation (readiness: degraded), reads from the
    database meanwhile, and sends it as soon as Redis answers — the old entry is never served."""
    async with app_on(private_redis, postgres_url) as (http, app):
        user = (await http.post(USERS, json={"email": unique_email(), "name": "Before"})).json()
        path = f"{USERS}/{user['id']}"
        assert (await http.get(path)).json()["name"] == "Before"
        assert await cached_in_redis(private_redis, app, user["id"])

        assert private_redis.process is not None
        os.kill(private_redis.process.pid, signal.SIGSTOP)
        try:
            durations: list[float] = []
            for _ in range(5):
                started = time.monotonic()
                response = await http.get(path)
                durations.append(time.monotonic() - started)
                assert response.status_code == 200
            changed = await http.patch(path, json={"name": "After"})
            assert changed.status_code == 200
            await asyncio.sleep(RETRY_AFTER)
            started = time.monotonic()
            assert (await http.get(path)).json()["name"] == "After"
            durations.append(time.monotonic() - started)
            assert app.state.cache.owed_invalidations == 1  # the PATCH's, kept until Redis answers
            frozen = await http.get("/health/ready")
            assert frozen.status_code == 200
            assert frozen.json()["checks"]["cache"]["status"] == "degraded"
        finally:
            os.kill(private_redis.process.pid, signal.SIGCONT)
        # Bounded by the socket timeout (plus the database read), never by the outage's length.
        assert max(durations) < SOCKET_TIMEOUT * 2 + 0.5, durations

        # No request needed: the owed invalidation goes out as soon as Redis answers again.
        deadline = time.monotonic() + 5
        while await cached_in_redis(private_redis, app, user["id"]):
            assert time.monotonic() < deadline, "the owed invalidation was never sent"
            await asyncio.sleep(0.05)
        assert (await http.get("/health/ready")).json()["checks"]["cache"]["status"] == "ok"
        after = await http.get(path)
        assert after.json()["name"] == "After"
        assert after.json()["version"] == changed.json()["version"]
        assert (await http.get(path)).json()["name"] == "After"  # and the refilled entry is new
