"""An endpoint down for a minute loses nothing and dead-letters nothing (PostgreSQL, ~65 s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from app.building_blocks.infrastructure.messaging.config import KafkaConfig
from app.settings import WebhookSettings
from tests.http_servers import Reply, ScriptedServer
from tests.integration.webhooks.conftest import (
    HOOK,
    assert_signed,
    distinct_ids,
    new_secret,
    running_app,
    wait_until,
)

OUTAGE = 60.0


async def test_an_endpoint_refusing_connections_for_a_minute_gets_every_event_afterwards(
    database: str, endpoint: ScriptedServer, fast_client: Callable[..., None]
) -> None:
    """Connections refused for 60 s, then healthy: every event arrives, none is dead-lettered."""
    fast_client(max_retries=1, retry_base_delay=0.1, failure_threshold=3, open_seconds=1, connect_timeout=1)
    secret = new_secret()
    endpoint.always(HOOK, Reply(204))
    await endpoint.stop()  # nothing listens on its port: connection refused
    webhooks = WebhookSettings(url=endpoint.url_for(HOOK), secret=secret)
    kafka = KafkaConfig(retry_backoff_ms=100, retry_max_backoff_ms=2000)
    async with running_app(database, webhooks=webhooks, kafka=kafka) as service:
        users = [await service.register(name) for name in ("Ada", "Bob", "Cy")]
        for user in users[:2]:
            await service.rename(user, "Renamed")
        expected = 5
        down_until = time.monotonic() + OUTAGE
        while (left := down_until - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 5.0))
            assert not service.dead_letters(), "an outage dead-lettered an event"
        assert endpoint.count(HOOK) == 0

        await endpoint.start_again()
        recovered = time.monotonic()
        await wait_until(
            lambda: len(distinct_ids(endpoint.received(HOOK))) >= expected, timeout=20, what="every event"
        )
        caught_up = time.monotonic() - recovered
        published = {message.message_id for message in service.published()}
        letters = service.dead_letters()

    received = endpoint.received(HOOK)
    assert len(published) == expected
    assert set(distinct_ids(received)) == published
    assert letters == []
    for request in received:
        assert_signed(secret, request)  # signed when sent, a minute after the event
    assert caught_up < 10, f"recovery noticed after {caught_up:.1f}s"
