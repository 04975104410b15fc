"""An outage of the consumer's own database is not a poison message (real Kafka and PostgreSQL).

While its database is locked or closed to it, the worker's consumer keeps the message in hand,
pauses its partitions and retries until the database is back: nothing goes to the dead-letter
topic and the activity log ends up complete and in order, with no manual replay. A poison
message in the same run still goes to the dead-letter topic after its attempts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.building_blocks.infrastructure.messaging import (
    InboxConsumer,
    KafkaConfig,
    OutgoingMessage,
    ReceivedMessage,
    inbox_table,
)
from app.building_blocks.infrastructure.messaging.kafka import KafkaMessageProducer, KafkaMessageSource
from app.building_blocks.infrastructure.persistence.database import create_engine, create_session_factory
from app.users.persistence.tables import user_activity_table
from tests.helpers import USERS
from tests.messaging_harness import (
    all_published,
    api,
    engine_for,
    headers,
    read_topic,
    relay_task,
    settings_for,
    wait_for,
    worker,
)
from tests.services import missing

pytestmark = pytest.mark.kafka

OUTAGE = 20.0  # seconds
# Each user's history; 60 users make the 300 writes.
HISTORY = [
    ("users.user_registered", "r0"),
    ("users.user_profile_updated", "r1"),
    ("users.user_profile_updated", "r2"),
    ("users.user_deactivated", None),
    ("users.user_reactivated", None),
]
# The worker retries an outage at least once a second, so it catches up soon after the end.
WORKER_ENV = {"KAFKA_RETRY_MAX_BACKOFF_MS": "1000"}


async def write_histories(http: httpx.AsyncClient, count: int, prefix: str) -> list[str]:
    """``count`` users, each registered, renamed twice, deactivated and reactivated, in that
    order; the users concurrently. Every write must be accepted."""
    semaphore = asyncio.Semaphore(16)

    async def one(i: int) -> str:
        async with semaphore:
            response = await http.post(USERS, json={"email": f"{prefix}-{i}@example.com", "name": "r0"})
            assert response.status_code == 201, response.text
            user = f"{USERS}/{response.json()['id']}"
            for name in ("r1", "r2"):
                assert (await http.patch(user, json={"name": name})).status_code == 200
            for action in ("deactivate", "reactivate"):
                assert (await http.post(f"{user}/{action}")).status_code == 200
            return str(response.json()["id"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def activity(database: str, user_ids: list[str]) -> dict[str, list[Any]]:
    """Each user's activity rows, in the order the consumer recorded them."""
    async with engine_for(database).connect() as connection:
        rows = await connection.execute(
            select(user_activity_table)
            .where(user_activity_table.c.user_id.in_([uuid.UUID(u) for u in user_ids]))
            .order_by(user_activity_table.c.recorded_at)
        )
        found: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            found[str(row.user_id)].append(row)
        return found


def complete(database: str, user_ids: list[str]) -> Callable[[], Any]:
    async def check() -> bool:
        rows = await activity(database, user_ids)
        return sum(len(found) for found in rows.values()) >= len(user_ids) * len(HISTORY)

    return check


async def assert_complete_and_in_order(database: str, user_ids: list[str]) -> None:
    rows = await activity(database, user_ids)
    assert set(rows) == set(user_ids)
    for user_id in user_ids:
        found = rows[user_id]
        recorded = [(row.event_type, row.data.get("name")) for row in found]
        assert recorded == HISTORY, f"{user_id}: {recorded}"  # each once, in the user's order
        assert [row.occurred_at for row in found] == sorted(row.occurred_at for row in found)
        assert len({row.event_id for row in found}) == len(HISTORY)


async def send_poison(settings: Any, topic: str) -> str:
    """A user event whose payload does not validate: the projection can never handle it."""
    message_id = str(uuid.uuid4())
    producer = KafkaMessageProducer(settings.kafka)
    try:
        await producer.send(
            OutgoingMessage(
                topic=topic,
                key=message_id,
                value=b'{"user_id": "not-a-uuid"}',
                headers={"ce_id": message_id, "ce_type": "users.user_registered.v1"},
            )
        )
    finally:
        await producer.stop()
    return message_id


async def assert_only_the_poison_was_dead_lettered(bootstrap: str, topic: str, poison: str) -> None:
    """Call it while the worker runs: a worker stopped during the poison's retries leaves it
    uncommitted, to be retried after a restart, and dead-letters nothing."""
    letters = await read_topic(bootstrap, f"{topic}.dlq", at_least=1, quiet=3)
    assert [headers(letter)["ce_id"] for letter in letters] == [poison]
    assert headers(letters[0])["dlq_error_type"] == "ValidationError"
    assert headers(letters[0])["dlq_attempts"] == "3"


