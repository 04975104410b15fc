"""The caches under test: a ``RedisClient`` on the shared Redis (a key prefix of its own, cleared
and closed after) and its in-process twin ``MemoryCache``; ``cache`` runs a test on both."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.building_blocks.infrastructure.cache import MemoryCache, RedisClient, RedisConfig
from tests.redis_service import unique_prefix

AnyCache = RedisClient | MemoryCache


def new_client(url: str, prefix: str | None = None) -> RedisClient:
    return RedisClient(RedisConfig.from_url(url, key_prefix=prefix or unique_prefix()))


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[RedisClient]:
    client = new_client(redis_url)
    yield client
    await client.clear()
    await client.close()


@pytest.fixture(params=["redis", "memory"])
def cache(request: pytest.FixtureRequest) -> AnyCache:
    """Each test taking this runs on Redis and on the in-memory twin: what both promise."""
    if request.param == "redis":
        client: RedisClient = request.getfixturevalue("redis_client")
        return client
    return MemoryCache()
