"""The sliding-window limiter on Redis (one Lua call on the server's clock) and in memory: exactly
``limit`` admissions per window under concurrency, truthful counts and waits, independent keys."""

from __future__ import annotations

import asyncio

import pytest

from app.building_blocks.infrastructure.cache import (
    MemoryRateLimiter,
    RateLimit,
    RateLimiter,
    RedisClient,
    RedisRateLimiter,
)

FIVE_PER_SECOND = RateLimit(5, 1)


@pytest.fixture(params=["redis", "memory"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "redis":
        client: RedisClient = request.getfixturevalue("redis_client")
        return RedisRateLimiter(client, FIVE_PER_SECOND)
    return MemoryRateLimiter(FIVE_PER_SECOND)


async def test_concurrent_hits_admit_exactly_the_limit_until_the_window_passes(limiter: RateLimiter) -> None:
    """20 concurrent hits on ``5/second``: exactly 5 allowed (remaining 4…0), 15 denied with
    ``retry_after >= 1`` and ``reset_after <= 1``; a window later, 5 more."""
    decisions = await asyncio.gather(*(limiter.hit("client-1") for _ in range(20)))

    allowed = [decision for decision in decisions if decision.allowed]
    denied = [decision for decision in decisions if not decision.allowed]
    assert len(allowed) == 5
    assert sorted(decision.remaining for decision in allowed) == [0, 1, 2, 3, 4]
    assert len(denied) == 15
    for decision in denied:
        assert decision.remaining == 0
        assert decision.retry_after >= 1
        assert 0 < decision.reset_after <= 1
        assert (decision.limit, decision.period) == (5, 1)

    await asyncio.sleep(1.1)

    later = await asyncio.gather(*(limiter.hit("client-1") for _ in range(20)))
    assert sum(decision.allowed for decision in later) == 5


async def test_remaining_counts_down_then_hits_are_denied(limiter: RateLimiter) -> None:
    """One after another: remaining 4, 3, 2, 1, 0, then denied while the window holds 5."""
    decisions = [await limiter.hit("client-1") for _ in range(7)]

    assert [decision.allowed for decision in decisions] == [True] * 5 + [False] * 2
    assert [decision.remaining for decision in decisions] == [4, 3, 2, 1, 0, 0, 0]
    first, denied = decisions[0], decisions[-1]
    assert 0.9 < first.reset_after <= 1  # the window starts at the first admission
    assert denied.reset_after <= first.reset_after
    assert denied.retry_after == 1


async def test_keys_are_independent(limiter: RateLimiter) -> None:
    """Exhausting one key's window leaves another key's untouched."""
    for _ in range(5):
        assert (await limiter.hit("client-1")).allowed
    assert not (await limiter.hit("client-1")).allowed

    other = [await limiter.hit("client-2") for _ in range(6)]

    assert [decision.allowed for decision in other] == [True] * 5 + [False]


async def test_limiters_of_other_names_are_independent(redis_client: RedisClient) -> None:
    """Two named limits on one Redis and one key count apart."""
    logins = RedisRateLimiter(redis_client, RateLimit(1, 60), name="logins")
    signups = RedisRateLimiter(redis_client, RateLimit(1, 60), name="signups")

    assert (await logins.hit("ip")).allowed
    assert not (await logins.hit("ip")).allowed
    assert (await signups.hit("ip")).allowed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20/minute", RateLimit(20, 60)),
        ("3/hour", RateLimit(3, 3600)),
        ("5/second", RateLimit(5, 1)),
        (" 10 / Minutes ", RateLimit(10, 60)),
        ("0", None),
        ("0/hour", None),
    ],
)
def test_parse_reads_limits_and_zero_turns_them_off(text: str, expected: RateLimit | None) -> None:
    assert RateLimit.parse(text) == expected
    if expected is not None:
        assert RateLimit.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["", "abc", "5", "5/day", "-1/second", "1.5/minute", "5/minute/2", "/hour"])
def test_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        RateLimit.parse(text)
