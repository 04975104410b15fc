"""HTTP middleware. Pure ASGI (not ``BaseHTTPMiddleware``) so context variables and streaming
responses behave, and the cost per request stays a function call."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.building_blocks.correlation import (
    CORRELATION_ID_HEADER,
    accept_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)


class CorrelationIdMiddleware:
    """Reads ``X-Correlation-Id`` (or mints one), exposes it to the request's code, echoes it.

    An incoming id that is too long or has unsafe characters is replaced rather than trusted,
    since it ends up in logs and in headers of outgoing calls.
    """

    def __init__(self, app: ASGIApp, header_name: str = CORRELATION_ID_HEADER) -> None:
        self.app = app
        self.header_name = header_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = accept_correlation_id(Headers(scope=scope).get(self.header_name))
        scope.setdefault("state", {})["correlation_id"] = correlation_id

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[self.header_name] = correlation_id
            await send(message)

        token = set_correlation_id(correlation_id)
        try:
            await self.app(scope, receive, send_with_header)
        finally:
            reset_correlation_id(token)
