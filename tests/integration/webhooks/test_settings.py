"""WEBHOOK_* settings: a secret is required outside development, and must be well formed."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import ValidationError

from app.building_blocks.infrastructure.http.external import ExternalApis
from app.building_blocks.infrastructure.webhooks.delivery import WebhookDelivery
from app.composition import build_webhooks
from app.contexts import CONTEXTS
from app.settings import WebhookSettings
from tests.conftest import make_settings
from tests.integration.webhooks.conftest import new_secret

URL = "https://hooks.example.com/in"
DATABASE = "sqlite+aiosqlite:///unused.db"


@pytest.mark.parametrize("environment", ["production", "test"])
def test_a_url_without_a_secret_is_refused_outside_development(environment: str) -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_URL needs WEBHOOK_SECRET"):
        make_settings(DATABASE, environment=environment, webhooks=WebhookSettings(url=URL))


def test_a_url_without_a_secret_is_allowed_in_development() -> None:
    settings = make_settings(DATABASE, environment="development", webhooks=WebhookSettings(url=URL))
    assert settings.webhooks.url == URL
    assert settings.webhooks.secret is None


def test_a_url_with_a_secret_is_accepted() -> None:
    secret = new_secret()
    settings = make_settings(DATABASE, webhooks=WebhookSettings(url=URL, secret=secret))
    assert settings.webhooks.secret is not None
    assert settings.webhooks.secret.get_secret_value() == secret


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(base64.b64encode(os.urandom(32)).decode(), id="no-whsec-prefix"),
        pytest.param("whsec_not base64!!", id="not-base64"),
        pytest.param("whsec_" + base64.b64encode(os.urandom(16)).decode(), id="16-bytes"),
        pytest.param("whsec_" + base64.b64encode(os.urandom(23)).decode(), id="23-bytes"),
    ],
)
def test_a_malformed_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="webhook secret"):
        WebhookSettings(url=URL, secret=secret)


def test_the_client_is_tuned_by_env_without_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """``EXTERNAL_APIS__WEBHOOKS__*`` without a ``BASE_URL`` (the URL is ``WEBHOOK_URL``) builds."""
    monkeypatch.setenv("EXTERNAL_APIS__WEBHOOKS__MAX_RETRIES", "1")
    monkeypatch.setenv("EXTERNAL_APIS__WEBHOOKS__OPEN_SECONDS", "2")
    settings = make_settings(DATABASE, webhooks=WebhookSettings(url=URL, secret=new_secret()))
    subscription = build_webhooks(settings, ExternalApis.from_environment(), CONTEXTS)
    assert subscription is not None
    assert isinstance(subscription.handler, WebhookDelivery)
    config = subscription.handler.client.config
    assert config.retry_policy.max_retries == 1
    assert config.circuit_breaker.open_seconds == 2
    assert subscription.handler.url == URL
