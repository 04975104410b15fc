"""The relay under faults, on both databases, with the in-process transport and injected faults:
refused rows are parked and never stall the others, failing rows are parked after their attempts,
sends without acks fail at the deadline, a stop is honoured while acks never come, a failing lane
stops its siblings, and in process a message counts as sent only once the consumers handled it.
The same promises against a real broker are in
tests/integration/test_relay_kafka_faults.py."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.infrastructure.messaging import (
    InboxConsumer,
    InProcessBroker,
    KafkaConfig,
    OutboxConfig,
    OutboxRelay,
    ReceivedMessage,
    outbox_table,
)
from app.building_blocks.infrastructure.messaging.outbox_admin import (
    OutboxStatus,
    ParkedRowError,
    discard_parked,
    list_parked,
    outbox_status,
    retry_parked,
)
from app.building_blocks.infrastructure.persistence.database import create_engine, create_session_factory
from app.migrate import upgrade
from app.settings import DatabaseSettings
from tests.outbox_helpers import FlakyProducer, drain, names, rename, write_user_history
from tests.services import create_postgres_database, drop_postgres_database


@pytest.fixture(scope="module")
async def engine(private_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(private_database_url)
    yield engine
    await engine.dispose()


async def rows_of(engine: AsyncEngine, key: str) -> list[Any]:
    async with engine.connect() as connection:
        return list(
            await connection.execute(
                select(outbox_table)
                .where(outbox_table.c.aggregate_id == key)
                .order_by(outbox_table.c.position)
            )
        )


async def test_a_refused_row_is_parked_its_aggregate_waits_and_the_others_flow(engine: AsyncEngine) -> None:
    topic = f"park-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    producer = FlakyProducer(broker)
    relay = OutboxRelay(engine, producer, OutboxConfig(batch_size=10))
    await drain(relay)  # rows of other tests on this database
    stuck = await write_user_history(engine, topic)  # n0, n1, n2
    producer.refused = {str(stuck.id)}

    result = await relay.publish_batch()
    assert (result.published, result.failed, result.parked, result.held) == (0, 0, 1, 2)  # refused, 2 behind
    # More than a batch of rows pile up behind the parked one; other aggregates keep flowing.
    await rename(engine, topic, stuck.id, [f"later-{i}" for i in range(25)])
    others = [await write_user_history(engine, topic, steps=2) for _ in range(30)]
    await drain(relay)

    for user in others:
        assert names(broker, topic, str(user.id)) == ["n0", "n1"]
    assert names(broker, topic, str(stuck.id)) == []
    assert producer.attempts.count(str(stuck.id)) == 1  # never offered again while parked
    [parked] = await list_parked(engine)
    assert (parked.aggregate_id, parked.attempts, parked.waiting) == (str(stuck.id), 1, 27)
    assert parked.last_error is not None
    assert "too large" in parked.last_error
    assert await outbox_status(engine, with_pending=True) == OutboxStatus(parked=1, waiting=27, pending=0)
    waiting = (await rows_of(engine, str(stuck.id)))[1]
    with pytest.raises(ParkedRowError, match="waits behind"):
        await retry_parked(engine, waiting.id)

    producer.refused.clear()  # the cause is fixed
    assert await retry_parked(engine, parked.event_id) == 28
    await drain(relay)
    assert names(broker, topic, str(stuck.id)) == ["n0", "n1", "n2"] + [f"later-{i}" for i in range(25)]
    assert await list_parked(engine) == []


async def test_discarding_a_parked_row_needs_a_reason_and_releases_the_rows_behind_it(
    engine: AsyncEngine,
) -> None:
    topic = f"discard-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    producer = FlakyProducer(broker)
    relay = OutboxRelay(engine, producer, OutboxConfig(batch_size=50))
    await drain(relay)
    stuck = await write_user_history(engine, topic)
    producer.refused = {str(stuck.id)}
    await drain(relay)
    [parked] = await list_parked(engine)

    with pytest.raises(ValueError, match="reason"):
        await discard_parked(engine, parked.event_id, "  ")
    with pytest.raises(ParkedRowError, match="no parked"):
        await discard_parked(engine, uuid.uuid4(), "no such event")
    assert await discard_parked(engine, parked.event_id, "payload rejected by the consumer team") == 2
    producer.refused.clear()
    await drain(relay)
    assert names(broker, topic, str(stuck.id)) == ["n1", "n2"]
    first = (await rows_of(engine, str(stuck.id)))[0]
    assert first.published_at is not None
    assert first.last_error == "discarded: payload rejected by the consumer team"


async def test_a_row_that_keeps_failing_waits_between_attempts_and_is_parked_after_the_last(
    engine: AsyncEngine,
) -> None:
    topic = f"attempts-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    producer = FlakyProducer(broker)
    relay = OutboxRelay(engine, producer, OutboxConfig(max_attempts=3, max_backoff=0.3))
    await drain(relay)
    user = await write_user_history(engine, topic, steps=1)
    producer.broken = {str(user.id)}

    assert (await relay.publish_batch()).failed == 1
    [row] = await rows_of(engine, str(user.id))
    assert (row.attempts, row.parked_at) == (1, None)
    assert row.next_attempt_at is not None
    assert "broker refused" in row.last_error
    assert (await relay.publish_batch()).claimed == 0  # not due yet: it waits for its next attempt

    for _ in range(50):  # the second attempt is due after 0.2 s, the third after 0.3 s more
        await asyncio.sleep(0.05)
        await relay.publish_batch()
        if (await rows_of(engine, str(user.id)))[0].parked_at is not None:
            break
    [row] = await rows_of(engine, str(user.id))
    assert (row.attempts, producer.attempts.count(str(user.id))) == (3, 3)
    assert row.parked_at is not None


async def test_sends_not_acknowledged_within_the_deadline_fail_and_are_abandoned(engine: AsyncEngine) -> None:
    topic = f"silent-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    producer = FlakyProducer(broker)
    relay = OutboxRelay(engine, producer, OutboxConfig(send_timeout=0.5))
    await drain(relay)
    user = await write_user_history(engine, topic)
    producer.silent = True

    result = await relay.publish_batch()
    assert (result.published, result.failed, result.held_back, result.unavailable) == (0, 1, 2, True)
    assert producer.abandoned == 1
    first, *later = await rows_of(engine, str(user.id))
    assert (first.attempts, first.last_error) == (1, "no acknowledgement within 0.5s")
    assert first.next_attempt_at is not None
    assert first.parked_at is None
    assert [row.attempts for row in later] == [0, 0]  # never offered: they follow the first
    if engine.dialect.name == "postgresql":  # the claim's transaction ended with the deadline
        async with engine.connect() as connection:
            open_ = await connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state LIKE 'idle in transaction%'"
                )
            )
            assert open_.scalar_one() == 0

    producer.silent = False  # the broker answers again: the rows go out, in order, once due
    for _ in range(40):
        await asyncio.sleep(0.05)
        await relay.publish_round()
        if len(names(broker, topic, str(user.id))) == 3:
            break
    assert names(broker, topic, str(user.id)) == ["n0", "n1", "n2"]


async def test_stop_ends_the_relay_within_its_grace_while_acks_never_come(engine: AsyncEngine) -> None:
    topic = f"stop-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    producer = FlakyProducer(broker)
    relay = OutboxRelay(
        engine, producer, OutboxConfig(send_timeout=60, shutdown_grace=0.5, poll_interval=0.05)
    )
    await drain(relay)
    producer.silent = True
    user = await write_user_history(engine, topic, steps=1)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    async with asyncio.timeout(10):
        while str(user.id) not in producer.attempts:  # noqa: ASYNC110 - polls the fake's record
            await asyncio.sleep(0.02)
    stop.set()
    async with asyncio.timeout(5):  # the grace is 0.5 s; a relay ignoring stop would wait 60 s
        await running
    [row] = await rows_of(engine, str(user.id))
    assert row.published_at is None  # it goes out after the restart
    assert row.attempts == 1
    assert row.last_error == "no acknowledgement within 60s"


class _FailingStore:
    """The relay's store, with the ``fail_at``-th claim failing (fault injection)."""

    def __init__(self, inner: Any, fail_at: int) -> None:
        self.inner = inner
        self.concurrent = inner.concurrent
        self.fail_at = fail_at
        self.claims = 0
        self.claims_after_failure = 0
        self.failed = False

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        async with self.inner.connect() as connection:
            yield _FailingConnection(connection, self)


