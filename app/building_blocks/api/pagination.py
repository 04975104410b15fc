"""Opaque cursors for keyset pagination.

Clients get a cursor and give it back; they never build one. It is base64url-encoded JSON so the
server can change what it holds without breaking anybody.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from app.building_blocks.api.exceptions import BadRequestException


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, *, field: str = "cursor") -> dict[str, Any]:
    """Decode or answer 400 with the field named, so a tampered cursor never reaches SQL."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        value = None
    if not isinstance(value, dict):
        raise BadRequestException(
            "The cursor is not valid; use the next_cursor of a previous page.",
            error_code="INVALID_CURSOR",
            errors={field: ["invalid cursor"]},
        )
    return value
