"""Outbound HTTP: ``HttpClient`` with auth strategies, retry policies, a circuit breaker per
target, correlation and consumer ids, trace context, redacted logs, and external APIs configured
from the environment."""

from app.building_blocks.infrastructure.http.auth import (
    ApiKeyAuth,
    AuthStrategy,
    BasicAuth,
    BearerAuth,
    OAuth2ClientCredentials,
)
from app.building_blocks.infrastructure.http.breaker import (
    BREAKERS,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakers,
    CircuitState,
)
from app.building_blocks.infrastructure.http.client import HttpClient
from app.building_blocks.infrastructure.http.config import HttpClientConfig
from app.building_blocks.infrastructure.http.errors import CircuitOpenError, DeadlineExceededError
from app.building_blocks.infrastructure.http.external import (
    ExternalApiConfig,
    ExternalApis,
    ExternalApisSettings,
)
from app.building_blocks.infrastructure.http.retry import (
    ExponentialBackoff,
    FixedDelay,
    NoRetry,
    RetryPolicy,
    parse_retry_after,
)

__all__ = [
    "BREAKERS",
    "ApiKeyAuth",
    "AuthStrategy",
    "BasicAuth",
    "BearerAuth",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakers",
    "CircuitOpenError",
    "CircuitState",
    "DeadlineExceededError",
    "ExponentialBackoff",
    "ExternalApiConfig",
    "ExternalApis",
    "ExternalApisSettings",
    "FixedDelay",
    "HttpClient",
    "HttpClientConfig",
    "NoRetry",
    "OAuth2ClientCredentials",
    "RetryPolicy",
    "parse_retry_after",
]
