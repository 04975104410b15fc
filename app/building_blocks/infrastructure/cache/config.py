"""How to reach Redis and how long things live there: ``RedisConfig``, or one ``REDIS_URL``."""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class RedisConfig(BaseModel):
    """One Redis server and the client's limits toward it.

    The timeouts bound what a request can lose to a dead or unreachable Redis: the service treats
    Redis as optional, so ``socket_timeout`` (per command) and ``socket_connect_timeout`` are short
    and there are no client-side retries (the caller falls back to the database instead).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "localhost"
    port: int = Field(default=6379, ge=1, le=65535)
    db: int = Field(default=0, ge=0)
    username: str | None = None
    password: SecretStr | None = None
    ssl: bool = False
    key_prefix: str = ""
    default_ttl: float | None = Field(
        default=3600, gt=0, description="seconds a value lives when set() names no ttl; None: forever"
    )
    max_connections: int = Field(default=50, ge=1)
    pool_timeout: float = Field(default=1.0, gt=0, description="seconds to wait for a free pooled connection")
    socket_timeout: float = Field(default=0.5, gt=0, description="seconds one command may take")
    socket_connect_timeout: float = Field(default=0.5, gt=0)
    health_check_interval: int = Field(
        default=30, ge=0, description="seconds idle after which a pooled connection is pinged before use"
    )

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> Self:
        """``redis://[user:password@]host[:port][/db]``; ``rediss://`` for TLS."""
        parts = urlsplit(url)
        if parts.scheme not in {"redis", "rediss"}:
            raise ValueError(f"not a Redis URL (redis:// or rediss://): {parts.scheme or url!r}")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"the database of a Redis URL is a number: {path!r}")
        values: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "port": parts.port or 6379,
            "db": int(path) if path else 0,
            "ssl": parts.scheme == "rediss",
            "username": unquote(parts.username) if parts.username else None,
            "password": SecretStr(unquote(parts.password)) if parts.password else None,
        }
        return cls(**{**values, **overrides})

    def describe(self) -> str:
        """Where, for logs: never the password."""
        scheme = "rediss" if self.ssl else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"
