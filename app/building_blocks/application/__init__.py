"""Application building blocks: CQRS requests, handlers, the mediator and its behaviours."""

from app.building_blocks.application.behaviors import LoggingBehavior, TransactionBehavior
from app.building_blocks.application.commands import Command
from app.building_blocks.application.exceptions import TemporarilyUnavailableError
from app.building_blocks.application.handlers import CommandHandler, QueryHandler, RequestHandler
from app.building_blocks.application.mediator import (
    Mediator,
    MissingHandlerError,
    PipelineBehavior,
    RequestContext,
)
from app.building_blocks.application.queries import Query
from app.building_blocks.application.requests import Request
from app.building_blocks.application.unit_of_work import UnitOfWork

__all__ = [
    "Command",
    "CommandHandler",
    "LoggingBehavior",
    "Mediator",
    "MissingHandlerError",
    "PipelineBehavior",
    "Query",
    "QueryHandler",
    "Request",
    "RequestContext",
    "RequestHandler",
    "TemporarilyUnavailableError",
    "TransactionBehavior",
    "UnitOfWork",
]
