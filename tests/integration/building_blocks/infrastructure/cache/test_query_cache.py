"""The mediator's read cache decides the race cache-aside is known for, deterministically: a read
that loaded the old state before a commit cannot store it after that commit's invalidation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest
from pydantic import BaseModel

from app.building_blocks.application.caching import aggregate_cache_key
from app.building_blocks.application.mediator import Mediator
from app.building_blocks.application.queries import Query
from app.building_blocks.domain.entities import AggregateRoot
from app.building_blocks.infrastructure.cache import (
    Cache,
    CacheAvailability,
    MemoryCache,
    RedisClient,
    RedisConfig,
)
from app.building_blocks.infrastructure.cache.read_cache import CacheInvalidationHook, QueryCachingBehavior
from tests.redis_service import unique_prefix


class Thing(AggregateRoot):
    name: str


class ThingView(BaseModel):
    id: UUID
    name: str


class GetThing(Query[ThingView]):
    thing_id: UUID

    def cache_key(self) -> str:
        return aggregate_cache_key(Thing, self.thing_id)


class SlowStore:
    """The "database": one row, and a gate the next load waits at after reading it."""

    def __init__(self, thing: Thing) -> None:
        self.thing = thing
        self.loads = 0
        self.gate: asyncio.Event | None = None
        self.loaded = asyncio.Event()

    async def handle(self, query: GetThing) -> ThingView:
        self.loads += 1
        view = ThingView(id=self.thing.id, name=self.thing.name)  # read now ...
        self.loaded.set()
        if self.gate is not None:
            await self.gate.wait()  # ... returned later
        return view


@pytest.fixture(params=["redis", "memory"])
async def cache(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Cache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    async with RedisClient(RedisConfig.from_url(redis_url, key_prefix=unique_prefix())) as client:
        yield client
        await client.clear()


async def test_a_load_that_predates_a_commit_never_lands_after_its_invalidation(cache: Cache) -> None:
    availability = CacheAvailability()
    thing = Thing(id=uuid4(), name="old")
    store = SlowStore(thing)
    mediator: Mediator[None] = Mediator(behaviors=[QueryCachingBehavior(cache, availability, ttl=60)])
    mediator.register(GetThing, store)
    hook = CacheInvalidationHook(cache, availability)

    store.gate = asyncio.Event()
    slow_read = asyncio.create_task(mediator.send(GetThing(thing_id=thing.id)))
    await store.loaded.wait()  # the reader holds the old state, not yet stored

    thing.name = "new"  # the commit ...
    await hook.committed([thing])  # ... and its invalidation, before the command answers
    store.gate.set()
    assert (await slow_read).name == "old"  # what it read, answered to its own caller only

    store.gate = None
    assert (await mediator.send(GetThing(thing_id=thing.id))).name == "new"
    assert (await mediator.send(GetThing(thing_id=thing.id))).name == "new"
    assert store.loads == 2  # the refused fill was not stored; the second load was, and served


async def test_hits_skip_the_handler_and_a_commit_of_another_aggregate_leaves_them(cache: Cache) -> None:
    availability = CacheAvailability()
    thing, other = Thing(id=uuid4(), name="a"), Thing(id=uuid4(), name="b")
    store = SlowStore(thing)
    mediator: Mediator[None] = Mediator(behaviors=[QueryCachingBehavior(cache, availability, ttl=60)])
    mediator.register(GetThing, store)
    for _ in range(3):
        assert (await mediator.send(GetThing(thing_id=thing.id))).name == "a"
    await CacheInvalidationHook(cache, availability).committed([other])
    assert (await mediator.send(GetThing(thing_id=thing.id))).name == "a"
    assert store.loads == 1
