"""The connection pool heals itself: backends terminated under an API cost no 500 and, when the API
was idle, not even a 503.

A uvicorn subprocess serves a PostgreSQL database of this module's own; an admin connection ends
that database's backends with ``pg_terminate_backend`` (what a failover, a restart of PostgreSQL or
an operator does to a running service).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.migrate import upgrade
from app.settings import DatabaseSettings
from tests.conftest import running_server
from tests.helpers import USERS, assert_problem, unique_email
from tests.services import (
    create_postgres_database,
    drop_postgres_database,
    postgres_admin_url,
    terminate_backends_matching,
)

SERVICE = "pool-recovery"  # the server's application_name, so only its backends are ended


@pytest.fixture(scope="module")
async def database_url() -> AsyncIterator[str]:
    url = await create_postgres_database()
    await asyncio.to_thread(upgrade, DatabaseSettings(url=url))
    yield url
    await drop_postgres_database(url)


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("pool-recovery") / "server.log"
    with running_server(database_url, log, SERVICE_NAME=SERVICE) as url:
        yield url


@pytest.fixture(scope="module")
async def admin() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    yield engine
    await engine.dispose()


async def terminate_backends(admin: AsyncEngine, database_url: str) -> list[int]:
    """End every backend the server holds on its database; return their pids once they are gone."""
    return await terminate_backends_matching(
        admin,
        # MATERIALIZED: filter first, so no other role's backend is ever signalled
        "WITH targets AS MATERIALIZED (SELECT pid FROM pg_stat_activity "
        "WHERE datname = :database AND application_name = :service) "
        "SELECT pid FROM targets WHERE pg_terminate_backend(pid)",
        {"database": make_url(database_url).database, "service": SERVICE},
    )


async def register(http: httpx.AsyncClient) -> str:
    response = await http.post(USERS, json={"email": unique_email("pool"), "name": "Pool"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_an_idle_api_answers_every_request_after_its_backends_are_terminated(
    server: str, database_url: str, admin: AsyncEngine
) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        ids = [await register(http) for _ in range(3)]
        for _ in range(3):  # concurrent reads fill the pool with several connections
            responses = await asyncio.gather(*(http.get(f"{USERS}/{ids[i % 3]}") for i in range(40)))
            assert {response.status_code for response in responses} == {200}

        terminated = await terminate_backends(admin, database_url)
        assert len(terminated) >= 3, f"only {len(terminated)} pooled connections to terminate"

        statuses = []
        for i in range(30):
            path = f"{USERS}/{ids[i % 3]}" if i % 2 == 0 else f"{USERS}?limit=5"
            response = await http.get(path)
            statuses.append(response.status_code)
        assert statuses == [200] * 30, Counter(statuses)
        assert (await http.get("/health/ready")).status_code == 200


CLIENTS = 20
ROUNDS = 15  # per client: register, then read the new user and a page of the list
TERMINATIONS = 4


async def test_terminations_under_load_give_503_at_worst_and_lose_no_created_user(
    server: str, database_url: str, admin: AsyncEngine
) -> None:
    statuses: Counter[int] = Counter()
    unavailable: list[httpx.Response] = []
    created: dict[str, str] = {}
    finished_rounds = 0
    progressed = asyncio.Event()
    terminated: list[list[int]] = []

    def record(response: httpx.Response) -> None:
        statuses[response.status_code] += 1
        if response.status_code == 503:
            unavailable.append(response)

    async def client(http: httpx.AsyncClient, number: int) -> None:
        nonlocal finished_rounds
        for _ in range(ROUNDS):
            email = unique_email(f"load{number}")
            response = await http.post(USERS, json={"email": email, "name": "Load"})
            record(response)
            if response.status_code == 201:
                created[response.json()["id"]] = email
                record(await http.get(response.headers["location"]))
            record(await http.get(USERS, params={"limit": 5}))
            finished_rounds += 1
            progressed.set()

    async def terminator() -> None:
        """Terminations spread over the run by progress, whatever the machine's speed."""
        for number in range(1, TERMINATIONS + 1):
            while finished_rounds < number * CLIENTS * ROUNDS // (TERMINATIONS + 1):
                progressed.clear()
                await progressed.wait()
            terminated.append(await terminate_backends(admin, database_url))

    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=server, timeout=60, limits=limits) as http:
        async with asyncio.TaskGroup() as group:
            for number in range(CLIENTS):
                group.create_task(client(http, number))
            group.create_task(terminator())

        print(
            f"\n{sum(statuses.values())} responses: {dict(statuses)}; "
            f"{len(unavailable)} were 503; backends terminated per round: "
            f"{[len(pids) for pids in terminated]}"
        )
        assert all(pids for pids in terminated), terminated  # every round ended live backends
        assert set(statuses) <= {200, 201, 503}, statuses
        for response in unavailable:
            body = assert_problem(response, 503, "TEMPORARILY_UNAVAILABLE")
            assert int(response.headers["retry-after"]) == body["extensions"]["retry_after"] > 0
        assert statuses[201] > CLIENTS * ROUNDS // 2  # the service kept working through it

        for user_id, email in created.items():
            response = await http.get(f"{USERS}/{user_id}")
            assert response.status_code == 200, response.text
            assert response.json()["email"] == email
