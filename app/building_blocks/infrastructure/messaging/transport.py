"""Transports: how messages leave and arrive. Kafka in the full mode, in-process when embedded.

Both sides are small protocols so the outbox relay and the inbox consumer are the same code in
both modes: only the transport changes, chosen by configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from typing import Protocol

from app.building_blocks.infrastructure.messaging.envelope import (
    OutgoingMessage,
    ReceivedMessage,
)

logger = logging.getLogger("app.messaging")


class TransportUnavailableError(ConnectionError):
    """The transport cannot take any message right now (broker unreachable, no metadata).

    Raised by ``enqueue`` so that callers stop offering the rest of a batch instead of failing
    it message by message.
    """


class MessageProducer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def enqueue(self, message: OutgoingMessage) -> Awaitable[None]:
        """Hand the message over (in call order) and return its acknowledgement to await.

        Awaiting the result raises if the transport did not acknowledge the message. Enqueuing
        many before awaiting any lets the transport batch them.
        """
        ...

    async def send(self, message: OutgoingMessage) -> None:
        """Return once the transport acknowledged the message; raise if it did not."""
        ...


class MessageSource(Protocol):
    """A consumer-group subscription. ``fetch`` returns messages in order within a partition."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def fetch(self, timeout: float, max_records: int) -> list[ReceivedMessage]: ...

    async def commit(self, processed: Sequence[ReceivedMessage]) -> None:
        """Commit, per partition, the offset after the last of ``processed``."""
        ...


class InProcessBroker:
    """A single-partition, in-memory log per topic with consumer-group offsets.

    Lives as long as the process, for the embedded mode, where the relay and the consumers share
    the API process. The outbox keeps every event until it reaches this broker; what the broker
    holds is lost if the process dies before the consumers took it (a clean stop drains it
    first, see :meth:`pending`). That is the embedded mode's trade: a first look, not production.
    """

    def __init__(self) -> None:
        self._logs: dict[str, list[ReceivedMessage]] = defaultdict(list)
        self._committed: dict[tuple[str, str], int] = {}
        self._subscriptions: set[tuple[str, str]] = set()
        self._changed = asyncio.Condition()

    async def append(self, message: OutgoingMessage) -> None:
        async with self._changed:
            log = self._logs[message.topic]
            log.append(
                ReceivedMessage(
                    topic=message.topic,
                    partition=0,
                    offset=len(log),
                    key=message.key,
                    value=message.value,
                    headers=dict(message.headers),
                )
            )
            self._changed.notify_all()

    def pending(self) -> int:
        """Messages that some subscribed group has not committed yet."""
        return sum(
            len(self._logs[topic]) - self._committed.get((group, topic), 0)
            for group, topic in self._subscriptions
        )

    def messages(self, topic: str) -> list[ReceivedMessage]:
        return list(self._logs[topic])

    def producer(self) -> MessageProducer:
        return InProcessProducer(self)

    def source(self, group: str, topics: Sequence[str]) -> MessageSource:
        self._subscriptions.update((group, topic) for topic in topics)
        return InProcessSource(self, group, topics)

    async def _fetch(
        self, group: str, topics: Sequence[str], positions: dict[str, int], timeout: float, max_records: int
    ) -> list[ReceivedMessage]:
        def available() -> list[ReceivedMessage]:
            found: list[ReceivedMessage] = []
            for topic in topics:
                start = positions.setdefault(topic, self._committed.get((group, topic), 0))
                found += self._logs[topic][start : start + max_records - len(found)]
            return found

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: bool(available())), timeout)
            except TimeoutError:
                return []
            batch = available()
        for message in batch:
            positions[message.topic] = message.offset + 1
        return batch

    def _commit(self, group: str, topic: str, offset: int) -> None:
        self._committed[(group, topic)] = max(offset, self._committed.get((group, topic), 0))


class InProcessProducer:
    def __init__(self, broker: InProcessBroker) -> None:
        self._broker = broker

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def enqueue(self, message: OutgoingMessage) -> Awaitable[None]:
        await self._broker.append(message)
        return _acknowledged()

    async def send(self, message: OutgoingMessage) -> None:
        await self._broker.append(message)


async def _acknowledged() -> None:
    """The in-process broker acknowledges on append."""


class InProcessSource:
    def __init__(self, broker: InProcessBroker, group: str, topics: Sequence[str]) -> None:
        self._broker = broker
        self._group = group
        self._topics = list(topics)
        self._positions: dict[str, int] = {}

    async def start(self) -> None:
        self._positions.clear()  # resume from the committed offsets, like a group member

    async def stop(self) -> None:
        pass

    async def fetch(self, timeout: float, max_records: int) -> list[ReceivedMessage]:
        return await self._broker._fetch(self._group, self._topics, self._positions, timeout, max_records)

    async def commit(self, processed: Sequence[ReceivedMessage]) -> None:
        for message in processed:
            self._broker._commit(self._group, message.topic, message.offset + 1)
