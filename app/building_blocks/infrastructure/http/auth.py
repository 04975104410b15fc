"""How a client proves who it is: applied to each request just before it is sent.

``BearerAuth`` (a static token or an async provider), ``BasicAuth``, ``ApiKeyAuth`` (a header, or
a query parameter, properly encoded) and ``OAuth2ClientCredentials`` (RFC 6749 §4.4: the token is
cached until its expiry minus a skew; concurrent callers wait for one refresh; after a 401 the
client asks :meth:`AuthStrategy.refresh` once and retries with a fresh token).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx

from app.building_blocks.infrastructure.http.errors import AuthUnavailableError


class AuthStrategy(Protocol):
    async def apply(self, request: httpx.Request) -> None:
        """Add the credentials to ``request``."""
        ...

    async def refresh(self, rejected: httpx.Request) -> bool:
        """After a 401 for ``rejected``: renew the credentials if that can help (``True``: retry)."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line."""
        ...


class BearerAuth:
    def __init__(
        self, token: str | None = None, *, provider: Callable[[], Awaitable[str]] | None = None
    ) -> None:
        if (token is None) == (provider is None):
            raise ValueError("BearerAuth takes a token or a provider, exactly one")
        self._token = token
        self._provider = provider

    async def apply(self, request: httpx.Request) -> None:
        token = self._token if self._provider is None else await self._provider()
        request.headers["Authorization"] = f"Bearer {token}"

    async def refresh(self, rejected: httpx.Request) -> bool:
        return self._provider is not None  # a provider may hand out a new one; a static token won't change

    def secrets(self) -> tuple[str, ...]:
        return (self._token,) if self._token else ()


class BasicAuth:
    def __init__(self, username: str, password: str) -> None:
        self._password = password
        credentials = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._header = f"Basic {credentials}"

    async def apply(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = self._header

    async def refresh(self, rejected: httpx.Request) -> bool:
        return False

    def secrets(self) -> tuple[str, ...]:
        return (self._password, self._header.removeprefix("Basic "))


class ApiKeyAuth:
    """``header`` (default ``X-API-Key``), or ``query_param`` to send it in the URL instead."""

    def __init__(self, key: str, *, header: str = "X-API-Key", query_param: str | None = None) -> None:
        self._key = key
        self.header = header
        self.query_param = query_param

    async def apply(self, request: httpx.Request) -> None:
        if self.query_param is None:
            request.headers[self.header] = self._key
        else:  # httpx encodes it: a key with & or = stays one parameter
            request.url = request.url.copy_merge_params({self.query_param: self._key})

    async def refresh(self, rejected: httpx.Request) -> bool:
        return False

    def secrets(self) -> tuple[str, ...]:
        return (self._key,)


class OAuth2ClientCredentials:
    """Tokens from ``token_url`` for this client; one request for them at a time."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        audience: str | None = None,
        skew: float = 30.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.audience = audience
        self.skew = skew
        self.timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self._failure: tuple[float, Exception] | None = None  # the last fetch's error, and when
        self.failure_memory = 2.0  # seconds a failed fetch answers for the callers queued behind it
        self.token_requests = 0  # how many times a token was fetched (observable, for tests and metrics)

    def _valid(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at

    async def token(self) -> str:
        if self._valid():
            assert self._token is not None
            return self._token
        async with self._lock:  # the first caller fetches; the others find it fresh (or its error)
            if not self._valid():
                failure = self._failure
                if failure is not None and self._clock() - failure[0] < self.failure_memory:
                    raise failure[1]  # the endpoint just failed: do not queue a fetch per caller
                try:
                    await self._fetch()
                except Exception as error:
                    self._failure = (self._clock(), error)
                    raise
                self._failure = None
            assert self._token is not None
            return self._token

    async def _fetch(self) -> None:
        form: dict[str, Any] = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        self.token_requests += 1
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                response = await http.post(self.token_url, data=form, auth=(self.client_id, self._secret))
        except httpx.TransportError as error:
            raise AuthUnavailableError(
                f"the token endpoint {self.token_url} did not answer: {error!r}"
            ) from error
        if response.status_code >= 500 or response.status_code == 429:
            raise AuthUnavailableError(f"the token endpoint {self.token_url} answered {response.status_code}")
        response.raise_for_status()  # 4xx: these credentials are refused (configuration, not an outage)
        body = response.json()
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise ValueError(f"the token endpoint {self.token_url} answered no access_token")
        lifetime = float(body.get("expires_in") or 300)
        self._token = token
        # the skew at most half the lifetime: a short-lived token is still used, not refetched at once
        self._expires_at = self._clock() + lifetime - min(self.skew, lifetime / 2)

    async def apply(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {await self.token()}"

    async def refresh(self, rejected: httpx.Request) -> bool:
        """Drop the token the rejected request carried (not one another caller fetched since)."""
        async with self._lock:
            if self._token is not None and rejected.headers.get("Authorization") == f"Bearer {self._token}":
                self._token, self._expires_at = None, 0.0
        return True

    def secrets(self) -> tuple[str, ...]:
        return tuple(value for value in (self._secret, self._token) if value)


class AuthChain:
    """Several strategies on one request, in order: an API's own credentials and a webhook's
    signature (which must come last: it signs what the others left)."""

    def __init__(self, *strategies: AuthStrategy) -> None:
        self.strategies = strategies

    async def apply(self, request: httpx.Request) -> None:
        for strategy in self.strategies:
            await strategy.apply(request)

    async def refresh(self, rejected: httpx.Request) -> bool:
        refreshed = [await strategy.refresh(rejected) for strategy in self.strategies]
        return any(refreshed)

    def secrets(self) -> tuple[str, ...]:
        return tuple(secret for strategy in self.strategies for secret in strategy.secrets())
