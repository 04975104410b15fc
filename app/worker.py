"""``python -m app.worker``: the outbox relay and the Kafka consumers, in their own process.

    python -m app.worker                         relay + consumers until SIGTERM/SIGINT
    python -m app.worker --no-consumers          relay only (e.g. a second, standby relay)
    python -m app.worker --no-relay              consumers only
    python -m app.worker replay-dlq TOPIC        move dead letters of TOPIC.dlq back to TOPIC
    python -m app.worker outbox list-parked      outbox rows set aside, with their errors
    python -m app.worker outbox retry ID         send a parked event (and the rows behind it) again
    python -m app.worker outbox discard ID --reason TEXT   give a parked event up, for a reason

At start it creates the topics it uses when they are missing (``KAFKA_CREATE_TOPICS``).
On SIGTERM the worker stops fetching, finishes the messages in hand, commits their offsets,
leaves the consumer group and releases the relay lock, so a standby takes over at once. It
exits within ``OUTBOX_SHUTDOWN_GRACE`` seconds (plus moments), even with the broker away: sends
not acknowledged by then stay unpublished in the outbox and go out after the restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import uuid
from collections.abc import Coroutine
from typing import Any

from app.building_blocks.infrastructure.garbage_collection import tune_garbage_collector
from app.building_blocks.infrastructure.messaging.dead_letters import replay_dead_letters
from app.building_blocks.infrastructure.messaging.kafka import KafkaMessageProducer, KafkaMessageSource
from app.building_blocks.infrastructure.messaging.outbox_admin import (
    ParkedRowError,
    discard_parked,
    list_parked,
    retry_parked,
)
from app.building_blocks.infrastructure.messaging.provisioning import provision_topics
from app.building_blocks.infrastructure.persistence.database import (
    DatabaseUnavailableError,
    check_database,
)
from app.building_blocks.observability.setup import (
    instrument_mediator,
    serve_metrics,
    setup_process_observability,
)
from app.building_blocks.observability.tracing import flush_traces
from app.composition import build_engine, build_service, start_gauge_sampler
from app.messaging import Messaging
from app.settings import Settings, get_settings

logger = logging.getLogger("app.worker")

SHUTDOWN_MARGIN = 5.0  # beyond OUTBOX_SHUTDOWN_GRACE, for closing connections and leaving the group


async def run_worker(settings: Settings, *, relay: bool = True, consumers: bool = True) -> None:
    service = build_service(settings, relay=relay, consumers=consumers)
    engine, messaging = service.engine, service.messaging
    if settings.tracing_enabled or settings.metrics_enabled:
        instrument_mediator(service.mediator)
    if settings.metrics_enabled and settings.worker_metrics_port:
        serve_metrics(settings.worker_metrics_host, settings.worker_metrics_port)
    try:
        await check_database(engine, timeout=settings.database.connect_timeout)
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
        tune_garbage_collector(settings.gc_threshold)
        sampler = start_gauge_sampler(settings, engine, messaging, stop)
        try:
            await _until_stopped(_serve(settings, messaging, stop), stop, settings.outbox.shutdown_grace)
        finally:
            if sampler is not None:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            await messaging.producer.stop()
        logger.info("worker stopped")
    finally:
        await service.close()
        await engine.dispose()
        flush_traces()


async def _serve(settings: Settings, messaging: Messaging, stop: asyncio.Event) -> None:
    if settings.kafka.create_topics and not messaging.embedded:
        # Before the first send or subscription, which a broker may answer by creating the topic
        # with its own defaults. A broker that is down makes the worker wait here.
        await provision_topics(settings.kafka, messaging.topic_names, stop)
    await messaging.run(stop)


async def _until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event, grace: float) -> None:
    """Run ``work``; once ``stop`` is set, give it ``grace`` seconds (and a margin) to return.

    Every part watches ``stop`` and bounds its own waits; this is the backstop that keeps the
    promise of a bounded shutdown should one of them not.
    """
    task = asyncio.create_task(work)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            try:
                async with asyncio.timeout(grace + SHUTDOWN_MARGIN):
                    await asyncio.shield(task)
            except TimeoutError:
                logger.error("worker: still stopping after %.0fs; cancelled", grace + SHUTDOWN_MARGIN)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return
        await task  # its outcome: an error it ended with is raised here
    finally:
        stopped.cancel()


async def replay(settings: Settings, topic: str, limit: int | None) -> int:
    kafka = settings.kafka
    if kafka.embedded:
        raise SystemExit("replay-dlq needs KAFKA_BOOTSTRAP_SERVERS: dead letters live in Kafka")
    dead_letter_topic = topic if topic.endswith(kafka.dlq_suffix) else kafka.dlq_topic(topic)
    source = KafkaMessageSource(kafka, kafka.group("dlq-replay"), [dead_letter_topic])
    producer = KafkaMessageProducer(kafka)
    try:
        return await replay_dead_letters(source, producer, limit=limit)
    finally:
        await producer.stop()


async def outbox_command(settings: Settings, args: argparse.Namespace) -> int:
    engine = build_engine(settings)
    try:
        if args.outbox_command == "list-parked":
            parked = await list_parked(engine)
            for row in parked:
                print(
                    f"{row.event_id}  {row.event_type}  {row.aggregate_type} {row.aggregate_id}  "
                    f"topic={row.topic}  attempts={row.attempts}  parked_at={row.parked_at.isoformat()}  "
                    f"waiting={row.waiting}\n    {row.last_error}"
                )
            print(f"{len(parked)} parked", file=sys.stderr)
        elif args.outbox_command == "retry":
            released = await retry_parked(engine, args.event_id)
            print(
                f"released {released} rows of the aggregate; the relay sends them in order", file=sys.stderr
            )
        else:
            released = await discard_parked(engine, args.event_id, args.reason)
            print(f"discarded {args.event_id}; released {released} rows behind it", file=sys.stderr)
    except (ParkedRowError, ValueError) as error:
        print(f"worker outbox: {error}", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--no-relay", action="store_true", help="do not run the outbox relay")
    parser.add_argument("--no-consumers", action="store_true", help="do not run the consumers")
    commands = parser.add_subparsers(dest="command")
    replay_parser = commands.add_parser("replay-dlq", help="move dead letters back to their topic")
    replay_parser.add_argument("topic", help="the topic (or its .dlq topic) whose dead letters to replay")
    replay_parser.add_argument("--limit", type=int, default=None, help="replay at most this many")
    outbox = commands.add_parser("outbox", help="parked outbox rows").add_subparsers(
        dest="outbox_command", required=True
    )
    outbox.add_parser("list-parked", help="each parked event, its error and the rows waiting behind it")
    retry = outbox.add_parser("retry", help="send a parked event and the rows behind it again, in order")
    retry.add_argument("event_id", type=uuid.UUID, help="the event id list-parked shows")
    discard = outbox.add_parser("discard", help="give a parked event up and release the rows behind it")
    discard.add_argument("event_id", type=uuid.UUID, help="the event id list-parked shows")
    discard.add_argument("--reason", required=True, help="why (logged with the event)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = get_settings()
    setup_process_observability(settings.observability(process="worker"))
    try:
        if args.command == "replay-dlq":
            count = asyncio.run(replay(settings, args.topic, args.limit))
            print(f"replayed {count} dead letters", file=sys.stderr)
        elif args.command == "outbox":
            return asyncio.run(outbox_command(settings, args))
        else:
            asyncio.run(run_worker(settings, relay=not args.no_relay, consumers=not args.no_consumers))
    except DatabaseUnavailableError as error:
        print(f"worker: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
