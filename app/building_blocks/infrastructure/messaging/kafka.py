"""aiokafka implementations of the transport protocols."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    MessageSizeTooLargeError,
    NodeNotReadyError,
    PolicyViolationError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)
from aiokafka.structs import OffsetAndMetadata

from app.building_blocks.infrastructure.messaging.config import KafkaConfig
from app.building_blocks.infrastructure.messaging.envelope import (
    OutgoingMessage,
    ReceivedMessage,
    decode_headers,
    encode_headers,
)
from app.building_blocks.infrastructure.messaging.transport import (
    MessageRefusedError,
    PartitionsReassignedError,
    TransportUnavailableError,
)

_UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError, KafkaUnavailableError, NodeNotReadyError, OSError)
# The broker (or the client, before sending) refuses the record itself: retrying cannot help.
_REFUSED = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    InvalidTopicError,
    TopicAuthorizationFailedError,
    CorruptRecordException,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
    PolicyViolationError,
)

logger = logging.getLogger("app.messaging.kafka")


def _refused(error: BaseException) -> MessageRefusedError:
    refusal = MessageRefusedError(f"{type(error).__name__}: {error}")
    refusal.__cause__ = error
    return refusal


class KafkaMessageProducer:
    """An idempotent producer (acks=all) that starts lazily and is replaced after a failure.

    Replacing it after a failed send gives the next attempt a fresh producer id and sequence
    numbers, so a broker outage never leaves the relay stuck on out-of-order sequence errors.
    With idempotence aiokafka never expires a batch: while the broker is away a send waits for
    ever. :meth:`abandon_pending` is how the relay bounds that wait: it fails the pending
    acknowledgements and drops the current producer with everything it queued (nothing of it may
    land after the rows are retried), closing it in the background. ``stop`` waits
    ``stop_timeout`` seconds at most for what is in hand.
    """

    system = "kafka"  # for spans' messaging.system

    def __init__(self, config: KafkaConfig, *, stop_timeout: float = 5.0) -> None:
        self._config = config
        self._stop_timeout = stop_timeout
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Future[None]] = set()
        self._closing: set[asyncio.Task[None]] = set()

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

    async def _retire(self, producer: AIOKafkaProducer | None) -> bool:
        """Stop handing new messages to ``producer``; whether it was the current one."""
        async with self._lock:
            current = producer is not None and self._producer is producer
            if current:
                self._producer = None
        return current

    def _close_later(self, producer: AIOKafkaProducer, *, abandon: bool) -> None:
        task = asyncio.create_task(self._close(producer, abandon=abandon))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, producer: AIOKafkaProducer, *, abandon: bool) -> None:
        """Stop ``producer`` within a bound: let its queued batches go out for a while (unless
        abandoned); if they cannot, abandon them, so that stopping never waits on an absent
        broker and nothing queued can be delivered after the relay retried the rows."""
        if not abandon:
            try:
                async with asyncio.timeout(self._stop_timeout):
                    await producer.flush()
            except (Exception, TimeoutError):
                abandon = True
        if abandon:
            await self._abandon(producer)
            return
        try:
            async with asyncio.timeout(self._config.request_timeout_ms / 1000 + 1):
                await producer.stop()
        except (Exception, TimeoutError):  # stopping a replaced producer is best effort
            logger.debug("stopping a replaced producer raised", exc_info=True)

    async def _abandon(self, producer: AIOKafkaProducer) -> None:
        """Stop sending and close the connections without waiting for the queued batches.

        aiokafka has no public way to drop what it queued: ``stop()`` waits for every batch, for
        ever while the broker is away, and failing the batches behind the sender's back races it.
        So the sender task is stopped first (it waits for requests already on the wire, each
        bounded by the request timeout), then the client closes; the queued batches are never
        sent, and their acknowledgements were failed by :meth:`_fail_pending`.
        """
        sender = getattr(producer, "_sender", None)
        try:
            async with asyncio.timeout(self._config.request_timeout_ms / 1000 + 1):
                if sender is not None:
                    await sender.close()
                await producer.client.close()
        except (Exception, TimeoutError):
            logger.debug("abandoning a producer raised", exc_info=True)
        producer._closed = True  # as stop() would: nothing queued will be sent

    async def stop(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await self._close(producer, abandon=False)
            self._fail_pending("the producer stopped before the broker acknowledged")
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=self._stop_timeout)

    async def abandon_pending(self) -> None:
        producer = self._producer
        self._fail_pending("abandoned: no acknowledgement in time")
        if await self._retire(producer):
            assert producer is not None
            self._close_later(producer, abandon=True)

    def _fail_pending(self, reason: str) -> None:
        for ack in list(self._pending):
            if not ack.done():
                ack.set_exception(TransportUnavailableError(reason))
                ack.exception()  # retrieved: whoever awaited it has given up
        self._pending.clear()

    async def enqueue(self, message: OutgoingMessage) -> Awaitable[None]:
        producer = self._producer
        if producer is None:
            try:
                producer = await self._current()
            except _UNREACHABLE as error:
                raise TransportUnavailableError(f"Kafka is unreachable: {error}") from error
        try:
            key, headers = message.key.encode(), encode_headers(message.headers)
        except (TypeError, ValueError) as error:  # UnicodeError is a ValueError
            raise MessageRefusedError(f"cannot serialise the record: {error}") from error
        try:
            delivery = await producer.send(message.topic, message.value, key=key, headers=headers)
        except _REFUSED as error:  # checked by the client before queueing: nothing else affected
            raise _refused(error) from error
        except _UNREACHABLE as error:
            if await self._retire(producer):
                self._close_later(producer, abandon=False)
            raise TransportUnavailableError(f"Kafka is unreachable: {error}") from error
        except Exception:
            if await self._retire(producer):
                self._close_later(producer, abandon=False)
            raise
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.add(ack)
        ack.add_done_callback(self._pending.discard)
        delivery.add_done_callback(lambda done: self._on_delivery(producer, ack, done))
        return ack

    def _on_delivery(self, producer: AIOKafkaProducer, ack: asyncio.Future[None], delivery: Any) -> None:
        error = None if delivery.cancelled() else delivery.exception()  # retrieved, even if unused
        if ack.done():  # abandoned meanwhile
            return
        if delivery.cancelled():
            ack.set_exception(TransportUnavailableError("the send was cancelled"))
        elif error is None:
            ack.set_result(None)
        elif isinstance(error, _REFUSED):
            ack.set_exception(_refused(error))
        elif isinstance(error, _UNREACHABLE) or (isinstance(error, KafkaError) and error.retriable):
            ack.set_exception(TransportUnavailableError(f"Kafka did not acknowledge: {error}"))
        else:
            ack.set_exception(error)
        if error is not None or delivery.cancelled():
            # A failed batch may leave the producer's sequence numbers behind: replace it.
            task = asyncio.ensure_future(self._replace(producer))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _replace(self, producer: AIOKafkaProducer) -> None:
        if await self._retire(producer):
            await self._close(producer, abandon=False)

    async def send(self, message: OutgoingMessage) -> None:
        await (await self.enqueue(message))


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Counts the partition assignments the group gives this member (one per rebalance)."""

    def __init__(self) -> None:
        self.count = 0

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.count += 1


