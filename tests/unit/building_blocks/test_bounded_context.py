"""A bounded context's declaration: its tables on the shared metadata, its claims unique."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table

from app.building_blocks.application import Mediator, Query
from app.building_blocks.bounded_context import BoundedContext, check_unique
from app.building_blocks.infrastructure.messaging.envelope import ReceivedMessage
from app.building_blocks.infrastructure.messaging.subscriptions import MessageContext, Subscription


class CountTeams(Query[int]):
    pass


class CountTeamsHandler:
    def __init__(self, uow: Any) -> None:
        self.uow = uow

    async def handle(self, query: CountTeams) -> int:
        return int(self.uow)


async def ignore(message: ReceivedMessage, context: MessageContext) -> None:
    return None


def teams(**overrides: Any) -> BoundedContext:
    declaration: dict[str, Any] = {
        "name": "teams",
        "package": "tests.unit.building_blocks",
        "handlers": {CountTeams: CountTeamsHandler},
        "unit_of_work": lambda sessions, hooks: 3,
        "aggregates": ["team"],
        "subscriptions": [Subscription("teams.members", ignore, aggregates=["user"])],
    }
    return BoundedContext(**{**declaration, **overrides})


async def test_the_handlers_are_registered_with_the_contexts_unit_of_work() -> None:
    mediator: Mediator[Any] = Mediator()
    teams().register_handlers(mediator, lambda: 7)
    assert await mediator.send(CountTeams()) == 7


def test_tables_off_the_shared_metadata_are_refused() -> None:
    stray = Table("stray", MetaData(), Column("id", Integer, primary_key=True))
    with pytest.raises(ValueError, match="stray"):
        teams(tables=[stray])


@pytest.mark.parametrize(
    ("field", "claim"),
    [
        ("name", "context teams"),
        ("aggregates", "aggregate team"),
        ("subscriptions", "consumer teams.members"),
    ],
)
def test_two_contexts_cannot_claim_the_same_thing(field: str, claim: str) -> None:
    first = teams()
    distinct = {
        "name": "leagues",
        "handlers": {},
        "aggregates": ["league"],
        "subscriptions": [Subscription("leagues.members", ignore, aggregates=["user"])],
    }
    second = teams(**{key: value for key, value in distinct.items() if key != field})
    with pytest.raises(ValueError, match=claim):
        check_unique([first, second])
    check_unique([first, teams(**distinct)])  # nothing shared: fine


def test_a_subscription_must_read_something() -> None:
    with pytest.raises(ValueError, match="reads nothing"):
        Subscription("nothing", ignore)
