"""``.env.example`` lists every setting the service reads, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from app.building_blocks.infrastructure.http.external import ExternalApiConfig
from app.building_blocks.infrastructure.messaging.config import KafkaConfig, OutboxConfig
from app.settings import DatabaseSettings, RedisSettings, Settings, WebhookSettings

ROOT = Path(__file__).resolve().parents[2]
TEST_ONLY = {"REQUIRE_SERVICES", "TEST_DATABASE_URL", "BASE_URL"}
# Read by others: the OpenTelemetry SDK (its OTEL_* variables) and gunicorn.conf.py.
GUNICORN = {
    "WEB_CONCURRENCY",
    "GUNICORN_BIND",
    "GUNICORN_TIMEOUT",
    "GUNICORN_GRACEFUL_TIMEOUT",
    "PROMETHEUS_MULTIPROC_DIR",
}


def settings_variables() -> set[str]:
    names: set[str] = set()
    for model in (Settings, DatabaseSettings, RedisSettings, WebhookSettings, KafkaConfig, OutboxConfig):
        prefix = str(model.model_config.get("env_prefix", ""))
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
                continue  # nested settings read their own prefix
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):  # a field read from an unprefixed name
                names.update(str(choice) for choice in alias.choices if str(choice).isupper())
                continue
            names.add(f"{prefix}{name}".upper())
    return names


def documented_variables() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def otel_variables() -> set[str]:
    """Every variable the OpenTelemetry SDK and exporters define."""
    from opentelemetry import environment_variables as api
    from opentelemetry.sdk import environment_variables as sdk

    return {value for module in (api, sdk) for value in vars(module).values() if isinstance(value, str)}


EXTERNAL_API = re.compile(r"EXTERNAL_APIS__[A-Z0-9]+__([A-Z0-9_]+)")


def test_env_example_matches_the_settings() -> None:
    documented = documented_variables() - TEST_ONLY
    external = {name for name in documented if EXTERNAL_API.fullmatch(name)}
    own = {name for name in documented - external if not name.startswith("OTEL_")} - GUNICORN
    assert own == settings_variables()


def test_external_api_examples_name_real_fields() -> None:
    """``EXTERNAL_APIS__<NAME>__<FIELD>``: every field shown exists, and every field is shown."""
    shown = {
        match.group(1).lower() for name in documented_variables() if (match := EXTERNAL_API.fullmatch(name))
    }
    assert shown == set(ExternalApiConfig.model_fields)


def test_the_variables_others_read_exist() -> None:
    documented = documented_variables()
    assert {name for name in documented if name.startswith("OTEL_")} <= otel_variables()
    gunicorn_conf = (ROOT / "gunicorn.conf.py").read_text()
    for name in GUNICORN:
        assert name in documented
        assert f'"{name}"' in gunicorn_conf
