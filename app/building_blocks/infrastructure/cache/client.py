"""``RedisClient``: one connection pool, typed values, prefixed keys, Lua scripts, locks.

Values go through :mod:`.codec` (typed JSON; nothing unpickled). Every key is prefixed with
``RedisConfig.key_prefix``. Failures of a Redis that cannot serve (refused, timed out, no pooled
connection within ``pool_timeout``, READONLY after a failover, OOM) surface as
:class:`CacheUnavailableError`. The client never retries on its own, so a caller falls back at
once; a command on a pooled connection waits at most ``socket_timeout``, one that needs a new
connection up to ``pool_timeout`` + ``socket_connect_timeout`` + ``socket_timeout``.
"""

from __future__ import annotations

import builtins
import functools
import logging
import math
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.building_blocks.infrastructure.cache import codec
from app.building_blocks.infrastructure.cache.base import MISSING, TTL, GuardedRead, M, seconds_to_ms
from app.building_blocks.infrastructure.cache.config import RedisConfig
from app.building_blocks.infrastructure.cache.errors import CacheUnavailableError
from app.building_blocks.infrastructure.cache.lock import RedisLock
from app.building_blocks.infrastructure.cache.scripts import (
    GUARDED_FILL,
    INVALIDATE,
    LOCK_EXTEND,
    LOCK_RELEASE,
)

logger = logging.getLogger("app.cache")

GENERATION_TTL = 3600.0  # a key's generation outlives any read that could still fill it
# Besides the transport's failures, the answers of a Redis that cannot serve right now: a replica
# promoted under us (READONLY until the connection is rebuilt), maxmemory with noeviction,
# TRYAGAIN/CLUSTERDOWN. For a cache they mean the same: fall back.
_TRANSPORT_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    OutOfMemoryError,
    TryAgainError,
    ClusterDownError,
    OSError,
    TimeoutError,
)

P = ParamSpec("P")
R = TypeVar("R")


