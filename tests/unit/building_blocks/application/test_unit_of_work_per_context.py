"""One mediator for several bounded contexts: each request with its own context's unit of work."""

from __future__ import annotations

from app.building_blocks.application import Mediator, Query, TransactionBehavior
from tests.unit.building_blocks.application.test_mediator import FakeUnitOfWork


class OtherUnitOfWork(FakeUnitOfWork):
    """A second bounded context's unit of work."""


class WhichUnitOfWork(Query[str]):
    pass


class WhichUnitOfWorkHandler:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def handle(self, query: WhichUnitOfWork) -> str:
        return type(self.uow).__name__


class WhichOtherUnitOfWork(Query[str]):
    pass


async def test_each_request_gets_the_unit_of_work_it_was_registered_with() -> None:
    mediator: Mediator[FakeUnitOfWork] = Mediator(
        behaviors=[TransactionBehavior()], unit_of_work_factory=FakeUnitOfWork
    )
    mediator.register(WhichUnitOfWork, lambda ctx: WhichUnitOfWorkHandler(ctx.unit_of_work))
    mediator.register(
        WhichOtherUnitOfWork,
        lambda ctx: WhichUnitOfWorkHandler(ctx.unit_of_work),
        unit_of_work_factory=OtherUnitOfWork,
    )
    assert await mediator.send(WhichUnitOfWork()) == "FakeUnitOfWork"  # the mediator's default
    assert await mediator.send(WhichOtherUnitOfWork()) == "OtherUnitOfWork"  # its own context's
