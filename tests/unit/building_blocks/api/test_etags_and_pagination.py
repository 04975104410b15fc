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
        ('"03"', frozenset()),  # opaque strings: "03" is not "3"
        ('"\u00b2"', frozenset()),  # a Unicode digit is no version
        ('"' + "9" * 5000 + '"', frozenset()),
        ('W/"3", "4"', frozenset({4})),
        ('"a,b", "5"', frozenset({5})),  # a comma inside a tag belongs to it
    ],
)
def test_parse_if_match(header: str | None, expected: frozenset[int] | None) -> None:
    assert parse_if_match(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('"3",,', frozenset({3})),
        (', "3"', frozenset({3})),
        (',,"3"', frozenset({3})),
        (' , "1" ,, "2", ', frozenset({1, 2})),
        ('"1",\t,"2"', frozenset({1, 2})),
        (', W/"1" ,', frozenset()),  # only empty and weak elements: the precondition fails
    ],
)
def test_empty_list_elements_are_ignored(header: str, expected: frozenset[int]) -> None:
    """RFC 9110 5.6.1: a recipient accepts empty elements at either end and in the middle."""
    assert parse_if_match(header) == expected


@pytest.mark.parametrize(
    "header",
    ["3", '"3" garbage', "", " ", ",", " , ,, ", "W/3", '"a"b"', '"3" "4"', '"3";"4"', '"3",, x'],
)
def test_malformed_if_match_is_a_bad_request(header: str) -> None:
    with pytest.raises(BadRequestException) as caught:
        parse_if_match(header)
    assert caught.value.errors == {"If-Match": ["not a list of entity tags"]}


def test_if_none_match_uses_weak_comparison() -> None:
    assert if_none_match_hits(etag_for(2), 2)
    assert if_none_match_hits(', "1", , W/"2",', 2)
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
