"""The harness of the messaging tests against real Kafka and PostgreSQL: settings, an API in
process, the relay as a task, the worker as a process, and polls of the outbox, the activity log
and topics. Fixtures (``bootstrap``, ``database``, ``topic``) are in tests/integration/conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.infrastructure.messaging import KafkaConfig, OutboxConfig, outbox_table
from app.building_blocks.infrastructure.persistence.database import create_engine
from app.composition import build_service
from app.main import create_app
from app.settings import Settings
from app.users.persistence.tables import user_activity_table
from tests.conftest import ROOT, make_settings, stop_process
from tests.helpers import USERS

_engines: dict[str, AsyncEngine] = {}


def engine_for(database: str) -> AsyncEngine:
    """One engine per test database for the checks that poll it (not one per poll)."""
    if database not in _engines:
        _engines[database] = create_engine(database)
    return _engines[database]


async def dispose_engine(database: str) -> None:
    engine = _engines.pop(database, None)
    if engine is not None:
        await engine.dispose()


def settings_for(
    database: str, bootstrap: str, topic: str, outbox: dict[str, Any] | None = None, **kafka: Any
) -> Settings:
    """Settings of the API and the relay of one test (the worker's come from worker_env)."""
    base = make_settings(database)
    return base.model_copy(
        update={
            "topic_overrides": {"user": topic},
            "kafka": KafkaConfig(
                bootstrap_servers=bootstrap,
                client_id="kafka-tests",
                consumer_group=f"g-{topic}",
                request_timeout_ms=3000,
                retry_backoff_ms=50,
                **kafka,
            ),
            "outbox": OutboxConfig(
                poll_interval=0.2,
                max_backoff=2.0,
                standby_interval=0.5,
                send_timeout=3.0,  # = KAFKA_REQUEST_TIMEOUT_MS, as the settings derive it
                **(outbox or {}),
            ),
        }
    )


def worker_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database.url,
        "KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka.bootstrap_servers),
        "KAFKA_CONSUMER_GROUP": settings.kafka.consumer_group or settings.service_name,
        "KAFKA_REQUEST_TIMEOUT_MS": "3000",
        "KAFKA_RETRY_BACKOFF_MS": "50",
        "TOPIC_OVERRIDES": json.dumps(settings.topic_overrides),
        "OUTBOX_POLL_INTERVAL": "0.2",
        "OUTBOX_STANDBY_INTERVAL": "0.5",
        "OUTBOX_MAX_BACKOFF": "2",
        "LOG_LEVEL": "INFO",
    }


@contextmanager
def worker(settings: Settings, log: Path, *args: str, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.worker", *args],
            cwd=ROOT,
            env={**worker_env(settings), **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            stop_process(process, timeout=20)


@asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=30) as http,
    ):
        yield http


@asynccontextmanager
async def relay_task(settings: Settings) -> AsyncIterator[None]:
    """The relay of the worker, run in this process."""
    service = build_service(settings, relay=True, consumers=False)
    engine, messaging = service.engine, service.messaging
    stop = asyncio.Event()
    task = asyncio.create_task(messaging.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await messaging.producer.stop()
        await engine.dispose()


async def register(http: httpx.AsyncClient, count: int, prefix: str, concurrency: int = 16) -> list[str]:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with semaphore:
            response = await http.post(USERS, json={"email": f"{prefix}-{i}@example.com", "name": f"u{i}"})
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def read_topic(
    bootstrap: str, topic: str, *, at_least: int, timeout: float = 90, quiet: float = 2.0
) -> list[Any]:
    """Every record of ``topic`` once ``at_least`` arrived and nothing new came for ``quiet`` s."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            fresh = [record for records_ in batch.values() for record in records_]
            if fresh:
                records += fresh
                last_new = time.monotonic()
            elif len(records) >= at_least and time.monotonic() - last_new >= quiet:
                break
    finally:
        await consumer.stop()
    return records


def headers(record: Any) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


async def outbox_counts(database: str, topic: str) -> tuple[int, int]:
    async with engine_for(database).connect() as connection:
        total, done = (
            await connection.execute(
                select(func.count(), func.count(outbox_table.c.published_at)).where(
                    outbox_table.c.topic == topic
                )
            )
        ).one()
    return int(total), int(done)


async def wait_for(condition: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def all_published(database: str, topic: str, expected: int) -> bool:
    total, published = await outbox_counts(database, topic)
    return total == expected and published == expected


async def activity_counts(database: str, user_ids: list[str]) -> Counter[str]:
    async with engine_for(database).connect() as connection:
        rows = await connection.execute(
            select(user_activity_table.c.event_id).where(
                user_activity_table.c.user_id.in_([uuid.UUID(u) for u in user_ids])
            )
        )
        return Counter(row.event_id for row in rows)


async def some_published(database: str, topic: str) -> bool:
    return (await outbox_counts(database, topic))[1] > 0
