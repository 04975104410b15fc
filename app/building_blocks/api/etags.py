"""Entity tags from aggregate versions, and the ``If-Match`` / ``If-None-Match`` checks.

A version is an integer that grows with every change, so the strong ETag ``"7"`` identifies one
state of one resource. Weak tags (``W/"7"``) never satisfy ``If-Match`` (RFC 9110 13.1.1).
"""

from __future__ import annotations

import re

_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*')


def etag_for(version: int) -> str:
    return f'"{version}"'


def _tags(header: str) -> list[tuple[bool, str]] | None:
    """Parse a comma-separated list of entity tags; ``None`` when the header is malformed."""
    tags: list[tuple[bool, str]] = []
    position = 0
    while position < len(header):
        match = _TAG.match(header, position)
        if match is None:
            return None
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
        if position < len(header):
            if header[position] != ",":
                return None
            position += 1
    return tags


def parse_if_match(header: str | None) -> frozenset[int] | None:
    """Versions an ``If-Match`` header accepts: ``None`` for absent or ``*`` (any current state),
    an empty set when nothing can match (malformed, weak or foreign tags), so the request fails."""
    if header is None or header.strip() == "*":
        return None
    tags = _tags(header)
    if not tags:
        return frozenset()
    return frozenset(int(value) for weak, value in tags if not weak and value.isdigit())


def if_none_match_hits(header: str | None, version: int) -> bool:
    """True when the client's cached copy is current (answer 304). Weak comparison applies."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    tags = _tags(header) or []
    return any(value == str(version) for _weak, value in tags)
