"""The outbox relay: moves committed outbox rows to the transport, in order, at least once.

- **One active relay per database.** On PostgreSQL the relay that holds a session-level advisory
  lock publishes; the others stand by and retry the lock, so one takes over within
  ``standby_interval`` when the leader dies (its connection closes, the lock goes with it).
- **Woken, not only polling.** The leader ``LISTEN``s on the channel the outbox writer
  ``NOTIFY``s; polling every ``poll_interval`` remains because notifications are not stored.
- **Ordered per aggregate.** A batch is claimed in position order; each aggregate's rows are sent
  one after the other, each waiting for the transport's ack, and the first failure stops that
  aggregate for this round, so no later event of it can overtake the failed one. Different
  aggregates go out concurrently. Rows whose aggregate has an earlier row outside the batch wait
  (see ``relay_store.py``).
- **A trickle or a backlog.** Each wake-up claims one batch on a connection kept while leading;
  batches that come back full bring in more lanes (``batches_in_flight``, run as one task group:
  a lane that fails stops its siblings) until the backlog is gone.
- **Bounded.** The sends of a batch get ``send_timeout`` seconds for their acks; what is not
  acknowledged by then counts as failed, the producer's pending sends are abandoned (so none of
  them can land after the retry and break the order) and the claim's transaction ends. After
  ``stop``, acks in hand get ``shutdown_grace`` seconds more at most.
- **Failures are recorded, outages waited out, poison parked.** Every failed send records
  ``attempts``, ``last_error`` and ``next_attempt_at`` on its row. When the transport is
  unreachable the relay backs off (doubling up to ``max_backoff``, one log line per step) and
  resumes alone. A row the transport refuses for good, or that failed ``max_attempts`` times for
  another reason, is *parked*: set aside with its error, its aggregate's later rows parked behind
  it, every other aggregate flowing on (``python -m app.worker outbox ...`` to retry or discard).
- **Nothing lost.** A row is marked published only after its ack. A crash in between re-sends the
  row later: consumers deduplicate by event id (the inbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.infrastructure.messaging.config import OutboxConfig
from app.building_blocks.infrastructure.messaging.failures import FailureKind, classify_failure
from app.building_blocks.infrastructure.messaging.outbox import NOTIFY_CHANNEL
from app.building_blocks.infrastructure.messaging.relay_store import (
    Claim,
    ClaimedRow,
    RelayConnection,
    purge_published,
    relay_store_for,
)
from app.building_blocks.infrastructure.messaging.tracing import end_publish_span, start_publish_span
from app.building_blocks.infrastructure.messaging.transport import (
    MessageProducer,
    MessageRefusedError,
    TransportUnavailableError,
)
from app.building_blocks.infrastructure.messaging.waiting import wait_for_event
from app.building_blocks.observability.metrics import OUTBOX_PUBLISH_FAILURES, OUTBOX_PUBLISHED
from app.building_blocks.observability.tracing import recording

logger = logging.getLogger("app.messaging.relay")

DEFAULT_LOCK_KEY = 0x6F7574626F78  # "outbox"
DEFAULT_SEND_TIMEOUT = 10.0
BATCHES_PER_LANE = 8  # a round ends after this many full batches per lane, to check stop and purge
MIN_BACKOFF = 0.2
OUTAGE_LOG_INTERVAL = 60.0  # while the database stays away, one line a minute


class Failure(Enum):
    UNAVAILABLE = "unavailable"  # the transport is down or did not answer in time: wait, never park
    REFUSED = "refused"  # the transport will never take this message: park at once
    ERROR = "error"  # anything else: retry later, park after max_attempts


@dataclass(frozen=True)
class SendFailure:
    kind: Failure
    error: str


@dataclass
class BatchResult:
    published: int = 0
    failed: int = 0
    held_back: int = 0  # rows behind an unsent row of the same aggregate
    parked: int = 0  # rows set aside this round: refused, or out of attempts
    held: int = 0  # rows parked this round behind a parked row of their aggregate
    unavailable: bool = False  # some send failed because the transport was down or too slow
    backlog: bool = False  # a full batch went out: more rows are probably waiting to go
    first_error: str | None = None

    @property
    def claimed(self) -> int:
        return self.published + self.failed + self.held_back + self.parked + self.held

    def add(self, other: BatchResult) -> None:
        self.published += other.published
        self.failed += other.failed
        self.held_back += other.held_back
        self.parked += other.parked
        self.held += other.held
        self.unavailable = self.unavailable or other.unavailable
        self.backlog = other.backlog
        self.first_error = self.first_error or other.first_error


@dataclass
class _StopClock:
    """Bounds every wait of a stopping relay: from ``stop`` on, acks get ``grace`` seconds more."""

    grace: float
    deadline: float | None = None
    windows: set[asyncio.Timeout] = field(default_factory=set)

    @property
    def stopping(self) -> bool:
        return self.deadline is not None

    def stop(self) -> None:
        self.deadline = asyncio.get_running_loop().time() + self.grace
        for window in self.windows:
            self.bound(window)

    def bound(self, window: asyncio.Timeout) -> None:
        when = window.when()
        if self.deadline is not None and (when is None or when > self.deadline):
            window.reschedule(self.deadline)


@dataclass
class _DatabaseOutage:
    """The relay's database is unavailable: retry with backoff, log the start, then every minute."""

    started: float = field(default_factory=time.monotonic)
    failures: int = 0
    delay: float = 0.0
    logged: float | None = None

    def failed(self, error: BaseException, config: OutboxConfig) -> _DatabaseOutage:
        self.failures += 1
        self.delay = min(config.max_backoff, config.standby_interval * 2.0 ** min(self.failures - 1, 16))
        now = time.monotonic()
        if self.logged is None or now - self.logged >= OUTAGE_LOG_INTERVAL:
            self.logged = now
            logger.warning(
                "outbox relay: the database is unavailable for %.0fs (%d attempts); next try in %.1fs: %s",
                now - self.started,
                self.failures,
                self.delay,
                _describe(error),
            )
        return self

    def over(self) -> None:
        logger.info(
            "outbox relay: the database is back after %.1fs and %d attempts",
            time.monotonic() - self.started,
            self.failures,
        )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


