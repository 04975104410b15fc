"""The outbound HTTP client against real local servers (tests/http_servers.py): a server per test,
a circuit breaker registry per test, and a factory of clients closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.building_blocks.infrastructure.http import (
    CircuitBreakers,
    CircuitState,
    FixedDelay,
    HttpClient,
    HttpClientConfig,
)
from tests.http_servers import ScriptedServer

MakeClient = Callable[..., HttpClient]


def state_of(client: HttpClient) -> CircuitState:
    """The state of the client's circuit breaker (it must have one)."""
    assert client.breaker is not None
    return client.breaker.state


@pytest.fixture(scope="session")
async def running_server() -> AsyncIterator[ScriptedServer]:
    async with ScriptedServer() as started:
        yield started


@pytest.fixture
def server(running_server: ScriptedServer) -> ScriptedServer:
    """The session's server, its scripts and requests reset for this test."""
    running_server.reset()
    return running_server


@pytest.fixture
def breakers() -> CircuitBreakers:
    """This test's breakers: no state shared with another test."""
    return CircuitBreakers()


@pytest.fixture
async def make_client(server: ScriptedServer, breakers: CircuitBreakers) -> AsyncIterator[MakeClient]:
    """``make_client(**config)``: an ``HttpClient`` on ``server`` (unless ``base_url=``) with fast
    retries (``FixedDelay(3, 0.01)`` unless ``retry_policy=``), on this test's breakers."""
    made: list[HttpClient] = []

    def make(**overrides: Any) -> HttpClient:
        options: dict[str, Any] = {"base_url": server.url, "retry_policy": FixedDelay(3, 0.01)}
        options.update(overrides)
        client = HttpClient(HttpClientConfig(**options), breakers=breakers)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()
