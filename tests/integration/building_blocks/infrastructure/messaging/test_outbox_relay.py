"""The outbox relay and the inbox consumer on both databases, with the in-process transport.

The same code runs against Kafka in tests/integration/test_messaging_kafka.py; here the transport is
in memory so failures can be injected precisely (a send that fails for one aggregate).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.infrastructure.messaging import (
    InboxConsumer,
    InProcessBroker,
    KafkaConfig,
    OutboxConfig,
    OutboxRelay,
    OutgoingMessage,
    outbox_table,
)
from app.building_blocks.infrastructure.messaging.dead_letters import replay_dead_letters
from app.building_blocks.infrastructure.messaging.relay_store import _PG_CLAIM
from app.building_blocks.infrastructure.persistence.database import create_engine, create_session_factory
from app.migrate import upgrade
from app.settings import DatabaseSettings
from tests.outbox_helpers import (
    FlakyProducer,
    Recorder,
    drain,
    event,
    fill,
    names,
    run_until,
    unpublished,
    write_user_history,
)


@pytest.fixture(scope="module")
async def engine(private_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(private_database_url)
    yield engine
    await engine.dispose()


async def test_a_failed_send_holds_back_the_rest_of_its_aggregate_only(engine: AsyncEngine) -> None:
    topic = f"relay-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    producer = FlakyProducer(broker)
    relay = OutboxRelay(engine, producer, OutboxConfig(batch_size=50))
    await drain(relay)  # rows of other tests on this database
    stuck = await write_user_history(engine, topic)
    other = await write_user_history(engine, topic)
    producer.broken = {str(stuck.id)}

    result = await relay.publish_batch()
    assert (result.published, result.failed, result.held_back) == (3, 1, 2)
    assert names(broker, topic, str(other.id)) == ["n0", "n1", "n2"]
    assert names(broker, topic, str(stuck.id)) == []
    assert producer.attempts.count(str(stuck.id)) == 1  # the later two were never tried
    rows = await unpublished(engine, topic)
    assert [(r.aggregate_id, r.attempts) for r in rows] == [
        (str(stuck.id), 1),
        (str(stuck.id), 0),
        (str(stuck.id), 0),
    ]
    assert "broker refused" in rows[0].last_error

    producer.broken.clear()
    await drain(relay)
    assert names(broker, topic, str(stuck.id)) == ["n0", "n1", "n2"]
    assert await unpublished(engine, topic) == []


async def test_a_backlog_worked_off_in_lanes_keeps_each_aggregate_in_order(engine: AsyncEngine) -> None:
    """Small batches in three lanes (PostgreSQL; SQLite runs one) with sends that take a while:
    aggregates straddle batches being sent at the same time, yet each user's events arrive in
    order and exactly once."""
    topic = f"lanes-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    relay = OutboxRelay(
        engine, FlakyProducer(broker, delay=0.003), OutboxConfig(batch_size=7, batches_in_flight=3)
    )
    await drain(relay)  # rows of other tests on this database
    users = [await write_user_history(engine, topic) for _ in range(12)]

    while (await relay.publish_round()).claimed:
        pass

    for user in users:
        assert names(broker, topic, str(user.id)) == ["n0", "n1", "n2"]
    assert len(broker.messages(topic)) == 36
    assert await unpublished(engine, topic) == []


async def test_every_message_carries_cloudevents_headers_and_the_aggregate_key(engine: AsyncEngine) -> None:
    topic = f"relay-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    relay = OutboxRelay(engine, broker.producer(), OutboxConfig())
    user = await write_user_history(engine, topic, steps=2)
    await drain(relay)
    first, second = broker.messages(topic)
    assert first.key == second.key == str(user.id)
    assert first.headers["ce_specversion"] == "1.0"
    assert first.headers["ce_type"] == "users.user_registered.v1"
    assert second.headers["ce_type"] == "users.user_profile_updated.v1"
    assert first.headers["ce_source"] == "test-service"
    assert first.headers["ce_subject"] == str(user.id)
    assert first.headers["content-type"] == "application/json"
    assert first.headers["ce_time"].endswith("Z")
    assert uuid.UUID(first.headers["ce_id"]) == uuid.UUID(first.json()["event_id"])
    assert first.json()["user_id"] == str(user.id)


async def test_purge_deletes_only_old_published_rows(engine: AsyncEngine) -> None:
    topic = f"relay-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    await write_user_history(engine, topic, steps=2)
    await drain(OutboxRelay(engine, broker.producer(), OutboxConfig()))
    await write_user_history(engine, topic, steps=1)  # unpublished: never purged

    def two_hours_later() -> datetime:
        return datetime.now(UTC) + timedelta(hours=2)

    kept = OutboxRelay(engine, broker.producer(), OutboxConfig(retention_hours=3), clock=two_hours_later)
    await kept.purge()
    async with engine.connect() as connection:
        assert (
            await connection.execute(select(func.count()).where(outbox_table.c.topic == topic))
        ).scalar() == 3
    later = OutboxRelay(engine, broker.producer(), OutboxConfig(retention_hours=1), clock=two_hours_later)
    assert await later.purge() >= 2
    async with engine.connect() as connection:
        left = (await connection.execute(select(func.count()).where(outbox_table.c.topic == topic))).scalar()
    assert left == 1


async def test_inbox_handles_a_redelivered_message_once(engine: AsyncEngine) -> None:
    topic = f"inbox-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    handler = Recorder()
    consumer = InboxConsumer(
        name=f"test-{topic}",
        source=broker.source("g", [topic]),
        handler=handler,
        sessions=create_session_factory(engine),
        dead_letters=broker.producer(),
        config=KafkaConfig(retry_backoff_ms=1),
    )
    for message_id in ["a", "b", "a", "c", "b"]:
        await broker.append(event(topic, message_id))
    await run_until(consumer, lambda: consumer.handled + consumer.duplicates == 5)
    assert handler.seen == ["a", "b", "c"]
    assert (consumer.handled, consumer.duplicates) == (3, 2)


async def test_poison_goes_to_the_dlq_later_messages_flow_and_replay_brings_it_back(
    engine: AsyncEngine,
) -> None:
    topic = f"poison-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    handler = Recorder()
    handler.failing = {"poison"}
    config = KafkaConfig(retry_attempts=3, retry_backoff_ms=1)

    def consumer() -> InboxConsumer:
        return InboxConsumer(
            name=f"test-{topic}",
            source=broker.source("g", [topic]),
            handler=handler,
            sessions=create_session_factory(engine),
            dead_letters=broker.producer(),
            config=config,
        )

    first = consumer()
    for message_id in ["one", "poison", "two"]:
        await broker.append(event(topic, message_id))
    await run_until(first, lambda: first.handled == 2 and first.dead_lettered == 1)
    assert handler.seen == ["one", "two"]
    [letter] = broker.messages(f"{topic}.dlq")
    assert letter.headers["dlq_error_type"] == "RuntimeError"
    assert letter.headers["dlq_error_message"] == "cannot handle poison"
    assert letter.headers["dlq_original_topic"] == topic
    assert letter.headers["dlq_original_offset"] == "1"
    assert letter.headers["dlq_attempts"] == "3"
    assert letter.headers["ce_id"] == "poison"

    handler.failing.clear()  # the cause is fixed
    second = consumer()
    # In process, a replayed message counts as sent once the consumers handled it: run them.
    replayed = asyncio.create_task(
        replay_dead_letters(broker.source("replay", [f"{topic}.dlq"]), broker.producer(), idle_timeout=0.2)
    )
    await run_until(second, lambda: "poison" in handler.seen)
    assert await replayed == 1
    assert handler.seen == ["one", "two", "poison"]
    assert (
        await replay_dead_letters(
            broker.source("replay", [f"{topic}.dlq"]), broker.producer(), idle_timeout=0.2
        )
        == 0
    )


async def test_a_message_without_id_is_dead_lettered_at_once(engine: AsyncEngine) -> None:
    topic = f"noid-{uuid.uuid4().hex[:8]}"
    broker = InProcessBroker()
    consumer = InboxConsumer(
        name=f"test-{topic}",
        source=broker.source("g", [topic]),
        handler=Recorder(),
        sessions=create_session_factory(engine),
        dead_letters=broker.producer(),
        config=KafkaConfig(retry_attempts=5),
    )
    await broker.append(OutgoingMessage(topic=topic, key="k", value=b"not json", headers={}))
    await run_until(consumer, lambda: consumer.dead_lettered == 1)
    [letter] = broker.messages(f"{topic}.dlq")
    assert (letter.headers["dlq_error_type"], letter.headers["dlq_attempts"]) == (
        "MalformedMessageError",
        "0",
    )


async def test_rows_behind_a_row_another_relay_holds_wait_their_turn() -> None:
    """SKIP LOCKED passes over a row held by a relay finishing its last batch after losing the
    leadership; that aggregate's later rows must not overtake it (PostgreSQL row locks)."""
    from tests.services import create_postgres_database, drop_postgres_database

    url = await create_postgres_database()
    await asyncio.to_thread(upgrade, DatabaseSettings(url=url))
    engine = create_engine(url)
    try:
        topic = f"gap-{uuid.uuid4().hex[:8]}"
        held = await write_user_history(engine, topic)
        free = await write_user_history(engine, topic)
        broker = InProcessBroker()
        relay = OutboxRelay(engine, broker.producer(), OutboxConfig())
        async with engine.connect() as other_relay:
            await other_relay.execute(
                select(outbox_table.c.position)
                .where(outbox_table.c.aggregate_id == str(held.id))
                .order_by(outbox_table.c.position)
                .limit(1)
                .with_for_update()
            )
            result = await relay.publish_batch()
            assert (result.published, result.held_back) == (3, 2)
            assert names(broker, topic, str(free.id)) == ["n0", "n1", "n2"]
            assert names(broker, topic, str(held.id)) == []
            await other_relay.rollback()
        await drain(relay)
        assert names(broker, topic, str(held.id)) == ["n0", "n1", "n2"]
    finally:
        await engine.dispose()
        await drop_postgres_database(url)


