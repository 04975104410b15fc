"""The relay's promises against a real Kafka broker and PostgreSQL, each under its fault:

- the broker stopped for more than 30 s while writes go on: the worker records the failures on
  the rows, never keeps a claim transaction open past the send deadline, stops within 15 s of a
  SIGTERM during the outage, and once the broker is back every event arrives, once, in order;
- a row the broker refuses for good (larger than the topic's ``max.message.bytes``) is parked,
  more than a batch of its aggregate's rows park behind it, a thousand events of other
  aggregates flow meanwhile, and the operator's ``retry`` sends the lot in order once fixed.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from sqlalchemy import func, select, text

from app.building_blocks.infrastructure.messaging import outbox_table
from app.building_blocks.infrastructure.messaging.outbox_admin import list_parked
from app.settings import Settings
from tests.conftest import ROOT
from tests.helpers import USERS
from tests.kafka_service import broker_is_local, broker_script
from tests.messaging_harness import (
    activity_counts,
    all_published,
    api,
    engine_for,
    headers,
    read_topic,
    register,
    relay_task,
    settings_for,
    wait_for,
    worker,
    worker_env,
)
from tests.outbox_helpers import fill, rename

pytestmark = pytest.mark.kafka

SEND_DEADLINE = 3.0  # KAFKA_REQUEST_TIMEOUT_MS of the harness, which the worker takes as its deadline


async def idle_in_transaction_for(database: str, application: str) -> float:
    """The age of the oldest transaction of ``application`` that sits idle in transaction (0 if none)."""
    async with engine_for(database).connect() as connection:
        age = await connection.execute(
            text(
                "SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0) FROM pg_stat_activity"
                " WHERE application_name = :application AND state LIKE 'idle in transaction%'"
            ),
            {"application": application},
        )
        return float(age.scalar_one())


async def failed_rows(database: str, topic: str) -> tuple[int, int]:
    """Unpublished rows of ``topic`` that carry a recorded failure, and their largest attempt count."""
    async with engine_for(database).connect() as connection:
        count, attempts = (
            await connection.execute(
                select(func.count(), func.max(outbox_table.c.attempts)).where(
                    outbox_table.c.topic == topic,
                    outbox_table.c.published_at.is_(None),
                    outbox_table.c.last_error.is_not(None),
                )
            )
        ).one()
    return int(count), int(attempts or 0)


async def outbox_order(database: str, topic: str) -> dict[str, list[str]]:
    """Each aggregate's event ids in outbox order: the order its events must arrive in."""
    async with engine_for(database).connect() as connection:
        rows = await connection.execute(
            select(outbox_table.c.aggregate_id, outbox_table.c.id)
            .where(outbox_table.c.topic == topic)
            .order_by(outbox_table.c.position)
        )
        order: dict[str, list[str]] = defaultdict(list)
        for aggregate_id, event_id in rows:
            order[aggregate_id].append(str(event_id))
    return order


