"""``CircuitBreaker`` on a clock of the test's: its states and transitions, probe by probe."""

from __future__ import annotations

import pytest

from app.building_blocks.infrastructure.http import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakers,
    CircuitOpenError,
    CircuitState,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(made: CircuitBreaker) -> CircuitState:
    """Read afresh each time (a property of the clock: mypy would narrow ``made.state``)."""
    return made.state


def breaker(clock: Clock, *, threshold: int = 3, probes: int = 1) -> CircuitBreaker:
    return CircuitBreaker("billing", CircuitBreakerConfig(threshold, 10.0, probes), clock=clock)


def open_breaker(clock: Clock, **options: int) -> CircuitBreaker:
    made = breaker(clock, **options)
    for _ in range(made.config.failure_threshold):
        made.before_call()
        made.record_failure()
    assert state(made) is CircuitState.OPEN
    return made


def test_it_opens_after_threshold_consecutive_failures_only() -> None:
    clock = Clock()
    made = breaker(clock)
    made.record_failure()
    made.record_failure()
    made.record_success()
    made.record_failure()
    made.record_failure()
    assert state(made) is CircuitState.CLOSED
    made.record_failure()
    assert state(made) is CircuitState.OPEN


def test_open_refuses_with_the_time_left_then_turns_half_open() -> None:
    clock = Clock()
    made = open_breaker(clock)
    clock.now += 4
    with pytest.raises(CircuitOpenError) as raised:
        made.before_call()
    assert raised.value.retry_after == 6
    clock.now += 6
    assert state(made) is CircuitState.HALF_OPEN


def test_retry_after_is_at_least_a_second() -> None:
    clock = Clock()
    made = open_breaker(clock, probes=1)
    clock.now += 10
    made.before_call()  # the probe
    with pytest.raises(CircuitOpenError) as raised:
        made.before_call()
    assert raised.value.retry_after == 1


def test_a_successful_probe_closes_it_and_a_failed_one_reopens_it_for_a_full_period() -> None:
    clock = Clock()
    made = open_breaker(clock)
    clock.now += 10
    assert made.before_call() is not None
    made.record_failure()
    assert state(made) is CircuitState.OPEN
    clock.now += 9.9
    assert state(made) is CircuitState.OPEN
    clock.now += 0.1
    probe = made.before_call()
    made.record_success(probe)
    assert state(made) is CircuitState.CLOSED
    assert made.failures == 0


def test_half_open_admits_max_calls_probes() -> None:
    clock = Clock()
    made = open_breaker(clock, probes=2)
    clock.now += 10
    made.before_call()
    made.before_call()
    with pytest.raises(CircuitOpenError):
        made.before_call()


def test_a_released_probe_frees_its_place_and_a_late_release_changes_nothing() -> None:
    clock = Clock()
    made = open_breaker(clock)
    clock.now += 10
    ticket = made.before_call()
    assert ticket is not None
    made.release_probe(ticket)  # cancelled before any answer
    second = made.before_call()  # the place is free again
    assert second is not None
    made.record_failure()  # that probe failed: open again
    made.release_probe(second)  # its release afterwards is a no-op
    made.release_probe(ticket)
    with pytest.raises(CircuitOpenError):
        made.before_call()


def test_a_closed_breaker_hands_out_no_ticket() -> None:
    assert breaker(Clock()).before_call() is None


def test_the_registry_shares_one_breaker_per_name() -> None:
    registry = CircuitBreakers()
    first = registry.get("billing", CircuitBreakerConfig(failure_threshold=2))
    assert registry.get("billing") is first
    assert first.config.failure_threshold == 2  # the first caller's config stays
    assert registry.get("crm") is not first
    registry.clear()
    assert registry.get("billing") is not first


def test_a_slow_success_begun_before_the_breaker_opened_does_not_close_it() -> None:
    """Only a probe's answer closes an open breaker: a call that set off while it was closed and
    answers after it opened says nothing about the target now."""
    clock = [0.0]
    breaker = CircuitBreaker(
        "slow", CircuitBreakerConfig(failure_threshold=1, open_seconds=10), clock=lambda: clock[0]
    )
    assert breaker.before_call() is None  # a call sets off while closed
    breaker.record_failure()  # another call fails: open
    breaker.record_success(None)  # the first call answers late
    assert breaker.state is CircuitState.OPEN
    clock[0] = 11.0
    ticket = breaker.before_call()  # half-open: a probe
    assert ticket is not None
    breaker.record_success(ticket)
    assert breaker.state is CircuitState.CLOSED
