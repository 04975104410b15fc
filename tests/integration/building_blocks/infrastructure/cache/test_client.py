"""``RedisClient`` against a real Redis, and what its in-memory twin promises alike: values keep
their types, stored bytes never execute, keys carry the prefix, scripts survive ``SCRIPT FLUSH``,
guarded cache-aside refuses a fill that predates an invalidation."""

from __future__ import annotations

import asyncio
import importlib
import math
import pickle
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel

from app.building_blocks.infrastructure.cache import MISSING, CacheDecodeError, RedisClient, RedisConfig
from app.building_blocks.infrastructure.cache.codec import HEADER
from tests.integration.building_blocks.infrastructure.cache.conftest import AnyCache, new_client


class Color(Enum):
    RED = 1
    BLUE = "blue"


class Size(StrEnum):
    SMALL = "s"
    LARGE = "l"


class Level(IntEnum):
    LOW = 1


class Address(BaseModel):
    city: str
    zip_code: str


class Person(BaseModel):
    id: UUID
    name: str
    born: date
    seen: datetime
    tags: tuple[str, ...] = ()
    address: Address | None = None


PERSON = Person(
    id=UUID("12345678-1234-5678-1234-567812345678"),
    name="Ada",
    born=date(1815, 12, 10),
    seen=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    tags=("math", "engines"),
    address=Address(city="London", zip_code="W1"),
)

ROUND_TRIPS = [
    pytest.param("123", id="digit-string"),
    pytest.param(123, id="int"),
    pytest.param(-(2**63), id="int64-min"),
    pytest.param(2**80, id="big-int"),
    pytest.param(True, id="bool"),
    pytest.param(False, id="false"),
    pytest.param(None, id="none"),
    pytest.param(1.5, id="float"),
    pytest.param(1.0, id="integral-float"),
    pytest.param("", id="empty-string"),
    pytest.param(
        {
            "list": [1, "1", (2, "two", (3.5, None)), {4, 5}, frozenset({"a", "b"})],
            "by_id": {1: "one", 2: [True, False]},
            "dollar_t": {"$t": "tuple", "v": [1, 2]},
            "tuple_keys": {(1, "x"): {"deep": [{"$t": "dict"}]}},
            "empty": [{}, [], (), set()],
        },
        id="nested",
    ),
    pytest.param([(1, 2), [3, (4,)]], id="list-of-tuples"),
    pytest.param({"$t": "model", "n": "os:system", "v": "ls"}, id="dict-shaped-like-a-tag"),
    pytest.param(
        datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=-3))), id="aware-datetime"
    ),
    pytest.param(datetime(2024, 5, 6, 7, 8, 9), id="naive-datetime"),
    pytest.param(date(2024, 2, 29), id="date"),
    pytest.param(time(23, 59, 1, 5), id="time"),
    pytest.param(timedelta(days=-1, seconds=5, microseconds=7), id="timedelta"),
    pytest.param(uuid.uuid4(), id="uuid"),
    pytest.param(Decimal("12.340"), id="decimal"),
    pytest.param(b"\x00\xff binary \x80", id="bytes"),
    pytest.param(Color.RED, id="enum"),
    pytest.param(Color.BLUE, id="enum-str-value"),
    pytest.param(Size.SMALL, id="str-enum"),
    pytest.param(Level.LOW, id="int-enum"),
    pytest.param(PERSON, id="model"),
    pytest.param(
        {"owner": PERSON, "sizes": [Size.LARGE], Size.SMALL: Address(city="Oslo", zip_code="1")},
        id="models-in-dict",
    ),
]


def assert_same(got: Any, expected: Any) -> None:
    """Equal, and of the same type all the way down (``1`` is not ``True``, a tuple not a list)."""
    assert type(got) is type(expected), f"{got!r}: {type(got)} is not {type(expected)}"
    assert got == expected
    if isinstance(expected, dict):
        for key, value in expected.items():
            (twin,) = [candidate for candidate in got if candidate == key]
            assert_same(twin, key)
            assert_same(got[key], value)
    elif isinstance(expected, list | tuple):
        for item, twin in zip(got, expected, strict=True):
            assert_same(item, twin)
    elif isinstance(expected, set | frozenset):
        for item in expected:
            (twin,) = [candidate for candidate in got if candidate == item]
            assert_same(twin, item)
    elif isinstance(expected, datetime | time):
        assert got.utcoffset() == expected.utcoffset()
    elif isinstance(expected, Decimal):
        assert str(got) == str(expected)  # the precision too: 12.340 is not 12.34
    elif isinstance(expected, BaseModel):
        for field in type(expected).model_fields:
            assert_same(getattr(got, field), getattr(expected, field))


