"""Redis as an optional dependency: with the server killed (SIGKILL, its port refusing) every
``RedisClient`` call fails fast with ``CacheUnavailableError``, and all work again once the same
server is back, the pooled connections healed."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from app.building_blocks.infrastructure.cache import (
    CacheUnavailableError,
    RateLimit,
    RedisClient,
    RedisConfig,
    RedisRateLimiter,
)
from tests.integration.building_blocks.infrastructure.cache.conftest import new_client
from tests.redis_service import PrivateRedis, unique_prefix

Call = Callable[[RedisClient], Awaitable[Any]]


async def _pipeline(client: RedisClient) -> list[Any]:
    async with client.pipeline() as pipe:
        return await pipe.set("k", 1).get("k").execute()


async def _lock(client: RedisClient) -> None:
    async with client.lock("job", timeout=1, blocking_timeout=0):
        pass


async def _limit(client: RedisClient) -> Any:
    return await RedisRateLimiter(client, RateLimit(5, 1)).hit("ip")


async def _fill(client: RedisClient) -> bool:
    return await client.fill_guarded("g", 1, "", ttl=10)


async def _clear(client: RedisClient) -> int:
    return await client.clear()


CALLS: dict[str, Call] = {
    "ping": lambda c: c.ping(),
    "connect": lambda c: c.connect(),
    "get": lambda c: c.get("k"),
    "set": lambda c: c.set("k", {"v": 1}),
    "set_raw": lambda c: c.set_raw("raw", b"x"),
    "delete": lambda c: c.delete("k"),
    "exists": lambda c: c.exists("k"),
    "expire": lambda c: c.expire("k", 10),
    "ttl": lambda c: c.ttl("k"),
    "incr": lambda c: c.incr("n"),
    "clear": _clear,
    "hset": lambda c: c.hset("h", {"f": 1}),
    "hget": lambda c: c.hget("h", "f"),
    "hgetall": lambda c: c.hgetall("h"),
    "hdel": lambda c: c.hdel("h", "f"),
    "lpush": lambda c: c.lpush("l", 1),
    "rpush": lambda c: c.rpush("l", 2),
    "lpop": lambda c: c.lpop("l"),
    "rpop": lambda c: c.rpop("l"),
    "lrange": lambda c: c.lrange("l"),
    "llen": lambda c: c.llen("l"),
    "sadd": lambda c: c.sadd("s", 1),
    "srem": lambda c: c.srem("s", 1),
    "sismember": lambda c: c.sismember("s", 1),
    "smembers": lambda c: c.smembers("s"),
    "pipeline": _pipeline,
    "execute_script": lambda c: c.execute_script("_lock_release", ["lock:x"], ["token"]),
    "read_guarded": lambda c: c.read_guarded("g"),
    "fill_guarded": _fill,
    "invalidate": lambda c: c.invalidate("g"),
    "lock": _lock,
    "rate_limit": _limit,
}


@pytest.fixture
async def client(private_redis: PrivateRedis) -> AsyncIterator[RedisClient]:
    client = new_client(private_redis.url)
    yield client
    await client.close()


async def warm_up(client: RedisClient) -> None:
    """Every call once while Redis is up: pooled connections and loaded scripts to go stale."""
    for name, call in CALLS.items():
        try:
            await call(client)
        except Exception as error:
            raise AssertionError(f"{name} failed with Redis up: {error!r}") from error


async def test_every_call_fails_fast_with_redis_down_and_works_once_it_is_back(
    private_redis: PrivateRedis, client: RedisClient
) -> None:
    """Killed: each call raises ``CacheUnavailableError`` well within its timeouts (no retries,
    no hang). Restarted on the same port: each call works again, the first one included."""
    await warm_up(client)
    private_redis.kill()

    for name, call in CALLS.items():
        started = time.monotonic()
        with pytest.raises(CacheUnavailableError):
            await call(client)
        assert time.monotonic() - started < 2, f"{name} took too long to fail"

    private_redis.start()

    await warm_up(client)
    assert await client.set("after", "restart")
    assert await client.get("after") == "restart"


async def test_a_hung_server_times_out_within_the_socket_timeout(private_redis: PrivateRedis) -> None:
    """A server that accepts but never answers (stopped, SIGSTOP): each call gives up after about
    ``socket_timeout`` with ``CacheUnavailableError``, and works once the server resumes."""
    process = private_redis.process
    assert process is not None
    config = RedisConfig.from_url(
        private_redis.url, key_prefix=unique_prefix(), socket_timeout=0.2, socket_connect_timeout=0.2
    )
    client = RedisClient(config)
    slow: dict[str, Call] = {
        name: CALLS[name] for name in ("get", "set", "pipeline", "execute_script", "lock")
    }
    try:
        await warm_up(client)
        process.send_signal(signal.SIGSTOP)
        try:
            for name, call in slow.items():
                started = time.monotonic()
                with pytest.raises(CacheUnavailableError):
                    await call(client)
                assert time.monotonic() - started < 1, f"{name} outlived its timeouts"
        finally:
            process.send_signal(signal.SIGCONT)

        await warm_up(client)
    finally:
        await client.close()


async def test_a_server_that_never_answered_is_unavailable(private_redis: PrivateRedis) -> None:
    """A client whose first contact finds the port closed: ``connect()`` fails fast, then heals."""
    private_redis.kill()
    client = new_client(private_redis.url)
    try:
        started = time.monotonic()
        with pytest.raises(CacheUnavailableError):
            await client.connect()
        assert time.monotonic() - started < 2

        private_redis.start()
        assert await client.connect() is client
        assert await client.set("k", 1)
        assert await client.get("k") == 1
    finally:
        await client.close()
