"""The outbox relay: moves committed outbox rows to the transport, in order, at least once.

- **One active relay per database.** On PostgreSQL the relay that holds a session-level advisory
  lock publishes; the others stand by and retry the lock, so one takes over within
  ``standby_interval`` when the leader dies (its connection closes, the lock goes with it).
- **Woken, not only polling.** The leader ``LISTEN``s on the channel the outbox writer
  ``NOTIFY``s; polling every ``poll_interval`` remains because notifications are not stored.
- **Ordered per aggregate.** A batch is claimed in position order (``FOR UPDATE SKIP LOCKED``);
  each aggregate's rows are sent one after the other, each waiting for the broker's ack, and the
  first failure stops that aggregate for this round, so no later event of it can overtake the
  failed one. Different aggregates go out concurrently. A row whose aggregate has an earlier
  unpublished row outside the batch (another lane or relay holds it) is *blocked* and waits.
- **A trickle or a backlog.** Each wake-up claims one batch on a connection kept while leading;
  batches that come back full bring in more lanes (``batches_in_flight``) until the backlog is
  gone. How rows are claimed and marked is in ``relay_store.py``.
- **Nothing lost.** A row is marked published only after its ack, in the transaction that claimed
  it. A crash in between re-sends the row later: consumers deduplicate by event id (the inbox).
- **Kafka down** records ``attempts`` and ``last_error`` on the rows, backs off exponentially up
  to ``max_backoff`` and resumes alone when sends succeed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.infrastructure.messaging.config import OutboxConfig
from app.building_blocks.infrastructure.messaging.outbox import NOTIFY_CHANNEL
from app.building_blocks.infrastructure.messaging.relay_store import (
    ClaimedRow,
    RelayConnection,
    purge_published,
    relay_store_for,
)
from app.building_blocks.infrastructure.messaging.transport import (
    MessageProducer,
    TransportUnavailableError,
)
from app.building_blocks.infrastructure.messaging.waiting import wait_for_event

logger = logging.getLogger("app.messaging.relay")

DEFAULT_LOCK_KEY = 0x6F7574626F78  # "outbox"
BATCHES_PER_LANE = 8  # a round ends after this many full batches per lane, to check stop and purge


@dataclass
class BatchResult:
    published: int = 0
    failed: int = 0
    held_back: int = 0  # rows behind an unsent row of the same aggregate
    backlog: bool = False  # a full batch went out: more rows are probably waiting to go

    @property
    def claimed(self) -> int:
        return self.published + self.failed + self.held_back

    def add(self, other: BatchResult) -> None:
        self.published += other.published
        self.failed += other.failed
        self.held_back += other.held_back
        self.backlog = other.backlog


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        producer: MessageProducer,
        config: OutboxConfig | None = None,
        *,
        lock_key: int = DEFAULT_LOCK_KEY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.producer = producer
        self.config = config or OutboxConfig()
        self.lock_key = lock_key
        self._store = relay_store_for(engine)
        self._clock = clock
        self._wakeup = asyncio.Event()
        self.is_leader = False
        self._leader_connection: Any = None

    def wake(self) -> None:
        """Publish now rather than at the next poll (called after a local commit)."""
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by, lead while holding the lock, and start over after any failure until ``stop``."""
        while not stop.is_set():
            try:
                async with self._leadership(stop) as leading:
                    if leading:
                        await self._lead(stop)
            except Exception:
                logger.exception("outbox relay failed; starting over")
                await wait_for_event(stop, self.config.standby_interval)
        self.is_leader = False

    @contextlib.asynccontextmanager
    async def _leadership(self, stop: asyncio.Event) -> AsyncIterator[bool]:
        if self.engine.dialect.name != "postgresql":  # embedded: one process, one relay
            self.is_leader = True
            try:
                yield True
            finally:
                self.is_leader = False
            return
        async with self.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            assert raw is not None
            while not await raw.fetchval("SELECT pg_try_advisory_lock($1)", self.lock_key):
                if await wait_for_event(stop, self.config.standby_interval):
                    yield False
                    return
            await raw.add_listener(NOTIFY_CHANNEL, self._on_notify)
            self._leader_connection = raw
            self.is_leader = True
            logger.info("outbox relay is the leader")
            try:
                yield True
            finally:
                self.is_leader = False
                self._leader_connection = None
                # Close this session rather than return it to the pool: the lock and the LISTEN
                # end with it, whatever state an error left it in.
                with contextlib.suppress(Exception):
                    await connection.invalidate()

    def _on_notify(self, *_args: Any) -> None:
        self._wakeup.set()

    def _still_leading(self) -> bool:
        connection = self._leader_connection
        return connection is None or not connection.is_closed()

    async def _lead(self, stop: asyncio.Event) -> None:
        # The first lane's connection is kept while leading: a wake-up costs no pool checkout.
        async with self._store.connect() as connection:
            await self._publish_until(stop, connection)
        await self._flush()

    async def _publish_until(self, stop: asyncio.Event, connection: RelayConnection) -> None:
        backoff = 0.0
        next_purge = time.monotonic()
        while not stop.is_set():
            if not self._still_leading():
                raise ConnectionError("lost the connection that holds the relay lock")
            self._wakeup.clear()
            result = await self.publish_round(connection)
            if result.failed and not result.published:  # the transport is down: back off
                backoff = min(self.config.max_backoff, max(0.2, backoff * 2))
                logger.warning(
                    "outbox relay: %d sent, %d failed, %d held back; retrying in %.1fs",
                    result.published,
                    result.failed,
                    result.held_back,
                    backoff,
                )
                await wait_for_event(stop, backoff)
                continue
            if result.failed:  # some aggregates are stuck; the others keep flowing
                logger.warning(
                    "outbox relay: %d sends failed; their aggregates retry next round", result.failed
                )
            backoff = 0.0
            if time.monotonic() >= next_purge:
                await self.purge()
                next_purge = time.monotonic() + self.config.purge_interval
            # Rows held back behind another lane's batch are free now that the round is over.
            unblocked = result.held_back and result.published and not result.failed
            if not (result.backlog or unblocked):
                await self._idle(stop)

    async def publish_round(self, connection: RelayConnection | None = None) -> BatchResult:
        """Publish what is waiting: one batch, and while batches come back full, more lanes.

        A trickle of events costs one claim per wake-up. A backlog is worked off in up to
        ``batches_in_flight`` lanes at once (PostgreSQL), each claiming batch after batch (at
        most ``BATCHES_PER_LANE``), so while one lane waits for the database or the broker's
        acks another is claiming or sending. Lanes claim different rows (``SKIP LOCKED``); a row
        whose aggregate has an earlier row in another lane's batch is *blocked* and waits.
        """
        if connection is None:
            async with self._store.connect() as own:
                return await self.publish_round(own)
        first = await self._publish_batch(connection)
        if not self._keep_going(first):
            return first
        extra = self.config.batches_in_flight - 1 if self._store.concurrent else 0
        results = await asyncio.gather(self._lane(connection), *(self._lane() for _ in range(extra)))
        total = first
        for result in results:
            total.add(result)
        total.backlog = any(result.backlog for result in results)
        return total

    async def _lane(self, connection: RelayConnection | None = None) -> BatchResult:
        if connection is None:
            async with self._store.connect() as own:
                return await self._lane(own)
        total = BatchResult()
        for _ in range(BATCHES_PER_LANE):
            result = await self._publish_batch(connection)
            total.add(result)
            if not self._keep_going(result):
                break
        return total

    @staticmethod
    def _keep_going(result: BatchResult) -> bool:
        return result.backlog and not result.failed

    async def _flush(self, within: float = 5.0) -> None:
        """On a clean stop, send what was committed just before it (best effort, bounded)."""
        with contextlib.suppress(Exception, TimeoutError):
            async with asyncio.timeout(within):
                while self._still_leading():
                    result = await self.publish_batch()
                    if not result.claimed or result.failed:
                        break

    async def _idle(self, stop: asyncio.Event) -> None:
        """Wait for a wake-up (NOTIFY, a local commit), the next poll, or ``stop``."""
        waiters = [asyncio.create_task(self._wakeup.wait()), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait(
                waiters, timeout=self.config.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def publish_batch(self) -> BatchResult:
        """Claim the oldest unpublished rows, send them, record the outcome; one transaction."""
        async with self._store.connect() as connection:
            return await self._publish_batch(connection)

    async def _publish_batch(self, connection: RelayConnection) -> BatchResult:
        result = BatchResult()
        async with connection.claim(self.config.batch_size) as claim:
            if not claim.rows:
                return result
            # Blocked rows are routine while lanes overlap on an aggregate: not worth an INFO line.
            ready = [row for row in claim.rows if not row.blocked]
            if len(ready) < len(claim.rows):
                logger.debug(
                    "outbox relay: %d rows wait behind rows another batch holds", len(claim.rows) - len(ready)
                )
            outcomes = await self._send_in_order(ready)
            sent = [position for position, error in outcomes.items() if error is None]
            errors: dict[str, list[int]] = defaultdict(list)
            for position, error in outcomes.items():
                if error is not None:
                    errors[error].append(position)
            await claim.mark_published(sent, self._clock())
            await claim.record_failures(errors)
            result.published = len(sent)
            result.failed = len(outcomes) - len(sent)
            result.held_back = len(claim.rows) - len(outcomes)
            # Full but all blocked: going again at once would claim the same rows.
            result.backlog = len(claim.rows) >= self.config.batch_size and result.published > 0
        return result

    async def _send_in_order(self, rows: Sequence[ClaimedRow]) -> dict[int, str | None]:
        """Send in waves: wave *k* holds the *k*-th row of every aggregate in the batch.

        A wave is enqueued in position order and its acks awaited together, so the common case
        (one row per aggregate) is one round trip for the whole batch, while an aggregate's next
        row still leaves only after the previous one was acknowledged. An aggregate whose row
        failed sits out the remaining waves.
        """
        chains: dict[tuple[str, str], list[ClaimedRow]] = defaultdict(list)
        for row in rows:
            chains[(row.aggregate_type, row.message.key)].append(row)
        outcomes: dict[int, str | None] = {}
        waves = max((len(chain) for chain in chains.values()), default=0)  # 0: every row blocked
        for wave in range(waves):
            rows_in_wave = [
                chain[wave]
                for chain in chains.values()
                if wave < len(chain) and (wave == 0 or outcomes.get(chain[wave - 1].position, "") is None)
            ]
            acks: list[tuple[int, Awaitable[None] | None, str | None]] = []
            unavailable: str | None = None
            for row in rows_in_wave:
                if unavailable is not None:  # the transport is down: do not offer the rest
                    acks.append((row.position, None, unavailable))
                    continue
                try:
                    acks.append((row.position, await self.producer.enqueue(row.message), None))
                except TransportUnavailableError as down:
                    unavailable = _describe(down)
                    acks.append((row.position, None, unavailable))
                except Exception as refused:
                    acks.append((row.position, None, _describe(refused)))
            for position, ack, outcome in acks:
                if ack is not None:
                    try:
                        await ack
                    except Exception as failure:
                        outcome = _describe(failure)
                outcomes[position] = outcome
        return outcomes

    async def purge(self) -> int:
        """Delete rows published longer ago than the retention period, in chunks."""
        total = await purge_published(
            self.engine, self._clock() - timedelta(hours=self.config.retention_hours)
        )
        if total:
            logger.info("outbox relay purged %d published rows", total)
        return total
