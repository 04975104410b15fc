"""The outbox relay: moves committed outbox rows to the transport, in order, at least once.

- **One active relay per database.** On PostgreSQL the relay that holds a session-level advisory
  lock publishes; the others stand by and retry the lock, so one takes over within
  ``standby_interval`` when the leader dies (its connection closes, the lock goes with it).
- **Woken, not only polling.** The leader ``LISTEN``s on the channel the outbox writer
  ``NOTIFY``s; polling every ``poll_interval`` remains because notifications are not stored.
- **Ordered per aggregate.** A batch is claimed in position order (``FOR UPDATE SKIP LOCKED``);
  each aggregate's rows are sent one after the other, each waiting for the broker's ack, and the
  first failure stops that aggregate for this round, so no later event of it can overtake the
  failed one. Different aggregates go out concurrently.
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
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CursorResult,
    Text,
    any_,
    bindparam,
    delete,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.building_blocks.infrastructure.messaging.config import OutboxConfig
from app.building_blocks.infrastructure.messaging.outbox import NOTIFY_CHANNEL, row_to_message
from app.building_blocks.infrastructure.messaging.tables import outbox_table
from app.building_blocks.infrastructure.messaging.transport import (
    MessageProducer,
    TransportUnavailableError,
)
from app.building_blocks.infrastructure.messaging.waiting import wait_for_event

logger = logging.getLogger("app.messaging.relay")

DEFAULT_LOCK_KEY = 0x6F7574626F78  # "outbox"
PURGE_CHUNK = 1000
_o = outbox_table.c

# The earliest unpublished position of each given aggregate: a join on two arrays walks the
# (aggregate_type, aggregate_id, position) index; a long IN list of pairs would scan the backlog.
_EARLIEST_UNPUBLISHED = text(
    """
    SELECT o.aggregate_type, o.aggregate_id, min(o.position)
    FROM outbox AS o
    JOIN unnest(CAST(:kinds AS text[]), CAST(:keys AS text[])) AS claimed(aggregate_type, aggregate_id)
      ON o.aggregate_type = claimed.aggregate_type AND o.aggregate_id = claimed.aggregate_id
    WHERE o.published_at IS NULL
    GROUP BY o.aggregate_type, o.aggregate_id
    """
)


@dataclass
class BatchResult:
    published: int = 0
    failed: int = 0
    held_back: int = 0  # rows behind a failed row of the same aggregate
    backlog: bool = False  # a batch came back full: more rows are probably waiting

    @property
    def claimed(self) -> int:
        return self.published + self.failed + self.held_back


def _positions_in(session: AsyncSession, positions: list[int]) -> ColumnElement[bool]:
    """``position = ANY(:array)`` on PostgreSQL: one parameter, not one per row to compile."""
    if session.bind.dialect.name == "postgresql":
        return _o.position == any_(bindparam("positions", positions, type_=ARRAY(BigInteger)))
    return _o.position.in_(positions)


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
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
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
        backoff = 0.0
        next_purge = time.monotonic()
        while not stop.is_set():
            if not self._still_leading():
                raise ConnectionError("lost the connection that holds the relay lock")
            self._wakeup.clear()
            result = await self.publish_round()
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
            if not result.backlog:
                await self._idle(stop)
        await self._flush()

    async def publish_round(self) -> BatchResult:
        """One batch, or several at once on PostgreSQL: while one waits for the broker's acks the
        next is being claimed. Each claims other rows (``SKIP LOCKED``) and the gap check keeps
        an aggregate's rows in order across them."""
        concurrent = self.config.batches_in_flight if self.engine.dialect.name == "postgresql" else 1
        results = await asyncio.gather(*(self.publish_batch() for _ in range(concurrent)))
        full = any(result.claimed >= self.config.batch_size for result in results)
        return BatchResult(
            published=sum(result.published for result in results),
            failed=sum(result.failed for result in results),
            held_back=sum(result.held_back for result in results),
            backlog=full,
        )

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
        result = BatchResult()
        async with self._sessions() as session, session.begin():
            # Lock just the positions (an ordered walk of the partial index, stopping after the
            # batch), then read those rows; the payload comes as text, sent as it is stored.
            positions = (
                select(_o.position)
                .where(_o.published_at.is_(None))
                .order_by(_o.position)
                .limit(self.config.batch_size)
                .with_for_update(skip_locked=True)
            )
            claimed = (
                await session.execute(
                    select(
                        _o.position,
                        _o.topic,
                        _o.aggregate_type,
                        _o.aggregate_id,
                        sql_cast(_o.payload, Text).label("payload"),
                        _o.headers,
                    )
                    .where(_o.position.in_(positions.scalar_subquery()))
                    .order_by(_o.position)
                )
            ).all()
            if not claimed:
                return result
            rows = await self._without_gaps(session, claimed)
            outcomes = await self._send_in_order(rows)
            sent = [position for position, error in outcomes.items() if error is None]
            errors: dict[str, list[int]] = defaultdict(list)
            for position, error in outcomes.items():
                if error is not None:
                    errors[error].append(position)
            await self._record(session, sent, errors)
            result.published = len(sent)
            result.failed = sum(len(positions) for positions in errors.values())
            result.held_back = len(claimed) - len(outcomes)
            result.backlog = len(claimed) >= self.config.batch_size
        return result

    async def _without_gaps(self, session: AsyncSession, rows: Sequence[Any]) -> list[Any]:
        """Drop aggregates whose earliest unpublished row is not in this batch.

        ``SKIP LOCKED`` passes over rows another relay still holds (a leader that lost its lock
        connection finishing its last batch); sending this aggregate's later rows now could
        overtake those, so they wait for the next round.
        """
        if session.bind.dialect.name != "postgresql":  # SQLite locks the whole database: no gaps
            return list(rows)
        first_claimed: dict[tuple[str, str], int] = {}
        for row in rows:
            first_claimed.setdefault((row.aggregate_type, row.aggregate_id), row.position)
        kinds, keys = zip(*first_claimed, strict=True)
        earliest = await session.execute(_EARLIEST_UNPUBLISHED, {"kinds": list(kinds), "keys": list(keys)})
        blocked = {(kind, key) for kind, key, position in earliest if position < first_claimed[(kind, key)]}
        if blocked:
            logger.info("outbox relay: %d aggregates wait for rows another relay holds", len(blocked))
        return [row for row in rows if (row.aggregate_type, row.aggregate_id) not in blocked]

    async def _send_in_order(self, rows: Sequence[Any]) -> dict[int, str | None]:
        """Send in waves: wave *k* holds the *k*-th row of every aggregate in the batch.

        A wave is enqueued in position order and its acks awaited together, so the common case
        (one row per aggregate) is one round trip for the whole batch, while an aggregate's next
        row still leaves only after the previous one was acknowledged. An aggregate whose row
        failed sits out the remaining waves.
        """
        chains: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for row in rows:
            chains[(row.topic, row.aggregate_id)].append(row)
        outcomes: dict[int, str | None] = {}
        waves = max(len(chain) for chain in chains.values())
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
                    acks.append((row.position, await self.producer.enqueue(row_to_message(row)), None))
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

    async def _record(self, session: AsyncSession, sent: list[int], errors: dict[str, list[int]]) -> None:
        if sent:
            await session.execute(
                update(outbox_table)
                .where(_positions_in(session, sent))
                .values(published_at=self._clock(), attempts=_o.attempts + 1, last_error=None)
            )
        for error, positions in errors.items():
            await session.execute(
                update(outbox_table)
                .where(_positions_in(session, positions))
                .values(attempts=_o.attempts + 1, last_error=error)
            )

    async def purge(self) -> int:
        """Delete rows published longer ago than the retention period, in chunks."""
        cutoff = self._clock() - timedelta(hours=self.config.retention_hours)
        total = 0
        while True:
            async with self._sessions() as session, session.begin():
                chunk = (
                    select(_o.position)
                    .where(_o.published_at.is_not(None), _o.published_at < cutoff)
                    .limit(PURGE_CHUNK)
                    .scalar_subquery()
                )
                outcome = await session.execute(delete(outbox_table).where(_o.position.in_(chunk)))
                deleted = cast(CursorResult[Any], outcome).rowcount
            total += deleted or 0
            if not deleted or deleted < PURGE_CHUNK:
                break
        if total:
            logger.info("outbox relay purged %d published rows", total)
        return total
