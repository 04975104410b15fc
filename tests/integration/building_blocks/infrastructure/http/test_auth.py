"""Auth strategies against a real server: what each sends, the OAuth2 token endpoint asked once
however many callers wait, and the single refresh and resend after a 401."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from app.building_blocks.infrastructure.http import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    CircuitBreakerConfig,
    CircuitState,
    NoRetry,
    OAuth2ClientCredentials,
)
from app.building_blocks.infrastructure.http.errors import AuthUnavailableError
from tests.http_servers import (
    Handler,
    OAuth2TokenEndpoint,
    ReceivedRequest,
    Reply,
    ScriptedServer,
    unused_port,
)
from tests.integration.building_blocks.infrastructure.http.conftest import MakeClient, state_of

CLIENT_ID = "user-service"
CLIENT_SECRET = "s3cret-of-the-client"


def bearer_check(accepted: Iterable[str] | None = None, *, rejected: Iterable[str] = ()) -> Handler:
    """An API route: 200 echoing the bearer token if it is accepted (any token by default, but
    never one in ``rejected``), else 401."""
    accepted_set = set(accepted) if accepted is not None else None
    rejected_set = set(rejected)

    def check(request: ReceivedRequest) -> Reply:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        if token is None or token in rejected_set or (accepted_set is not None and token not in accepted_set):
            return Reply(401, {"error": "invalid_token"}, headers={"WWW-Authenticate": "Bearer"})
        return Reply(200, {"token": token})

    return check


def tokens_seen(server: ScriptedServer, path: str) -> list[str]:
    return [
        request.headers.get("authorization", "").removeprefix("Bearer ") for request in server.received(path)
    ]


def oauth2(server: ScriptedServer, endpoint: OAuth2TokenEndpoint, **options: Any) -> OAuth2ClientCredentials:
    server.always("/oauth/token", endpoint)
    return OAuth2ClientCredentials(server.url_for("/oauth/token"), CLIENT_ID, CLIENT_SECRET, **options)


# --- static credentials ---------------------------------------------------------------------------
async def test_bearer_auth_sends_the_token(server: ScriptedServer, make_client: MakeClient) -> None:
    server.always("/api", bearer_check(["static-token"]))
    response = await make_client(auth_strategy=BearerAuth("static-token")).get("/api")
    assert response.json() == {"token": "static-token"}


async def test_a_static_bearer_token_does_not_retry_a_401(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """Sending the same token again cannot help: the 401 is the answer."""
    server.always("/api", bearer_check(rejected=["static-token"]))
    response = await make_client(auth_strategy=BearerAuth("static-token")).get("/api")
    assert response.status_code == 401
    assert server.count("/api") == 1


async def test_a_bearer_provider_is_asked_again_after_a_401_and_the_call_resent_once(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    handed_out: list[str] = []

    async def provider() -> str:
        handed_out.append(f"provided-{len(handed_out) + 1}")
        return handed_out[-1]

    server.always("/api", bearer_check(rejected=["provided-1"]))
    response = await make_client(auth_strategy=BearerAuth(provider=provider)).get("/api")
    assert response.json() == {"token": "provided-2"}
    assert tokens_seen(server, "/api") == ["provided-1", "provided-2"]


async def test_a_second_401_is_the_answer_not_a_loop(server: ScriptedServer, make_client: MakeClient) -> None:
    async def provider() -> str:
        return "always-wrong"

    server.always("/api", bearer_check(rejected=["always-wrong"]))
    response = await make_client(auth_strategy=BearerAuth(provider=provider)).get("/api")
    assert response.status_code == 401
    assert server.count("/api") == 2


async def test_basic_auth_sends_the_credentials(server: ScriptedServer, make_client: MakeClient) -> None:
    server.always("/api", Reply(200))
    await make_client(auth_strategy=BasicAuth("alice", "pa:ss wörd")).get("/api")
    [request] = server.received("/api")
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == "alice:pa:ss wörd"


async def test_api_key_auth_sends_its_header(server: ScriptedServer, make_client: MakeClient) -> None:
    server.always("/api", Reply(200))
    await make_client(auth_strategy=ApiKeyAuth("k-123")).get("/api")
    await make_client(auth_strategy=ApiKeyAuth("k-456", header="X-Partner-Key")).get("/api")
    first, second = server.received("/api")
    assert first.headers["x-api-key"] == "k-123"
    assert second.headers["x-partner-key"] == "k-456"
    assert "x-api-key" not in second.headers


async def test_an_api_key_query_param_with_ampersand_and_equals_arrives_intact(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """One parameter, decoded to exactly the key; the call's own parameters untouched; and once
    per attempt (the request is built afresh for each retry)."""
    key = "a&b=c d+e%20f/?#é"
    server.reply("/api", Reply(503), Reply(200))
    client = make_client(auth_strategy=ApiKeyAuth(key, query_param="api_key"))
    response = await client.get("/api", params={"q": "x&y", "page": "2"})
    assert response.status_code == 200
    for request in server.received("/api"):
        assert request.param("api_key") == [key]
        assert request.param("q") == ["x&y"]
        assert request.param("page") == ["2"]
        assert "x-api-key" not in request.headers
    assert server.count("/api") == 2


# --- OAuth2 client credentials --------------------------------------------------------------------
async def test_oauth2_fetches_a_token_with_the_client_credentials_and_caches_it(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    endpoint = OAuth2TokenEndpoint(CLIENT_ID, CLIENT_SECRET)
    auth = oauth2(server, endpoint, scope="billing:read", audience="billing")
    server.always("/api", bearer_check(["token-1"]))
    client = make_client(auth_strategy=auth)
    for _ in range(3):
        assert (await client.get("/api")).status_code == 200
    assert endpoint.requests == auth.token_requests == 1
    assert endpoint.forms == [
        {"grant_type": "client_credentials", "scope": "billing:read", "audience": "billing"}
    ]


async def test_wrong_client_credentials_fail_the_call_before_it_reaches_the_api(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.always("/oauth/token", OAuth2TokenEndpoint(CLIENT_ID, "another-secret"))
    auth = OAuth2ClientCredentials(server.url_for("/oauth/token"), CLIENT_ID, CLIENT_SECRET)
    server.always("/api", Reply(200))
    with pytest.raises(httpx.HTTPStatusError) as raised:
        await make_client(auth_strategy=auth).get("/api")
    assert raised.value.response.status_code == 401
    assert server.count("/api") == 0


async def test_fifty_concurrent_calls_without_a_token_fetch_exactly_one(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    endpoint = OAuth2TokenEndpoint(CLIENT_ID, CLIENT_SECRET, delay=0.1)
    auth = oauth2(server, endpoint)
    server.always("/api", bearer_check(["token-1"]))
    client = make_client(auth_strategy=auth)

    responses = await asyncio.gather(*(client.get("/api") for _ in range(50)))

    assert {response.status_code for response in responses} == {200}
    assert endpoint.requests == auth.token_requests == 1
    assert server.count("/oauth/token") == 1
    assert server.count("/api") == 50


async def test_fifty_concurrent_calls_with_an_expired_token_fetch_exactly_one_more(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """``expires_in`` 1 s less a 0.8 s skew, capped at half the lifetime: stale after 0.5 s."""
    endpoint = OAuth2TokenEndpoint(CLIENT_ID, CLIENT_SECRET, expires_in=1, delay=0.1)
    auth = oauth2(server, endpoint, skew=0.8)
    server.always("/api", bearer_check())
    client = make_client(auth_strategy=auth)
    assert (await client.get("/api")).json() == {"token": "token-1"}
    await asyncio.sleep(0.6)

    responses = await asyncio.gather(*(client.get("/api") for _ in range(50)))

    assert {response.json()["token"] for response in responses} == {"token-2"}
    assert endpoint.requests == 2
    assert server.count("/oauth/token") == 2


async def test_a_401_refreshes_the_token_once_and_resends_once(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """The API revoked the first token: one refresh, one resend, and the call succeeds."""
    endpoint = OAuth2TokenEndpoint(CLIENT_ID, CLIENT_SECRET)
    auth = oauth2(server, endpoint)
    server.always("/api", bearer_check(rejected=["token-1"]))
    response = await make_client(auth_strategy=auth).post("/api", json={})  # even a POST: not sent twice
    assert response.json() == {"token": "token-2"}
    assert endpoint.requests == 2
    assert tokens_seen(server, "/api") == ["token-1", "token-2"]


async def test_fifty_concurrent_401s_share_one_refresh(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """Each rejected call drops only the token it carried: the first drops it, the others find it
    gone already, and all of them wait for the one new token."""
    endpoint = OAuth2TokenEndpoint(CLIENT_ID, CLIENT_SECRET, delay=0.05)
    auth = oauth2(server, endpoint)
    server.always("/api", bearer_check(rejected=["token-1"]))
    client = make_client(auth_strategy=auth)

    responses = await asyncio.gather(*(client.get("/api") for _ in range(50)))

    assert {response.json()["token"] for response in responses} == {"token-2"}
    assert endpoint.requests == 2
    assert sorted(set(tokens_seen(server, "/api"))) == ["token-1", "token-2"]
    assert server.count("/api") == 100


async def test_an_api_that_rejects_every_token_gets_one_refresh_per_call(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    endpoint = OAuth2TokenEndpoint(CLIENT_ID, CLIENT_SECRET)
    auth = oauth2(server, endpoint)
    server.always("/api", bearer_check(accepted=[]))
    response = await make_client(auth_strategy=auth).get("/api")
    assert response.status_code == 401
    assert (endpoint.requests, server.count("/api")) == (2, 2)


async def test_a_probe_whose_credentials_fail_does_not_hold_the_half_open_slot(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """The probe never reached the target (its token could not be had): the next call probes."""
    fail = False

    async def provider() -> str:
        if fail:
            raise RuntimeError("the identity provider is down")
        return "token"

    client = make_client(
        auth_strategy=BearerAuth(provider=provider),
        retry_policy=NoRetry(),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=2, open_seconds=0.3),
    )
    server.always("/fail", Reply(500))
    server.always("/ok", Reply(200))
    for _ in range(2):
        await client.get("/fail")
    await asyncio.sleep(0.35)

    fail = True
    with pytest.raises(RuntimeError):
        await client.get("/ok")
    fail = False
    assert (await client.get("/ok")).status_code == 200
    assert state_of(client) is CircuitState.CLOSED


async def test_a_token_shorter_lived_than_the_skew_is_still_shared(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """``expires_in`` 10 s with the default 30 s skew: the skew is capped at half the lifetime, so
    the token is used (50 concurrent calls, one token request) instead of refetched per caller."""
    endpoint = OAuth2TokenEndpoint(CLIENT_ID, CLIENT_SECRET, expires_in=10, delay=0.05)
    auth = oauth2(server, endpoint)
    server.always("/api", bearer_check(["token-1"]))
    client = make_client(auth_strategy=auth)
    responses = await asyncio.gather(*(client.get("/api") for _ in range(50)))
    assert {response.status_code for response in responses} == {200}
    assert endpoint.requests == 1


async def test_a_failing_token_endpoint_is_an_outage_not_a_refusal(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """5xx or no answer from the token endpoint: ``AuthUnavailableError`` (a 503 to API callers,
    a pause to consumers); the API itself is not called."""
    server.always("/oauth/token", Reply(503))
    auth = OAuth2ClientCredentials(server.url_for("/oauth/token"), CLIENT_ID, CLIENT_SECRET)
    client = make_client(auth_strategy=auth, retry_policy=NoRetry())
    with pytest.raises(AuthUnavailableError):
        await client.get("/api")
    refused = OAuth2ClientCredentials(f"http://127.0.0.1:{unused_port()}/token", CLIENT_ID, CLIENT_SECRET)
    with pytest.raises(AuthUnavailableError):
        await make_client(auth_strategy=refused, retry_policy=NoRetry()).get("/api")
    assert server.count("/api") == 0


async def test_callers_queued_behind_a_failed_token_fetch_share_its_failure(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """The token endpoint fails slowly: the callers waiting for it get that failure, not a fetch
    each, one after another (which behind a dead endpoint would queue them for minutes)."""
    server.always("/oauth/token", Reply(503, delay=0.2))
    auth = OAuth2ClientCredentials(server.url_for("/oauth/token"), CLIENT_ID, CLIENT_SECRET)
    client = make_client(auth_strategy=auth, retry_policy=NoRetry())
    results = await asyncio.gather(*(client.get("/api") for _ in range(10)), return_exceptions=True)
    assert all(isinstance(result, AuthUnavailableError) for result in results)
    assert server.count("/oauth/token") == 1