async def test_the_claim_plan_holds_when_the_statistics_say_there_is_no_backlog() -> None:
    """Autovacuum may sample the outbox right after the relay caught up ("nothing unpublished"),
    and a burst follows. Planned on that, the claim must still walk ix_outbox_claim, fetch rows by
    primary key and check each against ix_outbox_unpublished_by_aggregate (and a blocked one
    against ix_outbox_parked): no scan or join through the table, no scan of the backlog per
    claimed row (that cost 0.1 s per batch)."""
    from tests.services import create_postgres_database, drop_postgres_database

    url = await create_postgres_database()
    await asyncio.to_thread(upgrade, DatabaseSettings(url=url))
    engine = create_engine(url)
    try:
        topic = f"plan-{uuid.uuid4().hex[:8]}"
        await fill(engine, topic, 2000)
        async with engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            await raw.execute("UPDATE outbox SET published_at = now()")
            await raw.execute("ANALYZE outbox")  # statistics: no backlog
            await fill(engine, topic, 1000)  # ...and now there is one
            async with raw.transaction():
                plan = await raw.fetchval("EXPLAIN (FORMAT JSON) " + _PG_CLAIM.format(limit=500))
        nodes = list(plan_nodes((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]))

        assert {"Seq Scan", "Hash Join", "Merge Join", "Nested Loop"}.isdisjoint(
            n["Node Type"] for n in nodes
        )
        checks = [n for n in nodes if n.get("Parent Relationship") == "SubPlan" and "Index Name" in n]
        # One probe per row for an earlier unpublished row; for the blocked ones, one more of
        # the tiny index of parked rows.
        assert sorted(n["Index Name"] for n in checks) == [
            "ix_outbox_parked",
            "ix_outbox_unpublished_by_aggregate",
        ]
        assert "ix_outbox_claim" in {n.get("Index Name") for n in nodes}
    finally:
        await engine.dispose()
        await drop_postgres_database(url)


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)
