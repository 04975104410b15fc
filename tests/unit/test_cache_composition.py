"""Which cache the composition root builds from the settings (nothing connects here)."""

from __future__ import annotations

from app.building_blocks.infrastructure.cache import (
    MemoryCache,
    MemoryRateLimiter,
    RedisClient,
    RedisRateLimiter,
)
from app.building_blocks.infrastructure.messaging.config import KafkaConfig
from app.composition import build_cache
from app.settings import RedisSettings, Settings


def test_redis_url_gives_redis_with_the_service_prefix_and_short_timeouts() -> None:
    cache = build_cache(Settings(service_name="crm", redis=RedisSettings(url="redis://h:6390/1")))
    assert isinstance(cache.cache, RedisClient)
    assert cache.redis is cache.cache
    assert cache.cache.prefix == "crm:"
    assert (cache.cache.config.host, cache.cache.config.port, cache.cache.config.db) == ("h", 6390, 1)
    assert cache.cache.config.socket_timeout == 0.25
    assert isinstance(cache.rate_limiters["registrations"], RedisRateLimiter)
    assert cache.reads_cached


def test_embedded_mode_caches_in_memory() -> None:
    cache = build_cache(Settings())
    assert isinstance(cache.cache, MemoryCache)
    assert isinstance(cache.rate_limiters["registrations"], MemoryRateLimiter)
    assert cache.reads_cached


def test_full_mode_without_redis_does_not_cache_reads_in_one_process_memory() -> None:
    """Another process (the worker, a second API worker) would commit changes this one's memory
    never hears of."""
    cache = build_cache(Settings(kafka=KafkaConfig(bootstrap_servers="kafka:9092")))
    assert not cache.reads_cached


def test_several_api_processes_without_redis_do_not_cache_reads() -> None:
    assert not build_cache(Settings(api_processes=2)).reads_cached
    assert build_cache(Settings(api_processes=2, redis=RedisSettings(url="redis://h"))).reads_cached


def test_cache_ttl_zero_and_limit_zero_turn_them_off() -> None:
    cache = build_cache(
        Settings(cache_ttl=0, rate_limit_registrations="0", redis=RedisSettings(url="redis://h"))
    )
    assert not cache.reads_cached
    assert cache.rate_limiters["registrations"] is None
