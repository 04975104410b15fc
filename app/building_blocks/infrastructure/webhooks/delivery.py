"""Webhooks: every integration event the service publishes, POSTed to an endpoint, signed, at
least once, in order per aggregate.

:class:`WebhookDelivery` is a subscription handler (a consumer of the service's own topics), so
it inherits the inbox's guarantees: a message is handled once per consumer group, and a message
is not passed while it is being retried, so a user's later events wait behind an earlier one
(other users' events, in other partitions, do not). What the endpoint's answer means:

==========================================  =====================================================
2xx                                         delivered
408, 429, 3xx, 5xx, no answer              the endpoint is down (a redirect: misconfigured, not
                                            followed): the client retries (honouring
                                            ``Retry-After``) through the target's circuit breaker;
                                            still failing, the consumer pauses and tries again
                                            later (an outage: never dead-lettered) ...
... for up to ``max_age``                   then the event is dead-lettered, as too old
any other 4xx                               refused: dead-lettered at once, with the status
==========================================  =====================================================

The body is ``{"type": <event type>, "timestamp": <RFC 3339>, "data": {...}}`` (the integration
event as published); the headers are Standard Webhooks' (``webhook-id`` = the event's id, the
same on every retry, so receivers deduplicate), ``X-Correlation-Id`` of the request that caused
the event, and the W3C ``traceparent`` of the consumer's span.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import httpx

from app.building_blocks.application.exceptions import TemporarilyUnavailableError
from app.building_blocks.infrastructure.http.client import HttpClient
from app.building_blocks.infrastructure.http.errors import DeadlineExceededError
from app.building_blocks.infrastructure.messaging.envelope import ReceivedMessage
from app.building_blocks.infrastructure.messaging.failures import MessageRefusedError
from app.building_blocks.infrastructure.messaging.subscriptions import MessageContext

logger = logging.getLogger("app.webhooks")

DOWN_STATUSES = frozenset({408, 429})  # and every 5xx


class WebhookEndpointUnavailableError(TemporarilyUnavailableError):
    """The endpoint did not take the event (yet): the consumer pauses and tries again."""


def event_types(listed: str | Iterable[str] | None) -> frozenset[str] | None:
    """``WEBHOOK_EVENTS``: comma-separated types (with or without their ``.vN``); ``None``: all."""
    if listed is None:
        return None
    names = listed.split(",") if isinstance(listed, str) else listed
    chosen = frozenset(name.strip() for name in names if name.strip())
    return chosen or None


class WebhookDelivery:
    def __init__(
        self,
        client: HttpClient,
        url: str,
        *,
        events: frozenset[str] | None = None,
        max_age: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.url = url
        self.events = events
        self.max_age = max_age
        self._clock = clock

    def wanted(self, event_type: str) -> bool:
        if self.events is None:
            return True
        unversioned = event_type.rsplit(".v", 1)[0] if ".v" in event_type else event_type
        return event_type in self.events or unversioned in self.events

    async def __call__(self, message: ReceivedMessage, context: MessageContext) -> None:
        await self.deliver(message)

    async def deliver(self, message: ReceivedMessage) -> None:
        event_id, event_type = message.message_id or "", message.event_type or ""
        if not self.wanted(event_type):
            return
        occurred = _occurred_at(message)
        age = self._clock() - occurred.timestamp()
        if age > self.max_age:
            raise MessageRefusedError(
                f"webhook {event_id} not delivered within {self.max_age:g}s of the event; given up",
                dlq_headers={"dlq_webhook_outcome": "expired"},
            )
        stamp = message.headers.get("ce_time") or occurred.isoformat().replace("+00:00", "Z")
        # The event's JSON goes in as it was published (the consumer checked it is a JSON object):
        # no parse and dump per delivery.
        body = b'{"type":%s,"timestamp":%s,"data":%s}' % (
            json.dumps(event_type).encode(),
            json.dumps(stamp).encode(),
            message.value.strip(),
        )
        try:
            response = await self.client.post(
                self.url,
                content=body,
                headers={"Content-Type": "application/json", "webhook-id": event_id},
                correlation_id=message.headers.get("ce_correlationid") or event_id,
                retry=True,  # the webhook-id makes a repeat harmless: receivers deduplicate on it
            )
        except (httpx.TransportError, DeadlineExceededError) as error:
            raise WebhookEndpointUnavailableError(f"webhook {event_id}: {type(error).__name__}") from error
        status = response.status_code
        if 200 <= status < 300:
            return
        if status >= 500 or status in DOWN_STATUSES or 300 <= status < 400:  # a redirect: the URL is wrong
            # (not followed: it would carry the signed body elsewhere); paused until fixed, not lost
            raise WebhookEndpointUnavailableError(f"webhook {event_id}: the endpoint answered {status}")
        raise MessageRefusedError(
            f"webhook {event_id} refused by the endpoint: {status}",
            dlq_headers={"dlq_webhook_outcome": "refused", "dlq_http_status": str(status)},
        )


def _occurred_at(message: ReceivedMessage) -> datetime:
    stamped = message.headers.get("ce_time")
    if stamped:
        try:
            return datetime.fromisoformat(stamped.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            pass
    return datetime.now(UTC)  # no time on the message: its age is counted from now