def assert_the_consumer_rode_out_an_outage(log: Path) -> None:
    """The fault reached the consumer (else this test proves nothing) and it said so."""
    text_ = log.read_text()
    assert "outage, not poison" in text_, text_[-3000:]
    assert "outage over after" in text_, text_[-3000:]


@asynccontextmanager
async def table_locked(database: str, table: str) -> AsyncIterator[None]:
    """A transaction holding ``table`` in ACCESS EXCLUSIVE mode: nobody reads or writes it."""
    engine = create_engine(database)
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            await connection.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            try:
                yield
            finally:
                await transaction.rollback()
    finally:
        await engine.dispose()


async def test_projection_locked_for_20_seconds_dead_letters_nothing_and_the_log_completes(
    database: str, bootstrap: str, topic: str, tmp_path: Path
) -> None:
    settings = settings_for(database, bootstrap, topic)
    log = tmp_path / "worker.log"
    async with api(settings) as http:
        with worker(settings, log, **WORKER_ENV):
            warm_up = await write_histories(http, 2, f"warm-{topic}")
            await wait_for(complete(database, warm_up), 60, "the worker to project")
            async with table_locked(database, "user_activity"):
                locked_at = time.monotonic()
                users = await write_histories(http, 60, f"lock-{topic}")
                poison = await send_poison(settings, topic)
                events = len(warm_up + users) * len(HISTORY)
                await wait_for(lambda: all_published(database, topic, events), 60, "the relay")
                await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - locked_at)))
            waited = await wait_for(complete(database, users), 120, "the activity log to catch up")
            await assert_only_the_poison_was_dead_lettered(bootstrap, topic, poison)  # while running
    await assert_complete_and_in_order(database, warm_up + users)
    assert_the_consumer_rode_out_an_outage(log)
    print(f"\nprojection locked {OUTAGE:.0f}s under 300 writes; caught up {waited:.1f}s after")


