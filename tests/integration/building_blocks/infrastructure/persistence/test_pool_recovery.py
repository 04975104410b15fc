"""The unit of work on a connection whose backend is terminated (``pg_terminate_backend``, what a
failover or a restart of PostgreSQL does): the failure is a TemporarilyUnavailableError, the pool
heals, and a connection lost after the work changes no outcome. The same against a served API is
in tests/integration/test_pool_recovery.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.building_blocks.application.exceptions import TemporarilyUnavailableError
from app.building_blocks.domain.exceptions import NotFoundError
from app.building_blocks.infrastructure.persistence.database import create_engine, create_session_factory
from app.building_blocks.infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.services import (
    create_postgres_database,
    drop_postgres_database,
    postgres_admin_url,
    terminate_backends_matching,
)


@pytest.fixture(scope="module")
async def database_url() -> AsyncIterator[str]:
    url = await create_postgres_database()
    yield url
    await drop_postgres_database(url)


@pytest.fixture(scope="module")
async def admin() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    yield engine
    await engine.dispose()


async def terminate_backend(admin: AsyncEngine, pid: int) -> None:
    statement = "SELECT CAST(:pid AS integer) WHERE pg_terminate_backend(CAST(:pid AS integer))"
    assert await terminate_backends_matching(admin, statement, {"pid": pid}) == [pid]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, application_name="pool-recovery-uow")
    yield engine
    await engine.dispose()


async def backend_pid(uow: SqlAlchemyUnitOfWork) -> int:
    return int((await uow.session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_statement_whose_backend_is_terminated_is_unavailable_and_the_pool_heals(
    engine: AsyncEngine,
) -> None:
    sessions = create_session_factory(engine)
    with pytest.raises(TemporarilyUnavailableError) as caught:  # 57P01 admin_shutdown
        async with SqlAlchemyUnitOfWork(sessions) as uow:
            await uow.session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
    assert caught.value.retry_after > 0
    async with SqlAlchemyUnitOfWork(sessions) as uow:
        assert (await uow.session.execute(text("SELECT 1"))).scalar_one() == 1


async def test_a_commit_on_a_terminated_backend_is_unavailable(
    engine: AsyncEngine, admin: AsyncEngine
) -> None:
    async def commit_after_termination() -> None:
        async with SqlAlchemyUnitOfWork(create_session_factory(engine)) as uow:
            await terminate_backend(admin, await backend_pid(uow))
            await uow.commit()

    with pytest.raises(TemporarilyUnavailableError):
        await commit_after_termination()


async def test_a_connection_lost_before_the_unit_of_work_ends_changes_no_outcome(
    engine: AsyncEngine, admin: AsyncEngine
) -> None:
    """Its rollback cannot run, but the server has dropped the transaction with the backend."""
    sessions = create_session_factory(engine)

    async def fail_after_termination() -> None:
        async with SqlAlchemyUnitOfWork(sessions) as uow:
            await terminate_backend(admin, await backend_pid(uow))
            raise NotFoundError("User 7 not found")

    with pytest.raises(NotFoundError):  # the work's own error, not the failed rollback's
        await fail_after_termination()

    reader = SqlAlchemyUnitOfWork(sessions)
    reader.read_only = True
    async with reader:  # the read was done: losing the connection afterwards is no failure
        pid = await backend_pid(reader)
        await terminate_backend(admin, pid)
    assert pid > 0


class FreezingProxy:
    """A TCP proxy to PostgreSQL whose open connections can be frozen: bytes stop flowing both
    ways, nothing is closed (what a firewall dropping an idle connection looks like). New
    connections still go through."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.frozen: set[asyncio.StreamWriter] = set()
        self.open: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def freeze_open_connections(self) -> None:
        self.frozen |= self.open

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        self.open.add(client_writer)

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                if client_writer in self.frozen:
                    continue  # swallowed: the peer waits for an answer that never comes
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for writer in (client_writer, server_writer):
                writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.open:
            writer.transport.abort()


async def test_a_connection_dropped_silently_while_idle_is_pinged_and_replaced(database_url: str) -> None:
    url = make_url(database_url)
    proxy = FreezingProxy(url.host or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    engine = create_engine(
        url.set(port=port), pool_size=1, max_overflow=0, ping_after_idle=0.2, connect_timeout=1.0
    )
    try:
        async with engine.connect() as connection:  # the pool's one connection, then back to the pool
            first = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        proxy.freeze_open_connections()
        await asyncio.sleep(0.3)  # idle for longer than ping_after_idle
        async with asyncio.timeout(10), engine.connect() as connection:  # without the ping: hangs
            second = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert second != first  # a new connection, the request never saw the dead one
    finally:
        await engine.dispose()
        await proxy.close()