def _unavailable_on_transport_error(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except _TRANSPORT_ERRORS as error:
            raise CacheUnavailableError(f"Redis: {error or type(error).__name__}") from error

    return call


def _ttl_ms(ttl: TTL, default: float | None) -> int | None:
    seconds = default if ttl is ... else ttl
    return None if seconds is None else seconds_to_ms(seconds)


class RedisClient:
    """``async with RedisClient(RedisConfig(...)) as cache:`` — or :meth:`connect` / :meth:`close`.

    Building it opens nothing; connections are made on first use and pooled
    (``max_connections``, waiting at most ``pool_timeout`` for a free one).
    """

    def __init__(self, config: RedisConfig | None = None) -> None:
        self.config = config or RedisConfig()
        self.prefix = self.config.key_prefix
        self._pool: redis.BlockingConnectionPool | None = None
        self._redis: redis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._sources: dict[str, str] = {}
        internal = {
            "_guarded_fill": GUARDED_FILL,
            "_invalidate": INVALIDATE,
            "_lock_release": LOCK_RELEASE,
            "_lock_extend": LOCK_EXTEND,
        }
        for name, source in internal.items():
            self.register_script(name, source)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> Self:
        return cls(RedisConfig.from_url(url, **overrides))

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def redis(self) -> redis.Redis:
        """The underlying redis-py client (keys unprefixed, values raw), created on first use."""
        if self._redis is None:
            config = self.config
            connection_class = redis.SSLConnection if config.ssl else redis.Connection
            self._pool = redis.BlockingConnectionPool(
                max_connections=config.max_connections,
                timeout=config.pool_timeout,
                connection_class=connection_class,
                host=config.host,
                port=config.port,
                db=config.db,
                username=config.username,
                password=config.password.get_secret_value() if config.password else None,
                socket_timeout=config.socket_timeout,
                socket_connect_timeout=config.socket_connect_timeout,
                health_check_interval=config.health_check_interval,
                retry=Retry(NoBackoff(), 0),  # the caller falls back; retrying only adds waiting
            )
            self._redis = redis.Redis(connection_pool=self._pool)
            self._scripts = {name: self._redis.register_script(src) for name, src in self._sources.items()}
        return self._redis

    @property
    def _r(self) -> Any:
        """The client for our own calls: redis-py types each command as "value or awaitable"."""
        return self.redis

    async def connect(self) -> Self:
        """Check the server answers (a ``PING``); :class:`CacheUnavailableError` if not."""
        await self.ping()
        return self

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def key(self, name: str) -> str:
        return self.prefix + name

    def _keys(self, names: Iterable[str]) -> list[str]:
        return [self.prefix + name for name in names]

    def describe(self) -> str:
        return self.config.describe()

    # --- values ---------------------------------------------------------------------------------
    @_unavailable_on_transport_error
    async def ping(self) -> bool:
        return bool(await self._r.ping())

    @_unavailable_on_transport_error
    async def get(self, key: str, default: Any = None, *, model: type[M] | None = None) -> Any:
        """The value under ``key``, or ``default`` when there is none (pass :data:`MISSING` to
        tell a cached ``None`` from a miss). :class:`~.codec.CacheDecodeError` for a value this
        client did not write."""
        raw = await self._r.get(self.prefix + key)
        return default if raw is None else codec.decode(raw, model)

    @_unavailable_on_transport_error
    async def set(self, key: str, value: Any, *, ttl: TTL = ..., nx: bool = False, xx: bool = False) -> bool:
        """Store ``value``; with ``nx`` only if the key is absent, with ``xx`` only if present.
        Returns whether it was stored."""
        stored = await self._r.set(
            self.prefix + key, codec.encode(value), px=_ttl_ms(ttl, self.config.default_ttl), nx=nx, xx=xx
        )
        return bool(stored)

    @_unavailable_on_transport_error
    async def set_raw(self, key: str, value: str | bytes, *, px: int | None = None, nx: bool = False) -> bool:
        """Store bytes as they are (a lock's token): outside the codec, so :meth:`get` refuses them."""
        return bool(await self._r.set(self.prefix + key, value, px=px, nx=nx))

    @_unavailable_on_transport_error
    async def delete(self, *keys: str) -> int:
        return int(await self._r.delete(*self._keys(keys))) if keys else 0

    @_unavailable_on_transport_error
    async def exists(self, *keys: str) -> int:
        return int(await self._r.exists(*self._keys(keys))) if keys else 0

    @_unavailable_on_transport_error
    async def expire(self, key: str, ttl: float) -> bool:
        return bool(await self._r.pexpire(self.prefix + key, seconds_to_ms(ttl)))

    @_unavailable_on_transport_error
    async def ttl(self, key: str) -> float | None:
        """Seconds left: ``None`` when there is no such key, ``math.inf`` when it never expires."""
        left = int(await self._r.pttl(self.prefix + key))
        if left == -2:
            return None
        return math.inf if left == -1 else left / 1000

    @_unavailable_on_transport_error
    async def incr(self, key: str, amount: int = 1) -> int:
        """A counter (Redis's own integer, readable with :meth:`get`)."""
        return int(await self._r.incrby(self.prefix + key, amount))

    @_unavailable_on_transport_error
    async def clear(self, under: str = "") -> int:
        """Delete every key under this client's prefix, or under ``prefix + under`` (one
        namespace of it), with ``SCAN`` + ``UNLINK`` in batches."""
        if not self.prefix:
            raise ValueError("clear() needs a key_prefix: without one it would empty the whole database")
        # a backslash escapes one glob character: "[]]", "[[]" and "[\]" are not literals to Redis
        pattern = "".join(f"\\{char}" if char in "*?[]\\" else char for char in self.prefix + under) + "*"
        deleted = 0
        batch: list[bytes] = []
        async for name in self._r.scan_iter(match=pattern, count=500):
            batch.append(name)
            if len(batch) == 500:
                deleted += int(await self._r.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(await self._r.unlink(*batch))
        return deleted

    # --- hashes, lists, sets ----------------------------------------------------------------------
    @_unavailable_on_transport_error
    async def hset(self, key: str, mapping: Mapping[str, Any]) -> int:
        encoded = {field: codec.encode(value) for field, value in mapping.items()}
        return int(await self._r.hset(self.prefix + key, mapping=encoded))

    @_unavailable_on_transport_error
    async def hget(self, key: str, field: str, default: Any = None, *, model: type[M] | None = None) -> Any:
        raw = await self._r.hget(self.prefix + key, field)
        return default if raw is None else codec.decode(raw, model)

    @_unavailable_on_transport_error
    async def hgetall(self, key: str) -> dict[str, Any]:
        raw = await self._r.hgetall(self.prefix + key)
        return {field.decode(): codec.decode(value) for field, value in raw.items()}

    @_unavailable_on_transport_error
    async def hdel(self, key: str, *fields: str) -> int:
        return int(await self._r.hdel(self.prefix + key, *fields))

    @_unavailable_on_transport_error
    async def lpush(self, key: str, *values: Any) -> int:
        return int(await self._r.lpush(self.prefix + key, *map(codec.encode, values)))

    @_unavailable_on_transport_error
    async def rpush(self, key: str, *values: Any) -> int:
        return int(await self._r.rpush(self.prefix + key, *map(codec.encode, values)))

    @_unavailable_on_transport_error
    async def lpop(self, key: str, default: Any = None) -> Any:
        raw = await self._r.lpop(self.prefix + key)
        return default if raw is None else codec.decode(raw)

    @_unavailable_on_transport_error
    async def rpop(self, key: str, default: Any = None) -> Any:
        raw = await self._r.rpop(self.prefix + key)
        return default if raw is None else codec.decode(raw)

    @_unavailable_on_transport_error
    async def lrange(self, key: str, start: int = 0, end: int = -1) -> list[Any]:
        return [codec.decode(raw) for raw in await self._r.lrange(self.prefix + key, start, end)]

    @_unavailable_on_transport_error
    async def llen(self, key: str) -> int:
        return int(await self._r.llen(self.prefix + key))

    @_unavailable_on_transport_error
    async def sadd(self, key: str, *members: Any) -> int:
        return int(await self._r.sadd(self.prefix + key, *map(codec.encode, members)))

    @_unavailable_on_transport_error
    async def srem(self, key: str, *members: Any) -> int:
        return int(await self._r.srem(self.prefix + key, *map(codec.encode, members)))

    @_unavailable_on_transport_error
    async def sismember(self, key: str, member: Any) -> bool:
        return bool(await self._r.sismember(self.prefix + key, codec.encode(member)))

    @_unavailable_on_transport_error
    async def smembers(self, key: str) -> builtins.set[Any]:
        return {codec.decode(raw) for raw in await self._r.smembers(self.prefix + key)}

    def pipeline(self, *, transaction: bool = True) -> CachePipeline:
        """Commands queued and sent in one round trip (``MULTI``/``EXEC`` with ``transaction``),
        with the prefix and the codec applied; ``await pipe.execute()`` returns their results."""
        return CachePipeline(self, transaction=transaction)

    # --- scripts --------------------------------------------------------------------------------
    def register_script(self, name: str, source: str) -> None:
        """Keep a Lua script under ``name``; it runs by SHA and is re-sent after ``NOSCRIPT``."""
        self._sources[name] = source
        if self._redis is not None:
            self._scripts[name] = self._redis.register_script(source)

    @_unavailable_on_transport_error
    async def execute_script(
        self, name: str, keys: Sequence[str] = (), args: Sequence[Any] = (), *, prefix_keys: bool = True
    ) -> Any:
        """Run the script ``name`` (``EVALSHA``; reloaded on ``NOSCRIPT``). ``keys`` are prefixed
        unless ``prefix_keys=False``; ``args`` go as given (str, bytes, numbers)."""
        self.redis  # noqa: B018 - creates the client, and with it the script objects
        script = self._scripts.get(name)
        if script is None:
            raise KeyError(f"no script registered as {name!r}")
        names = self._keys(keys) if prefix_keys else list(keys)
        return await script(keys=names, args=list(args))

    # --- cache-aside entries guarded by a generation ---------------------------------------------
    def _generation_key(self, key: str) -> str:
        return f"{self.prefix}{key}#generation"

    @_unavailable_on_transport_error
    async def read_guarded(self, key: str, *, model: type[M] | None = None) -> GuardedRead:
        """The entry and its generation in one round trip (see :class:`~.base.GuardedRead`)."""
        raw, generation = await self._r.mget(self.prefix + key, self._generation_key(key))
        value = MISSING if raw is None else codec.decode(raw, model)
        return GuardedRead(value, generation.decode() if generation is not None else "")

    @_unavailable_on_transport_error
    async def fill_guarded(self, key: str, value: Any, generation: str, *, ttl: float) -> bool:
        """Store ``value`` unless the key was invalidated since the read that saw ``generation``."""
        self.redis  # noqa: B018
        keys = [self.prefix + key, self._generation_key(key)]
        stored = await self._scripts["_guarded_fill"](
            keys=keys, args=[generation, codec.encode(value), seconds_to_ms(ttl)]
        )
        return bool(stored)

    @_unavailable_on_transport_error
    async def invalidate(self, *keys: str) -> None:
        """Drop the entries and bump their generations, so no read begun before can fill them."""
        if not keys:
            return
        self.redis  # noqa: B018
        names = [name for key in keys for name in (self.prefix + key, self._generation_key(key))]
        await self._scripts["_invalidate"](keys=names, args=[seconds_to_ms(GENERATION_TTL)])

    # --- locks ----------------------------------------------------------------------------------
    def lock(self, name: str, *, timeout: float = 10.0, blocking_timeout: float | None = 10.0) -> RedisLock:
        """A distributed lock on ``name`` (see :mod:`.lock`): ``async with cache.lock("job"):``."""
        return RedisLock(self, name, timeout=timeout, blocking_timeout=blocking_timeout)


class CachePipeline:
    """Queued commands of a :class:`RedisClient`, sent together by :meth:`execute`."""

    def __init__(self, client: RedisClient, *, transaction: bool) -> None:
        self._client = client
        self._pipe: Any = client.redis.pipeline(transaction=transaction)
        self._decoders: list[Callable[[Any], Any]] = []

    def _queue(self, decoder: Callable[[Any], Any]) -> Self:
        self._decoders.append(decoder)
        return self

    def get(self, key: str, default: Any = None, *, model: type[M] | None = None) -> Self:
        self._pipe.get(self._client.key(key))
        return self._queue(lambda raw: default if raw is None else codec.decode(raw, model))

    def set(self, key: str, value: Any, *, ttl: TTL = ..., nx: bool = False, xx: bool = False) -> Self:
        px = _ttl_ms(ttl, self._client.config.default_ttl)
        self._pipe.set(self._client.key(key), codec.encode(value), px=px, nx=nx, xx=xx)
        return self._queue(bool)

    def delete(self, *keys: str) -> Self:
        self._pipe.delete(*self._client._keys(keys))
        return self._queue(int)

    def incr(self, key: str, amount: int = 1) -> Self:
        self._pipe.incrby(self._client.key(key), amount)
        return self._queue(int)

    def expire(self, key: str, ttl: float) -> Self:
        self._pipe.pexpire(self._client.key(key), seconds_to_ms(ttl))
        return self._queue(bool)

    def hset(self, key: str, mapping: Mapping[str, Any]) -> Self:
        encoded = {field: codec.encode(value) for field, value in mapping.items()}
        self._pipe.hset(self._client.key(key), mapping=encoded)
        return self._queue(int)

    def rpush(self, key: str, *values: Any) -> Self:
        self._pipe.rpush(self._client.key(key), *map(codec.encode, values))
        return self._queue(int)

    def sadd(self, key: str, *members: Any) -> Self:
        self._pipe.sadd(self._client.key(key), *map(codec.encode, members))
        return self._queue(int)

    @_unavailable_on_transport_error
    async def execute(self) -> list[Any]:
        results = await self._pipe.execute()
        return [decode(result) for decode, result in zip(self._decoders, results, strict=True)]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._pipe.reset()
