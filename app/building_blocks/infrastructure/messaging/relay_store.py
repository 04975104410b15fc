"""How the relay claims outbox rows and records what became of them.

A claim takes the oldest rows that are due (unpublished, not parked, past their
``next_attempt_at``) and says, per row, whether it is *blocked*: an earlier row of its aggregate
is unpublished but not in this claim (another batch holds it, it waits for its retry time, or it
is parked), so sending this one now could overtake it. A blocked row whose aggregate has an
earlier *parked* row is *held*: the relay parks it too, so it leaves the claim's way for good
instead of filling batch after batch; an operator releases the aggregate (outbox_admin.py).

After sending, the relay records, per row: published; failed (``attempts``, ``last_error`` and
``next_attempt_at``); parked (the same, plus ``parked_at``); or held (``parked_at``).

- **PostgreSQL** talks to asyncpg directly: this is the relay's hot path, and skipping the ORM's
  statement compiling and result processing makes it about a third faster. One statement claims
  and checks (``FOR UPDATE SKIP LOCKED``); one more marks. The claim's transaction lasts until the
  outcome is recorded, bounded by the relay's send deadline. The marking commit does not wait for
  the WAL flush (``synchronous_commit = off``): a commit lost in a database crash only makes the
  rows go out again, which consumers deduplicate by event id.
- **SQLite** (the embedded mode) goes through SQLAlchemy. A write transaction locks the whole
  database, and the in-process consumers that must acknowledge a message write too, so the claim
  reads without a lock and the outcome is written in one short transaction afterwards; one relay
  per process claims one batch at a time, so nothing else claims in between.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.building_blocks.infrastructure.messaging.envelope import OutgoingMessage
from app.building_blocks.infrastructure.messaging.tables import outbox_table
from app.building_blocks.infrastructure.persistence.database import READ_ONLY

PURGE_CHUNK = 1000
_o = outbox_table.c

Clock = Callable[[], datetime]


class ClaimedRow(NamedTuple):  # a tuple: thousands are built per second on the hot path
    position: int
    aggregate_type: str
    message: OutgoingMessage  # keyed by the aggregate id
    blocked: bool = False  # an earlier row of its aggregate is unpublished and not in this claim
    held: bool = False  # ...and one of those is parked: this row waits behind it
    attempts: int = 0  # sends tried so far


class Claim(Protocol):
    rows: list[ClaimedRow]

    async def mark_published(self, positions: Sequence[int], at: datetime) -> None: ...

    async def record_failures(self, failures: Mapping[tuple[str, float], Sequence[int]]) -> None:
        """``failures`` maps (error description, seconds until the next attempt) to positions."""

    async def park(self, failures: Mapping[str, Sequence[int]]) -> None:
        """Set the rows aside with their error; they count one more attempt."""

    async def hold(self, positions: Sequence[int]) -> None:
        """Park the rows that (still) have an earlier parked row of their aggregate."""


class RelayConnection(Protocol):
    def claim(self, limit: int) -> contextlib.AbstractAsyncContextManager[Claim]: ...


class RelayStore(Protocol):
    concurrent: bool  # whether several claims may run at once (row locks) or one at a time

    def connect(self) -> contextlib.AbstractAsyncContextManager[RelayConnection]: ...


def relay_store_for(engine: AsyncEngine, clock: Clock) -> RelayStore:
    if engine.dialect.name == "postgresql":
        if engine.dialect.driver != "asyncpg":
            raise ValueError(f"the outbox relay needs the asyncpg driver, not {engine.dialect.driver}")
        return PostgresRelayStore(engine)
    return SqlRelayStore(engine, clock)


def outgoing_message(topic: str, aggregate_id: str, payload: str, headers: str) -> OutgoingMessage:
    """An outbox row (payload and headers as JSON text) as the record to produce: the payload
    byte for byte as the writer serialized it, keyed by the aggregate id."""
    return OutgoingMessage(topic, aggregate_id, payload.encode(), json.loads(headers))


def row_to_message(row: Any) -> OutgoingMessage:
    return outgoing_message(row.topic, row.aggregate_id, row.payload, row.headers)


async def purge_published(engine: AsyncEngine, before: datetime, chunk: int = PURGE_CHUNK) -> int:
    """Delete rows published before ``before``, ``chunk`` rows per transaction."""
    total = 0
    while True:
        async with engine.begin() as connection:
            oldest = (
                select(_o.position)
                .where(_o.published_at.is_not(None), _o.published_at < before)
                .limit(chunk)
                .scalar_subquery()
            )
            outcome = await connection.execute(delete(outbox_table).where(_o.position.in_(oldest)))
            deleted = outcome.rowcount or 0
        total += deleted
        if deleted < chunk:
            return total


# --- PostgreSQL -------------------------------------------------------------------------------------

# The claim locks the batch's positions only (an ordered walk of ix_outbox_claim, which leaves
# parked rows out and stops after the batch), fetches those rows by primary key, and flags each
# row whose aggregate has an unpublished row before it outside the batch
# (ix_outbox_unpublished_by_aggregate answers without visiting the table); only for such blocked
# rows, a probe of the tiny ix_outbox_parked says whether the earlier row is parked (OFFSET 0
# keeps the inner query whole, so the blocked check runs once per row, not twice). Plans stay good
# whatever the statistics say (the backlog swings between none and plenty, and autovacuum
# samples either):
# - the batch size is a literal: a generic plan for ``LIMIT $1`` guesses a tenth of the backlog
#   and merge-joins through the whole table (measured: 0.4 s instead of 5 ms per batch of 1000);
# - rows are fetched with ``= ANY(ARRAY(...))``, which can only probe the primary key;
# - only the claim says ``position > 0``, so only the claim can use ix_outbox_claim: planned on
#   "no backlog", the check scanned it by position once per claimed row (0.1 s per batch).
_PG_CLAIM = """
WITH locked AS MATERIALIZED (
    SELECT position FROM outbox
    WHERE published_at IS NULL AND parked_at IS NULL AND position > 0
      AND (next_attempt_at IS NULL OR next_attempt_at <= now())
    ORDER BY position
    LIMIT {limit:d}
    FOR UPDATE SKIP LOCKED
)
SELECT c.*,
       c.blocked AND EXISTS (
           SELECT 1 FROM outbox AS parked
           WHERE parked.aggregate_type = c.aggregate_type
             AND parked.aggregate_id = c.aggregate_id
             AND parked.published_at IS NULL
             AND parked.parked_at IS NOT NULL
             AND parked.position < c.position
       ) AS held
