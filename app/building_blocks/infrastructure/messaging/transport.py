"""Transports: how messages leave and arrive. Kafka in the full mode, in-process when embedded.

Both sides are small protocols so the outbox relay and the inbox consumer are the same code in
both modes: only the transport changes, chosen by configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
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
    it message by message. An outage: the relay backs off and never parks a row for it.
    """


class MessageRefusedError(Exception):
    """The transport refuses this message for a reason that retrying cannot fix: too large, an
    invalid topic, not authorised, not serialisable. The relay parks the row at once."""


class MessageProducer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Deliver what was handed over if that can be done promptly, then release everything.

        Bounded: what cannot be delivered within the producer's own deadline is abandoned (its
        rows stay unpublished in the outbox and go out after a restart)."""
        ...

    async def enqueue(self, message: OutgoingMessage) -> Awaitable[None]:
        """Hand the message over (in call order) and return its acknowledgement to await.

        Awaiting the result raises if the transport did not acknowledge the message
        (:class:`MessageRefusedError` when it never will). Enqueuing many before awaiting any
        lets the transport batch them.
        """
        ...

    async def send(self, message: OutgoingMessage) -> None:
        """Return once the transport acknowledged the message; raise if it did not."""
        ...

    async def abandon_pending(self) -> None:
        """Give up every message handed over and not acknowledged yet: their acknowledgements
        fail and none of them may reach the broker after a later retry of the same rows, which
        would break their order. The next ``enqueue`` starts afresh."""
        ...


class PartitionsReassignedError(Exception):
    """The consumer group reassigned partitions while the source was paused.

    The messages in hand are stale: another member may own their partitions now. Drop them
    without committing; the next ``fetch`` starts again from the committed offsets.
    """


class MessageSource(Protocol):
    """A consumer-group subscription. ``fetch`` returns messages in order within a partition.

    While a message waits for a retry (its handler's database is down, say), the consumer calls
    ``pause``, then ``keep_alive`` every few seconds, then ``resume``: the group keeps the member
    and its partitions, no new records arrive meanwhile, and the next ``fetch`` continues right
    after the messages already fetched.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def fetch(self, timeout: float, max_records: int) -> list[ReceivedMessage]: ...

    async def commit(self, processed: Sequence[ReceivedMessage]) -> None:
        """Commit, per partition, the offset after the last of ``processed``."""
        ...

    def pause(self) -> None:
        """Take no new records from the assigned partitions until :meth:`resume`.

        Fetch positions stay right after the last message ``fetch`` returned, so the messages in
        hand, kept by the caller, remain the ones to handle next. No-op before ``start``.
        """
        ...

    async def keep_alive(self) -> None:
        """While paused, show the group this member is alive, without taking any record.

        Call it at least every few seconds (Kafka drops a member that did not poll for
        ``max.poll.interval.ms``). Raises :class:`PartitionsReassignedError` when the group
        reassigned partitions since :meth:`pause`.
        """
        ...

    def resume(self) -> None:
        """Take records again after :meth:`pause`, from where the messages in hand end."""
        ...


class InProcessBroker:
    """A single-partition, in-memory log per topic with consumer-group offsets.

    Lives as long as the process, for the embedded mode, where the relay and the consumers share
    the API process. A message counts as delivered (its acknowledgement resolves) only once every
    consumer group subscribed to its topic has committed past it, that is, handled it in its own
    transaction. The relay marks an outbox row published only then, so a crash loses nothing:
    what the consumers had not handled is still unpublished and goes out again after a restart
    (the inbox drops what they had).
    """

    def __init__(self) -> None:
        self._logs: dict[str, list[ReceivedMessage]] = defaultdict(list)
        self._committed: dict[tuple[str, str], int] = {}
        self._groups: dict[str, set[str]] = defaultdict(set)  # topic -> subscribed groups
        self._unacknowledged: dict[str, deque[tuple[int, asyncio.Future[None]]]] = defaultdict(deque)
        self._changed = asyncio.Condition()

    async def append(self, message: OutgoingMessage) -> int:
        """Add ``message`` to its topic's log; its offset."""
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
            return len(log) - 1

    async def deliver(self, message: OutgoingMessage) -> asyncio.Future[None]:
        """Append ``message``; the future resolves once every subscribed group handled it."""
        offset = await self.append(message)
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._low_watermark(message.topic) > offset:  # nobody subscribes to this topic
            delivered.set_result(None)
        else:
            self._unacknowledged[message.topic].append((offset, delivered))
        return delivered

    def messages(self, topic: str) -> list[ReceivedMessage]:
        return list(self._logs[topic])

    def producer(self, *, wait_for_consumers: bool = True) -> MessageProducer:
        """A producer into this broker. Its acknowledgements wait for every subscribed consumer
        group to handle the message, which is what makes the relay lossless in process; with
        ``wait_for_consumers=False`` they come on append (for examples and tools that send while
        no consumer runs, such as a dead-letter replay)."""
        return InProcessProducer(self, wait_for_consumers=wait_for_consumers)

    def source(self, group: str, topics: Sequence[str]) -> MessageSource:
        for topic in topics:
            self._groups[topic].add(group)
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

    def _low_watermark(self, topic: str) -> int:
        """The offset every subscribed group has committed up to (all of the log if none)."""
        groups = self._groups.get(topic)
        if not groups:
            return len(self._logs[topic])
        return min(self._committed.get((group, topic), 0) for group in groups)

    def _commit(self, group: str, topic: str, offset: int) -> None:
        self._committed[(group, topic)] = max(offset, self._committed.get((group, topic), 0))
        waiting = self._unacknowledged[topic]
        handled = self._low_watermark(topic)
        while waiting and waiting[0][0] < handled:
            _offset, delivered = waiting.popleft()
            if not delivered.done():
                delivered.set_result(None)


class InProcessProducer:
    """Hands messages to the in-process broker; acknowledged once every consumer handled them."""

    system = "in-process"  # for spans' messaging.system

    def __init__(self, broker: InProcessBroker, *, wait_for_consumers: bool = True) -> None:
        self._broker = broker
        self._wait_for_consumers = wait_for_consumers
        self._pending: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await self.abandon_pending()

    async def enqueue(self, message: OutgoingMessage) -> Awaitable[None]:
        if not self._wait_for_consumers:
            await self._broker.append(message)
            appended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            appended.set_result(None)
            return appended
        delivered = await self._broker.deliver(message)
        if not delivered.done():
            self._pending.add(delivered)
            delivered.add_done_callback(self._pending.discard)
        return delivered

    async def send(self, message: OutgoingMessage) -> None:
        await (await self.enqueue(message))

    async def abandon_pending(self) -> None:
        """The messages stay in the log (consumers still handle them); only the waiting ends:
        their rows are sent again later and the inbox drops the second copy."""
        for delivered in list(self._pending):
            if not delivered.done():
                abandoned = TransportUnavailableError("abandoned before the consumers handled it")
                delivered.set_exception(abandoned)
                delivered.exception()  # retrieved: nobody may be awaiting it any more
        self._pending.clear()


class InProcessSource:
    system = "in-process"

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

    async def lag(self) -> dict[str, int]:
        return {
            topic: len(self._broker._logs[topic])
            - self._positions.get(topic, self._broker._committed.get((self._group, topic), 0))
            for topic in self._topics
        }

    async def commit(self, processed: Sequence[ReceivedMessage]) -> None:
        for message in processed:
            self._broker._commit(self._group, message.topic, message.offset + 1)

    # One member per group and positions in memory: nothing arrives that was not fetched, and
    # nothing can be reassigned, so pausing needs no bookkeeping.
    def pause(self) -> None:
        pass

    async def keep_alive(self) -> None:
        pass

    def resume(self) -> None:
        pass
