"""How much a client may send and how long it may take: bounds checked while a request body
streams in, before anything buffers or parses it.

- A body larger than ``max_body_bytes`` is a 413. A declared ``Content-Length`` over the limit is
  refused before the application runs and before a byte of the body is read (a client that sent
  ``Expect: 100-continue`` is never asked for it); a chunked body is counted as it arrives and
  refused once it passes the limit.
- A body that has not fully arrived ``body_timeout`` seconds after its headers is a 408.

Both answers are problems (``application/problem+json``) with ``Connection: close``: the rest of
that body is of no use, and closing stops the client sending it, which the server would otherwise
have to read and discard. HTTP/1 requests without a body (no ``Content-Length`` or
``Transfer-Encoding``, e.g. a GET) cost one scan of their headers and nothing else.

FastAPI's own ``max_body_size`` is not used: for a declared ``Content-Length`` it answers a plain
text 413, and for an endpoint that does not read its body it lets the endpoint run first and then
replaces the response.
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.building_blocks.api.exceptions import http_exception_problem

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_BODY_TIMEOUT = 30.0
_HTTP1 = ("1.0", "1.1")


class RequestBodyTooLarge(HTTPException):
    """413, raised while reading: an ``HTTPException`` so FastAPI passes it on while reading the
    body (it turns other errors from there into a generic 400) to the problem handlers."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413,
            detail=f"The request body is larger than the limit of {max_bytes} bytes.",
            headers={"Connection": "close"},
        )


class RequestBodyTimeout(HTTPException):
    """408: the body did not finish arriving in time."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            408,
            detail=f"The request body did not arrive within {timeout:g} seconds.",
            headers={"Connection": "close"},
        )


class RequestLimitsMiddleware:
    """Bounds the size of a request body and the time it takes to arrive (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
    ) -> None:
        if max_body_bytes < 0 or body_timeout <= 0:
            raise ValueError("max_body_bytes must be >= 0 and body_timeout > 0")
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        # HTTP/2 and 3 frame a body without either header; HTTP/1 announces every body with one.
        streamed = scope.get("http_version", "1.1") not in _HTTP1
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                streamed = True  # chunked: it wins over Content-Length (RFC 9112 6.3)
        if not streamed:
            if not length:  # no body at all
                await self.app(scope, receive, send)
                return
            if length > self.max_body_bytes:
                response = http_exception_problem(Request(scope), RequestBodyTooLarge(self.max_body_bytes))
                await response(scope, receive, send)
                return
        await self.app(scope, self._bounded(receive), send)

    def _bounded(self, receive: Receive) -> Receive:
        """``receive`` that counts the body and stops waiting for it at the deadline; once the body
        is complete (or the client gone) it passes messages straight through."""
        max_bytes, timeout = self.max_body_bytes, self.body_timeout
        deadline = asyncio.get_running_loop().time() + timeout
        received = 0
        complete = False

        async def bounded_receive() -> Message:
            nonlocal received, complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestBodyTimeout(timeout) from None
            if message["type"] != "http.request":
                complete = True
                return message
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise RequestBodyTooLarge(max_bytes)
            complete = not message.get("more_body", False)
            return message

        return bounded_receive
