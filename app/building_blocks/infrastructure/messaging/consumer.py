"""Consuming integration events: inbox, bounded retries, dead letters, manual offset commits.

For each message, in partition order:

1. one database transaction: claim the message in the inbox (``ON CONFLICT DO NOTHING``); only
   when the claim is new, run the handler; commit;
2. on failure, retry with exponential backoff up to ``retry_attempts`` times, each attempt in a
   fresh transaction;
3. when every attempt failed, produce the message to ``<topic>.dlq`` with the error in headers;
4. commit the offset after the messages that were handled or dead-lettered, never past one that
   was not. If even the dead-letter topic cannot be written, consumption pauses and restarts
   from the last committed offset.

Stopping (SIGTERM) finishes the batch in hand, commits, and leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.building_blocks.infrastructure.messaging import inbox
from app.building_blocks.infrastructure.messaging.config import KafkaConfig
from app.building_blocks.infrastructure.messaging.envelope import OutgoingMessage, ReceivedMessage
from app.building_blocks.infrastructure.messaging.transport import MessageProducer, MessageSource
from app.building_blocks.infrastructure.messaging.waiting import wait_for_event

logger = logging.getLogger("app.messaging.consumer")

MessageHandler = Callable[[ReceivedMessage, AsyncSession], Awaitable[None]]

FETCH_TIMEOUT = 0.5
MAX_RECORDS = 200
RESTART_DELAY = 1.0
INBOX_PURGE_INTERVAL = 3600.0


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
        }
    )
    return OutgoingMessage(topic=topic, key=message.key or "", value=message.value, headers=headers)


class InboxConsumer:
    """One consumer-group member running ``handler`` for every message of ``source``.

    ``name`` identifies the consumer in the inbox: two consumers of the same topic keep separate
    records, so each handles every message once.
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
    ) -> None:
        self.name = name
        self.source = source
        self.handler = handler
        self.sessions = sessions
        self.dead_letters = dead_letters
        self.config = config
        self.handled = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self._next_inbox_purge = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.source.start()
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
                with contextlib.suppress(Exception):
                    await self.source.stop()

    async def _consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            messages = await self.source.fetch(FETCH_TIMEOUT, MAX_RECORDS)
            done: list[ReceivedMessage] = []
            try:
                for message in messages:
                    await self.process(message)
                    done.append(message)
            finally:
                await self.source.commit(done)
            await self._purge_inbox()

    async def process(self, message: ReceivedMessage) -> str:
        """Handle one message; return ``handled``, ``duplicate`` or ``dead-lettered``.

        Raises only when the message could be neither handled nor dead-lettered.
        """
        attempts = 0
        error: BaseException
        try:
            message_id = _message_id(message)
        except MalformedMessageError as malformed:
            error = malformed
        else:
            while True:
                attempts += 1
                try:
                    fresh = await self._handle_once(message, message_id)
                except Exception as failure:
                    error = failure
                    if attempts >= self.config.retry_attempts:
                        break
                    delay = self.config.retry_backoff_ms / 1000 * 2 ** (attempts - 1)
                    logger.info(
                        "%s: %s failed (%s), attempt %d of %d",
                        self.name,
                        message_id,
                        failure,
                        attempts,
                        self.config.retry_attempts,
                    )
                    await asyncio.sleep(delay)
                    continue
                if fresh:
                    self.handled += 1
                    return "handled"
                self.duplicates += 1
                return "duplicate"
        topic = self.config.dlq_topic(message.topic)
        await self.dead_letters.send(
            dead_letter(message, topic=topic, consumer=self.name, error=error, attempts=attempts)
        )
        self.dead_lettered += 1
        logger.error(
            "%s: %s@%d:%d moved to %s after %d attempts: %s: %s",
            self.name,
            message.topic,
            message.partition,
            message.offset,
            topic,
            attempts,
            type(error).__name__,
            error,
        )
        return "dead-lettered"

    async def _handle_once(self, message: ReceivedMessage, message_id: str) -> bool:
        async with self.sessions() as session, session.begin():
            if self.config.enable_inbox and not await inbox.claim(session, message_id, self.name):
                return False
            await self.handler(message, session)
        return True

    async def _purge_inbox(self) -> None:
        if not self.config.enable_inbox or time.monotonic() < self._next_inbox_purge:
            return
        self._next_inbox_purge = time.monotonic() + INBOX_PURGE_INTERVAL
        async with self.sessions() as session, session.begin():
            await inbox.purge(session, self.name, timedelta(hours=self.config.inbox_retention_hours))


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