@pytest.mark.parametrize("value", ROUND_TRIPS)
async def test_a_value_comes_back_with_its_type(cache: AnyCache, value: Any) -> None:
    """What goes in comes out equal and of the same type (deeply), on Redis and in memory."""
    assert await cache.set("value", value)
    assert_same(await cache.get("value", MISSING), value)


async def test_a_model_reads_back_as_the_model_asked_for(cache: AnyCache) -> None:
    """``model=`` validates the stored value as that class (a renamed class still reads its entries)."""
    await cache.set("person", PERSON)
    await cache.set("as-dict", PERSON.model_dump(mode="json"))

    assert_same(await cache.get("person", model=Person), PERSON)
    assert_same(await cache.get("as-dict", model=Person), PERSON)


async def test_missing_tells_a_cached_none_from_a_miss(cache: AnyCache) -> None:
    """``get(key, MISSING)``: MISSING for a miss, None for a cached None; the default default is None."""
    assert await cache.get("absent", MISSING) is MISSING
    assert await cache.get("absent") is None
    assert await cache.get("absent", "fallback") == "fallback"

    await cache.set("none", None)

    assert await cache.get("none", MISSING) is None
    assert await cache.exists("none", "absent") == 1


async def test_nx_stores_only_when_absent_and_xx_only_when_present(cache: AnyCache) -> None:
    """``set(nx=True)`` never overwrites; ``set(xx=True)`` never creates."""
    assert not await cache.set("k", "created?", xx=True)
    assert await cache.get("k", MISSING) is MISSING

    assert await cache.set("k", "first", nx=True)
    assert not await cache.set("k", "second", nx=True)
    assert await cache.get("k") == "first"

    assert await cache.set("k", "third", xx=True)
    assert await cache.get("k") == "third"


async def test_ttl_is_none_for_a_missing_key_inf_without_expiry_and_seconds_otherwise(
    cache: AnyCache,
) -> None:
    """``ttl()``: None (no key), ``math.inf`` (never expires), else the seconds left as a float."""
    await cache.set("forever", 1, ttl=None)
    await cache.set("ten", 1, ttl=10)
    await cache.set("default", 1)

    assert await cache.ttl("absent") is None
    assert await cache.ttl("forever") == math.inf
    ten = await cache.ttl("ten")
    assert isinstance(ten, float)
    assert 9 < ten <= 10
    default = await cache.ttl("default")
    assert default is not None
    assert 3590 < default <= 3600  # the configured default_ttl (3600 for both)

    assert await cache.expire("forever", 5)
    forever = await cache.ttl("forever")
    assert forever is not None
    assert 4 < forever <= 5
    assert not await cache.expire("absent", 5)


async def test_a_value_expires_after_its_ttl(cache: AnyCache) -> None:
    """An entry set with ``ttl`` is gone once the ttl has passed."""
    await cache.set("brief", "here", ttl=0.1)
    assert await cache.get("brief") == "here"

    await asyncio.sleep(0.15)

    assert await cache.get("brief", MISSING) is MISSING
    assert await cache.ttl("brief") is None


async def test_incr_counts_and_get_reads_the_counter_as_an_int(cache: AnyCache) -> None:
    """``incr`` creates a counter at ``amount``; ``get`` reads it back as an int."""
    assert await cache.incr("hits") == 1
    assert await cache.incr("hits", 41) == 42
    assert await cache.incr("hits", -2) == 40

    assert_same(await cache.get("hits"), 40)


async def test_a_counter_started_with_set_counts_with_incr(cache: AnyCache) -> None:
    """``set(key, 10, ttl=…)`` then ``incr``: the same on Redis and in memory, the ttl kept."""
    await cache.set("visits", 10, ttl=60)

    assert await cache.incr("visits") == 11
    assert_same(await cache.get("visits"), 11)
    left = await cache.ttl("visits")
    assert left is not None
    assert 59 < left <= 60


