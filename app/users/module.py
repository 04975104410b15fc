"""Wiring of the users context: the handler table and the router.

The one place that knows which handler serves which request; the composition root calls
:func:`register_handlers` and includes :data:`router`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.building_blocks.application.mediator import Mediator, RequestContext
from app.building_blocks.application.requests import Request
from app.users.api.router import router
from app.users.application import handlers
from app.users.application.commands import (
    DeactivateUser,
    DeleteUser,
    ReactivateUser,
    RegisterUser,
    UpdateUserProfile,
)
from app.users.application.queries import GetUser, GetUserActivity, ListUsers
from app.users.application.unit_of_work import UsersUnitOfWork

HANDLERS: dict[type[Request[Any]], Callable[[UsersUnitOfWork], Any]] = {
    RegisterUser: handlers.RegisterUserHandler,
    UpdateUserProfile: handlers.UpdateUserProfileHandler,
    DeactivateUser: handlers.DeactivateUserHandler,
    ReactivateUser: handlers.ReactivateUserHandler,
    DeleteUser: handlers.DeleteUserHandler,
    GetUser: handlers.GetUserHandler,
    ListUsers: handlers.ListUsersHandler,
    GetUserActivity: handlers.GetUserActivityHandler,
}


def register_handlers(mediator: Mediator[UsersUnitOfWork]) -> None:
    for request_type, handler_class in HANDLERS.items():
        mediator.register(request_type, _per_request(handler_class))


def _per_request(
    handler_class: Callable[[UsersUnitOfWork], Any],
) -> Callable[[RequestContext[UsersUnitOfWork]], Any]:
    return lambda context: handler_class(context.unit_of_work)


__all__ = ["HANDLERS", "register_handlers", "router"]
