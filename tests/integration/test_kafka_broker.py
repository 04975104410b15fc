"""The real Kafka broker (kafka/broker.sh): idempotent produce, consumer groups with manual commits,
and messages and group offsets that survive a broker restart."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from tests.kafka_service import broker_is_local, broker_script


def idempotent_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=10_000
    )


def group_consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10_000,
    )


async def receive(consumer: AIOKafkaConsumer, count: int, timeout: float = 20) -> list[ConsumerRecord]:
    """The next ``count`` records, in the order the consumer hands them out."""
    records: list[ConsumerRecord] = []
    async with asyncio.timeout(timeout):
        while len(records) < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=count - len(records))
            for batch in batches.values():
                records.extend(batch)
    return records


async def test_idempotent_produce_then_group_consume_with_manual_commit(bootstrap: str, topic: str) -> None:
    sent: dict[bytes, tuple[int, int]] = {}
    producer = idempotent_producer(bootstrap)
    async with asyncio.timeout(20):
        await producer.start()
        try:
            for index in range(9):
                value = f"message-{index}".encode()
                metadata = await producer.send_and_wait(topic, value, key=f"key-{index}".encode())
                sent[value] = (metadata.partition, metadata.offset)
            # Auto-created with the broker's num.partitions (kafka/server.properties)
            assert await producer.partitions_for(topic) == {0, 1, 2}
        finally:
            await producer.stop()

    group = f"test-group-{uuid.uuid4().hex[:12]}"
    consumer = group_consumer(bootstrap, topic, group)
    await consumer.start()
    try:
        records = await receive(consumer, len(sent))
        assert {record.value: (record.partition, record.offset) for record in records} == sent
        for partition in {partition for partition, _ in sent.values()}:
            offsets = [record.offset for record in records if record.partition == partition]
            assert offsets == sorted(offsets)  # in order within a partition, nothing twice

        await consumer.commit()
        for partition in range(3):
            expected = max((offset + 1 for p, offset in sent.values() if p == partition), default=None)
            assert await consumer.committed(TopicPartition(topic, partition)) == expected
    finally:
        await consumer.stop()


async def test_unconsumed_messages_and_group_offsets_survive_a_broker_restart(
    bootstrap: str, topic: str
) -> None:
    if not await broker_is_local():
        pytest.skip("restarts only the broker kafka/broker.sh runs (KAFKA_BOOTSTRAP_SERVERS is another)")
    group = f"test-group-{uuid.uuid4().hex[:12]}"
    key = b"same-partition"

    producer = idempotent_producer(bootstrap)
    await producer.start()
    try:
        first = await producer.send_and_wait(topic, b"consumed-before", key=key)
        pending = await producer.send_and_wait(topic, b"pending-across-restart", key=key)
    finally:
        await producer.stop()
    assert (pending.partition, pending.offset) == (first.partition, first.offset + 1)
    partition = TopicPartition(topic, first.partition)

    consumer = group_consumer(bootstrap, topic, group)
    await consumer.start()
    try:
        [record] = await receive(consumer, 1)
        assert record.value == b"consumed-before"
        await consumer.commit({partition: record.offset + 1})  # only the first one is done
    finally:
        await consumer.stop()

    code, output = await broker_script("restart")
    assert code == 0, output
    stopped = re.search(r"stopped \(pid (\d+)", output)
    started = re.search(r"up on \S+ \(pid (\d+)", output)
    assert stopped, output
    assert started, output
    assert stopped[1] != started[1], output

    consumer = group_consumer(bootstrap, topic, group)
    producer = idempotent_producer(bootstrap)
    async with asyncio.timeout(40):
        await consumer.start()
        try:
            assert await consumer.committed(partition) == first.offset + 1
            [record] = await receive(consumer, 1)
            assert (record.value, record.offset) == (b"pending-across-restart", pending.offset)

            await producer.start()
            try:
                after = await producer.send_and_wait(topic, b"produced-after", key=key)
            finally:
                await producer.stop()
            [record] = await receive(consumer, 1)
            assert (record.value, record.offset) == (b"produced-after", after.offset)
            await consumer.commit()
            assert await consumer.committed(partition) == after.offset + 1
        finally:
            await consumer.stop()
