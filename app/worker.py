"""``python -m app.worker``: the outbox relay and the Kafka consumers, in their own process.

    python -m app.worker                     relay + consumers until SIGTERM/SIGINT
    python -m app.worker --no-consumers      relay only (e.g. a second, standby relay)
    python -m app.worker --no-relay          consumers only
    python -m app.worker replay-dlq TOPIC    move dead letters of TOPIC.dlq back to TOPIC

At start it creates the topics it uses when they are missing (``KAFKA_CREATE_TOPICS``).
On SIGTERM the worker stops fetching, finishes the messages in hand, commits their offsets,
leaves the consumer group and releases the relay lock, so a standby takes over at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from app.building_blocks.infrastructure.messaging.dead_letters import replay_dead_letters
from app.building_blocks.infrastructure.messaging.kafka import KafkaMessageProducer, KafkaMessageSource
from app.building_blocks.infrastructure.messaging.provisioning import provision_topics
from app.building_blocks.infrastructure.persistence.database import (
    DatabaseUnavailableError,
    check_database,
)
from app.building_blocks.observability.logging import configure_logging
from app.main import build_engine
from app.messaging import build_messaging
from app.settings import Settings, get_settings

logger = logging.getLogger("app.worker")


async def run_worker(settings: Settings, *, relay: bool = True, consumers: bool = True) -> None:
    engine = build_engine(settings)
    try:
        await check_database(engine, timeout=settings.database.connect_timeout)
        messaging = build_messaging(settings, engine, relay=relay, consumers=consumers)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        logger.info(
            "worker started: relay=%s consumers=%d transport=%s",
            messaging.relay is not None,
            len(messaging.consumers),
            "in-process" if messaging.embedded else "kafka",
        )
        try:
            if settings.kafka.create_topics and not messaging.embedded:
                # Before the first send or subscription, which a broker may answer by creating the
                # topic with its own defaults. A broker that is down makes the worker wait here.
                await provision_topics(settings.kafka, messaging.topic_names, stop)
            await messaging.run(stop)
        finally:
            await messaging.producer.stop()
        logger.info("worker stopped")
    finally:
        await engine.dispose()


async def replay(settings: Settings, topic: str, limit: int | None) -> int:
    kafka = settings.kafka
    if kafka.embedded:
        raise SystemExit("replay-dlq needs KAFKA_BOOTSTRAP_SERVERS: dead letters live in Kafka")
    dead_letter_topic = topic if topic.endswith(kafka.dlq_suffix) else kafka.dlq_topic(topic)
    source = KafkaMessageSource(kafka, f"{kafka.consumer_group}.dlq-replay", [dead_letter_topic])
    producer = KafkaMessageProducer(kafka)
    try:
        return await replay_dead_letters(source, producer, limit=limit)
    finally:
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--no-relay", action="store_true", help="do not run the outbox relay")
    parser.add_argument("--no-consumers", action="store_true", help="do not run the consumers")
    commands = parser.add_subparsers(dest="command")
    replay_parser = commands.add_parser("replay-dlq", help="move dead letters back to their topic")
    replay_parser.add_argument("topic", help="the topic (or its .dlq topic) whose dead letters to replay")
    replay_parser.add_argument("--limit", type=int, default=None, help="replay at most this many")
    args = parser.parse_args(argv)

    settings = get_settings()
    configure_logging(
        service=f"{settings.service_name}-worker", level=settings.log_level, json=settings.log_json
    )
    try:
        if args.command == "replay-dlq":
            count = asyncio.run(replay(settings, args.topic, args.limit))
            print(f"replayed {count} dead letters", file=sys.stderr)
        else:
            asyncio.run(run_worker(settings, relay=not args.no_relay, consumers=not args.no_consumers))
    except DatabaseUnavailableError as error:
        print(f"worker: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
