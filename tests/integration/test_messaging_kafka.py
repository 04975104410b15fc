"""Integration events against a real Apache Kafka broker and PostgreSQL.

What these tests prove: every accepted write becomes exactly one event in Kafka, in order per
user, with CloudEvents headers; a broker outage loses nothing; a relay killed mid-batch loses
nothing and the consumers apply each event once; a standby relay takes over; poison messages go
to the dead-letter topic and can be replayed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select, update

from app.building_blocks.infrastructure.messaging import (
    InboxConsumer,
    OutgoingMessage,
    ReceivedMessage,
    outbox_table,
)
from app.building_blocks.infrastructure.messaging.kafka import KafkaMessageProducer, KafkaMessageSource
from app.building_blocks.infrastructure.persistence.database import create_engine, create_session_factory
from tests.conftest import ROOT
from tests.helpers import USERS
from tests.kafka_service import broker_is_local, broker_script, partition_counts
from tests.messaging_harness import (
    activity_counts,
    all_published,
    api,
    engine_for,
    headers,
    outbox_counts,
    read_topic,
    register,
    relay_task,
    settings_for,
    some_published,
    wait_for,
    worker,
    worker_env,
)

pytestmark = pytest.mark.kafka


async def test_a_thousand_registrations_become_a_thousand_ordered_cloudevents(
    database: str, bootstrap: str, topic: str
) -> None:
    settings = settings_for(database, bootstrap, topic)
    async with api(settings) as http, relay_task(settings):
        ids = await register(http, 1000, f"k-{topic}")
        histories = ids[:20]
        for user_id in histories:
            assert (await http.patch(f"{USERS}/{user_id}", json={"name": "changed"})).status_code == 200
            assert (await http.post(f"{USERS}/{user_id}/deactivate")).status_code == 200
        records = await read_topic(bootstrap, topic, at_least=1040)

    registered = [r for r in records if headers(r)["ce_type"] == "users.user_registered.v1"]
    assert len(registered) == 1000
    assert sorted(r.key.decode() for r in registered) == sorted(ids)
    assert len(records) == 1040
    for record in registered:
        h = headers(record)
        assert h["ce_specversion"] == "1.0"
        assert h["ce_source"] == settings.service_name
        assert h["ce_subject"] == record.key.decode()
        assert h["content-type"] == "application/json"
        assert json.loads(record.value)["user_id"] == record.key.decode()
        uuid.UUID(h["ce_id"])
        assert h["ce_time"].endswith("Z")
    by_user: dict[str, list[str]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_user[record.key.decode()].append(headers(record)["ce_type"])
        partitions[record.key.decode()].add(record.partition)
    for user_id in histories:
        assert by_user[user_id] == [
            "users.user_registered.v1",
            "users.user_profile_updated.v1",
            "users.user_deactivated.v1",
        ]
    assert all(len(found) == 1 for found in partitions.values())  # keyed: one partition per user


async def test_kafka_down_for_ten_seconds_loses_nothing(database: str, bootstrap: str, topic: str) -> None:
    if not await broker_is_local():
        pytest.skip("needs the broker that kafka/broker.sh runs, to stop and start it")
    settings = settings_for(database, bootstrap, topic)
    accepted: list[str] = []
    async with api(settings) as http, relay_task(settings):
        accepted += await register(http, 100, f"before-{topic}")
        code, output = await broker_script("down")
        assert code == 0, output
        down_at = time.monotonic()
        try:
            while time.monotonic() - down_at < 10:  # writes keep being accepted while Kafka is away
                accepted += await register(http, 20, f"during-{topic}-{len(accepted)}")
            total, published = await outbox_counts(database, topic)
            assert published < total
        finally:
            code, output = await broker_script("up", timeout=180)
            assert code == 0, output
        accepted += await register(http, 100, f"after-{topic}")
        waited = await wait_for(
            lambda: all_published(database, topic, len(accepted)), 120, "the relay to publish everything"
        )
    records = await read_topic(bootstrap, topic, at_least=len(accepted))
    assert sorted({r.key.decode() for r in records}) == sorted(accepted)
    assert len({headers(r)["ce_id"] for r in records}) == len(accepted)
    print(
        f"\nKafka down {time.monotonic() - down_at:.0f}s; {len(accepted)} writes; caught up in {waited:.1f}s"
    )


async def test_relay_killed_mid_batch_loses_nothing_and_duplicates_are_applied_once(
    database: str, bootstrap: str, topic: str, tmp_path: Path
) -> None:
    settings = settings_for(database, bootstrap, topic)
    async with api(settings) as http:
        ids = await register(http, 600, f"kill-{topic}")
    log = tmp_path / "worker.log"
    with worker(settings, log, OUTBOX_BATCH_SIZE="20") as first:
        await wait_for(lambda: some_published(database, topic), 60, "the first batches")
        first.send_signal(signal.SIGKILL)
        first.wait()
    total, published = await outbox_counts(database, topic)
    assert 0 < published < total, "kill the relay mid-way"

    # A crash between the broker's ack and the commit that marks rows published re-sends them:
    # make that happen for sure by forgetting that some published rows were published.
    resent = min(50, published)
    async with engine_for(database).begin() as connection:
        first_published = (
            select(outbox_table.c.position)
            .where(outbox_table.c.topic == topic, outbox_table.c.published_at.is_not(None))
            .order_by(outbox_table.c.position)
            .limit(resent)
            .scalar_subquery()
        )
        await connection.execute(
            update(outbox_table).where(outbox_table.c.position.in_(first_published)).values(published_at=None)
        )

    with worker(settings, log):
        await wait_for(lambda: all_published(database, topic, len(ids)), 90, "the restarted relay")

        async def projected() -> bool:
            return sum((await activity_counts(database, ids)).values()) >= len(ids)

        await wait_for(projected, 60, "the activity log")
        await asyncio.sleep(1.0)  # let the redelivered duplicates arrive too
    records = await read_topic(bootstrap, topic, at_least=len(ids) + resent)
    delivered = Counter(headers(r)["ce_id"] for r in records)
    assert len(delivered) == len(ids)
    assert sum(delivered.values()) >= len(ids) + resent, "some events were delivered twice"
    applied = await activity_counts(database, ids)
    assert set(applied) == set(delivered)
    assert set(applied.values()) == {1}


def leader_of(logs: dict[str, Path]) -> str | None:
    leaders = [name for name, path in logs.items() if "outbox relay is the leader" in path.read_text()]
    assert len(leaders) <= 1, f"two leaders at once: {leaders}"
    return leaders[0] if leaders else None


async def test_a_standby_relay_takes_over_within_ten_seconds(
    database: str, bootstrap: str, topic: str, tmp_path: Path
) -> None:
    settings = settings_for(database, bootstrap, topic)
    logs = {"a": tmp_path / "a.log", "b": tmp_path / "b.log"}
    async with api(settings) as http:
        with (
            worker(settings, logs["a"], "--no-consumers") as a,
            worker(settings, logs["b"], "--no-consumers") as b,
        ):
            processes = {"a": a, "b": b}
            first = await register(http, 10, f"ha1-{topic}")
            await wait_for(lambda: all_published(database, topic, 10), 30, "the leader to publish")
            leader = leader_of(logs)
            assert leader is not None
            standby = "b" if leader == "a" else "a"
            processes[leader].send_signal(signal.SIGKILL)
            processes[leader].wait()
            killed_at = time.monotonic()
            second = await register(http, 10, f"ha2-{topic}")
            await wait_for(lambda: all_published(database, topic, 20), 10, "the standby to take over")
            took_over = time.monotonic() - killed_at
            assert "outbox relay is the leader" in logs[standby].read_text()
            assert processes[standby].poll() is None
    records = await read_topic(bootstrap, topic, at_least=20)
    assert {r.key.decode() for r in records} == set(first + second)
    print(f"\nstandby published {took_over:.1f}s after the leader was killed")


async def test_poison_message_is_dead_lettered_and_replayed_after_the_fix(
    database: str, bootstrap: str, topic: str, tmp_path: Path
) -> None:
    settings = settings_for(database, bootstrap, topic, retry_attempts=3)
    kafka = settings.kafka
    failing = {"poison"}
    handled: list[str] = []

    async def handler(message: ReceivedMessage, _session: Any) -> None:
        if message.message_id in failing:
            raise LookupError(f"no account for {message.message_id}")
        handled.append(str(message.message_id))

    engine = create_engine(database)
    producer = KafkaMessageProducer(kafka)

    def consumer() -> InboxConsumer:
        return InboxConsumer(
            name=f"poison-{topic}",
            source=KafkaMessageSource(kafka, kafka.consumer_group, [topic]),
            handler=handler,
            sessions=create_session_factory(engine),
            dead_letters=producer,
            config=kafka,
        )

    async def run_until(member: InboxConsumer, condition: Any) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(member.run(stop))
        try:
            await wait_for(condition, 60, "the consumer")
        finally:
            stop.set()
            await task

    try:
        for message_id in ["before", "poison", "after"]:
            await producer.send(
                OutgoingMessage(topic=topic, key="k", value=b'{"x": 1}', headers={"ce_id": message_id})
            )

        async def two_handled_one_dead() -> bool:
            return handled == ["before", "after"] and member.dead_lettered == 1

        member = consumer()
        await run_until(member, two_handled_one_dead)
        [letter] = await read_topic(bootstrap, kafka.dlq_topic(topic), at_least=1, quiet=0.5)
        h = headers(letter)
        assert h["dlq_error_type"] == "LookupError"
        assert h["dlq_error_message"] == "no account for poison"
        assert h["dlq_original_topic"] == topic
        assert h["dlq_attempts"] == "3"
        assert int(h["dlq_original_offset"]) >= 0
        assert h["ce_id"] == "poison"

        failing.clear()  # the cause is fixed; replay with the worker's command
        replay = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "app.worker", "replay-dlq", topic],
            cwd=ROOT,
            env=worker_env(settings),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert replay.returncode == 0, replay.stderr
        assert "replayed 1 dead letters" in replay.stderr

        async def replayed_handled() -> bool:
            return "poison" in handled

        await run_until(consumer(), replayed_handled)
        assert handled == ["before", "after", "poison"]
    finally:
        await producer.stop()
        await engine.dispose()


async def test_the_worker_projects_the_activity_log_and_the_api_serves_it(
    database: str, bootstrap: str, topic: str, tmp_path: Path
) -> None:
    settings = settings_for(database, bootstrap, topic)
    async with api(settings) as http:
        with worker(settings, tmp_path / "worker.log", KAFKA_TOPIC_PARTITIONS="2"):
            [user_id] = await register(http, 1, f"act-{topic}")
            path = f"{USERS}/{user_id}"
            await http.patch(path, json={"name": "Renamed"})
            await http.post(f"{path}/deactivate")

            async def three() -> bool:
                return len((await http.get(f"{path}/activity")).json()["items"]) == 3

            await wait_for(three, 30, "three activity entries")
            items = (await http.get(f"{path}/activity")).json()["items"]
    assert [item["event_type"] for item in items] == [
        "users.user_registered",
        "users.user_profile_updated",
        "users.user_deactivated",
    ]
    assert items[1]["data"] == {"name": "Renamed"}
    # The worker created its topic and the dead-letter topic, as configured, before using them.
    dead_letters = settings.kafka.dlq_topic(topic)
    assert await partition_counts(bootstrap, [topic, dead_letters]) == {topic: 2, dead_letters: 2}


async def test_sigterm_finishes_commits_and_leaves_the_group(
    database: str, bootstrap: str, topic: str, tmp_path: Path
) -> None:
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    settings = settings_for(database, bootstrap, topic)
    log = tmp_path / "worker.log"
    async with api(settings) as http:
        with worker(settings, log) as process:
            ids = await register(http, 30, f"term-{topic}")

            async def projected() -> bool:
                return sum((await activity_counts(database, ids)).values()) == len(ids)

            await wait_for(projected, 60, "the activity log")
            process.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            code = await asyncio.to_thread(process.wait, 30)
            took = time.monotonic() - stopped_at
    assert code == 0, log.read_text()[-3000:]
    assert "worker stopped" in log.read_text()
    group = settings.kafka.group("users.activity-log")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        ends = await consumer.end_offsets(partitions)
        committed = {tp: await consumer.committed(tp) for tp in partitions}
    finally:
        await consumer.stop()
    assert sum(ends.values()) == len(ids)
    assert {tp: committed[tp] or 0 for tp in partitions} == ends  # nothing left uncommitted
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [description] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    _error, _group, state, _protocol_type, _protocol, members = description.groups[0][:6]
    assert (state, members) == ("Empty", []), "the worker left the group"
    print(f"\nworker stopped {took:.1f}s after SIGTERM")
