"""The mediator and its behaviours, with fakes that honour the real protocols."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import pytest

from app.building_blocks.application import (
    Command,
    LoggingBehavior,
    Mediator,
    MissingHandlerError,
    Query,
    RequestContext,
    TransactionBehavior,
)
from app.building_blocks.domain import AggregateRoot, DomainEvent, NotFoundError


class Ping(Query[str]):
    text: str


class Shout(Command[str]):
    text: str


class PingHandler:
    async def handle(self, query: Ping) -> str:
        return f"pong {query.text}"


class FakeUnitOfWork:
    def __init__(self) -> None:
        self.entered = self.committed = self.exited = False
        self.events: list[DomainEvent] = []

    async def __aenter__(self) -> Self:
        self.entered = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.exited = True

    def track(self, aggregate: AggregateRoot) -> None:
        self.events += aggregate.pull_events()

    async def commit(self) -> list[DomainEvent]:
        self.committed = True
        return self.events

    async def rollback(self) -> None:
        pass


async def test_send_returns_the_handlers_result() -> None:
    mediator: Mediator[Any] = Mediator()
    mediator.register(Ping, PingHandler())
    assert await mediator.send(Ping(text="hi")) == "pong hi"


async def test_unregistered_request_raises_missing_handler() -> None:
    with pytest.raises(MissingHandlerError, match="Ping"):
        await Mediator().send(Ping(text="x"))


def test_registering_twice_is_refused() -> None:
    mediator: Mediator[Any] = Mediator()
    mediator.register(Ping, PingHandler())
    with pytest.raises(ValueError, match="already"):
        mediator.register(Ping, PingHandler())


def test_verify_names_every_request_without_handler() -> None:
    mediator: Mediator[Any] = Mediator()
    mediator.register(Ping, PingHandler())
    with pytest.raises(MissingHandlerError) as caught:
        mediator.verify(__name__)
    assert "Shout" in str(caught.value)
    assert "Ping" not in str(caught.value)
    mediator.register(Shout, lambda _ctx: PingHandler())
    mediator.verify(__name__)


async def test_behaviours_run_in_order_around_the_handler() -> None:
    calls: list[str] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        async def handle(self, context: RequestContext[Any], call_next: Any) -> Any:
            calls.append(f"{self.name}>")
            result = await call_next()
            calls.append(f"<{self.name}")
            return result

    class RecordingHandler:
        async def handle(self, query: Ping) -> str:
            calls.append("handler")
            return "ok"

    mediator: Mediator[Any] = Mediator(behaviors=[Recorder("outer"), Recorder("inner")])
    mediator.register(Ping, RecordingHandler())
    assert await mediator.send(Ping(text="x")) == "ok"
    assert calls == ["outer>", "inner>", "handler", "<inner", "<outer"]


async def test_transaction_behaviour_commits_commands_only() -> None:
    units: list[FakeUnitOfWork] = []

    def factory() -> FakeUnitOfWork:
        units.append(FakeUnitOfWork())
        return units[-1]

    mediator: Mediator[FakeUnitOfWork] = Mediator(
        behaviors=[TransactionBehavior()], unit_of_work_factory=factory
    )
    mediator.register(Ping, PingHandler())
    mediator.register(Shout, lambda ctx: _ShoutHandler(ctx.unit_of_work))
    await mediator.send(Ping(text="q"))
    assert await mediator.send(Shout(text="c")) == "C"
    query_uow, command_uow = units
    assert (query_uow.entered, query_uow.committed, query_uow.exited) == (True, False, True)
    assert (command_uow.entered, command_uow.committed, command_uow.exited) == (True, True, True)


class _ShoutHandler:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        assert uow.entered is False  # built before the transaction opens, used inside it
        self.uow = uow

    async def handle(self, command: Shout) -> str:
        assert self.uow.entered
        return command.text.upper()


async def test_a_failing_handler_is_not_committed() -> None:
    uow = FakeUnitOfWork()

    class Failing:
        async def handle(self, command: Shout) -> str:
            raise NotFoundError("nope")

    mediator: Mediator[FakeUnitOfWork] = Mediator(
        behaviors=[LoggingBehavior(), TransactionBehavior()], unit_of_work_factory=lambda: uow
    )
    mediator.register(Shout, Failing())
    with pytest.raises(NotFoundError):
        await mediator.send(Shout(text="x"))
    assert uow.exited
    assert not uow.committed


async def test_logging_behaviour_logs_a_request_handled_in_time_at_debug_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mediator: Mediator[Any] = Mediator(behaviors=[LoggingBehavior()])
    mediator.register(Ping, PingHandler())
    with caplog.at_level("INFO", logger="app.mediator"):
        await mediator.send(Ping(text="x"))
    assert [r for r in caplog.records if r.name == "app.mediator"] == []
    with caplog.at_level("DEBUG", logger="app.mediator"):
        await mediator.send(Ping(text="x"))
    [record] = [r for r in caplog.records if r.name == "app.mediator"]
    assert (record.levelname, record.getMessage()) == ("DEBUG", "Ping handled")
    assert record.outcome == "handled"  # type: ignore[attr-defined]
    assert record.request_kind == "query"  # type: ignore[attr-defined]


async def test_logging_behaviour_logs_a_slow_request_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    mediator: Mediator[Any] = Mediator(behaviors=[LoggingBehavior(slow_ms=0)])
    mediator.register(Ping, PingHandler())
    with caplog.at_level("INFO", logger="app.mediator"):
        await mediator.send(Ping(text="x"))
    [record] = [r for r in caplog.records if r.name == "app.mediator"]
    assert record.levelname == "WARNING"
    assert record.getMessage().startswith("Ping handled slowly")
    assert record.slow is True  # type: ignore[attr-defined]


def test_requests_are_immutable() -> None:
    ping = Ping(text="x")
    with pytest.raises(Exception, match="frozen"):
        ping.text = "y"  # type: ignore[misc]


def test_registering_a_handler_class_is_refused_with_a_hint() -> None:
    with pytest.raises(TypeError, match=r"lambda context: PingHandler\(context.unit_of_work\)"):
        Mediator().register(Ping, PingHandler)  # type: ignore[arg-type]
