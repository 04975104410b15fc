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
