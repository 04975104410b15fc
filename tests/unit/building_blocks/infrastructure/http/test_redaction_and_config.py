"""What a log line may show (``redact_url``, ``redact_headers``) and a config's target name."""

from __future__ import annotations

import pytest

from app.building_blocks.infrastructure.http import HttpClientConfig
from app.building_blocks.infrastructure.http.redaction import REDACTED, redact_headers, redact_url


def test_user_info_and_fragment_are_dropped() -> None:
    assert redact_url("https://alice:pw@api.example:8443/a?b=1#frag") == "https://api.example:8443/a?b=1"


@pytest.mark.parametrize(
    "name", ["api_key", "access_token", "client_secret", "password", "X-Signature", "sessionid"]
)
def test_query_values_with_secret_sounding_names_are_redacted(name: str) -> None:
    assert redact_url(f"https://h/p?{name}=s3cr3t&page=2") == f"https://h/p?{name}={REDACTED}&page=2"


def test_known_secrets_are_redacted_whatever_the_name() -> None:
    shown = redact_url("https://h/p?k=a%26b%3Dc&q=a%26b", secrets=["a&b=c"])
    assert shown == f"https://h/p?k={REDACTED}&q=a%26b"


def test_headers_are_redacted_by_name_and_by_known_value() -> None:
    shown = redact_headers(
        {"Authorization": "Bearer t", "X-Partner": "xyz-known-abc", "Accept": "application/json"},
        secrets=["known"],
    )
    assert shown == {"Authorization": REDACTED, "X-Partner": REDACTED, "Accept": "application/json"}


@pytest.mark.parametrize(
    ("base_url", "name", "target"),
    [
        ("https://billing.internal", None, "billing.internal"),
        ("http://127.0.0.1:8080/api", None, "127.0.0.1:8080"),
        ("https://user:pw@billing.internal:8443", None, "billing.internal:8443"),
        ("https://billing.internal", "billing", "billing"),
        ("", None, "default"),
    ],
)
def test_the_target_is_the_name_else_host_and_port(base_url: str, name: str | None, target: str) -> None:
    assert HttpClientConfig(base_url=base_url, name=name).target == target