async def test_delete_and_exists_count_keys(cache: AnyCache) -> None:
    """``delete``/``exists`` take several keys and count the ones that were there."""
    await cache.set("a", 1)
    await cache.set("b", 2)

    assert await cache.exists("a", "b", "c") == 2
    assert await cache.delete("a", "c") == 1
    assert await cache.exists("a", "b") == 1
    assert await cache.delete() == 0


# --- guarded cache-aside -------------------------------------------------------------------------
async def test_a_guarded_fill_with_the_generation_read_stores(cache: AnyCache) -> None:
    """``read_guarded`` (miss) then ``fill_guarded`` with the generation it saw: stored and read."""
    seen = await cache.read_guarded("user:1")
    assert not seen.hit
    assert seen.value is MISSING

    assert await cache.fill_guarded("user:1", PERSON, seen.generation, ttl=60)

    again = await cache.read_guarded("user:1", model=Person)
    assert again.hit
    assert_same(again.value, PERSON)
    assert again.generation == seen.generation


async def test_a_fill_after_an_invalidation_is_refused_and_stores_nothing(cache: AnyCache) -> None:
    """A value loaded before ``invalidate`` can never land after it: the fill is refused."""
    seen = await cache.read_guarded("user:1")  # a reader starts loading from the database...
    await cache.invalidate("user:1")  # ...a writer commits and invalidates...

    assert not await cache.fill_guarded("user:1", "stale", seen.generation, ttl=60)  # ...refused

    assert await cache.get("user:1", MISSING) is MISSING
    fresh = await cache.read_guarded("user:1")
    assert fresh.generation != seen.generation
    assert await cache.fill_guarded("user:1", "fresh", fresh.generation, ttl=60)
    assert await cache.get("user:1") == "fresh"


async def test_invalidate_removes_the_entry(cache: AnyCache) -> None:
    """``invalidate`` drops entries (several at once), present or not."""
    for key in ("a", "b"):
        seen = await cache.read_guarded(key)
        assert await cache.fill_guarded(key, key.upper(), seen.generation, ttl=60)

    await cache.invalidate("a", "b", "never-cached")

    assert await cache.exists("a", "b") == 0
    assert not (await cache.read_guarded("a")).hit


async def test_a_guarded_fill_expires_after_its_ttl(cache: AnyCache) -> None:
    """``fill_guarded(ttl=…)`` stores with that lease."""
    seen = await cache.read_guarded("k")
    assert await cache.fill_guarded("k", 1, seen.generation, ttl=30)

    left = await cache.ttl("k")
    assert left is not None
    assert 29 < left <= 30


# --- Redis only: prefix, raw bytes, structures, pipeline, scripts ---------------------------------
async def test_keys_carry_the_prefix_and_values_the_codec_header(redis_client: RedisClient) -> None:
    """What lands in Redis is ``<prefix><key>`` holding ``kit1:``-headed bytes."""
    await redis_client.set("k", {"a": 1})

    assert redis_client.prefix
    raw = await redis_client.redis.get(redis_client.prefix + "k")
    assert isinstance(raw, bytes)
    assert raw.startswith(HEADER)


async def test_clear_removes_only_this_prefix(redis_url: str, redis_client: RedisClient) -> None:
    """``clear()`` deletes this client's keys (any kind, any count) and nothing of another prefix."""
    other = new_client(redis_url)
    try:
        await other.set("k", "survives")
        for index in range(1200):  # more than one SCAN/UNLINK batch
            await redis_client.redis.set(redis_client.key(f"k{index}"), b"1")
        await redis_client.hset("h", {"f": 1})
        await redis_client.set("other-sounding", 1)

        assert await redis_client.clear() == 1202

        assert await redis_client.exists("k0", "k1199", "h") == 0
        assert await other.get("k") == "survives"
    finally:
        await other.clear()
        await other.close()


@pytest.mark.parametrize("special", ["[x]", "*", "?", "\\", "]"])
async def test_clear_takes_a_prefix_with_glob_characters_literally(redis_url: str, special: str) -> None:
    """A prefix holding ``* ? [ ] \\`` clears its own keys, and not a look-alike prefix's."""
    base = uuid.uuid4().hex[:8]
    client = new_client(redis_url, f"test-{base}{special}:")
    lookalike = new_client(redis_url, f"test-{base}x:")  # what an unescaped * or ? would match
    try:
        await client.set("k", 1)
        await lookalike.set("k", 2)

        assert await client.clear() == 1

        assert await client.exists("k") == 0
        assert await lookalike.get("k") == 2
    finally:
        await lookalike.clear()
        await client.redis.delete(client.key("k"))
        await lookalike.close()
        await client.close()


