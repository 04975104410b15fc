"""Every external API in one place, from the environment, each with one shared client.

::

    EXTERNAL_APIS__BILLING__BASE_URL=https://billing.internal
    EXTERNAL_APIS__BILLING__AUTH=oauth2
    EXTERNAL_APIS__BILLING__TOKEN_URL=https://login.internal/oauth/token
    EXTERNAL_APIS__BILLING__CLIENT_ID=user-service
    EXTERNAL_APIS__BILLING__CLIENT_SECRET=...
    EXTERNAL_APIS__BILLING__TIMEOUT=5

    apis = ExternalApis.from_environment(consumer_id="user-service")
    response = await apis.client("billing").get("/invoices")
    ...
    await apis.close()  # on shutdown

Names are case-insensitive (``billing``). A client is built on first use and shared: its pool,
its OAuth2 token and (through the target's name) its circuit breaker serve every caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.building_blocks.infrastructure.http.auth import (
    ApiKeyAuth,
    AuthStrategy,
    BasicAuth,
    BearerAuth,
    OAuth2ClientCredentials,
)
from app.building_blocks.infrastructure.http.breaker import CircuitBreakerConfig
from app.building_blocks.infrastructure.http.client import HttpClient
from app.building_blocks.infrastructure.http.config import HttpClientConfig
from app.building_blocks.infrastructure.http.retry import ExponentialBackoff, NoRetry

AuthKind = Literal["none", "bearer", "basic", "api_key", "oauth2"]
_NEEDS: dict[str, tuple[str, ...]] = {
    "bearer": ("token",),
    "basic": ("username", "password"),
    "api_key": ("api_key",),
    "oauth2": ("token_url", "client_id", "client_secret"),
}


class ExternalApiConfig(BaseModel):
    """One external API: where, how to authenticate, how long to wait, how to retry."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        default="",
        description="required, except for the webhooks' client (whose URL is WEBHOOK_URL): checked "
        "when the client is first asked for",
    )
    auth: AuthKind = "none"
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    api_key_header: str = "X-API-Key"
    api_key_query_param: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scope: str | None = None
    timeout: float = Field(default=10.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    deadline: float | None = Field(default=30.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    retry_base_delay: float = Field(default=0.5, ge=0)
    retry_max_delay: float = Field(default=10.0, ge=0)
    circuit_breaker: bool = True
    failure_threshold: int = Field(default=5, ge=1)
    open_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _auth_is_complete(self) -> Self:
        missing = [name for name in _NEEDS.get(self.auth, ()) if getattr(self, name) is None]
        if missing:
            raise ValueError(f"auth={self.auth} needs {', '.join(missing)}")
        return self

    def auth_strategy(self) -> AuthStrategy | None:
        def secret(value: SecretStr | None) -> str:
            assert value is not None  # checked by the validator
            return value.get_secret_value()

        if self.auth == "bearer":
            return BearerAuth(secret(self.token))
        if self.auth == "basic":
            assert self.username is not None
            return BasicAuth(self.username, secret(self.password))
        if self.auth == "api_key":
            return ApiKeyAuth(
                secret(self.api_key), header=self.api_key_header, query_param=self.api_key_query_param
            )
        if self.auth == "oauth2":
            assert self.token_url is not None
            assert self.client_id is not None
            return OAuth2ClientCredentials(
                self.token_url, self.client_id, secret(self.client_secret), scope=self.scope
            )
        return None

    def client_config(self, name: str, *, consumer_id: str | None = None) -> HttpClientConfig:
        retry = (
            ExponentialBackoff(self.max_retries, self.retry_base_delay, self.retry_max_delay)
            if self.max_retries
            else NoRetry()
        )
        return HttpClientConfig(
            base_url=self.base_url,
            auth_strategy=self.auth_strategy(),
            consumer_id=consumer_id,
            retry_policy=retry,
            enable_circuit_breaker=self.circuit_breaker,
            circuit_breaker=CircuitBreakerConfig(self.failure_threshold, self.open_seconds),
            timeout=self.timeout,
            connect_timeout=self.connect_timeout,
            deadline=self.deadline,
            name=name,
        )


class ExternalApisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_nested_delimiter="__", env_file=".env", extra="ignore")

    external_apis: dict[str, ExternalApiConfig] = Field(default_factory=dict)


class ExternalApis:
    """The named clients of a process; :meth:`client` returns the shared one."""

    def __init__(self, apis: Mapping[str, ExternalApiConfig], *, consumer_id: str | None = None) -> None:
        self.apis = {name.lower(): api for name, api in apis.items()}
        self.consumer_id = consumer_id
        self._clients: dict[str, HttpClient] = {}

    @classmethod
    def from_environment(cls, *, consumer_id: str | None = None) -> Self:
        return cls(ExternalApisSettings().external_apis, consumer_id=consumer_id)

    def client(self, name: str) -> HttpClient:
        key = name.lower()
        client = self._clients.get(key)
        if client is None:
            api = self.apis.get(key)
            if api is None:
                known = ", ".join(sorted(self.apis)) or "none"
                raise KeyError(
                    f"no external API {name!r} is configured (EXTERNAL_APIS__...; configured: {known})"
                )
            if not api.base_url:
                raise ValueError(f"EXTERNAL_APIS__{key.upper()}__BASE_URL is not set")
            client = self._clients[key] = HttpClient(api.client_config(key, consumer_id=self.consumer_id))
        return client

    def adopt(self, name: str, client: HttpClient) -> HttpClient:
        """Keep a client built elsewhere (the webhooks') under ``name``: shared and closed like ours."""
        self._clients[name.lower()] = client
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
