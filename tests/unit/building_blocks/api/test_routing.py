"""Duplicated JSON keys: refused by ``loads_strict`` and, through ``StrictJsonRoute``, a 400."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from app.building_blocks.api.exceptions import setup_exception_handlers
from app.building_blocks.api.middleware import CorrelationIdMiddleware
from app.building_blocks.api.routing import (
    DUPLICATE_KEY_MESSAGE,
    DuplicateKeysError,
    StrictJsonRoute,
    loads_strict,
)
from tests.helpers import assert_problem


@pytest.mark.parametrize(
    "document",
    ['{"a": 1, "b": {"a": 2}}', '[{"a": 1}, {"a": 2}]', '{"a": 1, "A": 2}', "[]", '"a"', "3", "null", "{}"],
)
def test_documents_without_duplicates_parse_as_json_loads_would(document: str) -> None:
    assert loads_strict(document) == json.loads(document)
    assert loads_strict(document.encode()) == json.loads(document)


@pytest.mark.parametrize(
    ("document", "paths"),
    [
        ('{"a": 1, "a": 2}', [("a",)]),
        ('{"a": 1, "b": 2, "a": 3, "b": 4, "a": 5}', [("a",), ("b",)]),
        ('{"user": {"address": {"street": "x", "street": "y"}}}', [("user", "address", "street")]),
        ('{"items": [{"sku": 1}, {"sku": 2, "sku": 3}]}', [("items", 1, "sku")]),
        ('[[{"k": 1, "k": 2}]]', [(0, 0, "k")]),
        ('{"a": 1, "\\u0061": 2}', [("a",)]),  # equal once decoded
        ('{"x": {"b": 1, "b": 1}, "x": {"c": 1, "c": 1}}', [("x",), ("x", "c")]),  # last x is kept
        ('{"z": {"q": 1, "q": 2}, "a": {"q": 1, "q": 2}}', [("z", "q"), ("a", "q")]),  # document order
    ],
)
def test_duplicates_are_named_by_their_path(document: str, paths: list[tuple[Any, ...]]) -> None:
    with pytest.raises(DuplicateKeysError) as caught:
        loads_strict(document)
    assert caught.value.paths == paths


def test_a_deep_duplicate_is_found_and_many_are_named_at_most_twenty_times() -> None:
    depth = 500
    deep = '{"n": ' * depth + '{"k": 1, "k": 2}' + "}" * depth
    with pytest.raises(DuplicateKeysError) as caught:
        loads_strict(deep)
    assert caught.value.paths == [("n",) * depth + ("k",)]

    many = "[" + ",".join('{"k": 1, "k": 2}' for _ in range(1000)) + "]"
    with pytest.raises(DuplicateKeysError) as caught:
        loads_strict(many)
    assert caught.value.paths == [(index, "k") for index in range(20)]


def test_invalid_json_still_raises_json_errors() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads_strict('{"a": 1, "a": ')


class Address(BaseModel):
    street: str


class Person(BaseModel):
    name: str
    address: Address | None = None


def strict_app() -> FastAPI:
    app = FastAPI()
    setup_exception_handlers(app, log_errors=False)
    router = APIRouter(route_class=StrictJsonRoute)

    @router.post("/people")
    async def create(person: Person) -> Person:
        return person

    app.include_router(router)
    app.add_middleware(CorrelationIdMiddleware)
    return app


async def post(document: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=strict_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.post("/people", content=document, headers={"Content-Type": "application/json"})


async def test_the_route_answers_duplicates_as_a_validation_error() -> None:
    response = await post('{"name": "Ada", "address": {"street": "a", "street": "b"}, "name": "Root"}')
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert body["errors"] == {"name": [DUPLICATE_KEY_MESSAGE], "address.street": [DUPLICATE_KEY_MESSAGE]}
    assert body["detail"] == "One or more validation errors occurred."


async def test_the_route_serves_bodies_without_duplicates_and_reports_invalid_json_as_before() -> None:
    valid = await post('{"name": "Ada", "address": {"street": "Main"}}')
    assert valid.status_code == 200
    assert valid.json() == {"name": "Ada", "address": {"street": "Main"}}
    broken = await post('{"name": ')
    assert assert_problem(broken, 400, "VALIDATION_ERROR")["errors"] == {
        "body": ["request body is not valid JSON"]
    }
