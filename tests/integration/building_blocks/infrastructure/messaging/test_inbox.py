"""The inbox consumer under a database outage, on both databases, with the in-process transport.

The outage is real: the test holds the inbox table (PostgreSQL ``LOCK TABLE``) or the database's
write lock (SQLite ``BEGIN IMMEDIATE``), and the consumer's engine gives up waiting after 0.2 s,
as a lock timeout. Kafka's side of pausing (partitions, the group) is in
tests/integration/test_consumer_outages.py.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from app.building_blocks.infrastructure.messaging import (
    FailureKind,
    InboxConsumer,
    InProcessBroker,
    KafkaConfig,
    ReceivedMessage,
    classify_failure,
)
from app.building_blocks.infrastructure.persistence.database import create_engine, create_session_factory
from tests.outbox_helpers import Recorder, event, run_until, until

STOP_WITHIN = 10.0  # a consumer that ignored stop would sleep out its 60 s backoff


@pytest.fixture(scope="module")
async def engine(private_database_url: str) -> AsyncIterator[AsyncEngine]:
    """The consumer's engine: a statement waits at most 0.2 s for a lock (then: an outage)."""
    engine = create_engine(private_database_url, lock_timeout=0.2)
    yield engine
    await engine.dispose()


class InboxLock:
    """Holds the inbox (PostgreSQL) or the whole database (SQLite) against writers: an outage."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.connection: AsyncConnection | None = None
        self.transaction: AsyncTransaction | None = None

    async def acquire(self) -> None:
        self.connection = await self.engine.connect()
        self.transaction = await self.connection.begin()  # SQLite: BEGIN IMMEDIATE, the write lock
        if self.engine.dialect.name == "postgresql":
            await self.connection.execute(text("LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE"))

    async def release(self) -> None:
        if self.transaction is not None:
            await self.transaction.rollback()
        if self.connection is not None:
            await self.connection.close()
        self.connection = self.transaction = None
        await self.engine.dispose()


@pytest.fixture
async def inbox_lock(private_database_url: str) -> AsyncIterator[InboxLock]:
    lock = InboxLock(private_database_url)
    await lock.acquire()
    yield lock
    await lock.release()


def make_consumer(
    engine: AsyncEngine, broker: InProcessBroker, topic: str, handler: Recorder, **config: Any
) -> InboxConsumer:
    return InboxConsumer(
        name=f"test-{topic}",
        source=broker.source("g", [topic]),
        handler=handler,
        sessions=create_session_factory(engine),
        dead_letters=broker.producer(),
        config=KafkaConfig(**{"retry_attempts": 2, "retry_backoff_ms": 1, **config}),
    )


async def test_an_outage_is_retried_until_it_ends_and_nothing_is_dead_lettered(
    engine: AsyncEngine, inbox_lock: InboxLock
) -> None:
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    handler = Recorder()
    # Two poison attempts would dead-letter; the outage lasts many more attempts than that.
    consumer = make_consumer(engine, broker, topic, handler, retry_max_backoff_ms=100)
    for message_id in ["a", "b", "c"]:
        await broker.append(event(topic, message_id))
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await until(lambda: consumer.outage_retries >= 5)
        assert (handler.seen, consumer.dead_lettered) == ([], 0)

        await inbox_lock.release()  # the database is back
        await until(lambda: consumer.handled == 3)
        await broker.append(event(topic, "d"))  # and new messages flow after the batch in hand
        await until(lambda: consumer.handled == 4)
    finally:
        stop.set()
        await task
    assert handler.seen == ["a", "b", "c", "d"]
    assert consumer.dead_lettered == 0
    assert broker.messages(f"{topic}.dlq") == []


async def test_stop_during_an_outage_returns_and_leaves_the_message_uncommitted(
    engine: AsyncEngine, inbox_lock: InboxLock
) -> None:
    topic = f"outage-stop-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    handler = Recorder()
    slow = {"retry_backoff_ms": 60_000, "retry_max_backoff_ms": 60_000}  # an hour of retries
    first = make_consumer(engine, broker, topic, handler, **slow)
    for message_id in ["a", "b"]:
        await broker.append(event(topic, message_id))
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await until(lambda: first.outage_retries >= 1)  # now waiting 60 s for its retry
    stop.set()
    async with asyncio.timeout(STOP_WITHIN):
        await task
    assert (first.handled, first.dead_lettered) == (0, 0)

    await inbox_lock.release()
    second = make_consumer(engine, broker, topic, handler)  # the same group, after a restart
    await run_until(second, lambda: second.handled == 2)
    assert handler.seen == ["a", "b"]  # "a" was not committed: it came again, and first
    assert broker.messages(f"{topic}.dlq") == []


async def test_stop_during_a_poison_retry_returns_and_leaves_the_message_uncommitted(
    engine: AsyncEngine,
) -> None:
    topic = f"poison-stop-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    handler = Recorder()
    handler.failing = {"p"}
    first = make_consumer(engine, broker, topic, handler, retry_attempts=5, retry_backoff_ms=60_000)
    await broker.append(event(topic, "p"))
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await until(lambda: handler.calls == 1)  # failed once, now waiting 60 s for its retry
    stop.set()
    async with asyncio.timeout(STOP_WITHIN):
        await task
    assert (handler.calls, first.dead_lettered) == (1, 0)  # stopped in the wait: no retry, no DLQ

    handler.failing.clear()
    second = make_consumer(engine, broker, topic, handler)
    await run_until(second, lambda: second.handled == 1)
    assert handler.seen == ["p"]
    assert broker.messages(f"{topic}.dlq") == []


async def test_a_classifier_that_wraps_the_default_makes_its_own_dependency_an_outage(
    engine: AsyncEngine,
) -> None:
    class CircuitOpenError(Exception):
        """What a fork's HTTP client raises while its breaker is open."""

    def classify(error: BaseException) -> FailureKind:
        if isinstance(error, CircuitOpenError):
            return FailureKind.OUTAGE
        return classify_failure(error)

    topic = f"classify-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    calls: list[str] = []

    async def handler(message: ReceivedMessage, _session: Any) -> None:
        calls.append(str(message.message_id))
        if len(calls) <= 4:  # twice the poison attempts
            raise CircuitOpenError("webhooks.example.com")

    def consumer(name: str, classifier: Any) -> InboxConsumer:
        return InboxConsumer(
            name=f"{name}-{topic}",
            source=broker.source(name, [topic]),
            handler=handler,
            sessions=create_session_factory(engine),
            dead_letters=broker.producer(),
            config=KafkaConfig(retry_attempts=2, retry_backoff_ms=1),
            classify=classifier,
        )

    await broker.append(event(topic, "m"))
    assert await consumer("extended", classify).process(broker.messages(topic)[0]) == "handled"
    assert calls == ["m"] * 5

    calls.clear()  # the default classification: poison, dead-lettered after two attempts
    assert await consumer("default", classify_failure).process(broker.messages(topic)[0]) == "dead-lettered"
    assert calls == ["m"] * 2


async def test_an_inbox_purge_that_meets_an_outage_is_postponed_and_consuming_goes_on(
    engine: AsyncEngine, inbox_lock: InboxLock, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"purge-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    handler = Recorder()
    consumer = make_consumer(engine, broker, topic, handler)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="app.messaging.consumer"):
        task = asyncio.create_task(consumer.run(stop))
        try:
            # The first purge is due at once: with nothing to consume, it meets the lock.
            await until(lambda: "inbox purge postponed" in caplog.text)
            await inbox_lock.release()
            await broker.append(event(topic, "a"))
            await until(lambda: consumer.handled == 1)
        finally:
            stop.set()
            await task
    assert "consumption interrupted" not in caplog.text  # it never restarted
    assert handler.seen == ["a"]
