"""GET /api/v1/users/{id} through the cache: filled on a read, dropped by every change, never stale
after a write's 2xx — against PostgreSQL with the real Redis, and embedded (process memory)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.building_blocks.infrastructure.cache import RedisClient, RedisConfig
from app.main import create_app
from app.settings import RedisSettings
from tests.conftest import make_settings
from tests.helpers import USERS, unique_email
from tests.redis_service import unique_prefix


@pytest.fixture(params=["redis", "memory"])
async def cached(
    request: pytest.FixtureRequest, postgres_url: str, redis_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """A client of an app whose reads are cached, and the app (to look into its cache)."""
    redis = RedisSettings()
    if request.param == "redis":
        redis = RedisSettings(url=redis_url, key_prefix=unique_prefix())
    app = create_app(make_settings(postgres_url, redis=redis))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield http, app


def entry_key(user_id: str) -> str:
    return f"reads:user:{user_id}"


async def cached_entry(app: Any, user_id: str) -> Any:
    cache = app.state.cache.cache
    return (await cache.read_guarded(entry_key(user_id))).value


async def test_a_read_fills_the_cache_and_the_next_one_is_served_from_it(
    cached: tuple[httpx.AsyncClient, Any],
) -> None:
    http, app = cached
    user = (await http.post(USERS, json={"email": unique_email(), "name": "Ada"})).json()
    assert not await cached_entry(app, user["id"])
    first = await http.get(f"{USERS}/{user['id']}")
    entry = await cached_entry(app, user["id"])
    assert entry
    assert entry.version == 1
    assert str(entry.id) == user["id"]
    # The database no longer decides the answer: change the row behind the service's back.
    async with app.state.engine.begin() as connection:
        await connection.execute(
            text("UPDATE users SET name = 'Behind' WHERE id = :id"), {"id": uuid.UUID(user["id"])}
        )
    second = await http.get(f"{USERS}/{user['id']}")
    assert second.json() == first.json()
    assert second.json()["name"] == "Ada"
    assert second.headers["ETag"] == first.headers["ETag"] == '"1"'
    not_modified = await http.get(f"{USERS}/{user['id']}", headers={"If-None-Match": '"1"'})
    assert not_modified.status_code == 304
    assert not_modified.headers["ETag"] == '"1"'


@pytest.mark.parametrize("change", ["patch", "deactivate", "reactivate", "delete"])
async def test_every_change_drops_the_entry_before_its_answer(
    cached: tuple[httpx.AsyncClient, Any], change: str
) -> None:
    http, app = cached
    user = (await http.post(USERS, json={"email": unique_email(), "name": "Bo"})).json()
    path = f"{USERS}/{user['id']}"
    if change == "reactivate":
        assert (await http.post(f"{path}/deactivate")).status_code == 200
    assert (await http.get(path)).status_code == 200  # cached now
    assert await cached_entry(app, user["id"])
    response = {
        "patch": lambda: http.patch(path, json={"name": "Changed"}),
        "deactivate": lambda: http.post(f"{path}/deactivate"),
        "reactivate": lambda: http.post(f"{path}/reactivate"),
        "delete": lambda: http.delete(path),
    }[change]
    answer = await response()
    assert answer.status_code in (200, 204)
    assert not await cached_entry(app, user["id"])
    after = await http.get(path)
    if change == "delete":
        assert after.status_code == 404
        assert not await cached_entry(app, user["id"])  # a 404 is not cached
    else:
        assert after.json()["version"] == answer.json()["version"]
        assert after.json() == answer.json()


async def test_no_read_after_a_change_shows_the_old_state_under_concurrent_reads(
    cached: tuple[httpx.AsyncClient, Any],
) -> None:
    """Readers hammer one user (racing to fill the cache with what they loaded) while a writer
    patches, deactivates, reactivates and finally deletes it; every read begun after a change's
    2xx shows that change or a later one — never the state before it."""
    http, _app = cached
    user = (await http.post(USERS, json={"email": unique_email(), "name": "v1"})).json()
    path = f"{USERS}/{user['id']}"
    committed = {"version": 1, "deleted": False}
    stale: list[str] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            floor, deleted = committed["version"], committed["deleted"]  # known before the read
            response = await http.get(path)
            if deleted and response.status_code != 404:
                stale.append(f"deleted, yet {response.status_code} v{response.json().get('version')}")
            elif response.status_code == 200 and response.json()["version"] < floor:
                stale.append(f"v{response.json()['version']} after v{floor} was answered")
            await asyncio.sleep(random.random() / 1000)

    readers = [asyncio.create_task(reader()) for _ in range(8)]
    try:
        for step in range(30):
            action = step % 3
            if action == 0:
                answer = await http.patch(path, json={"name": f"v{step}"})
            elif action == 1:
                answer = await http.post(f"{path}/deactivate")
            else:
                answer = await http.post(f"{path}/reactivate")
            assert answer.status_code == 200, answer.text
            committed["version"] = answer.json()["version"]
            await asyncio.sleep(0.005)
        assert (await http.delete(path)).status_code == 204
        committed["deleted"] = True
        await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*readers)
    assert committed["version"] == 31
    assert stale == []


async def test_a_cache_entry_in_redis_names_the_user(redis_url: str, postgres_url: str) -> None:
    """The key layout operators see: <prefix>user:<id>, typed JSON, with a TTL of CACHE_TTL."""
    prefix = unique_prefix()
    app = create_app(
        make_settings(postgres_url, redis=RedisSettings(url=redis_url, key_prefix=prefix), cache_ttl=120)
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
        RedisClient(RedisConfig.from_url(redis_url, key_prefix=prefix)) as redis,
    ):
        user = (await http.post(USERS, json={"email": unique_email(), "name": "Key"})).json()
        await http.get(f"{USERS}/{user['id']}")
        raw = await redis.redis.get(f"{prefix}reads:user:{user['id']}")
        assert raw is not None
        assert raw.startswith(b"kit1:")
        assert user["email"].encode() in raw
        assert 110 < (await redis.ttl(f"reads:user:{user['id']}") or 0) <= 120
