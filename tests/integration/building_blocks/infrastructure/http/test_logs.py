"""No secret in any log line: every record captured at DEBUG (``app.http`` and everything else
that propagates to the root, httpx's own included) while calls succeed and fail with every kind of
credentials; the URL logged has neither user info nor a query secret."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest

from app.building_blocks.infrastructure.http import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    CircuitBreakerConfig,
    CircuitOpenError,
    NoRetry,
    OAuth2ClientCredentials,
)
from tests.http_servers import OAuth2TokenEndpoint, Reply, ScriptedServer, unused_port
from tests.integration.building_blocks.infrastructure.http.conftest import MakeClient

BEARER = "bearer-SECRET-aaa"
BASIC_PASSWORD = "basic-SECRET-bbb"
HEADER_KEY = "header-key-SECRET-ccc"
QUERY_KEY = "query&key=SECRET-ddd"
PLAIN_QUERY_KEY = "plainSECRETeee"
CLIENT_SECRET = "client-SECRET-fff"
USERINFO_PASSWORD = "userinfo-SECRET-ggg"
SECRETS = (
    BEARER,
    BASIC_PASSWORD,
    base64.b64encode(f"alice:{BASIC_PASSWORD}".encode()).decode(),
    HEADER_KEY,
    QUERY_KEY,
    "query%26key%3DSECRET-ddd",  # the key as it travels in a URL
    "query%26key%3DSECRET%2Dddd",
    PLAIN_QUERY_KEY,
    CLIENT_SECRET,
    USERINFO_PASSWORD,
)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="app.http")
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="httpcore")
    return caplog


def leaks(record: logging.LogRecord, secrets: tuple[str, ...]) -> list[str]:
    """The secrets found in the record: its message, its arguments, every attribute (extras)."""
    texts = [record.getMessage(), repr(record.args)]
    texts += [f"{name}={value!s} {value!r}" for name, value in vars(record).items()]
    return [secret for secret in secrets if any(secret in text for text in texts)]


def assert_no_secret(caplog: pytest.LogCaptureFixture, secrets: tuple[str, ...] = SECRETS) -> None:
    assert caplog.records, "nothing was logged: the test proves nothing"
    found = {
        f"{record.name}: {record.getMessage()}": leaked
        for record in caplog.records
        if (leaked := leaks(record, secrets))
    }
    assert not found, found


async def test_no_secret_is_logged_whatever_the_credentials_and_the_outcome(
    server: ScriptedServer, make_client: MakeClient, logs: pytest.LogCaptureFixture
) -> None:
    endpoint = OAuth2TokenEndpoint("user-service", CLIENT_SECRET, prefix="oauth-SECRET-token")
    server.always("/oauth/token", endpoint)
    oauth2 = OAuth2ClientCredentials(server.url_for("/oauth/token"), "user-service", CLIENT_SECRET)
    refused = f"http://127.0.0.1:{unused_port()}"
    strategies = [
        BearerAuth(BEARER),
        BasicAuth("alice", BASIC_PASSWORD),
        ApiKeyAuth(HEADER_KEY),
        ApiKeyAuth(QUERY_KEY, query_param="api_key"),
        ApiKeyAuth(PLAIN_QUERY_KEY, query_param="k"),  # a name that does not sound secret
        oauth2,
    ]
    server.always("/ok", Reply(200))
    server.always("/fail", Reply(500))
    server.reply("/flaky", *(Reply(503) for _ in strategies))
    server.always("/flaky", Reply(200))
    server.always("/unauthorized", Reply(401))
    for strategy in strategies:
        client = make_client(auth_strategy=strategy, retry_policy=NoRetry())
        retrying = make_client(auth_strategy=strategy, name=f"retrying-{id(strategy)}")
        breaking = make_client(
            auth_strategy=strategy,
            base_url=refused,
            name=f"refused-{id(strategy)}",
            retry_policy=NoRetry(),
            circuit_breaker=CircuitBreakerConfig(failure_threshold=1),
        )
        await client.get("/ok", params={"q": "1"})
        await client.get("/fail")
        await client.get("/unauthorized")
        await retrying.get("/flaky")
        with pytest.raises(httpx.ConnectError):
            await breaking.get("/x")
        with pytest.raises(CircuitOpenError):
            await breaking.get("/x")

    secrets = (*SECRETS, *endpoint.issued)
    assert endpoint.issued
    assert_no_secret(logs, secrets)
    app_lines = [record for record in logs.records if record.name == "app.http"]
    assert len(app_lines) == 6 * 6  # every call logged once, successes at DEBUG
    assert {record.levelno for record in app_lines} == {logging.DEBUG, logging.WARNING}


async def test_the_logged_url_shows_a_query_key_as_redacted_and_no_user_info(
    server: ScriptedServer, make_client: MakeClient, logs: pytest.LogCaptureFixture
) -> None:
    server.always("/ok", Reply(200))
    base_url = f"http://alice:{USERINFO_PASSWORD}@127.0.0.1:{server.port}"
    client = make_client(base_url=base_url, auth_strategy=ApiKeyAuth(QUERY_KEY, query_param="api_key"))
    await client.get("/ok", params={"page": "2"})
    plain = make_client(auth_strategy=ApiKeyAuth(PLAIN_QUERY_KEY, query_param="k"))
    await plain.get("/ok")

    app_records = [record for record in logs.records if record.name == "app.http"]
    urls = [record.__dict__["url"] for record in app_records]
    assert urls == [
        f"http://127.0.0.1:{server.port}/ok?page=2&api_key=[redacted]",
        f"http://127.0.0.1:{server.port}/ok?k=[redacted]",
    ]
    assert all(url in record.getMessage() for url, record in zip(urls, app_records, strict=True))
    assert_no_secret(logs)
    [first, _] = server.received("/ok")
    assert first.param("api_key") == [QUERY_KEY]  # the redaction is the log's, not the request's


async def test_a_secret_in_a_query_the_caller_built_is_redacted_by_its_name(
    server: ScriptedServer, make_client: MakeClient, logs: pytest.LogCaptureFixture
) -> None:
    server.always("/ok", Reply(200))
    await make_client().get("/ok", params={"access_token": "caller-SECRET-hhh", "page": "1"})
    assert_no_secret(logs, ("caller-SECRET-hhh",))


async def test_a_call_logs_its_outcome_with_structured_fields(
    server: ScriptedServer, make_client: MakeClient, logs: pytest.LogCaptureFixture
) -> None:
    server.reply("/x", Reply(503), Reply(200))
    await make_client(name="billing").get("/x")
    [record] = [record for record in logs.records if record.name == "app.http"]
    assert record.levelno == logging.WARNING  # a retried call is worth a look
    fields = {name: record.__dict__[name] for name in ("target", "http_method", "status", "attempts")}
    assert fields == {"target": "billing", "http_method": "GET", "status": 200, "attempts": 2}
    assert record.__dict__["duration_ms"] >= 0