FROM (
    SELECT o.position, o.topic, o.aggregate_type, o.aggregate_id, o.payload::text AS payload,
           o.headers::text AS headers, o.attempts,
           EXISTS (
               SELECT 1 FROM outbox AS earlier
               WHERE earlier.aggregate_type = o.aggregate_type
                 AND earlier.aggregate_id = o.aggregate_id
                 AND earlier.published_at IS NULL
                 AND earlier.position < o.position
                 AND earlier.position NOT IN (SELECT position FROM locked)
           ) AS blocked
    FROM outbox AS o
    WHERE o.position = ANY (ARRAY(SELECT position FROM locked))
    OFFSET 0
) AS c
ORDER BY c.position
"""
_PG_MARK_PUBLISHED = (
    "UPDATE outbox SET published_at = $1, attempts = attempts + 1, last_error = NULL"
    " WHERE position = ANY($2::bigint[])"
)
_PG_RECORD_FAILURE = (
    "UPDATE outbox SET attempts = attempts + 1, last_error = $1,"
    " next_attempt_at = clock_timestamp() + make_interval(secs => $2::float8)"
    " WHERE position = ANY($3::bigint[])"
)
_PG_PARK = (
    "UPDATE outbox SET attempts = attempts + 1, last_error = $1, parked_at = clock_timestamp(),"
    " next_attempt_at = NULL WHERE position = ANY($2::bigint[])"
)
# Checked again when written: an operator may have released the aggregate since the claim.
_PG_HOLD = """
UPDATE outbox AS o SET parked_at = clock_timestamp()
WHERE o.position = ANY($1::bigint[])
  AND EXISTS (
      SELECT 1 FROM outbox AS parked
      WHERE parked.aggregate_type = o.aggregate_type
        AND parked.aggregate_id = o.aggregate_id
        AND parked.published_at IS NULL
        AND parked.parked_at IS NOT NULL
        AND parked.position < o.position
  )
