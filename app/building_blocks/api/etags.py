"""Entity tags from aggregate versions, and the ``If-Match`` / ``If-None-Match`` checks.

A version is an integer that grows with every change, so the strong ETag ``"7"`` identifies one
state of one resource. Tags are opaque strings compared character by character (RFC 9110 8.8.3.2):
``"07"`` is not ``"7"``, and weak tags (``W/"7"``) never satisfy ``If-Match``.
"""

from __future__ import annotations

import re

from app.building_blocks.api.exceptions import BadRequestException

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text, then OWS
_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*')
# What may come before an element: optional whitespace and empty elements (RFC 9110 5.6.1)
_EMPTY_ELEMENTS = re.compile(r"[ \t]*(?:,[ \t]*)*")
_CANONICAL_VERSION = re.compile(r"0|[1-9][0-9]{0,17}")


def etag_for(version: int) -> str:
    return f'"{version}"'


def _tags(header: str) -> list[tuple[bool, str]] | None:
    """Parse ``#entity-tag``; ``None`` when the header is not a list of at least one tag.

    Empty elements are ignored wherever they are (``, "1" ,, "2",``), as RFC 9110 5.6.1 asks of
    recipients; tags are matched whole, so a comma inside one (``"a,b"``) is part of it.
    """
    tags: list[tuple[bool, str]] = []
    position = _past_empty_elements(header, 0)
    while position < len(header):
        match = _TAG.match(header, position)
        if match is None:
            return None
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
        if position < len(header) and header[position] != ",":
            return None
        position = _past_empty_elements(header, position)
    return tags or None


def _past_empty_elements(header: str, position: int) -> int:
    match = _EMPTY_ELEMENTS.match(header, position)  # always matches, if only nothing
    return match.end() if match else position


def parse_if_match(header: str | None, *, header_name: str = "If-Match") -> frozenset[int] | None:
    """Versions an ``If-Match`` header accepts.

    ``None`` when absent or ``*`` (any current state). Otherwise the versions named by strong tags;
    weak or foreign tags name none, so an empty set means the precondition fails (412). A header
    that is not a list of entity tags is a malformed request (400).
    """
    if header is None or header.strip() == "*":
        return None
    tags = _tags(header)
    if tags is None:
        raise BadRequestException(
            f"{header_name} must be '*' or a comma-separated list of entity tags such as \"3\"",
            error_code="INVALID_PRECONDITION_HEADER",
            errors={header_name: ["not a list of entity tags"]},
        )
    return frozenset(int(value) for weak, value in tags if not weak and _CANONICAL_VERSION.fullmatch(value))


def if_none_match_hits(header: str | None, version: int) -> bool:
    """True when the client's cached copy is current (answer 304). Weak comparison applies."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(value == str(version) for _weak, value in _tags(header) or [])
