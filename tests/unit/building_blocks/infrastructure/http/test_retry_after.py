"""``parse_retry_after``: delta-seconds or an HTTP date (RFC 9110 §10.2.3), ``None`` if unreadable."""

from __future__ import annotations

import email.utils

import pytest

from app.building_blocks.infrastructure.http import parse_retry_after

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("1", 1.0), (" 120 ", 120.0), ("3600", 3600.0)])
def test_delta_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


def test_an_http_date_is_the_seconds_until_then() -> None:
    when = email.utils.formatdate(NOW + 90, usegmt=True)
    assert parse_retry_after(when, now=NOW) == pytest.approx(90.0)


def test_a_date_in_the_past_is_zero() -> None:
    assert parse_retry_after(email.utils.formatdate(NOW - 90, usegmt=True), now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2024"])
def test_absent_or_unreadable_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None