class _FailingConnection:
    def __init__(self, inner: Any, store: _FailingStore) -> None:
        self.inner = inner
        self.store = store

    @contextlib.asynccontextmanager
    async def claim(self, limit: int) -> AsyncIterator[Any]:
        store = self.store
        store.claims += 1
        if store.failed:
            store.claims_after_failure += 1
        if store.claims == store.fail_at:
            store.failed = True
            raise RuntimeError("the database went away mid-round")
        async with self.inner.claim(limit) as claim:
            yield claim


@pytest.fixture
async def postgres_engine() -> AsyncIterator[AsyncEngine]:
    """A PostgreSQL database of this test's own (lanes run side by side on PostgreSQL only)."""
    url = await create_postgres_database()
    await asyncio.to_thread(upgrade, DatabaseSettings(url=url))
    engine = create_engine(url)
    yield engine
    await engine.dispose()
    await drop_postgres_database(url)


async def test_a_lane_that_fails_cancels_its_siblings(postgres_engine: AsyncEngine) -> None:
    engine = postgres_engine
    topic = f"lanes-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    relay = OutboxRelay(
        engine, FlakyProducer(broker, delay=0.02), OutboxConfig(batch_size=4, batches_in_flight=3)
    )
    for _ in range(20):
        await write_user_history(engine, topic, steps=2)
    failing = _FailingStore(relay._store, fail_at=3)  # the first batch, lane 1's, then lane 2's fails
    relay._store = failing

    with pytest.raises(Exception, match=r"went away|unhandled errors") as raised:
        await relay.publish_round()
    if isinstance(raised.value, ExceptionGroup):
        assert raised.group_contains(RuntimeError, match="went away")
    await asyncio.sleep(0.3)  # siblings left running would go on claiming meanwhile
    assert failing.claims_after_failure <= 1  # lane 3's first claim may have begun; nothing after
    assert failing.claims <= 4
    assert len(broker.messages(topic)) < 40