async def test_clear_without_a_prefix_refuses(redis_url: str) -> None:
    """An unprefixed client would empty the whole database: ``clear()`` refuses."""
    client = RedisClient(RedisConfig.from_url(redis_url))
    try:
        with pytest.raises(ValueError, match="key_prefix"):
            await client.clear()
    finally:
        await client.close()


async def test_hashes_lists_and_sets_keep_member_types(redis_client: RedisClient) -> None:
    """Hash fields, list items and set members go through the codec like values."""
    mapping = {"when": datetime(2024, 1, 2, tzinfo=UTC), "who": PERSON, "pair": (1, "1"), "none": None}
    assert await redis_client.hset("h", mapping) == 4
    assert_same(await redis_client.hget("h", "pair"), (1, "1"))
    assert_same(await redis_client.hget("h", "who", model=Person), PERSON)
    assert await redis_client.hget("h", "absent", MISSING) is MISSING
    assert_same(await redis_client.hgetall("h"), mapping)
    assert await redis_client.hdel("h", "when", "absent") == 1

    assert await redis_client.rpush("l", 1, "1", (2,)) == 3
    assert await redis_client.lpush("l", Size.SMALL) == 4
    assert_same(await redis_client.lrange("l"), [Size.SMALL, 1, "1", (2,)])
    assert await redis_client.llen("l") == 4
    assert_same(await redis_client.lpop("l"), Size.SMALL)
    assert_same(await redis_client.rpop("l"), (2,))
    assert await redis_client.lpop("empty", MISSING) is MISSING

    members = {1, "1", (1, "1"), UUID(int=7), Decimal("2.5")}
    assert await redis_client.sadd("s", *members) == 5
    assert_same(await redis_client.smembers("s"), members)
    assert await redis_client.sismember("s", (1, "1"))
    assert not await redis_client.sismember("s", True)
    assert await redis_client.srem("s", 1, 2) == 1


async def test_a_pipeline_applies_prefix_and_codec(redis_client: RedisClient) -> None:
    """Queued commands go out in one round trip, keys prefixed, values encoded and decoded."""
    await redis_client.set("old", "bye")
    async with redis_client.pipeline() as pipe:
        pipe.set("p", PERSON, ttl=30).get("p").get("absent", MISSING).incr("n", 5)
        pipe.hset("h", {"d": date(2024, 1, 1)}).rpush("l", (1, 2)).sadd("s", UUID(int=1))
        pipe.expire("n", 10).delete("old", "absent")
        results = await pipe.execute()

    assert results[0] is True
    assert_same(results[1], PERSON)
    assert results[2] is MISSING
    assert results[3:] == [5, 1, 1, 1, True, 1]
    for key in ("p", "n", "h", "l", "s"):
        assert await redis_client.redis.exists(redis_client.key(key)) == 1
    raw = await redis_client.redis.get(redis_client.key("p"))
    assert isinstance(raw, bytes)
    assert raw.startswith(HEADER)
    assert_same(await redis_client.hget("h", "d"), date(2024, 1, 1))
    assert_same(await redis_client.lrange("l"), [(1, 2)])
    assert_same(await redis_client.smembers("s"), {UUID(int=1)})
    assert await redis_client.exists("old") == 0


async def test_a_script_survives_script_flush(redis_client: RedisClient) -> None:
    """``execute_script`` runs by SHA and re-sends the source once Redis forgot it (``NOSCRIPT``)."""
    redis_client.register_script(
        "tag", "redis.call('SET', KEYS[1], ARGV[1]) return {KEYS[1], redis.call('GET', KEYS[1])}"
    )
    expected = [redis_client.key("k").encode(), b"42"]
    assert await redis_client.execute_script("tag", ["k"], [42]) == expected

    await redis_client.redis.script_flush()
    assert await redis_client.redis.script_exists(redis_client._scripts["tag"].sha) == [False]

    assert await redis_client.execute_script("tag", ["k"], [42]) == expected
    assert await redis_client.execute_script("tag", ["raw"], [1], prefix_keys=False) == [b"raw", b"1"]
    await redis_client.redis.delete("raw")
    seen = await redis_client.read_guarded("g")  # the internal scripts reload too
    assert await redis_client.fill_guarded("g", 1, seen.generation, ttl=10)