def _failure(error: BaseException) -> SendFailure:
    if isinstance(error, TransportUnavailableError):
        return SendFailure(Failure.UNAVAILABLE, _describe(error))
    if isinstance(error, MessageRefusedError):
        return SendFailure(Failure.REFUSED, _describe(error))
    return SendFailure(Failure.ERROR, _describe(error))


def retry_delay(attempts: int, ceiling: float) -> float:
    """Seconds before the next try of a row that has failed ``attempts`` times."""
    return min(ceiling, MIN_BACKOFF * 2.0 ** max(0, attempts - 1))


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
        self.send_timeout = self.config.send_timeout or DEFAULT_SEND_TIMEOUT
        self.lock_key = lock_key
        self._store = relay_store_for(engine, clock)
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._stop = _StopClock(self.config.shutdown_grace)
        self._backoff = 0.0  # the pause after the last round, 0 while sends get through
        self._down_since: float | None = None
        self.is_leader = False
        self._leader_connection: Any = None

    def wake(self) -> None:
        """Publish now rather than at the next poll (called after a local commit)."""
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by, lead while holding the lock, and start over after any failure until ``stop``."""
        self._stop = _StopClock(self.config.shutdown_grace)
        watcher = asyncio.create_task(self._watch(stop))
        outage: _DatabaseOutage | None = None
        try:
            while not stop.is_set():
                try:
                    async with self._leadership(stop) as leading:
                        if leading:
                            if outage is not None:
                                outage.over()
                                outage = None
                            await self._lead(stop)
                except Exception as error:
                    cause = error.exceptions[0] if isinstance(error, ExceptionGroup) else error
                    if classify_failure(cause) is FailureKind.OUTAGE:  # its database: wait it out
                        outage = (outage or _DatabaseOutage()).failed(cause, self.config)
                        await wait_for_event(stop, outage.delay)
                        continue
                    logger.error("outbox relay failed; starting over: %s", _describe(cause), exc_info=cause)
                    await wait_for_event(stop, self.config.standby_interval)
        finally:
            watcher.cancel()
            self.is_leader = False

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stop.stop()
        self._wakeup.set()

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
            await self._flush(connection)

    async def _publish_until(self, stop: asyncio.Event, connection: RelayConnection) -> None:
        next_purge = time.monotonic()
        while not stop.is_set():
            if not self._still_leading():
                raise ConnectionError("lost the connection that holds the relay lock")
            self._wakeup.clear()
            result = await self.publish_round(connection)
            if self._back_off_after(result):
                await wait_for_event(stop, self._backoff)
                continue
            if time.monotonic() >= next_purge:
                await self.purge()
                next_purge = time.monotonic() + self.config.purge_interval
            # Rows held back behind another lane's batch are free now that the round is over.
            unblocked = result.held_back and result.published and not result.failed
            if not (result.backlog or unblocked):
                await self._idle(stop)

    def _back_off_after(self, result: BatchResult) -> bool:
        """Log the round's failures; whether to pause before the next round (the transport is
        down: nothing got through and some send found it unavailable)."""
        if result.unavailable and not result.published:
            self._backoff = self._next_backoff()
            if self._down_since is None:
                self._down_since = time.monotonic()
            logger.warning(
                "outbox relay: the transport is unavailable; %d sent, %d failed, %d held back, "
                "%d parked; next attempt in %.1fs: %s",
                result.published,
                result.failed,
                result.held_back,
                result.parked,
                self._backoff,
                result.first_error,
            )
            return True
        if self._down_since is not None and result.published:
            logger.info(
                "outbox relay: sending again after %.1fs of failed sends",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        if result.failed:  # some aggregates wait for their next attempt; the others flow
            logger.warning(
                "outbox relay: %d sent, %d failed (retried later): %s",
                result.published,
                result.failed,
                result.first_error,
            )
        if result.held:  # each parked row was logged; what piles up behind them is routine
            logger.info("outbox relay: %d rows parked behind a parked row of their aggregate", result.held)
        self._backoff = 0.0
        return False

    def _next_backoff(self) -> float:
        return min(self.config.max_backoff, max(MIN_BACKOFF, self._backoff * 2))

    async def publish_round(self, connection: RelayConnection | None = None) -> BatchResult:
        """Publish what is waiting: one batch, and while batches come back full, more lanes.

        A trickle of events costs one claim per wake-up. A backlog is worked off in up to
        ``batches_in_flight`` lanes at once (PostgreSQL), each claiming batch after batch (at
        most ``BATCHES_PER_LANE``), so while one lane waits for the database or the broker's
        acks another is claiming or sending. Lanes claim different rows (``SKIP LOCKED``); a row
        whose aggregate has an earlier row in another lane's batch is *blocked* and waits. Lanes
        form a task group: one that fails cancels the others, and the round fails.
        """
        if connection is None:
            async with self._store.connect() as own:
                return await self.publish_round(own)
        first = await self._publish_batch(connection)
        if not self._keep_going(first):
            return first
        extra = self.config.batches_in_flight - 1 if self._store.concurrent else 0
        async with asyncio.TaskGroup() as lanes:
            tasks = [lanes.create_task(self._lane(connection))]
            tasks += [lanes.create_task(self._lane()) for _ in range(extra)]
        total = first
        for task in tasks:
            total.add(task.result())
        total.backlog = any(task.result().backlog for task in tasks)
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

    def _keep_going(self, result: BatchResult) -> bool:
        return result.backlog and not result.failed and not self._stop.stopping

    async def _flush(self, connection: RelayConnection) -> None:
        """On a clean stop, send what was committed just before it, within the stop's grace."""
        if not self._stop.stopping:
            self._stop.stop()
        with contextlib.suppress(Exception):
            while self._still_leading() and not self._stop_expired():
                result = await self._publish_batch(connection)
                if not result.claimed or result.failed or not result.published:
                    break

    def _stop_expired(self) -> bool:
        deadline = self._stop.deadline
        return deadline is not None and asyncio.get_running_loop().time() >= deadline

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
        """Claim the oldest due rows, send them, record the outcome; one transaction."""
        async with self._store.connect() as connection:
            return await self._publish_batch(connection)

    async def _publish_batch(self, connection: RelayConnection) -> BatchResult:
        result = BatchResult()
        async with connection.claim(self.config.batch_size) as claim:
            if not claim.rows:
                return result
            ready = [row for row in claim.rows if not row.blocked]
            # Blocked rows are routine while lanes overlap on an aggregate: not worth an INFO line.
            if len(ready) < len(claim.rows):
                logger.debug(
                    "outbox relay: %d rows wait behind rows another batch holds", len(claim.rows) - len(ready)
                )
            outcomes = await self._send_in_order(ready)
            await self._record(claim, outcomes, result)
            # Full but nothing sent: going again at once would claim the same rows.
            result.backlog = len(claim.rows) >= self.config.batch_size and result.published > 0
        return result

    async def _record(
        self, claim: Claim, outcomes: dict[int, SendFailure | None], result: BatchResult
    ) -> None:
        """Write each row's fate in the claim's transaction: published, failed, parked or held."""
        rows = {row.position: row for row in claim.rows}
        sent = [position for position, failure in outcomes.items() if failure is None]
        failures: dict[tuple[str, float], list[int]] = defaultdict(list)
        parked: dict[str, list[int]] = defaultdict(list)
        parked_aggregates: dict[tuple[str, str], int] = {}
        for position, failure in outcomes.items():
            if failure is None:
                continue
            result.first_error = result.first_error or failure.error
            row = rows[position]
            out_of_attempts = row.attempts + 1 >= self.config.max_attempts
            if failure.kind is Failure.REFUSED or (failure.kind is Failure.ERROR and out_of_attempts):
                parked[failure.error].append(position)
                parked_aggregates[(row.aggregate_type, row.message.key)] = position
                continue
            result.unavailable = result.unavailable or failure.kind is Failure.UNAVAILABLE
            delay = self._next_backoff() if failure.kind is Failure.UNAVAILABLE else None
            failures[(failure.error, delay or retry_delay(row.attempts + 1, self.config.max_backoff))].append(
                position
            )
        # Rows waiting behind a parked row: those the claim found so, and the later rows of an
        # aggregate parked just now.
        held = [
            row.position
            for row in claim.rows
            if row.position not in outcomes and (row.held or _parked_before(parked_aggregates, row))
        ]
        await claim.park(parked)
        await claim.hold(held)
        await claim.mark_published(sent, self._clock())
        await claim.record_failures(failures)
        for error, positions in parked.items():
            for position in positions:
                row = rows[position]
                logger.error(
                    "outbox relay parked event %s of %s %s (attempt %d): %s; the aggregate's later "
                    "events wait behind it until `python -m app.worker outbox retry %s` (or discard)",
                    row.message.headers.get("ce_id", position),
                    row.aggregate_type,
                    row.message.key,
                    row.attempts + 1,
                    error,
                    row.message.headers.get("ce_id", position),
                )
        _count_outcomes(rows, outcomes)
        result.published = len(sent)
        result.parked = sum(len(positions) for positions in parked.values())
        result.held = len(held)
        result.failed = sum(len(positions) for positions in failures.values())
        result.held_back = len(claim.rows) - len(sent) - result.failed - result.parked - result.held

    async def _send_in_order(self, rows: Sequence[ClaimedRow]) -> dict[int, SendFailure | None]:
        """Send in waves: wave *k* holds the *k*-th row of every aggregate in the batch.

        A wave is enqueued in position order and its acks awaited together, so the common case
        (one row per aggregate) is one round trip for the whole batch, while an aggregate's next
        row still leaves only after the previous one was acknowledged. An aggregate whose row
        failed sits out the remaining waves. The whole batch gets ``send_timeout`` seconds (less
        once stopping): sends not acknowledged by then fail, and the producer abandons them.
        """
        chains: dict[tuple[str, str], list[ClaimedRow]] = defaultdict(list)
        for row in rows:
            chains[(row.aggregate_type, row.message.key)].append(row)
        outcomes: dict[int, SendFailure | None] = {}
        in_flight: dict[int, asyncio.Future[Any]] = {}
        waves = max((len(chain) for chain in chains.values()), default=0)  # 0: every row blocked
        window: asyncio.Timeout | None = None
        try:
            async with self._send_window() as window:
                for wave in range(waves):
                    # An aggregate's next row goes only once the previous one was acknowledged.
                    rows_in_wave = [
                        chain[wave]
                        for chain in chains.values()
                        if wave < len(chain)
                        and (wave == 0 or outcomes.get(chain[wave - 1].position, 0) is None)
                    ]
                    await self._enqueue_wave(rows_in_wave, outcomes, in_flight)
                    if in_flight:
                        await asyncio.wait(in_flight.values())
                    for position, ack in in_flight.items():
                        outcomes[position] = _outcome(ack)
                    in_flight.clear()
        except TimeoutError:
            if window is None or not window.expired():
                raise
        if window is not None and window.expired():
            late = SendFailure(Failure.UNAVAILABLE, f"no acknowledgement within {self.send_timeout:g}s")
            for position, ack in in_flight.items():
                outcomes[position] = _outcome(ack) if ack.done() else late
            await self.producer.abandon_pending()
        return outcomes

    async def _enqueue_wave(
        self,
        rows: Sequence[ClaimedRow],
        outcomes: dict[int, SendFailure | None],
        in_flight: dict[int, asyncio.Future[Any]],
    ) -> None:
        unavailable: SendFailure | None = None
        # A publish span only when spans are recorded: otherwise the row's own traceparent goes
        # out as it is, and the consumer continues the writer's trace all the same.
        system = getattr(self.producer, "system", "unknown") if recording() else None
        for row in rows:
            if unavailable is not None:  # the transport is down: do not offer the rest
                outcomes[row.position] = unavailable
                continue
            span, message = start_publish_span(row.message, system=system) if system else (None, row.message)
            try:
                ack: Awaitable[Any] = await self.producer.enqueue(message)
            except Exception as error:
                if span is not None:
                    end_publish_span(span, None, error)
                failure = _failure(error)
                if failure.kind is Failure.UNAVAILABLE:
                    unavailable = failure
                outcomes[row.position] = failure
            else:
                future = asyncio.ensure_future(ack)
                if span is not None:
                    future.add_done_callback(partial(end_publish_span, span))
                in_flight[row.position] = future

    @contextlib.asynccontextmanager
    async def _send_window(self) -> AsyncIterator[asyncio.Timeout]:
        async with asyncio.timeout(self.send_timeout) as window:
            self._stop.bound(window)
            self._stop.windows.add(window)
            try:
                yield window
            finally:
                self._stop.windows.discard(window)

    async def purge(self) -> int:
        """Delete rows published longer ago than the retention period, in chunks."""
        total = await purge_published(
            self.engine, self._clock() - timedelta(hours=self.config.retention_hours)
        )
        if total:
            logger.info("outbox relay purged %d published rows", total)
        return total


def _count_outcomes(rows: dict[int, ClaimedRow], outcomes: dict[int, SendFailure | None]) -> None:
    """Once per topic and outcome a batch, not once per row: the relay's loop is hot."""
    counts: Counter[tuple[str, Failure | None]] = Counter(
        (rows[position].message.topic, failure.kind if failure else None)
        for position, failure in outcomes.items()
    )
    for (topic, kind), count in counts.items():
        if kind is None:
            OUTBOX_PUBLISHED.labels(topic).inc(count)
        else:
            OUTBOX_PUBLISH_FAILURES.labels(topic, kind.value).inc(count)


def _parked_before(parked: dict[tuple[str, str], int], row: ClaimedRow) -> bool:
    position = parked.get((row.aggregate_type, row.message.key))
    return position is not None and position < row.position


def _outcome(ack: asyncio.Future[Any]) -> SendFailure | None:
    if ack.cancelled():
        return SendFailure(Failure.UNAVAILABLE, "the send was cancelled")
    error = ack.exception()
    return None if error is None else _failure(error)
