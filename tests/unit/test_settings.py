"""Settings from the environment: defaults, URL normalisation, refusals outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import DEFAULT_DATABASE_URL, DatabaseSettings, Settings


def test_defaults_give_the_embedded_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database.url == DEFAULT_DATABASE_URL
    assert settings.database.is_sqlite
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql://u:p@h:5433/db", "postgresql+asyncpg://u:p@h:5433/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
    ],
)
def test_database_urls_get_the_async_driver(given: str, used: str) -> None:
    assert DatabaseSettings(url=given).url == used


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://a@b/c")
    monkeypatch.setenv("PORT", "9001")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database.url == "postgresql+asyncpg://a@b/c"
    assert settings.port == 9001
    assert settings.log_level == "DEBUG"


def test_stack_traces_are_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="INCLUDE_STACK_TRACE"):
        Settings(environment="production", include_stack_trace=True, _env_file=None)  # type: ignore[call-arg]


def test_the_registration_limit_is_read_and_a_typo_fails_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_REGISTRATIONS", "5/hour")
    limit = Settings(_env_file=None).registrations_limit  # type: ignore[call-arg]
    assert limit is not None
    assert (limit.limit, limit.period) == (5, 3600)
    assert Settings(rate_limit_registrations="0").registrations_limit is None
    with pytest.raises(ValidationError, match="N/second, N/minute or N/hour"):
        Settings(rate_limit_registrations="20 per minute")


def test_redis_settings_come_from_redis_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:secret@cache:6380/2")
    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT", "0.1")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.redis.url == "redis://:secret@cache:6380/2"
    assert settings.redis.socket_timeout == 0.1
    assert settings.redis.key_prefix is None  # the composition root uses <SERVICE_NAME>:
