"""``python -m bench.relay_throughput``: how fast and how promptly the outbox relay feeds Kafka.

One run, against a fresh PostgreSQL database (created, migrated, dropped) and the Kafka broker:

1. **Relay throughput**: ``--events`` UserRegistered outbox rows, each of its own user, written in
   bulk through the real :class:`OutboxWriter`; then the real ``OutboxRelay.publish_round()`` with
   the real :class:`KafkaMessageProducer` is called until every row is published (events/s), with
   this process's CPU seconds and the PostgreSQL housekeeping (vacuum, analyze, checkpoint) that
   ran meanwhile.
2. **Raw producer baseline**: an ``AIOKafkaProducer`` with ``KafkaConfig.producer_options()``
   sends the same keys, values and headers, all at once, and awaits every ack (events/s).
3. **Ratio** relay / raw (target >= 0.5). Steps 1 and 2 run back to back ``--repeat`` times (3),
   each pair on fresh rows and topics; the ratio reported is the median of the pairs' ratios, so
   one pair disturbed by the shared machine (an autovacuum, a checkpoint) does not decide it.
4. **Commit-to-ack latency**: the relay runs as in production (``OutboxRelay.run`` woken by
   ``LISTEN``/``NOTIFY``, in this process) while ``--writers`` other processes, standing in for
   the API, commit one registration per transaction (through ``SqlAlchemyUsersUnitOfWork`` with
   the outbox hook, or ``--writer outbox``: the writer alone in a session) at ``--rate`` events/s
   in all for ``--seconds``, paced by absolute deadlines. Latency = when ``send`` returned (the
   broker acked) for the event's ``ce_id`` minus when its transaction committed, both on the
   system-wide monotonic clock. Target p99 < 100 ms, at the target rate.

It prints a summary of ``key=value`` lines and PASS/MISS per target; the exit code is 0 whatever
the figures (a measurement), non-zero only when the benchmark itself failed. Topics are unique per
run and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.building_blocks.domain.events import DomainEvent
from app.building_blocks.domain.identifiers import uuid7
from app.building_blocks.infrastructure.messaging.config import KafkaConfig, OutboxConfig
from app.building_blocks.infrastructure.messaging.envelope import OutgoingMessage, encode_headers
from app.building_blocks.infrastructure.messaging.kafka import KafkaMessageProducer
from app.building_blocks.infrastructure.messaging.mapper import IntegrationEventMapper
from app.building_blocks.infrastructure.messaging.outbox import OutboxWriter
from app.building_blocks.infrastructure.messaging.relay import BatchResult, OutboxRelay
from app.building_blocks.infrastructure.messaging.relay_store import RelayConnection, row_to_message
from app.building_blocks.infrastructure.messaging.tables import outbox_table
from app.building_blocks.infrastructure.messaging.topics import TopicRouter
from app.building_blocks.infrastructure.messaging.transport import MessageProducer
from app.building_blocks.infrastructure.persistence.database import (
    create_engine,
    create_session_factory,
    describe_url,
)
from app.migrate import upgrade
from app.settings import DatabaseSettings
from app.users.domain import Email, User, UserRegistered
from app.users.integration_events import register_mappings
from app.users.persistence.unit_of_work import SqlAlchemyUsersUnitOfWork

logger = logging.getLogger("bench.relay_throughput")

DEFAULT_ADMIN_URL = "postgresql+asyncpg://app:app@127.0.0.1:5432/postgres"  # as tests/services.py
SERVICE = "user-service"
RATIO_TARGET = 0.5
P99_TARGET_MS = 100.0
SUSTAINED_SHARE = 0.98  # the writer "sustained" the rate when it achieved at least this share
FILL_CHUNK = 1000  # outbox rows per bulk INSERT while pre-filling
WARM_UP_RECORDS = 10
ACK_TIMEOUT = 60.0  # seconds to wait for the last events of the latency phase


class BenchmarkError(RuntimeError):
    """The benchmark could not measure (a service missing, a row never published...)."""


@dataclass(frozen=True)
class Options:
    events: int = 20_000
    rate: float = 500.0
    seconds: float = 20.0
    bootstrap: str = "127.0.0.1:9092"
    database_admin_url: str = DEFAULT_ADMIN_URL
    batch_size: int | None = None  # None: OutboxConfig's default (OUTBOX_BATCH_SIZE or 500)
    writers: int = 2  # processes committing the latency phase's events
    writer: str = "uow"  # "uow" (SqlAlchemyUsersUnitOfWork) or "outbox" (OutboxWriter in a session)
    repeat: int = 3  # relay/raw pairs measured


@dataclass
class Throughput:
    events: int
    published: int
    batches: int
    elapsed: float
    cpu: float = 0.0  # seconds of this process's CPU
    disturbed_by: list[str] = field(default_factory=list)  # PostgreSQL housekeeping meanwhile

    def per_batch_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.batches if self.batches else 0.0

    @property
    def eps(self) -> float:
        return self.published / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class RawBaseline:
    events: int
    acked: int
    elapsed: float
    cpu: float = 0.0  # seconds of this process's CPU

    @property
    def eps(self) -> float:
        return self.acked / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class Pair:
    """One relay run and the raw producer sending the same records right after it."""

    relay: Throughput
    raw: RawBaseline

    @property
    def ratio(self) -> float:
        return self.relay.eps / self.raw.eps if self.raw.eps > 0 else 0.0


@dataclass
class Latency:
    target_rate: float
    seconds: float
    writers: int
    writer: str
    written: int
    acked: int
    write_elapsed: float
    latencies_ms: list[float]
    commit_ms: list[float]  # how long each unit of work took, start to committed
    start_lag_ms: list[float]  # how late each write started after its deadline
    batch_ms: list[float]  # how long each relay batch that claimed rows took
    batch_rows: list[int]  # how many rows each of those batches claimed

    @property
    def achieved_rate(self) -> float:
        return self.written / self.write_elapsed if self.write_elapsed > 0 else 0.0

    @property
    def sustained(self) -> bool:
        return self.achieved_rate >= SUSTAINED_SHARE * self.target_rate

    def percentile(self, share: float) -> float:
        return percentile(self.latencies_ms, share)


@dataclass
class Report:
    options: Options
    batch_size: int
    linger_ms: int
    database: str
    pairs: list[Pair]
    latency: Latency
    topics: list[str] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after

    @property
    def median_pair(self) -> Pair:
        """The pair with the median ratio (the lower middle one for an even count)."""
        ordered = sorted(self.pairs, key=lambda pair: pair.ratio)
        return ordered[(len(ordered) - 1) // 2]

    @property
    def throughput(self) -> Throughput:
        return self.median_pair.relay

    @property
    def raw(self) -> RawBaseline:
        return self.median_pair.raw

    @property
    def ratio(self) -> float:
        return self.median_pair.ratio

    @property
    def ratio_passed(self) -> bool:
        return self.ratio >= RATIO_TARGET

    @property
    def latency_passed(self) -> bool:
        return self.latency.sustained and self.latency.percentile(0.99) < P99_TARGET_MS


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of ``values``; 0.0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(len(ordered) * share)))
    return ordered[rank - 1]


def summary_lines(report: Report) -> list[str]:
    t, raw, lat = report.throughput, report.raw, report.latency
    ratio = "PASS" if report.ratio_passed else "MISS"
    latency = "PASS" if report.latency_passed else "MISS"
    lines = [
        f"events={t.events}",
        f"batch_size={report.batch_size}",
        f"linger_ms={report.linger_ms}",
        f"relay_throughput_eps={t.eps:.0f}",
        f"relay_rounds={t.batches}",
        f"relay_round_ms={t.per_batch_ms(t.elapsed):.1f}",
        f"relay_cpu_s={t.cpu:.2f}",
        f"relay_disturbed_by={','.join(t.disturbed_by) or 'nothing'}",
        f"raw_producer_cpu_s={raw.cpu:.2f}",
        f"raw_producer_eps={raw.eps:.0f}",
        f"ratio={report.ratio:.2f}",
        f"ratios={','.join(f'{pair.ratio:.2f}' for pair in report.pairs)}",
        f"latency_events={lat.acked}",
        f"latency_p50_ms={lat.percentile(0.50):.1f}",
        f"latency_p95_ms={lat.percentile(0.95):.1f}",
        f"latency_p99_ms={lat.percentile(0.99):.1f}",
        f"latency_max_ms={max(lat.latencies_ms, default=0.0):.1f}",
        f"writers={lat.writers} ({lat.writer})",
        f"commit_p50_ms={percentile(lat.commit_ms, 0.50):.1f}",
        f"commit_p99_ms={percentile(lat.commit_ms, 0.99):.1f}",
        f"writer_start_lag_p99_ms={percentile(lat.start_lag_ms, 0.99):.1f}",
        f"writer_start_lag_max_ms={max(lat.start_lag_ms, default=0.0):.1f}",
        f"latency_relay_batches={len(lat.batch_rows)}",
        f"latency_rows_per_batch={statistics.fmean(lat.batch_rows) if lat.batch_rows else 0.0:.1f}",
        f"latency_batch_p50_ms={percentile(lat.batch_ms, 0.50):.1f}",
        f"latency_batch_p99_ms={percentile(lat.batch_ms, 0.99):.1f}",
        f"target_rate_eps={lat.target_rate:g}",
        f"rate_eps={lat.achieved_rate:.1f}",
        f"writer_sustained_rate={'yes' if lat.sustained else 'no'}",
        f"loadavg_1m={report.load[0]:.2f}->{report.load[1]:.2f} on {os.cpu_count()} CPUs",
        f"ratio_target={ratio} (relay/raw >= {RATIO_TARGET:g})",
        f"latency_target={latency} (p99 < {P99_TARGET_MS:g} ms at {lat.target_rate:g}/s)",
    ]
    if not lat.sustained:
        lines.append(
            f"WARNING: the writer achieved only {lat.achieved_rate:.1f} of {lat.target_rate:g} events/s;"
            " the latency figures are not at the target rate"
        )
    return lines


# --- database -------------------------------------------------------------------------------------


async def create_database(admin_url: str) -> str:
    """A fresh database next to ``admin_url``'s (as tests/services.py creates them), migrated."""
    admin = make_url(admin_url)
    name = f"bench_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT", connect_args={"timeout": 3})
    try:
        async with asyncio.timeout(10), engine.connect() as connection:
            await connection.execute(
                text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0 LOCALE 'C.UTF-8'")
            )
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BenchmarkError(f"cannot create a database on {describe_url(admin)}: {reason}") from error
    finally:
        await engine.dispose()
    url = admin.set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, DatabaseSettings(url=url))
    return url


async def drop_database(admin_url: str, url: str, attempts: int = 10) -> None:
    """Drop the benchmark's database.

    ``WITH (FORCE)`` ends our own leftover sessions but fails for a role that is not superuser
    while an autovacuum worker is in the database (likely after writing 30,000 rows); a plain
    ``DROP DATABASE`` stops autovacuum itself. So try both, a few times.
    """
    name = make_url(url).database
    engine = create_async_engine(
        make_url(admin_url), isolation_level="AUTOCOMMIT", connect_args={"timeout": 3}
    )
    failure: Exception | None = None
    try:
        for _ in range(attempts):
            for force in (" WITH (FORCE)", ""):
                try:
                    async with engine.connect() as connection:
                        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"{force}'))
                except DBAPIError as error:
                    failure = error
                else:
                    return
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
    reason = str(getattr(failure, "orig", failure)).strip().splitlines()[0]
    raise BenchmarkError(f"cannot drop database {name}: {reason}")


async def database_exists(admin_url: str, name: str) -> bool:
    engine = create_async_engine(make_url(admin_url), connect_args={"timeout": 3})
    try:
        async with engine.connect() as connection:
            found = await connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            return found.first() is not None
    finally:
        await engine.dispose()


async def unpublished(engine: AsyncEngine, topic: str) -> int:
    async with engine.connect() as connection:
        count = await connection.execute(
            select(func.count()).where(outbox_table.c.topic == topic, outbox_table.c.published_at.is_(None))
        )
        return int(count.scalar_one())


def outbox_writer(topic: str) -> OutboxWriter:
    """The writer the service uses, routing the user aggregate to ``topic``.

    No ``on_committed`` wake-up: with Kafka the API and the relay (the worker) are different
    processes, so the relay learns of commits through ``NOTIFY`` only, as in production.
    """
    mapper = IntegrationEventMapper(source=SERVICE)
    register_mappings(mapper)
    return OutboxWriter(mapper, TopicRouter(SERVICE, {"user": topic}))


async def fill_outbox(engine: AsyncEngine, topic: str, count: int, run: str) -> None:
    """``count`` UserRegistered events, one user each, through ``OutboxWriter.before_commit``
    (mapping, ``outbox_row``, one multi-row INSERT per chunk)."""
    writer = outbox_writer(topic)
    sessions = create_session_factory(engine)
    for start in range(0, count, FILL_CHUNK):
        events: list[DomainEvent] = [
            UserRegistered(user_id=uuid7(), email=f"bench-{run}-{i}@example.com", name=f"Bench User {i}")
            for i in range(start, min(count, start + FILL_CHUNK))
        ]
        async with sessions() as session, session.begin():
            await writer.before_commit(session, events)
    if writer.written != count:
        raise BenchmarkError(f"the outbox writer wrote {writer.written} rows, not {count}")


async def outbox_messages(engine: AsyncEngine, topic: str) -> list[OutgoingMessage]:
    """The records the relay produces for ``topic``'s rows, in position order."""
    o = outbox_table.c
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(o.position, o.topic, o.aggregate_id, o.payload, o.headers)
                .where(o.topic == topic)
                .order_by(o.position)
            )
        ).all()
    return [row_to_message(row) for row in rows]


# --- Kafka ----------------------------------------------------------------------------------------


def warm_up_message(topic: str, i: int) -> OutgoingMessage:
    return OutgoingMessage(topic=topic, key=f"warm-up-{i}", value=b"{}", headers={"bench": "warm-up"})


async def warm_up(producer: MessageProducer, topic: str) -> None:
    """Create the topic (auto-creation) and load its metadata before anything is timed."""
    with quiet_cluster_metadata():
        async with asyncio.timeout(60):
            await producer.start()
            await asyncio.gather(*(producer.send(warm_up_message(topic, i)) for i in range(WARM_UP_RECORDS)))


@contextlib.contextmanager
def quiet_cluster_metadata() -> Iterator[None]:
    """aiokafka logs an ERROR while a topic is being auto-created or after it was deleted: both
    are expected here."""
    cluster_log = logging.getLogger("aiokafka.cluster")
    level = cluster_log.level
    cluster_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        cluster_log.setLevel(level)


async def delete_topics(config: KafkaConfig, topics: list[str]) -> None:
    """Best effort: the benchmark's topics are of no use once it has measured."""
    admin = AIOKafkaAdminClient(**config.connection_options())
    with quiet_cluster_metadata():
        try:
            async with asyncio.timeout(15):
                await admin.start()
                await admin.delete_topics(topics)
        except Exception as error:
            logger.warning("could not delete the benchmark topics %s: %s", topics, error)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


class ClockedProducer:
    """A producer wrapper noting, per ``ce_id``, when ``send`` returned (the broker's ack reached
    the relay)."""

    def __init__(self, inner: MessageProducer) -> None:
        self.inner = inner
        self.acked: dict[str, float] = {}

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def enqueue(self, message: OutgoingMessage) -> Awaitable[None]:
        return self._acknowledged(message, await self.inner.enqueue(message))

    async def _acknowledged(self, message: OutgoingMessage, ack: Awaitable[None]) -> None:
        await ack
        event_id = message.headers.get("ce_id")
        if event_id is not None:
            self.acked[event_id] = time.monotonic()  # the writers' clock too

    async def send(self, message: OutgoingMessage) -> None:
        await (await self.enqueue(message))

    async def abandon_pending(self) -> None:
        await self.inner.abandon_pending()


