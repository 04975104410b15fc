"""The circuit breaker against a real server: what opens it, that an open one keeps calls off the
wire, the half-open probes, and that every client of a target shares it."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from app.building_blocks.infrastructure.http import (
    BREAKERS,
    CircuitBreakerConfig,
    CircuitBreakers,
    CircuitOpenError,
    CircuitState,
    FixedDelay,
    HttpClient,
    HttpClientConfig,
    NoRetry,
)
from tests.http_servers import Reply, ScriptedServer, unused_port
from tests.integration.building_blocks.infrastructure.http.conftest import MakeClient, state_of

OPEN_SECONDS = 0.5


def fragile(make_client: MakeClient, *, half_open_max_calls: int = 1, **config: object) -> HttpClient:
    """A client whose breaker opens after 5 consecutive failures, for half a second."""
    breaker = CircuitBreakerConfig(
        failure_threshold=5, open_seconds=OPEN_SECONDS, half_open_max_calls=half_open_max_calls
    )
    return make_client(retry_policy=NoRetry(), circuit_breaker=breaker, **config)


async def open_it(client: HttpClient, server: ScriptedServer) -> None:
    server.always("/fail", Reply(500))
    for _ in range(5):
        assert (await client.get("/fail")).status_code == 500
    assert state_of(client) is CircuitState.OPEN


async def test_five_500s_open_it_and_then_calls_fail_fast_without_reaching_the_server(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    client = fragile(make_client)
    server.always("/ok", Reply(200))
    await open_it(client, server)
    assert server.count() == 5

    for _ in range(3):
        started = time.monotonic()
        with pytest.raises(CircuitOpenError) as raised:
            await client.get("/ok")
        assert time.monotonic() - started < 0.1
        assert raised.value.target == client.target
        assert raised.value.retry_after >= 1
    assert server.count() == 5  # none of them reached it


async def test_four_500s_do_not_open_it_and_a_success_resets_the_count(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    client = fragile(make_client)
    server.always("/fail", Reply(500))
    server.always("/ok", Reply(200))
    for _ in range(2):
        for _ in range(4):
            await client.get("/fail")
        await client.get("/ok")
    for _ in range(4):
        await client.get("/fail")
    assert state_of(client) is CircuitState.CLOSED
    assert server.count() == 14


async def test_after_open_seconds_a_successful_probe_closes_it(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    client = fragile(make_client)
    await open_it(client, server)
    await asyncio.sleep(OPEN_SECONDS + 0.05)
    assert state_of(client) is CircuitState.HALF_OPEN

    server.always("/ok", Reply(200))
    assert (await client.get("/ok")).status_code == 200
    assert state_of(client) is CircuitState.CLOSED
    for _ in range(3):
        assert (await client.get("/ok")).status_code == 200
    assert server.count("/ok") == 4


async def test_a_failing_probe_opens_it_again(server: ScriptedServer, make_client: MakeClient) -> None:
    client = fragile(make_client)
    await open_it(client, server)
    await asyncio.sleep(OPEN_SECONDS + 0.05)

    assert (await client.get("/fail")).status_code == 500  # the probe reached the server, and failed
    assert server.count("/fail") == 6
    assert state_of(client) is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        await client.get("/fail")
    assert server.count("/fail") == 6

    await asyncio.sleep(OPEN_SECONDS + 0.05)  # open for a full period again, then a new probe
    server.always("/ok", Reply(200))
    assert (await client.get("/ok")).status_code == 200
    assert state_of(client) is CircuitState.CLOSED


@pytest.mark.parametrize("max_probes", [1, 2])
async def test_half_open_lets_only_half_open_max_calls_probes_through_at_a_time(
    server: ScriptedServer, make_client: MakeClient, max_probes: int
) -> None:
    client = fragile(make_client, half_open_max_calls=max_probes)
    await open_it(client, server)
    await asyncio.sleep(OPEN_SECONDS + 0.05)
    server.always("/slow", Reply(200, delay=0.3))

    outcomes = await asyncio.gather(*(client.get("/slow") for _ in range(6)), return_exceptions=True)

    passed = [outcome for outcome in outcomes if isinstance(outcome, httpx.Response)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, CircuitOpenError)]
    assert (len(passed), len(refused)) == (max_probes, 6 - max_probes)
    assert server.count("/slow") == max_probes
    assert state_of(client) is CircuitState.CLOSED


async def test_404s_never_open_it(server: ScriptedServer, make_client: MakeClient) -> None:
    """A 4xx is the caller's mistake, and an answer: the target is up."""
    client = fragile(make_client)
    server.always("/missing", Reply(404))
    server.always("/fail", Reply(500))
    for _ in range(4):
        await client.get("/fail")
    for _ in range(20):
        assert (await client.get("/missing")).status_code == 404
    for _ in range(4):
        await client.get("/fail")
    assert state_of(client) is CircuitState.CLOSED
    assert server.count("/missing") == 20


