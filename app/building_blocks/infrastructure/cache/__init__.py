"""Redis building blocks: a typed client, Lua scripts, a lease lock, a single-flight cache
decorator, rate limits, and cache-aside for the mediator's queries — each with an in-memory twin
for embedded mode (``MemoryCache``, ``MemoryRateLimiter``)."""

from app.building_blocks.infrastructure.cache.availability import CacheAvailability
from app.building_blocks.infrastructure.cache.base import MISSING, Cache, GuardedRead
from app.building_blocks.infrastructure.cache.client import CachePipeline, RedisClient
from app.building_blocks.infrastructure.cache.codec import CacheDecodeError, CacheEncodeError
from app.building_blocks.infrastructure.cache.config import RedisConfig
from app.building_blocks.infrastructure.cache.decorator import cached
from app.building_blocks.infrastructure.cache.errors import (
    CacheUnavailableError,
    LockNotAcquiredError,
    LockNotOwnedError,
)
from app.building_blocks.infrastructure.cache.lock import LeaseLock, RedisLock
from app.building_blocks.infrastructure.cache.memory import MemoryCache, MemoryLock
from app.building_blocks.infrastructure.cache.rate_limit import (
    MemoryRateLimiter,
    RateLimit,
    RateLimitDecision,
    RateLimiter,
    RedisRateLimiter,
)
from app.building_blocks.infrastructure.cache.single_flight import SingleFlight

__all__ = [
    "MISSING",
    "Cache",
    "CacheAvailability",
    "CacheDecodeError",
    "CacheEncodeError",
    "CachePipeline",
    "CacheUnavailableError",
    "GuardedRead",
    "LeaseLock",
    "LockNotAcquiredError",
    "LockNotOwnedError",
    "MemoryCache",
    "MemoryLock",
    "MemoryRateLimiter",
    "RateLimit",
    "RateLimitDecision",
    "RateLimiter",
    "RedisClient",
    "RedisConfig",
    "RedisLock",
    "RedisRateLimiter",
    "SingleFlight",
    "cached",
]