class KafkaMessageSource:
    """A consumer-group member with manual commits: offsets move only past processed messages.

    Pausing pauses every assigned partition: aiokafka drops what it prefetched for them and
    keeps each position right after the last record ``fetch`` returned. ``keep_alive`` polls
    the paused partitions only, which returns nothing but restarts the coordinator's
    ``max_poll_interval_ms`` clock, so a long outage does not get the member evicted. The group
    protocol is eager: a rebalance revokes every partition and assigns them afresh from the
    committed offsets, which ``keep_alive`` reports as :class:`PartitionsReassignedError`.
    """

    system = "kafka"

    def __init__(
        self,
        config: KafkaConfig,
        group: str,
        topics: Sequence[str],
        *,
        start_at: Literal["earliest", "latest"] = "earliest",
    ) -> None:
        self._config = config
        self._group = group
        self._topics = list(topics)
        self._start_at = start_at  # where a group without committed offsets begins
        self._consumer: AIOKafkaConsumer | None = None
        self._assignments = _Assignments()
        self._paused_at: int | None = None  # the assignment count when paused

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset=self._start_at,
            **self._config.connection_options(),
        )
        consumer.subscribe(self._topics, listener=self._assignments)
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._paused_at = None
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

    async def lag(self) -> dict[str, int]:
        """Messages between this member's positions and the high watermarks, by topic (for the
        partitions it holds whose high watermark a fetch has told it)."""
        consumer = self._consumer
        behind: dict[str, int] = {}
        if consumer is None:
            return behind
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue
            try:
                position = await consumer.position(partition)
            except Exception as error:  # reassigned meanwhile: the next fetch tells again
                logger.debug("lag of %s unknown: %s", partition, error)
                continue
            behind[partition.topic] = behind.get(partition.topic, 0) + max(0, highwater - position)
        return behind

    async def commit(self, processed: Sequence[ReceivedMessage]) -> None:
        assert self._consumer is not None, "start() first"
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for message in processed:
            offsets[TopicPartition(message.topic, message.partition)] = OffsetAndMetadata(
                message.offset + 1, ""
            )
        if offsets:
            await self._consumer.commit(offsets)

    def pause(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        consumer.pause(*consumer.assignment())
        if self._paused_at is None:
            self._paused_at = self._assignments.count

    async def keep_alive(self) -> None:
        consumer = self._consumer
        if consumer is None or self._paused_at is None:
            return
        assigned = consumer.assignment()
        consumer.pause(*assigned)  # partitions assigned since pause() arrive unpaused
        if assigned:
            polled = await consumer.getmany(*assigned, timeout_ms=0)
            # Records come back only when a rebalance finished during the call (the new
            # assignment is not paused): put their positions back so that none is skipped.
            for partition, records in polled.items():
                if records:
                    consumer.seek(partition, records[0].offset)
                    consumer.pause(partition)
        if self._assignments.count != self._paused_at:
            raise PartitionsReassignedError(
                f"the group reassigned partitions of {', '.join(self._topics)} while paused"
            )

    def resume(self) -> None:
        self._paused_at = None
        consumer = self._consumer
        if consumer is not None:
            consumer.resume(*consumer.paused())
