"""Messaging configuration from the environment: ``KAFKA_*`` and ``OUTBOX_*`` variables.

Without ``KAFKA_BOOTSTRAP_SERVERS`` the service runs embedded: the same outbox, relay, inbox and
handlers, with an in-process transport instead of a broker.

The service's name (``SERVICE_NAME``) is the default client id, consumer-group prefix and topic
prefix, so a renamed service never joins another's groups.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaConfig(BaseSettings):
    """Broker connection, producer and consumer behaviour, and the reliability switches."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", env_file=".env", extra="ignore")

    bootstrap_servers: str | None = None
    service_name: str = Field(
        default="service",
        min_length=1,
        validation_alias=AliasChoices("service_name", "SERVICE_NAME"),
        description="SERVICE_NAME: the default client id, consumer-group prefix and topic prefix",
    )
    client_id: str | None = Field(default=None, description="default: SERVICE_NAME")

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None

    # Producer: every acknowledged event is on all in-sync replicas, retries never duplicate.
    acks: Literal["all", "1", "0"] = "all"
    enable_idempotence: bool = True
    compression_type: Literal["gzip"] | None = None
    linger_ms: int = Field(default=0, ge=0)
    request_timeout_ms: int = Field(default=10_000, ge=1_000)

    # Consumers
    consumer_group: str | None = Field(
        default=None,
        description="prefix of each consumer's group (<prefix>.<consumer>); default: SERVICE_NAME",
    )
    retry_attempts: int = Field(default=3, ge=1)
    retry_backoff_ms: int = Field(default=200, ge=0)
    # An outage (the consumer's database down) is retried until it ends, backing off up to this.
    retry_max_backoff_ms: int = Field(default=30_000, ge=1)
    dlq_suffix: str = ".dlq"

    # Topics the worker creates when missing (see provisioning.py)
    create_topics: bool = True
    topic_partitions: int = Field(default=3, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    # Reliability patterns (see docs/INBOX_OUTBOX_CONFIG.md)
    enable_outbox: bool = True
    enable_inbox: bool = True
    inbox_retention_hours: float = Field(default=168.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.enable_idempotence and self.acks != "all":
            raise ValueError("KAFKA_ENABLE_IDEMPOTENCE=true requires KAFKA_ACKS=all")
        sasl = self.security_protocol.startswith("SASL")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError("SASL needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        if self.sasl_mechanism and not sasl:
            raise ValueError("KAFKA_SASL_MECHANISM needs KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT or SASL_SSL")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"KAFKA_{name.upper()}={path} is not a readable file")
        return self

    @property
    def embedded(self) -> bool:
        return not self.bootstrap_servers

    def ssl_context(self) -> ssl.SSLContext | None:
        """The context aiokafka takes for SSL and SASL_SSL; ``None`` for plaintext."""
        if not self.security_protocol.endswith("SSL"):
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(
                self.ssl_certfile,
                self.ssl_keyfile,
                self.ssl_password.get_secret_value() if self.ssl_password else None,
            )
        return context

    def connection_options(self) -> dict[str, Any]:
        """Keyword arguments shared by aiokafka producers, consumers and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id or self.service_name,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return options

    def producer_options(self) -> dict[str, Any]:
        return {
            **self.connection_options(),
            "acks": "all" if self.acks == "all" else int(self.acks),
            "enable_idempotence": self.enable_idempotence,
            "compression_type": self.compression_type,
            "linger_ms": self.linger_ms,
        }

    def group(self, consumer: str) -> str:
        """The consumer group of one consumer: ``<KAFKA_CONSUMER_GROUP or SERVICE_NAME>.<consumer>``."""
        return f"{self.consumer_group or self.service_name}.{consumer}"

    def dlq_topic(self, topic: str) -> str:
        return f"{topic}{self.dlq_suffix}"


class OutboxConfig(BaseSettings):
    """How the relay moves outbox rows to the transport."""

    model_config = SettingsConfigDict(env_prefix="OUTBOX_", env_file=".env", extra="ignore")

    batch_size: int = Field(default=1000, ge=1, le=10_000, description="rows per batch (one transaction)")
    batches_in_flight: int = Field(
        default=2, ge=1, le=8, description="lanes working off a backlog at once (PostgreSQL)"
    )
    poll_interval: float = Field(default=1.0, gt=0, description="seconds between polls when idle")
    max_backoff: float = Field(default=30.0, gt=0, description="longest pause after failed sends")
    send_timeout: float | None = Field(
        default=None,
        gt=0,
        description="seconds a batch may wait for the transport's acks before its sends count as "
        "failed (default: KAFKA_REQUEST_TIMEOUT_MS); also the longest a claim transaction stays open",
    )
    max_attempts: int = Field(
        default=10,
        ge=1,
        description="attempts after which a row whose send keeps failing is parked; an outage "
        "(transport unreachable, no ack in time) never parks a row",
    )
    shutdown_grace: float = Field(
        default=5.0, gt=0, description="seconds a stopping relay still waits for acks in hand"
    )
    standby_interval: float = Field(default=1.0, gt=0, description="how often a standby tries to lead")
    retention_hours: float = Field(default=24.0, gt=0, description="keep published rows this long")
    purge_interval: float = Field(default=300.0, gt=0, description="seconds between purges")
