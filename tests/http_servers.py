"""Real HTTP servers for tests of outbound calls: no mocked transport, a socket on 127.0.0.1.

:class:`ScriptedServer` is uvicorn serving a tiny ASGI app in the test's event loop, on a port the
OS picked. Each path answers from a queue of scripted :class:`Reply` objects (consumed in order),
then from its ``always`` reply or handler; a path nobody scripted answers 404. Every request that
arrives is recorded (:class:`ReceivedRequest`: method, path, query, headers, body, arrival time)
before it is answered, so a test can count them and measure the gaps between retries.

::

    async with ScriptedServer() as server:
        server.reply("/orders", Reply(503, headers={"Retry-After": "1"}), Reply(200, {"id": 1}))
        server.always("/slow", Reply(200, delay=5))
        server.always("/echo", lambda request: Reply(200, {"body": request.text}))
        ...
        assert server.count("/orders") == 2

:class:`OAuth2TokenEndpoint` is a client-credentials token endpoint to mount on such a server;
:func:`unused_port` gives a port nothing listens on (connection refused).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import itertools
import json
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

import uvicorn
from starlette.types import Receive, Scope, Send

__all__ = [
    "Handler",
    "OAuth2TokenEndpoint",
    "ReceivedRequest",
    "Reply",
    "ScriptedServer",
    "unused_port",
]


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``body``: bytes or text as is, anything else as JSON. ``delay``: seconds
    to wait before answering (cut short when the server stops)."""

    status: int = 200
    body: Any = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        headers = {name.lower(): value for name, value in self.headers.items()}
        if isinstance(self.body, bytes):
            content = self.body
        elif isinstance(self.body, str):
            content = self.body.encode()
            headers.setdefault("content-type", "text/plain; charset=utf-8")
        else:
            content = json.dumps(self.body).encode()
            headers.setdefault("content-type", "application/json")
        headers["content-length"] = str(len(content))
        return content, [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


@dataclass(frozen=True)
class ReceivedRequest:
    """A request as the server saw it. ``headers``: lower-cased names (the last value of a
    repeated header); ``params``: the decoded query, in order; ``arrived``: ``time.monotonic()``
    when its head arrived."""

    method: str
    path: str
    query_string: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    arrived: float

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def param(self, name: str) -> list[str]:
        """Every value of query parameter ``name``."""
        return [value for key, value in self.params if key == name]


Handler = Callable[[ReceivedRequest], Reply | Awaitable[Reply]]
"""Computes the answer from the request (sync or async)."""


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: Ctrl-C stops the test run, not this server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ScriptedServer:
    """A real HTTP/1.1 server on ``127.0.0.1`` answering scripted replies; see the module doc."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self._queues: dict[str, deque[Reply | Handler]] = {}
        self._always: dict[str, Reply | Handler] = {}
        self._stopping = asyncio.Event()
        self._arrivals = asyncio.Condition()
        self._socket: socket.socket | None = None
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    # --- scripting ------------------------------------------------------------------------------
    def reply(self, path: str, *replies: Reply | Handler) -> None:
        """Queue answers for ``path``: each answers one request, in order."""
        self._queues.setdefault(path, deque()).extend(replies)

    def always(self, path: str, reply: Reply | Handler) -> None:
        """The answer for ``path`` once its queue is empty."""
        self._always[path] = reply

    def reset(self) -> None:
        """Forget every script and every request received: a running server reused by the next
        test (stopping one costs uvicorn ~0.2 s)."""
        self._queues.clear()
        self._always.clear()
        self.requests.clear()

    # --- what arrived ---------------------------------------------------------------------------
    def received(self, path: str | None = None) -> list[ReceivedRequest]:
        return [request for request in self.requests if path is None or request.path == path]

    def count(self, path: str | None = None) -> int:
        return len(self.received(path))

    def gaps(self, path: str) -> list[float]:
        """Seconds between consecutive arrivals on ``path``."""
        times = [request.arrived for request in self.received(path)]
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    async def wait_for(self, path: str, count: int, *, timeout: float = 5.0) -> list[ReceivedRequest]:
        """The requests to ``path`` once at least ``count`` arrived (for calls made in the
        background, such as webhook deliveries); ``TimeoutError`` otherwise."""
        async with asyncio.timeout(timeout), self._arrivals:
            await self._arrivals.wait_for(lambda: self.count(path) >= count)
        return self.received(path)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, no trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, path: str) -> str:
        return f"{self.url}{path}"

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self, *, port: int = 0) -> None:
        """Listen on ``port`` (0: one the OS picks)."""
        self._stopping.clear()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the server stopped before it started")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._stopping.set()  # wakes the handlers still delaying
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, timeout=5)
        self._server = self._task = None

    async def start_again(self) -> None:
        """Listen again on the port of before :meth:`stop` (an endpoint back from an outage:
        while stopped, connecting to it is refused). Scripts and requests received are kept."""
        await self.start(port=self.port)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- the ASGI app ---------------------------------------------------------------------------
    def _next(self, path: str) -> Reply | Handler:
        queue = self._queues.get(path)
        if queue:
            return queue.popleft()
        return self._always.get(path, Reply(404, f"nothing scripted for {path}"))

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        arrived = time.monotonic()
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        query = scope["query_string"].decode("latin-1")
        request = ReceivedRequest(
            method=scope["method"],
            path=scope["path"],
            query_string=query,
            params=parse_qsl(query, keep_blank_values=True),
            headers={name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]},
            body=b"".join(chunks),
            arrived=arrived,
        )
        self.requests.append(request)
        async with self._arrivals:
            self._arrivals.notify_all()
        answer = self._next(request.path)
        if isinstance(answer, Reply):
            reply = answer
        else:
            produced = answer(request)
            reply = await produced if inspect.isawaitable(produced) else produced
        if reply.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=reply.delay)
        content, headers = reply.encoded()
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


class OAuth2TokenEndpoint:
    """A client-credentials token endpoint (RFC 6749 §4.4) for :meth:`ScriptedServer.always`.

    Answers 401 unless the Basic credentials are ``client_id:client_secret``, 400 unless
    ``grant_type=client_credentials``; otherwise ``{"access_token": "<prefix>-<n>",
    "expires_in": ...}``, ``n`` counting from 1. ``delay`` holds each answer back (so concurrent
    callers pile up behind one refresh). ``requests`` counts the tokens issued; ``forms`` keeps
    the forms received."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        expires_in: float = 3600,
        delay: float = 0.0,
        prefix: str = "token",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.delay = delay
        self.prefix = prefix
        self.requests = 0
        self.issued: list[str] = []
        self.forms: list[dict[str, str]] = []

    async def __call__(self, request: ReceivedRequest) -> Reply:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return Reply(401, {"error": "invalid_client"})
        form = request.form()
        self.forms.append(form)
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type"})
        self.requests += 1
        token = f"{self.prefix}-{self.requests}"
        self.issued.append(token)
        if self.delay:
            await asyncio.sleep(self.delay)
        return Reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in})


def unused_port() -> int:
    """A port on 127.0.0.1 nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
