"""JSON request bodies whose objects name a key twice are refused (400), at any depth.

``json.loads`` keeps the last of two equal keys without a word, so ``{"role": "user", "role":
"admin"}`` means whatever the parser at hand decides; a proxy or a validator in front may have read
the other one. RFC 8259 leaves duplicates undefined; refusing them leaves no doubt.

``StrictJsonRoute`` is FastAPI's custom ``APIRoute`` pattern: ``APIRouter(route_class=
StrictJsonRoute)`` gives every endpoint of the router a request whose ``json()`` parses once with
an ``object_pairs_hook``; a body with duplicates fails validation like any invalid field, with
``errors`` naming each duplicated key by its path (``address.street``, ``items.0.sku``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

DUPLICATE_KEY_MESSAGE = "duplicate key: a JSON object may name each key only once"
_MAX_REPORTED = 20  # duplicated keys named in one answer

Path = tuple[str | int, ...]
_Link = tuple[Any, str | int] | None  # (the parent's link, the key or index within the parent)


class DuplicateKeysError(ValueError):
    """A JSON document names a key twice in one object; ``paths`` locate the keys."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(f"duplicate keys in JSON objects: {paths}")
        self.paths = paths


def loads_strict(document: str | bytes) -> Any:
    """``json.loads`` that raises :class:`DuplicateKeysError` for duplicated keys at any depth.

    One parse; only a document that has duplicates is walked again, to name them.
    """
    found = False

    def unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        value = dict(pairs)
        if len(value) == len(pairs):
            return value
        found = True
        return _Repeated(value, pairs)

    parsed = json.loads(document, object_pairs_hook=unique_pairs)
    if found:
        raise DuplicateKeysError(_duplicate_paths(parsed))
    return parsed


class _Repeated(dict[str, Any]):
    """An object that named keys more than once, remembering which."""

    def __init__(self, value: dict[str, Any], pairs: list[tuple[str, Any]]) -> None:
        super().__init__(value)
        seen: set[str] = set()
        repeated: dict[str, None] = {}  # ordered, each key once
        for key, _ in pairs:
            if key in seen:
                repeated[key] = None
            seen.add(key)
        self.repeated = list(repeated)


def _duplicate_paths(parsed: Any) -> list[Path]:
    """Paths of the duplicated keys in document order. Iterative, with parent links instead of a
    path per node, so a deep or wide document costs no more than its size."""
    paths: list[Path] = []
    stack: list[tuple[Any, _Link]] = [(parsed, None)]
    while stack and len(paths) < _MAX_REPORTED:
        value, link = stack.pop()
        if isinstance(value, _Repeated):
            paths += [(*_path(link), key) for key in value.repeated]
        if isinstance(value, dict):
            stack += [(item, (link, key)) for key, item in reversed(value.items())]
        elif isinstance(value, list):
            stack += [(item, (link, index)) for index, item in reversed(list(enumerate(value)))]
    return paths[:_MAX_REPORTED]


def _path(link: _Link) -> Path:
    keys: list[str | int] = []
    while link is not None:
        link, key = link
        keys.append(key)
    return tuple(reversed(keys))


class _DuplicateKeysInBody(HTTPException):
    """Carries the paths out of FastAPI's body reading, which passes ``HTTPException`` on (and
    turns other errors into a generic 400); :class:`StrictJsonRoute` makes it a validation error."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(400, detail=DUPLICATE_KEY_MESSAGE)
        self.paths = paths


class StrictJsonRequest(Request):
    """A request whose ``json()`` refuses duplicated keys (see :func:`loads_strict`)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads_strict(await self.body())
            except DuplicateKeysError as error:
                raise _DuplicateKeysInBody(error.paths) from None
        return self._json


class StrictJsonRoute(APIRoute):
    """An ``APIRoute`` whose endpoints get a :class:`StrictJsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_json_handler(request: Request) -> Response:
            strict = StrictJsonRequest(request.scope, request.receive, request._send)
            try:
                return await handler(strict)
            except _DuplicateKeysInBody as error:
                raise RequestValidationError(
                    [
                        {"type": "duplicate_key", "loc": ("body", *path), "msg": DUPLICATE_KEY_MESSAGE}
                        for path in error.paths
                    ]
                ) from None

        return strict_json_handler
