"""The worker's topics are created when missing, as configured, and never changed once they exist."""

from __future__ import annotations

import asyncio

import pytest

from app.building_blocks.infrastructure.messaging.config import KafkaConfig
from app.building_blocks.infrastructure.messaging.provisioning import (
    TopicProvisioningError,
    ensure_topics,
    provision_topics,
)
from tests.kafka_service import partition_counts


@pytest.mark.kafka
async def test_missing_topics_are_created_as_configured_and_existing_ones_left_alone(
    bootstrap: str, topic: str
) -> None:
    config = KafkaConfig(bootstrap_servers=bootstrap, topic_partitions=2)
    dead_letters = config.dlq_topic(topic)

    assert await ensure_topics(config, [topic, dead_letters, topic]) == [topic, dead_letters]
    assert await partition_counts(bootstrap, [topic, dead_letters]) == {topic: 2, dead_letters: 2}

    resized = KafkaConfig(bootstrap_servers=bootstrap, topic_partitions=5)
    assert await ensure_topics(resized, [topic, dead_letters]) == []
    assert await partition_counts(bootstrap, [topic]) == {topic: 2}  # untouched


@pytest.mark.kafka
async def test_a_topic_the_broker_refuses_is_reported_not_ignored(bootstrap: str, topic: str) -> None:
    # The local broker is a single node: three replicas cannot be placed.
    config = KafkaConfig(bootstrap_servers=bootstrap, topic_replication_factor=3)
    with pytest.raises(TopicProvisioningError, match=topic):
        await ensure_topics(config, [topic])
    assert await provision_topics(config, [topic], asyncio.Event()) is False  # gives up, once
    assert await partition_counts(bootstrap, [topic]) == {topic: 0}


async def test_an_unreachable_broker_is_waited_for_until_stop() -> None:
    config = KafkaConfig(bootstrap_servers="127.0.0.1:1", request_timeout_ms=1000)
    stop = asyncio.Event()
    waiting = asyncio.create_task(provision_topics(config, ["never.v1"], stop))
    await asyncio.sleep(1.5)
    assert not waiting.done()  # still retrying: a broker that is down is a delay
    stop.set()
    async with asyncio.timeout(5):
        assert await waiting is False
