"""``SERVICE_NAME`` alone names the service on the broker: consumer groups, client id, topics and
the CloudEvents ``source`` all follow it (no ``KAFKA_CLIENT_ID`` or ``KAFKA_CONSUMER_GROUP``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from app.building_blocks.infrastructure.messaging import KafkaConfig
from app.main import create_app
from app.settings import DatabaseSettings, Settings
from tests.conftest import ROOT
from tests.helpers import USERS
from tests.kafka_service import delete_topics
from tests.messaging_harness import activity_counts, api, headers, read_topic, wait_for

pytestmark = pytest.mark.kafka


def start_worker(environment: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "app.worker"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def test_service_name_names_groups_client_id_topics_and_source(
    bootstrap: str, database: str, tmp_path: Path
) -> None:
    name = f"billing-service-{uuid.uuid4().hex[:6]}"  # a fresh name: groups outlive a run
    topic = f"{name}.users.v1"
    settings = Settings(
        environment="test",
        service_name=name,
        database=DatabaseSettings(url=database),
        gc_threshold=0,  # as make_settings: nothing frozen in the test process
        kafka=KafkaConfig(_env_file=None, bootstrap_servers=bootstrap),  # type: ignore[call-arg]
    )
    assert (settings.kafka.client_id, settings.kafka.consumer_group) == (None, None)  # derived
    assert create_app(settings).openapi()["info"]["title"] == settings.title

    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KAFKA_", "OUTBOX_")) and key not in {"SERVICE_NAME", "TOPIC_OVERRIDES"}
    }
    log = tmp_path / "worker.log"
    environment = {
        **inherited,
        "SERVICE_NAME": name,
        "DATABASE_URL": database,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "OUTBOX_POLL_INTERVAL": "0.2",
        "LOG_LEVEL": "INFO",
    }
    worker = start_worker(environment, log)
    group = f"{name}.users.activity-log"
    try:
        async with api(settings) as http:
            response = await http.post(USERS, json={"email": f"{name}@example.com", "name": "Bill"})
            assert response.status_code == 201, response.text
            user_id = str(response.json()["id"])

        async def projected() -> bool:
            assert worker.poll() is None, log.read_text()[-3000:]
            return sum((await activity_counts(database, [user_id])).values()) == 1

        await wait_for(projected, 60, "the worker's consumer to project the registration")

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            groups = {listed[0] for listed in await admin.list_consumer_groups()}
            [description] = await admin.describe_consumer_groups([group])
        finally:
            await admin.close()
        assert group in groups
        assert not any(g.startswith("user-service.") and g.endswith(name) for g in groups)
        members = description.groups[0][5]
        assert members, f"no member in {group}"
        assert {member[1] for member in members} == {name}  # each member's client id

        [record] = await read_topic(bootstrap, topic, at_least=1, quiet=0.5)
        assert headers(record)["ce_source"] == name
        assert record.key.decode() == user_id
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            await asyncio.to_thread(worker.wait, 30)
        await delete_topics(bootstrap, [topic, f"{topic}.dlq"])
    text = log.read_text()
    assert worker.returncode == 0, text[-3000:]
    assert f'"service": "{name}-worker"' in text  # the worker's log lines carry the name too
