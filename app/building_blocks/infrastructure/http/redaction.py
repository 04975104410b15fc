"""What an outbound call may show in a log line: the URL without credentials, headers without secrets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "webhook-signature",
    }
)
_SECRET_WORDS = ("token", "secret", "password", "passwd", "key", "signature", "auth", "credential", "session")


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_HEADERS or any(word in lowered for word in _SECRET_WORDS)


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """Drop the user info; replace query values whose names sound secret, or that are secrets."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    known = {secret for secret in secrets if secret}
    query = [
        (name, REDACTED if is_secret_name(name) or value in known else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="[]"), ""))


def redact_headers(headers: Mapping[str, str], secrets: Iterable[str] = ()) -> dict[str, str]:
    known = {secret for secret in secrets if secret}
    return {
        name: REDACTED if is_secret_name(name) or any(secret in value for secret in known) else value
        for name, value in headers.items()
    }
