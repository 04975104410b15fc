"""``.env.example`` lists every setting the service reads, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from app.building_blocks.infrastructure.messaging.config import KafkaConfig, OutboxConfig
from app.settings import DatabaseSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
TEST_ONLY = {"REQUIRE_SERVICES", "TEST_DATABASE_URL", "BASE_URL"}


def settings_variables() -> set[str]:
    names: set[str] = set()
    for model in (Settings, DatabaseSettings, KafkaConfig, OutboxConfig):
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


def test_env_example_matches_the_settings() -> None:
    assert documented_variables() - TEST_ONLY == settings_variables()
