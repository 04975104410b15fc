"""One settings tree, read from environment variables (and ``.env``).

The mode follows the configuration alone: without ``DATABASE_URL`` the service uses an SQLite file
under ``./var/``; with a PostgreSQL URL it uses that. ``.env.example`` lists every variable.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.building_blocks.infrastructure.cache.rate_limit import RateLimit
from app.building_blocks.infrastructure.garbage_collection import DEFAULT_THRESHOLD
from app.building_blocks.infrastructure.messaging.config import KafkaConfig, OutboxConfig
from app.building_blocks.infrastructure.webhooks.signing import check_secret
from app.building_blocks.observability.config import ObservabilityConfig
from app.building_blocks.observability.tracing import SpanExport

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/app.db"

_ASYNC_DRIVERS = {
    "postgres://": "postgresql+asyncpg://",
    "postgresql://": "postgresql+asyncpg://",
    "sqlite://": "sqlite+aiosqlite://",
}


def _config(prefix: str = "") -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore")


class DatabaseSettings(BaseSettings):
    model_config = _config("DATABASE_")

    url: str = DEFAULT_DATABASE_URL
    echo: bool = False
    pool_size: int = Field(default=20, ge=1)
    max_overflow: int = Field(default=0, ge=0)  # overflow connections are closed on return: churn
    pool_timeout: float = Field(default=10.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    lock_timeout: float = Field(default=5.0, gt=0)
    statement_timeout: float = Field(default=30.0, ge=0)
    ping_after_idle: float = Field(
        default=30.0, gt=0, description="seconds idle after which a pooled connection is pinged before use"
    )

    @field_validator("url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        """Accept the URLs people paste (``postgres://...``) and pick the async driver."""
        for plain, async_scheme in _ASYNC_DRIVERS.items():
            if url.startswith(plain):
                return async_scheme + url[len(plain) :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class RedisSettings(BaseSettings):
    """``REDIS_URL`` set: Redis caches reads and keeps the rate limits; unset: process memory."""

    model_config = _config("REDIS_")

    url: str | None = Field(
        default=None, description="redis://[user:password@]host:port/db (rediss:// for TLS)"
    )
    key_prefix: str | None = Field(default=None, description="default: <SERVICE_NAME>:")
    max_connections: int = Field(default=50, ge=1)
    pool_timeout: float = Field(default=0.5, gt=0)
    socket_timeout: float = Field(
        default=0.25, gt=0, description="seconds a command may take before the service falls back"
    )
    connect_timeout: float = Field(default=0.25, gt=0)
    retry_after: float = Field(
        default=1.0, gt=0, description="seconds the service leaves a failed Redis alone before trying again"
    )


class WebhookSettings(BaseSettings):
    """``WEBHOOK_URL`` set: every integration event the service publishes is POSTed there,
    signed (docs/WEBHOOKS.md). The client's timeouts, retries and any auth of its own come from
    ``EXTERNAL_APIS__WEBHOOKS__*`` (its base URL is this one)."""

    model_config = _config("WEBHOOK_")

    url: str | None = Field(default=None, description="the endpoint; unset: no webhooks")
    secret: SecretStr | None = Field(
        default=None, description="whsec_ + base64 of 24-64 random bytes; required outside development"
    )
    events: str | None = Field(
        default=None,
        description="comma-separated event types to send (users.user_registered, ...); unset: all",
    )
    max_age: float = Field(
        default=24 * 3600,
        gt=0,
        description="seconds an undelivered event is retried before it is dead-lettered",
    )

    @field_validator("secret")
    @classmethod
    def _secret_format(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret(value.get_secret_value())
        return value


class Settings(BaseSettings):
    model_config = _config()

    environment: Literal["development", "test", "production"] = "development"
    service_name: str = Field(
        default="user-service",
        pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$",
        max_length=63,
        description="names the service everywhere: client id, consumer groups, topic prefix, "
        "CloudEvents source, logs, OpenAPI title",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    access_log: bool = Field(
        default=False,
        description="a log line per HTTP request (uvicorn's access log); uvicorn's --no-access-log wins",
    )
    include_stack_trace: bool = False
    gc_threshold: int = Field(
        default=DEFAULT_THRESHOLD,
        ge=0,
        description="once started, freeze the startup heap and collect the young generation every "
        "N allocations (Python: 700); 0 leaves the garbage collector alone",
    )
    tracing_enabled: bool = Field(
        default=True,
        description="trace ids for every request, log line and error; spans are exported only "
        "where OTEL_EXPORTER_OTLP_ENDPOINT points",
    )
    span_export: SpanExport = Field(
        default="fastotel",
        description="who sends OTLP/HTTP spans: fastotel (native, off the GIL) or sdk (the "
        "OpenTelemetry SDK's Python exporter); gRPC always uses the SDK's",
    )
    metrics_enabled: bool = Field(default=True, description="Prometheus metrics; the API serves GET /metrics")
    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 - Prometheus scrapes the worker from another host
    worker_metrics_port: int = Field(
        default=9102, ge=0, le=65535, description="where the worker serves /metrics; 0: not served"
    )
    metrics_sample_interval: float = Field(
        default=5.0, gt=0, description="seconds between samples of the process, pool and outbox gauges"
    )
    api_processes: int = Field(
        default=1,
        ge=1,
        description="API processes serving together (gunicorn.conf.py sets it to its workers); "
        "with more than one and no REDIS_URL, reads are not cached in process memory",
    )
    readiness_timeout: float = Field(default=2.0, gt=0)
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=0)
    request_body_timeout: float = Field(default=30.0, gt=0)
    topic_overrides: dict[str, str] = Field(
        default_factory=dict,
        description='aggregate type -> topic, as JSON: {"user": "crm.users.v1"}; '
        "default for each: <SERVICE_NAME>.<aggregate type>s.v1",
    )
    cache_ttl: float = Field(
        default=300.0,
        ge=0,
        description="seconds a cached read (GET /api/v1/users/{id}) lives; 0: no read cache",
    )
    rate_limit_registrations: str = Field(
        default="20/minute",
        description="POST /api/v1/users per client address: N/second, N/minute or N/hour; 0: no limit",
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)

    def observability(self, *, process: str | None = None) -> ObservabilityConfig:
        """The observability of one process: the API (``service_name``) or ``<service_name>-<process>``."""
        return ObservabilityConfig(
            service_name=f"{self.service_name}-{process}" if process else self.service_name,
            tracing_enabled=self.tracing_enabled,
            span_export=self.span_export,
            metrics_enabled=self.metrics_enabled,
            log_level=self.log_level,
            log_json=self.log_json,
            access_log=self.access_log,
        )

    @field_validator("rate_limit_registrations")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        RateLimit.parse(value)  # a typo fails at startup, not on the first registration
        return value

    @property
    def registrations_limit(self) -> RateLimit | None:
        return RateLimit.parse(self.rate_limit_registrations)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _safe_outside_development(self) -> Self:
        if self.environment == "production" and self.include_stack_trace:
            raise ValueError("INCLUDE_STACK_TRACE must be false when ENVIRONMENT=production")
        if self.webhooks.url and self.webhooks.secret is None and self.environment != "development":
            raise ValueError("WEBHOOK_URL needs WEBHOOK_SECRET (whsec_...) outside development")
        if self.environment == "production" and not self.kafka.enable_outbox:
            raise ValueError("KAFKA_ENABLE_OUTBOX=false loses events on a crash; not in production")
        if self.kafka.service_name != self.service_name:  # KafkaConfig reads SERVICE_NAME too
            self.kafka = self.kafka.model_copy(update={"service_name": self.service_name})
        if self.outbox.send_timeout is None:  # a send counts as failed when Kafka's request would
            timeout = self.kafka.request_timeout_ms / 1000
            self.outbox = self.outbox.model_copy(update={"send_timeout": timeout})
        return self

    @property
    def title(self) -> str:
        """The service's name for people (the OpenAPI title): ``user-service`` → ``User Service``."""
        return self.service_name.replace("-", " ").title()


@lru_cache
def get_settings() -> Settings:
    return Settings()
