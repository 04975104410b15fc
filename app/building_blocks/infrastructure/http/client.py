"""``HttpClient``: one pooled ``httpx.AsyncClient`` per target, with auth, retries, a shared
circuit breaker, correlation and consumer ids, trace context and redacted logs.

::

    config = HttpClientConfig(base_url="https://billing.internal", auth_strategy=BearerAuth("t"))
    async with HttpClient(config) as billing:
        response = await billing.get("/invoices/42")

Every call sends ``X-Correlation-Id`` (the ``correlation_id=`` given, else the current request's or
message's, else a new one) and ``X-Consumer-Id`` (``consumer_id``), and the W3C ``traceparent``
(the OpenTelemetry httpx instrumentation, per client). It returns the final response whatever its
status — a 503 that outlived its retries is a response, not an exception; transport errors that
outlived theirs are raised, as :class:`CircuitOpenError` is when the target's breaker is open and
:class:`DeadlineExceededError` when the call's deadline ran out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Self

import httpx
from opentelemetry import propagate
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import Span
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_before_delay,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from app.building_blocks.correlation import CORRELATION_ID_HEADER, get_correlation_id, new_correlation_id
from app.building_blocks.infrastructure.http.auth import AuthStrategy
from app.building_blocks.infrastructure.http.breaker import (
    BREAKERS,
    CircuitBreaker,
    CircuitBreakers,
    CircuitState,
)
from app.building_blocks.infrastructure.http.config import HttpClientConfig
from app.building_blocks.infrastructure.http.errors import CircuitOpenError, DeadlineExceededError
from app.building_blocks.infrastructure.http.redaction import redact_url
from app.building_blocks.infrastructure.http.retry import (
    IDEMPOTENT_METHODS,
    RETRYABLE_STATUSES,
    NoRetry,
    parse_retry_after,
)
from app.building_blocks.observability.metrics import (
    HTTP_CLIENT_CIRCUIT_OPEN,
    HTTP_CLIENT_DURATION,
    HTTP_CLIENT_REQUESTS,
)
from app.building_blocks.observability.tracing import recording

logger = logging.getLogger("app.http")

CONSUMER_ID_HEADER = "X-Consumer-Id"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"

_call_secrets: ContextVar[tuple[str, ...]] = ContextVar("http_call_secrets", default=())


class _RedactHttpxUrls(logging.Filter):
    """httpx logs every request's full URL at INFO (``HTTP Request: GET https://...``), user
    info and query keys included: shown redacted like ours, with the calling client's secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(arg, httpx.URL) for arg in record.args):
            secrets = _call_secrets.get()
            record.args = tuple(
                redact_url(str(arg), secrets) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


_HTTPX_URLS = _RedactHttpxUrls()


class _HonourRetryAfter(wait_base):
    """The policy's wait, unless the last answer said how long (``Retry-After``, capped)."""

    def __init__(self, policy: wait_base, cap: float) -> None:
        self.policy = policy
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            told = parse_retry_after(outcome.result().headers.get("Retry-After"))
            if told is not None:
                return min(told, self.cap)
        return float(self.policy(retry_state))


class HttpClient:
    def __init__(self, config: HttpClientConfig, *, breakers: CircuitBreakers = BREAKERS) -> None:
        self.config = config
        self.target = config.target
        self.breaker: CircuitBreaker | None = (
            breakers.get(self.target, config.circuit_breaker) if config.enable_circuit_breaker else None
        )
        self._client: httpx.AsyncClient | None = None
        self._instrumented = False
        self._duration = HTTP_CLIENT_DURATION.labels(self.target)
        self._circuit = HTTP_CLIENT_CIRCUIT_OPEN.labels(self.target)
        self._secrets = config.auth_strategy.secrets() if config.auth_strategy else ()
        httpx_logger = logging.getLogger("httpx")
        if _HTTPX_URLS not in httpx_logger.filters:
            httpx_logger.addFilter(_HTTPX_URLS)

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def http(self) -> httpx.AsyncClient:
        """The pooled httpx client, created on first use."""
        if self._client is None:
            config = self.config
            client = httpx.AsyncClient(
                base_url=config.base_url,
                timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
                limits=httpx.Limits(
                    max_connections=config.max_connections,
                    max_keepalive_connections=config.max_keepalive_connections,
                ),
                headers=config.headers,
                verify=config.verify_tls,
                follow_redirects=False,
            )
            # While spans are recorded: a CLIENT span and its traceparent per attempt, the span's URL
            # redacted as the logs' are. Otherwise (ids only, the lean default) the instrumentation
            # would cost an attempt 9 % for a span nobody sees: the current context's traceparent
            # is sent instead (see _attempt), so the trace still joins up.
            self._instrumented = recording()
            if self._instrumented:
                HTTPXClientInstrumentor.instrument_client(client, request_hook=self._redact_span_url)
            self._client = client
        return self._client

    async def _redact_span_url(self, span: Span, request: Any) -> None:
        """The span's URL as the logs show it: no user info, no secret query values."""
        if span.is_recording():
            shown = redact_url(str(request.url), self._secrets)
            present = getattr(span, "attributes", None) or {}
            for attribute in ("url.full", "http.url"):  # the stable convention's name, or the old
                if attribute in present:
                    span.set_attribute(attribute, shown)

    async def __aenter__(self) -> Self:
        self.http  # noqa: B018 - opened here, closed on exit
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- calls ----------------------------------------------------------------------------------
    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kwargs)

    async def request(
        self,
        method: str,
        url: str,
        *,
        correlation_id: str | None = None,
        retry: bool | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One call, with its retries. ``retry``: ``None`` retries idempotent methods (and any
        call with an ``Idempotency-Key``), ``True`` any method, ``False`` none. Other arguments go
        to ``httpx.AsyncClient.build_request`` (``json=``, ``params=``, ``content=``...)."""
        method = method.upper()
        sent = dict(headers or {})
        sent.setdefault(CORRELATION_ID_HEADER, correlation_id or get_correlation_id() or new_correlation_id())
        if self.config.consumer_id:
            sent.setdefault(CONSUMER_ID_HEADER, self.config.consumer_id)
        if retry is None:
            retry = method in IDEMPOTENT_METHODS or any(k.lower() == "idempotency-key" for k in sent)
        policy = self.config.retry_policy if retry else NoRetry()
        deadline = self.config.deadline
        started = time.monotonic()
        attempts = 0

        async def attempt() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            return await self._attempt(method, url, sent, kwargs, started)

        stop: stop_base = stop_after_attempt(policy.max_retries + 1)
        if deadline is not None:
            stop = stop | stop_before_delay(deadline)
        retrying = AsyncRetrying(
            stop=stop,
            wait=_HonourRetryAfter(policy.wait(), self.config.retry_after_cap),
            retry=retry_if_exception_type(httpx.TransportError) | retry_if_result(_retryable),
            retry_error_callback=_last_outcome,
            reraise=True,
        )
        secrets = _call_secrets.set(self._secrets)
        try:
            response: httpx.Response = await retrying(attempt)
        except Exception as error:
            self._log(method, url, None, started, attempts, error)
            raise
        finally:
            _call_secrets.reset(secrets)
            self._duration.observe(time.monotonic() - started)
        self._log(method, url, response, started, attempts, None)
        return response

    async def _attempt(
        self, method: str, url: str, headers: dict[str, str], kwargs: dict[str, Any], started: float
    ) -> httpx.Response:
        try:
            probe = self.breaker.before_call() if self.breaker is not None else None
        except CircuitOpenError:
            HTTP_CLIENT_REQUESTS.labels(self.target, method, "circuit_open").inc()
            raise
        try:
            request = await self._prepare(method, url, headers, kwargs, started)
            response = await self._send(request, started, probe)
            auth = self.config.auth_strategy
            if response.status_code == 401 and auth is not None and await auth.refresh(request):
                await response.aclose()
                request = await self._prepare(method, url, headers, kwargs, started)
                response = await self._send(request, started, probe)
            return response
        finally:
            if probe is not None and self.breaker is not None:  # a probe cancelled or failed before
                self.breaker.release_probe(probe)  # its answer must not hold the half-open slot
            if self.breaker is not None:
                self._circuit.set(0 if self.breaker.state is CircuitState.CLOSED else 1)

    async def _prepare(
        self, method: str, url: str, headers: dict[str, str], kwargs: dict[str, Any], started: float
    ) -> httpx.Request:
        """The attempt's request: the caller's trace context and fresh credentials."""
        request = self.http.build_request(method, url, headers=headers, **kwargs)
        if not self._instrumented:
            propagate.inject(request.headers)  # traceparent (and tracestate) of the current span
        if self.config.auth_strategy is not None:
            await self._authenticate(self.config.auth_strategy, request, started)
        return request

    async def _authenticate(self, auth: AuthStrategy, request: httpx.Request, started: float) -> None:
        """Credentials within what is left of the call's deadline (a token fetch counts too)."""
        deadline = self.config.deadline
        if deadline is None:
            await auth.apply(request)
            return
        try:
            async with asyncio.timeout(max(0.0, deadline - (time.monotonic() - started))):
                await auth.apply(request)
        except TimeoutError as error:
            message = f"{self.target}: the call's {deadline:g}s deadline ran out getting credentials"
            raise DeadlineExceededError(message) from error

    async def _send(self, request: httpx.Request, started: float, probe: float | None) -> httpx.Response:
        deadline = self.config.deadline
        left = None if deadline is None else deadline - (time.monotonic() - started)
        # Spent before sending (a slow token fetch, say): not the target's fault, not its failure.
        if left is not None and left <= 0:
            raise DeadlineExceededError(f"{self.target}: the call's {deadline:g}s deadline ran out")
        try:
            if left is None:
                response = await self.http.send(request)
            else:
                async with asyncio.timeout(left):
                    response = await self.http.send(request)
        except TimeoutError as error:
            # Cut short by what was left of the call's deadline: the target was not given its
            # full timeout, so this says nothing of its health (counted, not held against it).
            HTTP_CLIENT_REQUESTS.labels(self.target, request.method, "error").inc()
            if isinstance(error, DeadlineExceededError):
                raise
            raise DeadlineExceededError(
                f"{self.target}: the call's {deadline:g}s deadline ran out"
            ) from error
        except httpx.TransportError:
            self._failed(request.method)
            raise
        HTTP_CLIENT_REQUESTS.labels(self.target, request.method, f"{response.status_code // 100}xx").inc()
        if self.breaker is not None:
            if response.status_code >= 500:
                self.breaker.record_failure()
            else:
                self.breaker.record_success(probe)
        return response

    def _failed(self, method: str) -> None:
        HTTP_CLIENT_REQUESTS.labels(self.target, method, "error").inc()
        if self.breaker is not None:
            self.breaker.record_failure()

    def _log(
        self,
        method: str,
        url: str,
        response: httpx.Response | None,
        started: float,
        attempts: int,
        error: BaseException | None,
    ) -> None:
        status = response.status_code if response is not None else None
        failed = error is not None or (status is not None and status >= 500)
        level = logging.WARNING if failed or attempts > 1 else logging.DEBUG
        if not logger.isEnabledFor(level):
            return
        sent: httpx.Request | None = response.request if response is not None else None
        if sent is None and isinstance(error, httpx.RequestError):
            try:
                sent = error.request
            except RuntimeError:  # raised before a request existed
                sent = None
        # the URL requested (its params and an API key among them), else the one asked for
        shown = redact_url(str(sent.url if sent is not None else self.http.base_url.join(url)), self._secrets)
        extra = {
            "target": self.target,
            "http_method": method,
            "url": shown,
            "status": status,
            "attempts": attempts,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
        if error is not None:
            extra["error_type"] = type(error).__name__
        outcome = status if status is not None else type(error).__name__
        logger.log(level, "%s %s -> %s after %d attempt(s)", method, shown, outcome, attempts, extra=extra)


def _retryable(response: httpx.Response) -> bool:
    return response.status_code in RETRYABLE_STATUSES


def _last_outcome(retry_state: RetryCallState) -> Any:
    """Retries used up: the last answer is the call's answer (the last error is raised)."""
    assert retry_state.outcome is not None
    return retry_state.outcome.result()
