"""Consuming integration events: inbox, retries that tell poison from outages, dead letters.

For each message, in partition order:

1. one database transaction: claim the message in the inbox (``ON CONFLICT DO NOTHING``); only
   when the claim is new, run the handler; commit;
2. on failure, ask ``classify`` (:func:`~.failures.classify_failure` by default) what failed:

   - **poison** (the message: invalid payload, a domain error, a handler bug): retry with
     exponential backoff up to ``retry_attempts`` times, each attempt in a fresh transaction,
     then produce the message to ``<topic>.dlq`` with the error in headers;
   - **an outage** (the consumer's own database is down, locked or out of connections): keep
     the message, pause the source and retry it with backoff capped at ``retry_max_backoff_ms``
     for as long as the outage lasts. It never counts as an attempt and is never dead-lettered;
   - **refused** (the handler raised ``MessageRefusedError``: retrying cannot help, as when a
     webhook endpoint answers 400): dead-lettered at once, with the handler's headers;

3. commit the offset after the messages that were handled or dead-lettered, never past one that
   was not. If even the dead-letter topic cannot be written, consumption stops and restarts
   from the last committed offset.

Every wait before a retry watches ``stop``: a stopping consumer leaves the message in hand
uncommitted, so it is delivered again after the restart. Otherwise stopping (SIGTERM) finishes
the batch in hand, commits, and leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.building_blocks.infrastructure.messaging import inbox
from app.building_blocks.infrastructure.messaging.config import KafkaConfig
from app.building_blocks.infrastructure.messaging.envelope import OutgoingMessage, ReceivedMessage
from app.building_blocks.infrastructure.messaging.failures import FailureKind, classify_failure
from app.building_blocks.infrastructure.messaging.tracing import consume_span
from app.building_blocks.infrastructure.messaging.transport import (
    MessageProducer,
    MessageSource,
    PartitionsReassignedError,
)
from app.building_blocks.infrastructure.messaging.waiting import unless_stopped, wait_for_event
from app.building_blocks.observability.metrics import (
    CONSUMER_LAG,
    CONSUMER_MESSAGES,
    CONSUMER_PAUSED,
    CONSUMER_RETRIES,
)

logger = logging.getLogger("app.messaging.consumer")

MessageHandler = Callable[[ReceivedMessage, AsyncSession], Awaitable[None]]
FailureClassifier = Callable[[BaseException], FailureKind]
Outcome = Literal["handled", "duplicate", "dead-lettered", "stopped"]

FETCH_TIMEOUT = 0.5
MAX_RECORDS = 200
RESTART_DELAY = 1.0
INBOX_PURGE_INTERVAL = 3600.0
INBOX_PURGE_RETRY = 60.0  # after a purge failed on an outage
KEEP_ALIVE_INTERVAL = 5.0  # while paused, tell the group this member lives at least this often
OUTAGE_LOG_INTERVAL = 10.0  # at most one "still unavailable" line per this many seconds
MIN_OUTAGE_BACKOFF = 0.05  # even with KAFKA_RETRY_BACKOFF_MS=0, an outage is not retried in a spin


class MalformedMessageError(ValueError):
    """The message cannot be handled by any retry: no id, or a value that is not a JSON object."""


def dead_letter(
    message: ReceivedMessage, *, topic: str, consumer: str, error: BaseException, attempts: int
) -> OutgoingMessage:
    headers = {name: value for name, value in message.headers.items() if not name.startswith("dlq_")}
    headers.update(
        {
            "dlq_error_type": type(error).__name__,
            "dlq_error_message": str(error)[:1000],
            "dlq_original_topic": message.topic,
            "dlq_original_partition": str(message.partition),
            "dlq_original_offset": str(message.offset),
            "dlq_attempts": str(attempts),
            "dlq_consumer": consumer,
            "dlq_failed_at": datetime.now(UTC).isoformat(),
            **getattr(error, "dlq_headers", {}),
        }
    )
    return OutgoingMessage(topic=topic, key=message.key or "", value=message.value, headers=headers)


@dataclass
class _Outage:
    """An outage in progress: when it began, with what, and how often it was retried."""

    error: str
    started: float = field(default_factory=time.monotonic)
    failures: int = 1
    logged: float = field(default_factory=time.monotonic)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


class InboxConsumer:
    """One consumer-group member running ``handler`` for every message of ``source``.

    ``name`` identifies the consumer in the inbox: two consumers of the same topic keep separate
    records, so each handles every message once. ``classify`` tells poison from outages; pass a
    function that wraps :func:`~.failures.classify_failure` to teach it your own dependencies.
    """

    def __init__(
        self,
        *,
        name: str,
        source: MessageSource,
        handler: MessageHandler,
        sessions: async_sessionmaker[AsyncSession],
        dead_letters: MessageProducer,
        config: KafkaConfig,
        classify: FailureClassifier = classify_failure,
        shutdown_grace: float = 5.0,
    ) -> None:
        self.name = name
        self.source = source
        self.handler = handler
        self.sessions = sessions
        self.dead_letters = dead_letters
        self.config = config
        self.classify = classify
        self.shutdown_grace = shutdown_grace  # once stopping, the longest wait for the broker
        self.handled = 0
        self.duplicates = 0
        self.dead_lettered = 0
        CONSUMER_PAUSED.labels(name).set(0)  # a series from the start: a panel shows 0, not "No data"
        self.outage_retries = 0  # attempts that failed on an outage, over the consumer's life
        self._outage: _Outage | None = None
        self._next_inbox_purge = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if not await unless_stopped(self.source.start(), stop, 0):
                    return  # stopped while the broker was not there to join
            except Exception as error:
                logger.warning("%s: cannot start consuming (%s); retrying", self.name, error)
                await wait_for_event(stop, RESTART_DELAY)
                continue
            try:
                await self._consume(stop)
            except Exception:
                logger.exception("%s: consumption interrupted; restarting from the last commit", self.name)
                await wait_for_event(stop, RESTART_DELAY)
            finally:
                # Leaving the group waits for the broker; never longer than the grace.
                with contextlib.suppress(Exception):
                    await unless_stopped(self.source.stop(), stop, self.shutdown_grace)

    async def _consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            messages = await self.source.fetch(FETCH_TIMEOUT, MAX_RECORDS)
            await self._report_lag()
            done: list[ReceivedMessage] = []
            try:
                for message in messages:
                    if await self.process(message, stop=stop) == "stopped":
                        break
                    done.append(message)
            except PartitionsReassignedError as error:
                # Another member may own these partitions now: committing could move its offsets
                # back. What was handled is in the inbox and will be skipped when read again.
                logger.warning(
                    "%s: %s; the %d messages in hand will be read again from the committed offsets",
                    self.name,
                    error,
                    len(messages),
                )
                done.clear()
            finally:
                # With the broker away a commit waits for it; a stopping consumer does not (the
                # messages come again after the restart, and the inbox knows them).
                await unless_stopped(self.source.commit(done), stop, self.shutdown_grace)
            if not stop.is_set():  # a stopping consumer does not wait for the database
                await self._purge_inbox()

    async def process(self, message: ReceivedMessage, *, stop: asyncio.Event | None = None) -> Outcome:
        """Handle one message; return ``handled``, ``duplicate``, ``dead-lettered`` or ``stopped``.

        Poison is retried up to ``retry_attempts`` times, then dead-lettered. An outage is
        retried, with the source paused, until it ends. ``stopped`` means that ``stop`` was set
        while the message waited for a retry: it was not handled, and its offset must not be
        committed. Raises when the message could be neither handled nor dead-lettered, and
        :class:`PartitionsReassignedError` when the group moved partitions while it waited.
        """
        if stop is None:
            stop = asyncio.Event()  # never set: retry an outage for as long as it lasts
        system = getattr(self.source, "system", "unknown")
        with consume_span(message, consumer=self.name, system=system) as span:
            outcome = await self._process(message, stop)
            span.set_attribute("messaging.outcome", outcome)
        if outcome != "stopped":
            CONSUMER_MESSAGES.labels(self.name, message.topic, outcome.replace("-", "_")).inc()
        return outcome

    async def _process(self, message: ReceivedMessage, stop: asyncio.Event) -> Outcome:
        try:
            message_id = _message_id(message)
        except MalformedMessageError as malformed:
            return await self._dead_letter(message, malformed, 0, stop)
        attempts = 0  # poison attempts; outages do not count
        paused = False
        try:
            while True:
                try:
                    fresh = await self._handle_once(message, message_id)
                except Exception as failure:
                    kind = self._kind(failure)
                    if kind is FailureKind.REFUSED:
                        self._outage_over()
                        return await self._dead_letter(message, failure, attempts + 1, stop)
                    if kind is FailureKind.OUTAGE:
                        CONSUMER_RETRIES.labels(self.name, message.topic, "outage").inc()
                        delay = self._outage_continues(message, failure)
                    else:
                        self._outage_over()
                        attempts += 1
                        if attempts >= self.config.retry_attempts:
                            return await self._dead_letter(message, failure, attempts, stop)
                        CONSUMER_RETRIES.labels(self.name, message.topic, "poison").inc()
                        delay = self._backoff(attempts, self.config.retry_backoff_ms / 1000)
                        logger.info(
                            "%s: %s failed (%s), attempt %d of %d",
                            self.name,
                            message_id,
                            failure,
                            attempts,
                            self.config.retry_attempts,
                        )
                    if not paused:
                        self.source.pause()
                        CONSUMER_PAUSED.labels(self.name).set(1)
                        paused = True
                    if await self._wait(stop, delay):
                        logger.info(
                            "%s: stopping; %s stays uncommitted, for redelivery", self.name, message_id
                        )
                        return "stopped"
                    continue
                if paused:
                    await self.source.keep_alive()  # are the partitions still ours?
                self._outage_over()
                if fresh:
                    self.handled += 1
                    return "handled"
                self.duplicates += 1
                return "duplicate"
        finally:
            if paused:
                self.source.resume()
                CONSUMER_PAUSED.labels(self.name).set(0)

    async def _report_lag(self) -> None:
        lag = getattr(self.source, "lag", None)
        if lag is not None:
            for topic, behind in (await lag()).items():
                CONSUMER_LAG.labels(self.name, topic).set(behind)

    async def _handle_once(self, message: ReceivedMessage, message_id: str) -> bool:
        async with self.sessions() as session, session.begin():
            if self.config.enable_inbox and not await inbox.claim(session, message_id, self.name):
                return False
            await self.handler(message, session)
        return True

    async def _dead_letter(
        self, message: ReceivedMessage, error: BaseException, attempts: int, stop: asyncio.Event
    ) -> Outcome:
        topic = self.config.dlq_topic(message.topic)
        letter = dead_letter(message, topic=topic, consumer=self.name, error=error, attempts=attempts)
        if not await unless_stopped(self.dead_letters.send(letter), stop, self.shutdown_grace):
            return "stopped"  # the broker did not take it in time: dead-lettered after the restart
        self.dead_lettered += 1
        logger.error(
            "%s: %s@%d:%d moved to %s after %d attempts: %s",
            self.name,
            message.topic,
            message.partition,
            message.offset,
            topic,
            attempts,
            _describe(error),
        )
        return "dead-lettered"

    def _kind(self, error: BaseException) -> FailureKind:
        try:
            return self.classify(error)
        except Exception:  # a broken classifier must not stall the partition: poison
            logger.exception("%s: classify(%r) failed; treating it as poison", self.name, error)
            return FailureKind.POISON

    def _backoff(self, attempt: int, first: float) -> float:
        return min(self.config.retry_max_backoff_ms / 1000, first * 2.0 ** min(attempt - 1, 32))

    def _outage_continues(self, message: ReceivedMessage, error: BaseException) -> float:
        """Record a failed attempt of the outage (starting it if new) and return the next delay."""
        self.outage_retries += 1
        outage = self._outage
        if outage is None:
            outage = self._outage = _Outage(_describe(error))
            logger.warning(
                "%s: outage, not poison (%s); keeping %s@%d:%d, consumption paused until it ends",
                self.name,
                outage.error,
                message.topic,
                message.partition,
                message.offset,
            )
        else:
            outage.failures += 1
        delay = self._backoff(outage.failures, max(self.config.retry_backoff_ms / 1000, MIN_OUTAGE_BACKOFF))
        now = time.monotonic()
        if now - outage.logged >= OUTAGE_LOG_INTERVAL:
            outage.logged = now
            logger.warning(
                "%s: outage for %.0fs, %d attempts (%s); next retry in %.1fs",
                self.name,
                now - outage.started,
                outage.failures,
                _describe(error),
                delay,
            )
        return delay

    def _outage_over(self) -> None:
        outage, self._outage = self._outage, None
        if outage is not None:
            logger.warning(
                "%s: outage over after %.1fs and %d failed attempts (it began with %s); consuming again",
                self.name,
                time.monotonic() - outage.started,
                outage.failures,
                outage.error,
            )

    async def _wait(self, stop: asyncio.Event, delay: float) -> bool:
        """Wait ``delay`` seconds while the source is paused, keeping the membership alive;
        ``True`` as soon as ``stop`` is set."""
        deadline = time.monotonic() + delay
        while True:
            remaining = deadline - time.monotonic()
            if await wait_for_event(stop, max(0.0, min(remaining, KEEP_ALIVE_INTERVAL))):
                return True
            await self.source.keep_alive()
            if remaining <= KEEP_ALIVE_INTERVAL:
                return False

    async def _purge_inbox(self) -> None:
        """Forget old inbox rows, about once an hour; a failure never interrupts consuming."""
        if not self.config.enable_inbox or time.monotonic() < self._next_inbox_purge:
            return
        self._next_inbox_purge = time.monotonic() + INBOX_PURGE_INTERVAL
        try:
            async with self.sessions() as session, session.begin():
                await inbox.purge(session, self.name, timedelta(hours=self.config.inbox_retention_hours))
        except Exception as error:
            if self._kind(error) is FailureKind.OUTAGE:
                self._next_inbox_purge = time.monotonic() + INBOX_PURGE_RETRY
                logger.warning(
                    "%s: inbox purge postponed by %.0fs (%s)", self.name, INBOX_PURGE_RETRY, _describe(error)
                )
            else:
                logger.exception("%s: inbox purge failed; next try in an hour", self.name)


def _message_id(message: ReceivedMessage) -> str:
    message_id = message.message_id
    if not message_id:
        raise MalformedMessageError("the message has no ce_id header")
    if len(message_id) > 255:
        raise MalformedMessageError("the ce_id header is longer than 255 characters")
    try:
        message.json()
    except ValueError as error:
        raise MalformedMessageError(f"the value is not a JSON object: {error}") from None
    return message_id