async def test_in_process_a_message_counts_as_sent_once_the_consumers_handled_it(engine: AsyncEngine) -> None:
    topic = f"acks-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    handled: list[str] = []

    async def handler(message: ReceivedMessage, _session: Any) -> None:
        handled.append(str(message.message_id))

    consumer = InboxConsumer(
        name=f"acks-{topic}",
        source=broker.source("g", [topic]),
        handler=handler,
        sessions=create_session_factory(engine),
        dead_letters=broker.producer(),
        config=KafkaConfig(),
    )
    relay = OutboxRelay(engine, broker.producer(), OutboxConfig(send_timeout=0.3))
    await drain(relay)  # rows of other tests on this database (topics nobody here consumes)
    user = await write_user_history(engine, topic, steps=2)

    result = await relay.publish_batch()  # no consumer runs: nothing is acknowledged
    assert (result.published, result.failed) == (0, 1)
    assert [row.published_at for row in await rows_of(engine, str(user.id))] == [None, None]

    stop = asyncio.Event()
    consuming = asyncio.create_task(consumer.run(stop))
    try:
        for _ in range(60):
            await asyncio.sleep(0.05)
            await relay.publish_round()
            if all(row.published_at for row in await rows_of(engine, str(user.id))):
                break
    finally:
        stop.set()
        await consuming
    assert all(row.published_at for row in await rows_of(engine, str(user.id)))
    # The first copy of the first event was handled late; the second copy, sent after the
    # deadline, was a duplicate the inbox dropped.
    assert len(handled) == 2
    assert len(broker.messages(topic)) == 3