class WorkerRole:
    """A login role for the worker alone, so the test can close the database to it (and only it)
    while the API, connected as ``app``, keeps writing."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.name = f"worker_{uuid.uuid4().hex[:10]}"
        self.password = uuid.uuid4().hex
        self.url = (
            make_url(database)
            .set(username=self.name, password=self.password)
            .render_as_string(hide_password=False)
        )
        self._admin = create_async_engine(database, isolation_level="AUTOCOMMIT")

    async def create(self) -> None:
        async with self._admin.connect() as connection:
            try:
                await connection.execute(text(f"CREATE ROLE {self.name} LOGIN PASSWORD '{self.password}'"))
            except DBAPIError as error:
                missing("a PostgreSQL role with CREATEROLE", str(error.orig).splitlines()[0])
            for objects in ("TABLES", "sequences"):
                await connection.execute(text(f"GRANT ALL ON ALL {objects} IN SCHEMA public TO {self.name}"))

    async def close(self) -> None:
        """No new session may log in, and every open one is terminated."""
        own = create_async_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            async with own.connect() as connection:  # a role may end its own sessions
                async with self._admin.connect() as admin:
                    await admin.execute(text(f"ALTER ROLE {self.name} NOLOGIN"))
                for _ in range(3):  # a session that was logging in meanwhile shows up late
                    await connection.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE usename = :role AND pid <> pg_backend_pid()"
                        ),
                        {"role": self.name},
                    )
                    await asyncio.sleep(0.2)
        finally:
            await own.dispose()

    async def reopen(self) -> None:
        async with self._admin.connect() as admin:
            await admin.execute(text(f"ALTER ROLE {self.name} LOGIN"))

    async def drop(self) -> None:
        try:
            async with self._admin.connect() as connection:
                for objects in ("TABLES", "sequences"):
                    await connection.execute(
                        text(f"REVOKE ALL ON ALL {objects} IN SCHEMA public FROM {self.name}")
                    )
                await connection.execute(text(f"DROP ROLE IF EXISTS {self.name}"))
        finally:
            await self._admin.dispose()


@pytest.fixture
async def worker_role(database: str) -> AsyncIterator[WorkerRole]:
    role = WorkerRole(database)
    await role.create()
    yield role
    await role.drop()


async def test_database_closed_to_the_worker_for_20_seconds_dead_letters_nothing_and_all_recovers(
    database: str, bootstrap: str, topic: str, tmp_path: Path, worker_role: WorkerRole
) -> None:
    settings = settings_for(database, bootstrap, topic)
    log = tmp_path / "worker.log"
    async with api(settings) as http:
        with worker(settings, log, DATABASE_URL=worker_role.url, **WORKER_ENV):
            warm_up = await write_histories(http, 2, f"warm-{topic}")
            await wait_for(complete(database, warm_up), 60, "the worker to project")
            assert log.read_text().count("outbox relay is the leader") == 1
            # A standby relay of our own (connected as app) takes over while the worker's relay
            # cannot reach the database, so events do reach Kafka during the outage and the
            # worker's consumer meets it for sure.
            async with relay_task(settings):
                await worker_role.close()
                closed_at = time.monotonic()
                during = await write_histories(http, 48, f"closed-{topic}")  # 240 writes
                poison = await send_poison(settings, topic)
                await wait_for(lambda: all_published(database, topic, 250), 60, "our relay")
                assert sum(len(rows) for rows in (await activity(database, during)).values()) == 0
                await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - closed_at)))
                await worker_role.reopen()
            # Our relay stopped: only the worker's can publish these, once it leads again.
            after = await write_histories(http, 12, f"after-{topic}")  # 60 writes
            users = during + after
            waited = await wait_for(complete(database, users), 120, "the activity log to catch up")
            await wait_for(lambda: all_published(database, topic, 310), 30, "the worker's relay")
            await assert_only_the_poison_was_dead_lettered(bootstrap, topic, poison)
    assert log.read_text().count("outbox relay is the leader") >= 2, "the worker's relay led again"
    await assert_complete_and_in_order(database, warm_up + users)
    assert_the_consumer_rode_out_an_outage(log)
    print(f"\ndatabase closed to the worker {OUTAGE:.0f}s under 300 writes; caught up {waited:.1f}s after")


async def test_a_rebalance_during_an_outage_hands_the_messages_over_without_loss(
    database: str, bootstrap: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A second member joins while the first waits out an outage: the first drops the messages
    it held (their partitions may be the other's now), both resume from the committed offsets
    once the database is back, and every message is handled once, in order per key."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()
    kafka = KafkaConfig(
        bootstrap_servers=bootstrap,
        consumer_group=f"g-{topic}",
        retry_backoff_ms=50,
        retry_max_backoff_ms=500,
        request_timeout_ms=3000,
    )
    sequences = 5
    keys = [f"key-{k}" for k in range(40)]  # enough for every partition to have some
    producer = KafkaMessageProducer(kafka)
    try:
        for sequence in range(sequences):
            for key in keys:
                await producer.send(
                    OutgoingMessage(
                        topic=topic,
                        key=key,
                        value=json.dumps({"sequence": sequence}).encode(),
                        headers={"ce_id": f"{key}-{sequence}"},
                    )
                )
    finally:
        await producer.stop()

    handled: dict[str, list[int]] = defaultdict(list)

    async def handler(message: ReceivedMessage, _session: Any) -> None:
        handled[str(message.key)].append(message.json()["sequence"])

    engine: AsyncEngine = create_engine(database, lock_timeout=0.2)

    def member() -> InboxConsumer:
        return InboxConsumer(
            name=f"rebalance-{topic}",  # one consumer, two members of its group: one inbox
            source=KafkaMessageSource(kafka, kafka.consumer_group, [topic]),
            handler=handler,
            sessions=create_session_factory(engine),
            dead_letters=KafkaMessageProducer(kafka),
            config=kafka,
        )

    first, second = member(), member()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        with caplog.at_level(logging.INFO, logger="app.messaging.consumer"):
            async with table_locked(database, inbox_table.name):
                tasks.append(asyncio.create_task(first.run(stop)))
                await wait_for(lambda: _true(first.outage_retries >= 1), 60, "the first member's outage")
                tasks.append(asyncio.create_task(second.run(stop)))
                await wait_for(
                    lambda: _true("read again from the committed offsets" in caplog.text),
                    60,
                    "the first member to notice the rebalance",
                )
            total = len(keys) * sequences
            await wait_for(lambda: _true(first.handled + second.handled == total), 60, "every message")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await engine.dispose()
    assert first.handled > 0, "both members took part"
    assert second.handled > 0, "both members took part"
    assert first.dead_lettered + second.dead_lettered == 0
    assert dict(handled) == {key: list(range(sequences)) for key in keys}  # once each, in order


async def _true(value: bool) -> bool:
    return value
