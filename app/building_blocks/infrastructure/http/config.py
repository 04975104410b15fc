"""How a client talks to one target: ``HttpClientConfig`` (the seed's names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from app.building_blocks.infrastructure.http.auth import AuthStrategy
from app.building_blocks.infrastructure.http.breaker import CircuitBreakerConfig
from app.building_blocks.infrastructure.http.retry import ExponentialBackoff, RetryPolicy


@dataclass(frozen=True)
class HttpClientConfig:
    """``timeout`` bounds one attempt (connect, each read and write); ``deadline`` the whole call,
    retries and their waits included (``None``: attempts x timeout + waits). ``name`` names the
    target's shared circuit breaker and its log lines: by default the base URL's host and port."""

    base_url: str = ""
    auth_strategy: AuthStrategy | None = None
    consumer_id: str | None = None
    retry_policy: RetryPolicy = field(default_factory=ExponentialBackoff)
    enable_circuit_breaker: bool = True
    circuit_breaker: CircuitBreakerConfig = field(default_factory=CircuitBreakerConfig)
    timeout: float = 10.0
    connect_timeout: float = 5.0
    deadline: float | None = 30.0
    retry_after_cap: float = 60.0
    max_connections: int = 100
    max_keepalive_connections: int = 20
    headers: dict[str, str] = field(default_factory=dict)
    verify_tls: bool = True
    name: str | None = None

    @property
    def target(self) -> str:
        if self.name:
            return self.name
        parts = urlsplit(self.base_url)
        return parts.netloc.rpartition("@")[2] or "default"
