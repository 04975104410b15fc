"""Standard Webhooks (v1.0) signatures, as an auth strategy of the HTTP client.

Each attempt is signed when it is sent: ``webhook-timestamp`` is that attempt's Unix time and
``webhook-signature`` is ``v1,`` + base64(HMAC-SHA256(secret, "<id>.<timestamp>.<body>")), so a
receiver that rejects old timestamps (the specification suggests 5 minutes) still accepts a retry
sent an hour later. ``webhook-id`` is set by the caller and stays the same on every retry. The
signing itself is the ``standardwebhooks`` package's (the specification's reference library).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's marker, not a secret


def check_secret(secret: str) -> str:
    """A ``whsec_`` + base64 secret of at least 24 bytes (the specification asks 24 to 64)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_ (then base64)")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from error
    if len(key) < 24:
        raise ValueError("a webhook secret holds at least 24 random bytes (the specification's minimum)")
    return secret


class WebhookSigning:
    """An :class:`~app.building_blocks.infrastructure.http.auth.AuthStrategy` that signs."""

    def __init__(self, secret: str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._secret = check_secret(secret)
        self._webhook = Webhook(secret)
        self._clock = clock

    def headers(self, message_id: str, body: bytes | str) -> dict[str, str]:
        """The ``webhook-timestamp`` and ``webhook-signature`` of ``body`` sent now."""
        now = self._clock().replace(microsecond=0)
        text = body.decode() if isinstance(body, bytes) else body
        return {
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._webhook.sign(msg_id=message_id, timestamp=now, data=text),
        }

    async def apply(self, request: httpx.Request) -> None:
        message_id = request.headers.get("webhook-id")
        if not message_id:
            raise ValueError("a webhook request needs its webhook-id header before it is signed")
        request.headers.update(self.headers(message_id, request.content))

    async def refresh(self, rejected: httpx.Request) -> bool:
        return False

    def secrets(self) -> tuple[str, ...]:
        return (self._secret, self._secret.removeprefix(SECRET_PREFIX))
