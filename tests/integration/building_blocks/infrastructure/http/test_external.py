"""``ExternalApis`` from ``EXTERNAL_APIS__<NAME>__*``: one shared client per name, its auth,
retries and consumer id as configured, working against a real server; closed on ``close()``."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from app.building_blocks.infrastructure.http import BREAKERS, ExternalApis
from tests.http_servers import OAuth2TokenEndpoint, Reply, ScriptedServer

NAMES = ("billing", "crm", "legacy")


@pytest.fixture
def environment(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Three APIs on the test server: OAuth2, an API key in the query, Basic. Their breakers live
    in the process-wide ``BREAKERS`` under their names: removed after the test."""
    variables = {
        "BILLING__BASE_URL": server.url,
        "BILLING__AUTH": "oauth2",
        "BILLING__TOKEN_URL": server.url_for("/oauth/token"),
        "BILLING__CLIENT_ID": "user-service",
        "BILLING__CLIENT_SECRET": "billing-secret",
        "BILLING__SCOPE": "invoices:read",
        "BILLING__MAX_RETRIES": "2",
        "BILLING__RETRY_BASE_DELAY": "0.01",
        "CRM__BASE_URL": f"{server.url}/crm",
        "CRM__AUTH": "api_key",
        "CRM__API_KEY": "crm&key=1",
        "CRM__API_KEY_QUERY_PARAM": "key",
        "CRM__MAX_RETRIES": "0",
        "LEGACY__BASE_URL": server.url,
        "LEGACY__AUTH": "basic",
        "LEGACY__USERNAME": "svc",
        "LEGACY__PASSWORD": "legacy-password",
    }
    for name, value in variables.items():
        monkeypatch.setenv(f"EXTERNAL_APIS__{name}", value)
    yield
    for name in NAMES:
        BREAKERS._breakers.pop(name, None)


async def test_the_same_client_is_returned_for_a_name_whatever_its_case(environment: None) -> None:
    apis = ExternalApis.from_environment()
    try:
        billing = apis.client("billing")
        assert apis.client("billing") is billing
        assert apis.client("BILLING") is billing
        assert apis.client("crm") is not billing
        assert billing.target == "billing"
        assert billing.breaker is BREAKERS.get("billing")
    finally:
        await apis.close()


async def test_auth_retries_and_consumer_id_from_the_environment_work_against_the_server(
    server: ScriptedServer, environment: None
) -> None:
    endpoint = OAuth2TokenEndpoint("user-service", "billing-secret")
    server.always("/oauth/token", endpoint)
    server.reply("/invoices", Reply(503), Reply(503))
    server.always("/invoices", Reply(200, [{"id": 1}]))
    server.always("/crm/contacts", Reply(200, []))
    server.always("/accounts", Reply(200, {}))
    apis = ExternalApis.from_environment(consumer_id="user-service")
    try:
        invoices = await apis.client("billing").get("/invoices")
        contacts = await apis.client("crm").get("/contacts")
        accounts = await apis.client("legacy").get("/accounts")
    finally:
        await apis.close()

    assert (invoices.status_code, invoices.json()) == (200, [{"id": 1}])
    assert [request.headers["authorization"] for request in server.received("/invoices")] == 3 * [
        "Bearer token-1"
    ]
    assert endpoint.requests == 1
    assert endpoint.forms == [{"grant_type": "client_credentials", "scope": "invoices:read"}]
    assert server.received("/invoices")[0].headers["x-consumer-id"] == "user-service"

    assert contacts.status_code == 200
    assert server.received("/crm/contacts")[0].param("key") == ["crm&key=1"]

    assert accounts.status_code == 200
    [request] = server.received("/accounts")
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"svc:legacy-password").decode()


async def test_max_retries_zero_means_no_retry(server: ScriptedServer, environment: None) -> None:
    server.reply("/crm/contacts", Reply(503), Reply(200))
    apis = ExternalApis.from_environment()
    try:
        response = await apis.client("crm").get("/contacts")
    finally:
        await apis.close()
    assert (response.status_code, server.count("/crm/contacts")) == (503, 1)


async def test_an_unknown_name_is_a_key_error_naming_the_configured_ones(environment: None) -> None:
    apis = ExternalApis.from_environment()
    with pytest.raises(KeyError) as raised:
        apis.client("payments")
    message = str(raised.value)
    assert "payments" in message
    assert "billing, crm, legacy" in message


async def test_close_closes_every_client_it_made(environment: None) -> None:
    apis = ExternalApis.from_environment()
    billing, crm = apis.client("billing"), apis.client("crm")
    pools = [billing.http, crm.http]
    await apis.close()
    assert all(pool.is_closed for pool in pools)
    assert apis.client("billing") is not billing  # a new one after close, on first use
    await apis.close()


def test_incomplete_auth_settings_are_refused_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTERNAL_APIS__PARTNER__BASE_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("EXTERNAL_APIS__PARTNER__AUTH", "bearer")
    with pytest.raises(ValidationError, match="auth=bearer needs token"):
        ExternalApis.from_environment()


def test_no_external_apis_configured_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.upper().startswith("EXTERNAL_APIS__")]:
        monkeypatch.delenv(name)
    apis = ExternalApis.from_environment()
    with pytest.raises(KeyError, match="configured: none"):
        apis.client("billing")