async def test_retried_503s_count_one_failure_per_attempt(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """Each attempt asks the breaker: the call that opens it stops retrying with CircuitOpenError."""
    server.always("/busy", Reply(503))
    client = make_client(
        retry_policy=FixedDelay(10, 0.01), circuit_breaker=CircuitBreakerConfig(failure_threshold=3)
    )
    with pytest.raises(CircuitOpenError):
        await client.get("/busy")
    assert server.count("/busy") == 3


async def test_connection_refused_counts_as_a_failure(make_client: MakeClient) -> None:
    client = make_client(
        base_url=f"http://127.0.0.1:{unused_port()}",
        retry_policy=NoRetry(),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=3, open_seconds=30),
    )
    for _ in range(3):
        with pytest.raises(httpx.ConnectError):
            await client.get("/x")
    with pytest.raises(CircuitOpenError):
        await client.get("/x")


async def test_timeouts_count_as_failures(server: ScriptedServer, make_client: MakeClient) -> None:
    server.always("/slow", Reply(200, delay=1))
    client = make_client(
        retry_policy=NoRetry(), timeout=0.1, circuit_breaker=CircuitBreakerConfig(failure_threshold=2)
    )
    for _ in range(2):
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/slow")
    with pytest.raises(CircuitOpenError):
        await client.get("/slow")
    assert server.count("/slow") == 2


async def test_two_clients_of_one_target_share_the_breaker(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    first, second = fragile(make_client), fragile(make_client)
    assert first.breaker is second.breaker
    await open_it(first, server)
    server.always("/ok", Reply(200))
    with pytest.raises(CircuitOpenError):
        await second.get("/ok")
    assert server.count("/ok") == 0


async def test_clients_share_the_process_breaker_by_name_by_default(server: ScriptedServer) -> None:
    """Without ``breakers=``, the module's ``BREAKERS``: two clients named alike share one."""
    name = f"shared-{uuid.uuid4().hex}"
    config = HttpClientConfig(
        base_url=server.url,
        name=name,
        retry_policy=NoRetry(),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=2, open_seconds=30),
    )
    server.always("/fail", Reply(502))
    try:
        async with HttpClient(config) as first, HttpClient(config) as second:
            await first.get("/fail")
            await second.get("/fail")
            with pytest.raises(CircuitOpenError):
                await first.get("/fail")
            with pytest.raises(CircuitOpenError):
                await second.get("/fail")
        assert BREAKERS.get(name).state is CircuitState.OPEN
        assert server.count("/fail") == 2
    finally:
        BREAKERS._breakers.pop(name, None)


async def test_another_target_has_its_own_breaker(
    server: ScriptedServer, make_client: MakeClient, breakers: CircuitBreakers
) -> None:
    broken = fragile(make_client, name="broken")
    healthy = fragile(make_client, name="healthy")
    await open_it(broken, server)
    server.always("/ok", Reply(200))
    assert (await healthy.get("/ok")).status_code == 200
    assert breakers.get("healthy").state is CircuitState.CLOSED


async def test_a_client_without_a_breaker_always_calls(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    client = make_client(retry_policy=NoRetry(), enable_circuit_breaker=False)
    assert client.breaker is None
    server.always("/fail", Reply(500))
    for _ in range(10):
        assert (await client.get("/fail")).status_code == 500
    assert server.count("/fail") == 10


async def test_a_cancelled_probe_does_not_wedge_it_half_open(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """The caller gives up on the only probe (cancelled mid-flight): its place goes to the next
    call, not a CircuitOpenError for ever (the breaker stays half-open, no outcome was seen)."""
    client = fragile(make_client)
    await open_it(client, server)
    await asyncio.sleep(OPEN_SECONDS + 0.05)
    server.always("/slow", Reply(200, delay=5))

    probe = asyncio.create_task(client.get("/slow"))
    await server.wait_for("/slow", 1)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert state_of(client) is CircuitState.HALF_OPEN

    server.always("/ok", Reply(200))
    assert (await client.get("/ok")).status_code == 200
    assert state_of(client) is CircuitState.CLOSED
