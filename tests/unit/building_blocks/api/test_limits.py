"""RequestLimitsMiddleware in process: size and time bounds on request bodies, as problems."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send

from app.building_blocks.api.exceptions import setup_exception_handlers
from app.building_blocks.api.limits import RequestLimitsMiddleware
from app.building_blocks.api.middleware import CorrelationIdMiddleware
from tests.helpers import assert_problem

LIMIT = 100
TIMEOUT = 0.2


def limited_app() -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    setup_exception_handlers(app, log_errors=False)
    ran: list[str] = []

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    @app.post("/no-body")
    async def no_body() -> dict[str, str]:
        ran.append("no-body")
        return {}

    app.add_middleware(RequestLimitsMiddleware, max_body_bytes=LIMIT, body_timeout=TIMEOUT)
    app.add_middleware(CorrelationIdMiddleware)  # as in the service: problems carry its trace_id
    return app, ran


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Content-Type": "application/json"},
    )


async def pieces(*chunks: bytes, pause: float = 0) -> AsyncIterator[bytes]:
    """A body without a declared length: httpx sends it chunked."""
    for chunk in chunks:
        await asyncio.sleep(pause)
        yield chunk


async def test_a_body_within_the_limit_is_served() -> None:
    app, _ = limited_app()
    async with client(app) as http:
        exactly = b'{"a": "' + b"x" * (LIMIT - 9) + b'"}'
        assert len(exactly) == LIMIT
        assert (await http.post("/echo", content=exactly)).status_code == 200
        chunked = await http.post("/echo", content=pieces(b'{"a":', b' "b"}'))
        assert chunked.json() == {"a": "b"}


async def test_a_declared_length_over_the_limit_is_refused_before_the_endpoint_runs() -> None:
    app, ran = limited_app()
    async with client(app) as http:
        response = await http.post("/no-body", content=b"x" * (LIMIT + 1))
    body = assert_problem(response, 413, "CONTENT_TOO_LARGE")
    assert body["detail"] == f"The request body is larger than the limit of {LIMIT} bytes."
    assert response.headers["connection"] == "close"
    assert ran == []


async def test_a_chunked_body_is_refused_once_it_passes_the_limit() -> None:
    app, _ = limited_app()
    async with client(app) as http:
        response = await http.post("/echo", content=pieces(*[b" " * 30] * 4))
    assert_problem(response, 413, "CONTENT_TOO_LARGE")
    assert response.headers["connection"] == "close"


async def test_a_body_that_stalls_past_the_deadline_is_a_408() -> None:
    app, _ = limited_app()
    async with client(app) as http:
        response = await http.post("/echo", content=pieces(b'{"a":', b' "b"}', pause=TIMEOUT * 3))
    body = assert_problem(response, 408, "REQUEST_TIMEOUT")
    assert body["title"] == "Request Timeout"
    assert response.headers["connection"] == "close"


def scope(method: str, headers: list[tuple[bytes, bytes]], http_version: str = "1.1") -> Scope:
    return {"type": "http", "method": method, "path": "/", "headers": headers, "http_version": http_version}


async def test_requests_without_a_body_reach_the_app_untouched() -> None:
    received: list[Receive] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received.append(receive)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Message) -> None:
        pass

    middleware = RequestLimitsMiddleware(app, max_body_bytes=LIMIT, body_timeout=TIMEOUT)
    await middleware(scope("GET", [(b"accept", b"*/*")]), receive, send)
    await middleware(scope("POST", [(b"content-length", b"0")]), receive, send)
    assert received == [receive, receive]

    await middleware(scope("POST", [(b"content-length", b"2")]), receive, send)
    await middleware(scope("POST", [(b"transfer-encoding", b"chunked")]), receive, send)
    await middleware(scope("POST", [], http_version="2"), receive, send)  # HTTP/2: no header needed
    assert all(bounded is not receive for bounded in received[2:])


async def test_once_the_body_is_complete_receive_is_no_longer_bounded() -> None:
    """Waiting for the client to disconnect (a streaming response) is not a slow body."""
    messages: list[Message] = [
        {"type": "http.request", "body": b"{}", "more_body": False},
        {"type": "http.disconnect"},
    ]
    got: list[Message] = []

    async def receive() -> Message:
        if len(messages) == 1:
            await asyncio.sleep(TIMEOUT * 2)
        return messages.pop(0)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        got.extend([await receive(), await receive()])
        await PlainTextResponse("ok")(scope, receive, send)

    async def send(_message: Message) -> None:
        pass

    middleware = RequestLimitsMiddleware(app, max_body_bytes=LIMIT, body_timeout=TIMEOUT)
    await middleware(scope("POST", [(b"content-length", b"2")]), receive, send)
    assert [message["type"] for message in got] == ["http.request", "http.disconnect"]


@pytest.mark.parametrize(("max_body_bytes", "body_timeout"), [(-1, 1.0), (10, 0.0)])
def test_nonsense_limits_are_refused(max_body_bytes: int, body_timeout: float) -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        RequestLimitsMiddleware(FastAPI(), max_body_bytes=max_body_bytes, body_timeout=body_timeout)
