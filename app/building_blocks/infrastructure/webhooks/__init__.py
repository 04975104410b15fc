"""Webhooks: the service's integration events POSTed to an endpoint, signed per Standard
Webhooks v1.0, at least once and in order per aggregate, through ``HttpClient``."""

from app.building_blocks.infrastructure.webhooks.delivery import (
    WebhookDelivery,
    WebhookEndpointUnavailableError,
    event_types,
)
from app.building_blocks.infrastructure.webhooks.signing import WebhookSigning, check_secret

__all__ = [
    "WebhookDelivery",
    "WebhookEndpointUnavailableError",
    "WebhookSigning",
    "check_secret",
    "event_types",
]