async def test_an_unregistered_script_is_a_key_error(redis_client: RedisClient) -> None:
    with pytest.raises(KeyError, match="nope"):
        await redis_client.execute_script("nope")


# --- stored bytes never execute --------------------------------------------------------------------
class _TouchOnUnpickle:
    """Unpickling this creates ``marker``: the proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


async def test_a_planted_pickle_is_refused_and_never_executed(
    redis_client: RedisClient, tmp_path: Path
) -> None:
    """Another program's pickle under our key: ``CacheDecodeError`` from every read, nothing run."""
    marker = tmp_path / "executed"
    payload = pickle.dumps(_TouchOnUnpickle(marker))
    await redis_client.redis.set(redis_client.key("k"), payload)
    await redis_client.redis.hset(redis_client.key("h"), "f", payload)
    await redis_client.redis.rpush(redis_client.key("l"), payload)

    reads: list[Callable[[], Awaitable[Any]]] = [
        lambda: redis_client.get("k"),
        lambda: redis_client.get("k", model=Person),
        lambda: redis_client.read_guarded("k"),
        lambda: redis_client.hget("h", "f"),
        lambda: redis_client.hgetall("h"),
        lambda: redis_client.lrange("l"),
    ]
    for read in reads:
        with pytest.raises(CacheDecodeError):
            await read()
    async with redis_client.pipeline() as pipe:
        with pytest.raises(CacheDecodeError):
            await pipe.get("k").execute()

    assert not marker.exists()
    pickle.loads(payload)  # the control: this payload does run when unpickled
    assert marker.exists()


MODULE_SOURCE = """
from enum import Enum
from pathlib import Path
from pydantic import BaseModel

Path({marker!r}).touch()


class Planted(BaseModel):
    x: int = 0


class Mood(Enum):
    HAPPY = 1
"""


async def test_a_value_naming_an_unimported_module_is_refused_without_importing_it(
    redis_client: RedisClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model or enum in a module not loaded is refused; the module is not imported (its import
    side effect does not happen) — though it is importable, and readable once imported."""
    name = f"planted_{uuid.uuid4().hex}"
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(MODULE_SOURCE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    planted = {
        "model": HEADER + f'm:{name}:Planted\n{{"x":1}}'.encode(),
        "nested": HEADER + f'v:{{"a":{{"$t":"model","n":"{name}:Planted","v":{{"x":1}}}}}}'.encode(),
        "enum": HEADER + f'v:{{"$t":"enum","n":"{name}:Mood","v":1}}'.encode(),
    }
    for key, raw in planted.items():
        await redis_client.redis.set(redis_client.key(key), raw)

    for key in planted:
        with pytest.raises(CacheDecodeError, match="not loaded"):
            await redis_client.get(key)

    assert name not in sys.modules
    assert not marker.exists()
    try:
        module = importlib.import_module(name)  # the control: importable, and then read
        assert await redis_client.get("model") == module.Planted(x=1)
        assert await redis_client.get("nested") == {"a": module.Planted(x=1)}
        assert await redis_client.get("enum") is module.Mood.HAPPY
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'kit1:m:subprocess:Popen\n{"args":["touch","x"]}', id="not-a-model"),
        pytest.param(b"kit1:m:os:system\nls", id="a-function"),
        pytest.param(b'kit1:v:{"$t":"model","n":"builtins:eval","v":"1"}', id="nested-builtin"),
        pytest.param(b'kit1:v:{"$t":"enum","n":"os:environ","v":"HOME"}', id="not-an-enum"),
    ],
)
async def test_a_value_naming_a_class_that_is_not_a_model_is_refused(
    redis_client: RedisClient, raw: bytes
) -> None:
    """Only pydantic models (and enums) are built from a stored name, never anything callable."""
    await redis_client.redis.set(redis_client.key("k"), raw)

    with pytest.raises(CacheDecodeError, match="is not a"):
        await redis_client.get("k")


async def test_a_cached_value_is_a_copy(cache: AnyCache) -> None:
    """A cached value is a copy: changing the original or the read one changes nothing cached."""
    original = {"items": [1, 2]}
    await cache.set("k", original)
    original["items"].append(3)

    read = await cache.get("k")
    read["items"].append(4)

    assert await cache.get("k") == {"items": [1, 2]}
