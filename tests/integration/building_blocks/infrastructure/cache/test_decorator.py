"""``@cached``: one load per cold key however many callers, ``None`` cached, ttl honoured, and the
cache failing (Redis killed, a foreign value under the key) never failing the call."""

from __future__ import annotations

import asyncio
import pickle
import time
from collections import Counter

import pytest

from app.building_blocks.infrastructure.cache import MISSING, MemoryCache, RedisClient, cached
from tests.integration.building_blocks.infrastructure.cache.conftest import AnyCache, new_client
from tests.redis_service import PrivateRedis


async def test_concurrent_calls_on_a_cold_key_load_once(cache: AnyCache) -> None:
    """100 concurrent calls with one key: the loader runs once and all get its result."""
    calls = 0

    @cached(cache, ttl=60)
    async def load(user_id: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return {"id": user_id, "load": calls}

    results = await asyncio.gather(*(load(7) for _ in range(100)))

    assert calls == 1
    assert results == [{"id": 7, "load": 1}] * 100
    assert await load(7) == {"id": 7, "load": 1}  # and then from the cache
    assert calls == 1


async def test_wraps_keeps_the_functions_name_doc_and_signature() -> None:
    """The wrapper is ``functools.wraps``-ed: name, qualname, docstring, ``__wrapped__``."""

    async def find_user(user_id: int) -> str:
        """Find a user."""
        return str(user_id)

    wrapper = cached(MemoryCache(), ttl=60)(find_user)

    assert wrapper.__name__ == "find_user"
    assert wrapper.__qualname__ == find_user.__qualname__
    assert wrapper.__doc__ == "Find a user."
    assert wrapper.__wrapped__ is find_user  # type: ignore[attr-defined]
    assert await wrapper(3) == "3"


async def test_a_none_result_is_cached(cache: AnyCache) -> None:
    """``None`` is a result like any other: the second call does not call the loader."""
    calls = 0

    @cached(cache, ttl=60)
    async def find(name: str) -> str | None:
        nonlocal calls
        calls += 1
        return None

    assert await find("nobody") is None
    assert await find("nobody") is None

    assert calls == 1
    assert await cache.get(find.cache_key("nobody"), MISSING) is None  # type: ignore[attr-defined]


async def test_an_entry_expires_after_the_ttl_and_is_loaded_again(cache: AnyCache) -> None:
    """Within the ttl the entry answers; after it the loader runs again."""
    calls = 0

    @cached(cache, ttl=0.2)
    async def load() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await load() == 1
    assert await load() == 1
    await asyncio.sleep(0.25)

    assert await load() == 2
    assert calls == 2


async def test_arguments_make_the_key(cache: AnyCache) -> None:
    """Other arguments, another entry; keyword order does not matter; ``invalidate`` drops one."""
    calls: Counter[tuple[int, int]] = Counter()

    @cached(cache, ttl=60)
    async def add(a: int, *, b: int = 0, c: int = 0) -> int:
        calls[b, c] += 1
        return a + b + c

    assert await add(1, b=2, c=3) == 6
    assert await add(1, c=3, b=2) == 6
    assert await add(1, b=3, c=2) == 6
    assert calls == {(2, 3): 1, (3, 2): 1}

    await add.invalidate(1, b=2, c=3)  # type: ignore[attr-defined]
    assert await add(1, b=2, c=3) == 6
    assert await add(1, b=3, c=2) == 6
    assert calls == {(2, 3): 2, (3, 2): 1}


async def test_a_failing_load_is_shared_by_its_waiters_and_not_cached(cache: AnyCache) -> None:
    """Concurrent waiters of a failing load all get its exception; the next call loads again."""
    calls = 0

    @cached(cache, ttl=60)
    async def load() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise LookupError(f"attempt {calls}")

    results = await asyncio.gather(*(load() for _ in range(10)), return_exceptions=True)

    assert calls == 1
    assert all(isinstance(result, LookupError) and str(result) == "attempt 1" for result in results)
    with pytest.raises(LookupError, match="attempt 2"):
        await load()


async def test_the_cache_may_be_given_as_a_callable(redis_client: RedisClient) -> None:
    """``cached(lambda: cache)``: the cache is looked up at call time (decorated at import time)."""
    current: list[RedisClient] = []

    @cached(lambda: current[0], ttl=60, namespace="lazy")
    async def load() -> str:
        return "loaded"

    current.append(redis_client)

    assert await load() == "loaded"
    key: str = load.cache_key()  # type: ignore[attr-defined]
    assert key.startswith("lazy:")
    assert await redis_client.get(key) == "loaded"


async def test_a_foreign_value_under_the_key_is_replaced_by_a_load(redis_client: RedisClient) -> None:
    """A pickle (or any value the codec refuses) under the key: the loader runs, its result is
    returned and overwrites the foreign value."""
    calls = 0

    @cached(redis_client, ttl=60)
    async def load() -> str:
        nonlocal calls
        calls += 1
        return "fresh"

    key = redis_client.key(load.cache_key())  # type: ignore[attr-defined]
    await redis_client.redis.set(key, pickle.dumps({"planted": True}))

    assert await load() == "fresh"
    assert await load() == "fresh"
    assert calls == 1


async def test_with_redis_killed_the_function_still_runs_and_returns(private_redis: PrivateRedis) -> None:
    """Redis down: every call runs the function and returns its result, no exception, quickly;
    once Redis is back, results are cached again."""
    client = new_client(private_redis.url)
    calls = 0

    @cached(client, ttl=60)
    async def load(x: int) -> int:
        nonlocal calls
        calls += 1
        return x * 2

    try:
        assert await load(1) == 2  # warm: a pooled connection exists when Redis dies
        private_redis.kill()

        started = time.monotonic()
        assert await load(1) == 2
        assert await load(1) == 2
        assert await load(2) == 4
        assert time.monotonic() - started < 2
        assert calls == 4

        private_redis.start()
        assert await load(1) == 2
        assert await load(1) == 2
        assert calls == 5
    finally:
        await client.close()