def arrival_order(records: list[Any]) -> dict[str, list[str]]:
    """Each key's event ids in the order the topic holds them, first copies only."""
    order: dict[str, list[str]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event_id = headers(record)["ce_id"]
        key = record.key.decode()
        if event_id not in order[key]:
            order[key].append(event_id)
    return order


async def test_broker_down_for_30s_the_worker_records_failures_stops_in_time_and_nothing_is_lost(
    database: str, bootstrap: str, topic: str, tmp_path: Path
) -> None:
    if not await broker_is_local():
        pytest.skip("needs the broker that kafka/broker.sh runs, to stop and start it")
    settings = settings_for(database, bootstrap, topic)
    application = f"outage-{uuid.uuid4().hex[:6]}"  # the worker's connections, in pg_stat_activity
    log = tmp_path / "worker.log"
    async with api(settings) as http:
        with worker(settings, log, SERVICE_NAME=application) as first:
            ids = await register(http, 40, f"before-{topic}")
            await wait_for(lambda: all_published(database, topic, 40), 60, "the first events")
            code, output = await broker_script("down")
            assert code == 0, output
            down_at = time.monotonic()
            try:
                oldest_claim = 0.0
                stopped_in: float | None = None
                writes = 40
                while time.monotonic() - down_at < 32:  # writes keep being accepted meanwhile
                    ids += await register(http, 5, f"during-{topic}-{writes}")
                    for user_id in ids[:10]:
                        response = await http.patch(f"{USERS}/{user_id}", json={"name": f"n{writes}"})
                        assert response.status_code == 200, response.text
                    writes += 15
                    oldest_claim = max(oldest_claim, await idle_in_transaction_for(database, application))
                    if stopped_in is None and time.monotonic() - down_at > 18:
                        failures = await failed_rows(database, topic)
                        first.send_signal(signal.SIGTERM)
                        signalled = time.monotonic()
                        code = await asyncio.to_thread(first.wait, 30)
                        stopped_in = time.monotonic() - signalled
                    await asyncio.sleep(0.2)
            finally:
                code, output = await broker_script("up", timeout=180)
                assert code == 0, output
        outage = time.monotonic() - down_at
        assert stopped_in is not None
        assert stopped_in < 15, f"the worker took {stopped_in:.1f}s to stop: {log.read_text()[-3000:]}"
        assert first.returncode == 0, log.read_text()[-3000:]
        assert failures[0] > 0, "the failed sends are recorded on the rows"
        assert failures[1] >= 1
        assert oldest_claim <= SEND_DEADLINE + 1.0, f"a claim stayed open {oldest_claim:.1f}s"
        with worker(settings, log, SERVICE_NAME=application):
            total = writes
            caught_up = await wait_for(
                lambda: all_published(database, topic, total), 120, "the relay to publish everything"
            )

            async def projected() -> bool:
                return sum((await activity_counts(database, ids)).values()) == total

            await wait_for(projected, 90, "the activity log")
    records = await read_topic(bootstrap, topic, at_least=writes)
    expected = await outbox_order(database, topic)
    assert arrival_order(records) == expected  # every event, in its aggregate's order
    applied = await activity_counts(database, ids)
    assert len(applied) == writes
    assert set(applied.values()) == {1}  # each applied once
    lines = [line for line in log.read_text().splitlines() if "the transport is unavailable" in line]
    print(
        f"\nbroker down {outage:.0f}s, {writes} writes; worker stopped {stopped_in:.1f}s after SIGTERM;"
        f" longest open claim {oldest_claim:.1f}s; {failures[0]} rows showed failures (up to"
        f" {failures[1]} attempts); {len(lines)} back-off lines; {len(records) - writes} duplicates"
        f" in Kafka; caught up {caught_up:.1f}s after the restart"
    )


async def create_topic(bootstrap: str, topic: str, **configs: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def configure_topic(bootstrap: str, topic: str, **configs: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])
    finally:
        await admin.close()


def outbox_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.worker", "outbox", *args],
        cwd=ROOT,
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_row_the_broker_refuses_is_parked_others_flow_and_retry_sends_it_in_order(
    database: str, bootstrap: str, topic: str
) -> None:
    batch = 50
    settings = settings_for(database, bootstrap, topic, outbox={"batch_size": batch})
    await create_topic(bootstrap, topic, **{"max.message.bytes": "20000"})  # > a 16 KiB batch
    stuck = uuid.uuid4()
    await rename(engine_for(database), topic, stuck, ["x" * 50_000])  # 50 KB: refused
    await rename(engine_for(database), topic, stuck, [f"later-{i}" for i in range(batch + 70)])
    async with relay_task(settings):
        await fill(engine_for(database), topic, 1000)  # other aggregates

        async def others_published() -> bool:
            async with engine_for(database).connect() as connection:
                left = await connection.execute(
                    select(func.count()).where(
                        outbox_table.c.topic == topic,
                        outbox_table.c.aggregate_id != str(stuck),
                        outbox_table.c.published_at.is_(None),
                    )
                )
                return left.scalar_one() == 0

        await wait_for(others_published, 60, "the other aggregates' events")
        [parked] = await list_parked(engine_for(database))
        assert (parked.aggregate_id, parked.waiting) == (str(stuck), batch + 70)
        assert parked.last_error is not None
        assert "MessageSizeTooLarge" in parked.last_error

        refused = outbox_cli(settings, "discard", str(parked.event_id))
        assert refused.returncode == 2
        assert "--reason" in refused.stderr
        refused = outbox_cli(settings, "discard", str(parked.event_id), "--reason", " ")
        assert refused.returncode == 2
        assert "needs a reason" in refused.stderr
        listed = outbox_cli(settings, "list-parked")
        assert str(parked.event_id) in listed.stdout
        assert f"waiting={batch + 70}" in listed.stdout

        await configure_topic(bootstrap, topic, **{"max.message.bytes": "1048588"})  # the fix
        retried = outbox_cli(settings, "retry", str(parked.event_id))
        assert retried.returncode == 0, retried.stderr
        await wait_for(lambda: all_published(database, topic, 1000 + batch + 71), 60, "the retried rows")
    records = await read_topic(bootstrap, topic, at_least=1000 + batch + 71)
    assert arrival_order(records) == await outbox_order(database, topic)
    assert len(arrival_order(records)[str(stuck)]) == batch + 71
