"""Standard Webhooks signatures: the specification's algorithm, per attempt, and the secret's format."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from app.building_blocks.infrastructure.webhooks import WebhookSigning, check_secret, event_types
from app.building_blocks.infrastructure.webhooks.delivery import WebhookDelivery

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def expected(message_id: str, timestamp: str, body: bytes) -> str:
    """The specification: v1, + base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>"))."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()


async def test_each_attempt_is_signed_with_its_own_timestamp() -> None:
    now = [datetime(2026, 12, 2, 6, 0, 0, 123456, tzinfo=UTC)]
    signing = WebhookSigning(SECRET, clock=lambda: now[0])
    body = b'{"type":"users.user_registered.v1"}'
    first = httpx.Request("POST", "http://hooks.test/", content=body, headers={"webhook-id": "evt-1"})
    await signing.apply(first)
    now[0] += timedelta(seconds=61)
    second = httpx.Request("POST", "http://hooks.test/", content=body, headers={"webhook-id": "evt-1"})
    await signing.apply(second)
    for request in (first, second):
        timestamp = request.headers["webhook-timestamp"]
        assert request.headers["webhook-signature"] == expected("evt-1", timestamp, body)
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 61


async def test_the_reference_library_accepts_a_signature_made_now() -> None:
    body = b'{"type":"users.user_deleted.v1"}'
    request = httpx.Request("POST", "http://hooks.test/", content=body, headers={"webhook-id": "evt-2"})
    await WebhookSigning(SECRET).apply(request)
    assert Webhook(SECRET).verify(body, dict(request.headers)) == {"type": "users.user_deleted.v1"}


async def test_a_request_without_its_webhook_id_is_not_signed() -> None:
    with pytest.raises(ValueError, match="webhook-id"):
        await WebhookSigning(SECRET).apply(httpx.Request("POST", "http://hooks.test/", content=b"{}"))


@pytest.mark.parametrize(
    "secret",
    [
        base64.b64encode(KEY).decode(),  # no prefix
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"short").decode(),  # under 24 bytes
    ],
)
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match=r"whsec_|24"):
        check_secret(secret)


def test_the_secret_never_shows_in_logs() -> None:
    assert SECRET in WebhookSigning(SECRET).secrets()


def test_event_types_match_with_or_without_their_version() -> None:
    assert event_types(None) is None
    assert event_types(" , ") is None
    chosen = event_types("users.user_registered, users.user_deleted.v1")
    delivery = WebhookDelivery(httpx_client_placeholder(), "http://hooks.test/", events=chosen)
    assert delivery.wanted("users.user_registered.v1")
    assert delivery.wanted("users.user_deleted.v1")
    assert not delivery.wanted("users.user_deactivated.v1")


def httpx_client_placeholder() -> object:
    """WebhookDelivery.wanted needs no client; nothing is sent here."""
    return object()
