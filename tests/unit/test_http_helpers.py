"""ETags, If-Match parsing and opaque cursors."""

from __future__ import annotations

import pytest

from app.building_blocks.api.etags import etag_for, if_none_match_hits, parse_if_match
from app.building_blocks.api.exceptions import BadRequestException
from app.building_blocks.api.pagination import decode_cursor, encode_cursor


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("*", None),
        ('"3"', frozenset({3})),
        ('"3", "4"', frozenset({3, 4})),
        (' "3" ,"4" ', frozenset({3, 4})),
        ('W/"3"', frozenset()),
        ('"abc"', frozenset()),
        ("3", frozenset()),
        ('"3" garbage', frozenset()),
        ("", frozenset()),
    ],
)
def test_parse_if_match(header: str | None, expected: frozenset[int] | None) -> None:
    assert parse_if_match(header) == expected


def test_if_none_match_uses_weak_comparison() -> None:
    assert if_none_match_hits(etag_for(2), 2)
    assert if_none_match_hits('W/"2"', 2)
    assert if_none_match_hits("*", 2)
    assert not if_none_match_hits('"1"', 2)
    assert not if_none_match_hits(None, 2)


def test_cursor_round_trip_is_opaque() -> None:
    cursor = encode_cursor({"after": "0192-abc"})
    assert "after" not in cursor
    assert decode_cursor(cursor) == {"after": "0192-abc"}


@pytest.mark.parametrize("cursor", ["", "%%%", "bm90LWpzb24", "W10", "MQ"])
def test_bad_cursors_are_bad_requests(cursor: str) -> None:
    with pytest.raises(BadRequestException) as caught:
        decode_cursor(cursor)
    assert caught.value.errors == {"cursor": ["invalid cursor"]}
