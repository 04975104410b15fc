"""Domain building blocks: entities, aggregates, value objects, events, repository protocol."""

from app.building_blocks.domain.entities import AggregateRoot, BaseEntity
from app.building_blocks.domain.events import DomainEvent, IntegrationEvent
from app.building_blocks.domain.exceptions import (
    BusinessRuleViolationError,
    ConcurrencyError,
    ConflictError,
    DomainError,
    DomainValidationError,
    NotFoundError,
    PreconditionFailedError,
)
from app.building_blocks.domain.identifiers import uuid7
from app.building_blocks.domain.repository import Repository
from app.building_blocks.domain.value_objects import ValueObject

__all__ = [
    "AggregateRoot",
    "BaseEntity",
    "BusinessRuleViolationError",
    "ConcurrencyError",
    "ConflictError",
    "DomainError",
    "DomainEvent",
    "DomainValidationError",
    "IntegrationEvent",
    "NotFoundError",
    "PreconditionFailedError",
    "Repository",
    "ValueObject",
    "uuid7",
]
