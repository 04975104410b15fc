"""The Kafka transport on its own, against the real broker: records the client refuses are refused
alone, an unreachable broker is an outage, and after abandoning its sends the producer goes on
with a fresh one. (The transport inside the relay and the consumers is in
tests/integration/test_messaging_kafka.py and test_relay_kafka_faults.py.)"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from app.building_blocks.infrastructure.messaging import KafkaConfig, OutgoingMessage
from app.building_blocks.infrastructure.messaging.kafka import KafkaMessageProducer, KafkaMessageSource
from app.building_blocks.infrastructure.messaging.transport import (
    MessageRefusedError,
    TransportUnavailableError,
)
from tests.messaging_harness import read_topic

UNREACHABLE = KafkaConfig(bootstrap_servers="127.0.0.1:1", request_timeout_ms=1000)


def message(topic: str, key: str, value: bytes = b"{}", **headers: str) -> OutgoingMessage:
    return OutgoingMessage(topic=topic, key=key, value=value, headers=headers)


@pytest.mark.kafka
async def test_records_the_client_refuses_are_refused_alone(bootstrap: str, topic: str) -> None:
    producer = KafkaMessageProducer(KafkaConfig(bootstrap_servers=bootstrap))
    try:
        with pytest.raises(MessageRefusedError, match="cannot serialise"):
            await producer.enqueue(message(topic, "a", trace="\ud800"))  # a lone surrogate
        with pytest.raises(MessageRefusedError, match="MessageSizeTooLargeError"):
            await producer.enqueue(message(topic, "b", b"x" * 2_000_000))  # over max_request_size
        await producer.send(message(topic, "c", b'{"n": 1}', kind="ok"))
    finally:
        await producer.stop()
    [record] = await read_topic(bootstrap, topic, at_least=1, timeout=30, quiet=0.5)
    assert (record.key, record.value, list(record.headers)) == (b"c", b'{"n": 1}', [("kind", b"ok")])


@pytest.mark.kafka
async def test_after_abandoning_its_sends_the_producer_goes_on_with_a_fresh_one(
    bootstrap: str, topic: str
) -> None:
    producer = KafkaMessageProducer(KafkaConfig(bootstrap_servers=bootstrap), stop_timeout=5)
    try:
        await producer.send(message(topic, "k", b"1"))
        ack = await producer.enqueue(message(topic, "k", b"2"))
        await producer.abandon_pending()  # the relay's deadline passed: give up on what is in hand
        assert ack.done()
        if ack.exception() is not None:  # not acknowledged before the abandon: failed, never sent
            assert isinstance(ack.exception(), TransportUnavailableError)
        await producer.send(message(topic, "k", b"3"))
    finally:
        async with asyncio.timeout(10):  # also waits for the abandoned producer's close
            await producer.stop()
    values = [record.value for record in await read_topic(bootstrap, topic, at_least=2, quiet=0.5)]
    assert values in ([b"1", b"3"], [b"1", b"2", b"3"])


async def test_an_unreachable_broker_is_an_outage_for_the_producer() -> None:
    producer = KafkaMessageProducer(UNREACHABLE)
    try:
        async with asyncio.timeout(30):
            with pytest.raises(TransportUnavailableError, match="unreachable"):
                await producer.send(message("never.v1", "k"))
    finally:
        await producer.stop()


async def test_a_source_that_cannot_reach_the_broker_fails_to_start_and_holds_nothing() -> None:
    source = KafkaMessageSource(UNREACHABLE, "g-never", ["never.v1"])
    async with asyncio.timeout(30):
        with pytest.raises(KafkaConnectionError):
            await source.start()
    source.pause()  # not started: nothing to pause, resume or keep alive
    await source.keep_alive()
    source.resume()
    await source.stop()