@dataclass(frozen=True)
class Housekeeping:
    """PostgreSQL's background work that competes with the relay for the machine."""

    vacuums: int
    analyzes: int
    checkpoints: int

    def since(self, before: Housekeeping) -> list[str]:
        return [
            name
            for name, now, then in (
                ("vacuum", self.vacuums, before.vacuums),
                ("analyze", self.analyzes, before.analyzes),
                ("checkpoint", self.checkpoints, before.checkpoints),
            )
            if now > then
        ]


async def housekeeping(engine: AsyncEngine) -> Housekeeping:
    """Vacuums and analyzes of the outbox, and checkpoints, so far (statistics lag ~1 s)."""
    async with engine.connect() as connection:
        table = (
            await connection.execute(
                text(
                    "SELECT coalesce(sum(vacuum_count + autovacuum_count), 0),"
                    " coalesce(sum(analyze_count + autoanalyze_count), 0)"
                    " FROM pg_stat_user_tables WHERE relname = 'outbox'"
                )
            )
        ).one()
        checkpoints = await connection.execute(
            text("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
        )
        return Housekeeping(int(table[0]), int(table[1]), int(checkpoints.scalar() or 0))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class TimedRelay(OutboxRelay):
    """The real relay, noting how long each batch that claimed rows took and how many it claimed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_ms: list[float] = []
        self.batch_rows: list[int] = []

    async def _publish_batch(self, connection: RelayConnection) -> BatchResult:
        started = time.perf_counter()
        result = await super()._publish_batch(connection)
        if result.claimed:
            self.batch_ms.append((time.perf_counter() - started) * 1000)
            self.batch_rows.append(result.claimed)
        return result


# --- the three measurements -----------------------------------------------------------------------


async def measure_relay_throughput(
    engine: AsyncEngine, kafka: KafkaConfig, outbox: OutboxConfig, topic: str, count: int
) -> Throughput:
    producer = KafkaMessageProducer(kafka)
    try:
        await warm_up(producer, topic)
        before = await housekeeping(engine)
        relay = OutboxRelay(engine, producer, outbox)
        published = batches = 0
        cpu, started = cpu_seconds(), time.perf_counter()
        while published < count:
            result = await relay.publish_round()  # what the running relay does each round
            batches += 1
            if result.failed or not result.claimed:
                raise BenchmarkError(
                    f"relay batch {batches}: {result.published} published, {result.failed} failed,"
                    f" {result.claimed} claimed, after {published} of {count}"
                )
            published += result.published
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    finally:
        await producer.stop()
    left = await unpublished(engine, topic)
    if left:
        raise BenchmarkError(f"{left} outbox rows are still unpublished after the relay run")
    await asyncio.sleep(1)  # let the statistics catch up before reading what ran meanwhile
    return Throughput(
        events=count,
        published=published,
        batches=batches,
        elapsed=elapsed,
        cpu=cpu,
        disturbed_by=(await housekeeping(engine)).since(before),
    )


async def measure_raw_producer(
    kafka: KafkaConfig, topic: str, messages: list[OutgoingMessage]
) -> RawBaseline:
    producer = AIOKafkaProducer(**kafka.producer_options())
    try:
        with quiet_cluster_metadata():
            async with asyncio.timeout(60):
                await producer.start()
                warm = [await producer.send(topic, b"{}", key=f"warm-up-{i}".encode()) for i in range(10)]
                await asyncio.gather(*warm)
        cpu, started = cpu_seconds(), time.perf_counter()
        deliveries = [
            await producer.send(
                topic, message.value, key=message.key.encode(), headers=encode_headers(message.headers)
            )
            for message in messages
        ]
        acks = await asyncio.gather(*deliveries)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    finally:
        await producer.stop()
    return RawBaseline(events=len(messages), acked=len(acks), elapsed=elapsed, cpu=cpu)


@dataclass(frozen=True)
class WriterPlan:
    """What one writer process commits: every ``writers``-th event from ``index``, event ``i`` at
    ``origin + i / rate`` (``time.monotonic()``, which is system-wide: CLOCK_MONOTONIC on Linux)."""

    url: str
    topic: str
    run: str
    path: str  # "uow": SqlAlchemyUsersUnitOfWork + User.register; "outbox": OutboxWriter in a session
    rate: float
    total: int
    index: int
    writers: int
    pool_size: int = 10


@dataclass
class WriterOutcome:
    committed: dict[str, float]  # ce_id -> time.monotonic() right after COMMIT returned
    commit_ms: list[float]
    start_lag_ms: list[float]


def writer_process(connection: Connection, plan: WriterPlan) -> None:
    """Entry point of a writer process: report ready, receive the origin, write, send the outcome."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        outcome = asyncio.run(_write_at_rate(connection, plan))
    except BaseException as error:
        connection.send(("error", f"{type(error).__name__}: {error}"))
        raise
    else:
        connection.send(("done", outcome))
    finally:
        connection.close()


async def _write_at_rate(connection: Connection, plan: WriterPlan) -> WriterOutcome:
    # The writers stand in for the API: they only have to commit at the rate. On a small machine
    # they share the CPUs with the relay, PostgreSQL and Kafka, so their connections are lean:
    # no TLS handshake and encryption, no pre-ping per checkout (the app's engine does both).
    engine = create_async_engine(
        plan.url,
        pool_size=plan.pool_size,
        max_overflow=plan.pool_size,
        connect_args={"ssl": False, "server_settings": {"application_name": "bench-writer"}},
    )
    try:
        sessions = create_session_factory(engine)
        writer = outbox_writer(plan.topic)
        outcome = WriterOutcome(committed={}, commit_ms=[], start_lag_ms=[])

        async def write_one(i: int) -> None:
            began = time.monotonic()
            if plan.path == "uow":
                async with SqlAlchemyUsersUnitOfWork(sessions, [writer]) as uow:
                    user = User.register(
                        email=Email.of(f"lat-{plan.run}-{i}@example.com"), name=f"Latency {i}"
                    )
                    await uow.users.add(user)
                    events = await uow.commit()
                    done = time.monotonic()
            else:
                events = [UserRegistered(user_id=uuid7(), email=f"lat-{plan.run}-{i}@example.com", name="L")]
                async with sessions() as session:
                    async with session.begin():
                        await writer.before_commit(session, events)
                    done = time.monotonic()
            outcome.committed[str(events[0].event_id)] = done
            outcome.commit_ms.append((done - began) * 1000)

        async def warm(i: int) -> None:  # open the pool's connections before anything is timed
            async with engine.connect() as warming:
                await warming.execute(text("SELECT 1"))

        await asyncio.gather(*(warm(i) for i in range(min(plan.pool_size, 8))))
        connection.send(("ready", None))
        origin = await asyncio.to_thread(connection.recv)
        tasks: list[asyncio.Task[None]] = []
        for i in range(plan.index, plan.total, plan.writers):
            deadline = origin + i / plan.rate
            delay = deadline - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            outcome.start_lag_ms.append(max(0.0, time.monotonic() - deadline) * 1000)
            tasks.append(asyncio.create_task(write_one(i)))
        await asyncio.gather(*tasks)
        return outcome
    finally:
        await engine.dispose()


async def _receive(connection: Connection, expect: str, timeout: float) -> Any:
    if not await asyncio.to_thread(connection.poll, timeout):
        raise BenchmarkError(f"a writer process sent nothing for {timeout:g}s (waiting for {expect!r})")
    kind, payload = connection.recv()
    if kind != expect:
        raise BenchmarkError(f"a writer process failed: {payload}")
    return payload


async def measure_latency(
    url: str, kafka: KafkaConfig, outbox: OutboxConfig, topic: str, options: Options, run: str
) -> Latency:
    total = max(1, round(options.rate * options.seconds))
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    pipes: list[Connection] = []
    for index in range(options.writers):
        parent, child = context.Pipe()
        plan = WriterPlan(url, topic, run, options.writer, options.rate, total, index, options.writers)
        process = context.Process(target=writer_process, args=(child, plan), name=f"bench-writer-{index}")
        process.start()
        child.close()
        processes.append(process)
        pipes.append(parent)

    relay_engine = create_engine(url, application_name="bench-relay")
    clock = ClockedProducer(KafkaMessageProducer(kafka))
    stop = asyncio.Event()
    relay_task: asyncio.Task[None] | None = None
    try:
        await warm_up(clock, topic)
        relay = TimedRelay(relay_engine, clock, outbox)
        relay_task = asyncio.create_task(relay.run(stop))
        async with asyncio.timeout(15):
            while not relay.is_leader:
                if relay_task.done():
                    raise BenchmarkError("the relay stopped before it could lead")
                await asyncio.sleep(0.01)
        for pipe in pipes:
            await _receive(pipe, "ready", 60)
        await asyncio.sleep(0.2)  # the relay's first poll and purge pass
        origin = time.monotonic() + 0.05
        for pipe in pipes:
            pipe.send(origin)
        outcomes: list[WriterOutcome] = [
            await _receive(pipe, "done", options.seconds + ACK_TIMEOUT) for pipe in pipes
        ]
        committed = {event: at for outcome in outcomes for event, at in outcome.committed.items()}
        if len(committed) != total:
            raise BenchmarkError(f"the writers committed {len(committed)} events, not {total}")
        write_elapsed = max(committed.values()) - origin

        async with asyncio.timeout(ACK_TIMEOUT):
            while not committed.keys() <= clock.acked.keys():
                if relay_task.done():
                    raise BenchmarkError("the relay stopped before every event was acked")
                await asyncio.sleep(0.01)
        stop.set()
        await relay_task  # its last batch recorded, so its counters are final
        return Latency(
            target_rate=options.rate,
            seconds=options.seconds,
            writers=options.writers,
            writer=options.writer,
            written=len(committed),
            acked=len(committed),
            write_elapsed=write_elapsed,
            latencies_ms=[(clock.acked[event] - at) * 1000 for event, at in committed.items()],
            commit_ms=[ms for outcome in outcomes for ms in outcome.commit_ms],
            start_lag_ms=[ms for outcome in outcomes for ms in outcome.start_lag_ms],
            batch_ms=list(relay.batch_ms),
            batch_rows=list(relay.batch_rows),
        )
    except TimeoutError:
        raise BenchmarkError(
            "the latency phase timed out (relay not leading, or events never acked)"
        ) from None
    finally:
        stop.set()
        if relay_task is not None:
            await relay_task
        await clock.stop()
        await relay_engine.dispose()
        for pipe in pipes:
            pipe.close()
        for process in processes:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.terminate()
                await asyncio.to_thread(process.join, 5)


async def run_benchmark(options: Options, *, out: Any = None) -> Report:
    """Every measurement, on a database of its own that is dropped at the end."""

    def say(line: str) -> None:
        if out is not None:
            print(line, file=out, flush=True)

    kafka = KafkaConfig(bootstrap_servers=options.bootstrap, client_id="relay-benchmark")
    outbox = OutboxConfig() if options.batch_size is None else OutboxConfig(batch_size=options.batch_size)
    run = uuid.uuid4().hex[:10]
    topics = [f"bench-{run}-latency.users.v1"]
    say(
        f"relay benchmark {run}: {options.events} events, batch_size={outbox.batch_size},"
        f" batches_in_flight={outbox.batches_in_flight}, linger_ms={kafka.linger_ms},"
        f" acks={kafka.acks}, idempotence={kafka.enable_idempotence}, broker {options.bootstrap}"
    )
    load_before = os.getloadavg()[0]
    url = await create_database(options.database_admin_url)
    say(f"database {make_url(url).database} created and migrated")
    pairs: list[Pair] = []
    try:
        for attempt in range(1, options.repeat + 1):
            relay_topic, raw_topic = (f"bench-{run}-{phase}-{attempt}.users.v1" for phase in ("relay", "raw"))
            topics += [relay_topic, raw_topic]
            engine = create_engine(url, application_name="bench-fill")
            try:
                filled = time.perf_counter()
                await fill_outbox(engine, relay_topic, options.events, f"{run}-{attempt}")
                filled = time.perf_counter() - filled
                say(f"[{attempt}] outbox filled with {options.events} rows in {filled:.1f}s")
                messages = await outbox_messages(engine, relay_topic)
                throughput = await measure_relay_throughput(
                    engine, kafka, outbox, relay_topic, options.events
                )
            finally:
                await engine.dispose()
            say(
                f"[{attempt}] relay: {throughput.published} events in {throughput.elapsed:.2f}s"
                f" ({throughput.batches} rounds, {throughput.cpu:.2f}s CPU): {throughput.eps:.0f} events/s"
                + (f" (meanwhile: {', '.join(throughput.disturbed_by)})" if throughput.disturbed_by else "")
            )
            raw = await measure_raw_producer(kafka, raw_topic, messages)
            del messages
            pairs.append(Pair(throughput, raw))
            say(
                f"[{attempt}] raw producer: {raw.acked} events in {raw.elapsed:.2f}s ({raw.cpu:.2f}s CPU):"
                f" {raw.eps:.0f} events/s;"
                f" ratio {pairs[-1].ratio:.2f}"
            )
        say(
            f"latency: {options.rate:g} events/s for {options.seconds:g}s,"
            f" {options.writers} writer processes ({options.writer}) ..."
        )
        latency = await measure_latency(url, kafka, outbox, topics[0], options, run)
        say(
            f"latency: {latency.acked} events committed at {latency.achieved_rate:.1f}/s and acked;"
            f" p50 {latency.percentile(0.5):.1f} ms, p99 {latency.percentile(0.99):.1f} ms"
        )
    finally:
        try:
            await drop_database(options.database_admin_url, url)
            say(f"database {make_url(url).database} dropped")
        finally:
            await delete_topics(kafka, topics)
    return Report(
        options=options,
        batch_size=outbox.batch_size,
        linger_ms=kafka.linger_ms,
        database=make_url(url).database or "",
        pairs=pairs,
        latency=latency,
        topics=topics,
        load=(load_before, os.getloadavg()[0]),
    )


# --- command line ---------------------------------------------------------------------------------


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.relay_throughput", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--events", type=positive_int, default=20_000, help="outbox rows to relay (20000)")
    parser.add_argument("--rate", type=positive_float, default=500.0, help="events/s while measuring latency")
    parser.add_argument("--seconds", type=positive_float, default=20.0, help="length of the latency phase")
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092",
        help="Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--database-admin-url",
        default=os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL),
        help="PostgreSQL URL of a role that may CREATE DATABASE (TEST_DATABASE_URL, else the tests' default)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="relay batch size (default: OutboxConfig's)"
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=3,
        help="relay/raw pairs to measure; the median ratio counts (3)",
    )
    parser.add_argument(
        "--writers", type=positive_int, default=2, help="writer processes in the latency phase (2)"
    )
    parser.add_argument(
        "--writer",
        choices=("uow", "outbox"),
        default="uow",
        help="how each event is committed: SqlAlchemyUsersUnitOfWork (uow) or OutboxWriter in a session",
    )
    args = parser.parse_args(argv)
    return Options(
        events=args.events,
        rate=args.rate,
        seconds=args.seconds,
        bootstrap=args.bootstrap,
        database_admin_url=args.database_admin_url,
        batch_size=args.batch_size,
        writers=args.writers,
        writer=args.writer,
        repeat=args.repeat,
    )


async def amain(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        report = await run_benchmark(options, out=sys.stdout)
    except BenchmarkError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    print("--- summary ---")
    for line in summary_lines(report):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