"""


class PostgresRelayStore:
    concurrent = True

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[RelayConnection]:
        """A pooled connection, used through its asyncpg driver connection."""
        async with self._engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            try:
                yield _PostgresConnection(raw)
            except BaseException:
                # Whatever state the failure left the session in, it does not go back to the pool.
                with contextlib.suppress(Exception):
                    await connection.invalidate()
                raise


class _PostgresConnection:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    @contextlib.asynccontextmanager
    async def claim(self, limit: int) -> AsyncIterator[Claim]:
        raw = self._raw
        # BEGIN and the commit setting in one round trip (the simple-query protocol).
        await raw.execute("BEGIN; SET LOCAL synchronous_commit = off")
        try:
            records = await raw.fetch(_PG_CLAIM.format(limit=int(limit)))
            # position, topic, aggregate_type, aggregate_id, payload, headers, attempts, blocked, held
            rows = [
                ClaimedRow(r[0], r[2], outgoing_message(r[1], r[3], r[4], r[5]), r[7], r[8], r[6])
                for r in records
            ]
            yield _PostgresClaim(raw, rows)
        except BaseException:
            with contextlib.suppress(Exception):  # a broken connection is discarded by connect()
                await raw.execute("ROLLBACK")
            raise
        await raw.execute("COMMIT")


class _PostgresClaim:
    def __init__(self, raw: Any, rows: list[ClaimedRow]) -> None:
        self._raw = raw
        self.rows = rows

    async def mark_published(self, positions: Sequence[int], at: datetime) -> None:
        if positions:
            await self._raw.execute(_PG_MARK_PUBLISHED, at, positions)

    async def record_failures(self, failures: Mapping[tuple[str, float], Sequence[int]]) -> None:
        for (error, retry_in), positions in failures.items():
            await self._raw.execute(_PG_RECORD_FAILURE, error, retry_in, positions)

    async def park(self, failures: Mapping[str, Sequence[int]]) -> None:
        for error, positions in failures.items():
            await self._raw.execute(_PG_PARK, error, positions)

    async def hold(self, positions: Sequence[int]) -> None:
        if positions:
            await self._raw.execute(_PG_HOLD, positions)


# --- SQLite (and any other SQLAlchemy database that locks as a whole) -------------------------------


def _earlier_unpublished(alias: Any, row: Any) -> Any:
    return and_(
        alias.c.aggregate_type == row.aggregate_type,
        alias.c.aggregate_id == row.aggregate_id,
        alias.c.published_at.is_(None),
        alias.c.position < row.position,
    )


class SqlRelayStore:
    concurrent = False

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[RelayConnection]:
        yield self

    @contextlib.asynccontextmanager
    async def claim(self, limit: int) -> AsyncIterator[Claim]:
        now = self._clock()
        due = (
            select(_o.position)
            .where(
                _o.published_at.is_(None),
                _o.parked_at.is_(None),
                _o.position > 0,  # ix_outbox_claim
                (_o.next_attempt_at.is_(None)) | (_o.next_attempt_at <= now),
            )
            .order_by(_o.position)
            .limit(limit)
            .cte("due")
        )
        earlier = outbox_table.alias("earlier")
        parked = outbox_table.alias("parked")
        blocked = exists().where(
            _earlier_unpublished(earlier, _o), earlier.c.position.not_in(select(due.c.position))
        )
        held = exists().where(_earlier_unpublished(parked, _o), parked.c.parked_at.is_not(None))
        query = (
            select(
                _o.position,
                _o.topic,
                _o.aggregate_type,
                _o.aggregate_id,
                _o.payload,  # JSON text (JsonText), as stored
                _o.headers,
                _o.attempts,
                blocked.label("blocked"),
                held.label("held"),
            )
            .where(_o.position.in_(select(due.c.position)))
            .order_by(_o.position)
        )
        async with self._engine.connect() as connection:
            connection = await connection.execution_options(**{READ_ONLY: True})
            found = (await connection.execute(query)).all()
        claim = _SqlClaim(
            [
                ClaimedRow(
                    position=row.position,
                    aggregate_type=row.aggregate_type,
                    message=outgoing_message(row.topic, row.aggregate_id, row.payload, row.headers),
                    blocked=bool(row.blocked),
                    held=bool(row.blocked and row.held),
                    attempts=row.attempts,
                )
                for row in found
            ]
        )
        yield claim
        if claim.outcome:
            async with self._engine.begin() as connection:
                await claim.outcome.write(connection, self._clock())


@dataclass
class _Outcome:
    """What became of a claim's rows, written in one transaction once the sends are over."""

    published: list[tuple[datetime, list[int]]] = field(default_factory=list)
    failures: dict[tuple[str, float], list[int]] = field(default_factory=dict)
    parked: dict[str, list[int]] = field(default_factory=dict)
    held: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.published or self.failures or self.parked or self.held)

    async def write(self, connection: AsyncConnection, now: datetime) -> None:
        for error, positions in self.parked.items():
            await connection.execute(
                update(outbox_table)
                .where(_o.position.in_(positions))
                .values(attempts=_o.attempts + 1, last_error=error, parked_at=now, next_attempt_at=None)
            )
        if self.held:
            parked = outbox_table.alias("parked")
            await connection.execute(
                update(outbox_table)
                .where(
                    _o.position.in_(self.held),
                    exists().where(_earlier_unpublished(parked, _o), parked.c.parked_at.is_not(None)),
                )
                .values(parked_at=now)
            )
        for at, positions in self.published:
            await connection.execute(
                update(outbox_table)
                .where(_o.position.in_(positions))
                .values(published_at=at, attempts=_o.attempts + 1, last_error=None)
            )
        for (error, retry_in), positions in self.failures.items():
            await connection.execute(
                update(outbox_table)
                .where(_o.position.in_(positions))
                .values(
                    attempts=_o.attempts + 1,
                    last_error=error,
                    next_attempt_at=now + timedelta(seconds=retry_in),
                )
            )


class _SqlClaim:
    def __init__(self, rows: list[ClaimedRow]) -> None:
        self.rows = rows
        self.outcome = _Outcome()

    async def mark_published(self, positions: Sequence[int], at: datetime) -> None:
        if positions:
            self.outcome.published.append((at, list(positions)))

    async def record_failures(self, failures: Mapping[tuple[str, float], Sequence[int]]) -> None:
        for key, positions in failures.items():
            self.outcome.failures.setdefault(key, []).extend(positions)

    async def park(self, failures: Mapping[str, Sequence[int]]) -> None:
        for error, positions in failures.items():
            self.outcome.parked.setdefault(error, []).extend(positions)

    async def hold(self, positions: Sequence[int]) -> None:
        self.outcome.held.extend(positions)
