"""The users context's declaration: every request it defines has a handler; what it publishes
and consumes is routed to its own topic."""

from __future__ import annotations

from typing import Any

import pytest

from app.building_blocks.application import Mediator, MissingHandlerError
from app.building_blocks.infrastructure.messaging.topics import TopicRouter
from app.users.module import USER, context


class AnyHandler:
    async def handle(self, request: Any) -> None:
        return None


def test_the_users_context_is_fully_wired() -> None:
    mediator: Mediator[Any] = Mediator()
    context.register_handlers(mediator, lambda: None)
    mediator.verify(context.package)
    assert mediator.registered == set(context.handlers)

    first, *rest = context.handlers
    partial: Mediator[Any] = Mediator()
    for request_type in rest:
        partial.register(request_type, AnyHandler())
    with pytest.raises(MissingHandlerError, match=first.__name__):
        partial.verify("app.users")


def test_the_users_context_publishes_and_consumes_its_own_topic() -> None:
    topics = TopicRouter("billing-service")
    assert [topics.topic_for_aggregate(a) for a in context.aggregates] == ["billing-service.users.v1"]
    [activity] = context.subscriptions
    assert list(activity.aggregates) == [USER]
    assert {table.name for table in context.tables} == {"users", "user_activity"}
