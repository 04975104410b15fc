"""aiokafka implementations of the transport protocols."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    NodeNotReadyError,
)
from aiokafka.structs import OffsetAndMetadata

from app.building_blocks.infrastructure.messaging.config import KafkaConfig
from app.building_blocks.infrastructure.messaging.envelope import (
    OutgoingMessage,
    ReceivedMessage,
    decode_headers,
    encode_headers,
)
from app.building_blocks.infrastructure.messaging.transport import TransportUnavailableError

_UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError, KafkaUnavailableError, NodeNotReadyError, OSError)

logger = logging.getLogger("app.messaging.kafka")


class KafkaMessageProducer:
    """An idempotent producer (acks=all) that starts lazily and is replaced after a failure.

    Replacing it after a failed send gives the next attempt a fresh producer id and sequence
    numbers, so a broker outage never leaves the relay stuck on out-of-order sequence errors.
    """

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._discarding: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._current()

    async def _current(self) -> AIOKafkaProducer:
        if self._producer is not None:  # the hot path: no lock per message
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(**self._config.producer_options())
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _discard(self, broken: AIOKafkaProducer) -> None:
        async with self._lock:
            replaced = self._producer is not broken
            if not replaced:
                self._producer = None
        if replaced:  # another send already discarded it
            return
        try:
            await broken.stop()
        except Exception:  # it is already broken; stopping is best effort
            logger.debug("stopping a failed producer raised", exc_info=True)

    async def stop(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def enqueue(self, message: OutgoingMessage) -> Awaitable[None]:
        producer = self._producer
        if producer is None:
            try:
                producer = await self._current()
            except _UNREACHABLE as error:
                raise TransportUnavailableError(f"Kafka is unreachable: {error}") from error
        try:
            delivery = await producer.send(
                message.topic,
                message.value,
                key=message.key.encode(),
                headers=encode_headers(message.headers),
            )
        except _UNREACHABLE as error:
            await self._discard(producer)
            raise TransportUnavailableError(f"Kafka is unreachable: {error}") from error
        except Exception:
            await self._discard(producer)
            raise
        delivery.add_done_callback(lambda done: self._on_delivery(producer, done))
        return cast(Awaitable[None], delivery)

    def _on_delivery(self, producer: AIOKafkaProducer, delivery: asyncio.Future[Any]) -> None:
        if not delivery.cancelled() and delivery.exception() is not None:
            task = asyncio.ensure_future(self._discard(producer))
            self._discarding.add(task)
            task.add_done_callback(self._discarding.discard)

    async def send(self, message: OutgoingMessage) -> None:
        await (await self.enqueue(message))


class KafkaMessageSource:
    """A consumer-group member with manual commits: offsets move only past processed messages."""

    def __init__(self, config: KafkaConfig, group: str, topics: Sequence[str]) -> None:
        self._config = config
        self._group = group
        self._topics = list(topics)
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            *self._topics,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._config.connection_options(),
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()  # leaves the group

    async def fetch(self, timeout: float, max_records: int) -> list[ReceivedMessage]:
        assert self._consumer is not None, "start() first"
        batches = await self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        return [
            ReceivedMessage(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key.decode("utf-8", "replace") if record.key is not None else None,
                value=record.value or b"",
                headers=decode_headers(record.headers),
            )
            for records in batches.values()
            for record in records
        ]

    async def commit(self, processed: Sequence[ReceivedMessage]) -> None:
        assert self._consumer is not None, "start() first"
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for message in processed:
            offsets[TopicPartition(message.topic, message.partition)] = OffsetAndMetadata(
                message.offset + 1, ""
            )
        if offsets:
            await self._consumer.commit(offsets)
