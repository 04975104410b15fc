"""SQLAlchemy persistence: engine, metadata, unit of work and repository base."""

from app.building_blocks.infrastructure.persistence.database import (
    DatabaseUnavailableError,
    check_database,
    create_engine,
    create_session_factory,
    describe_url,
)
from app.building_blocks.infrastructure.persistence.errors import (
    UniqueConstraintViolation,
    UnstorableValueError,
    translate_integrity_error,
)
from app.building_blocks.infrastructure.persistence.metadata import NAMING_CONVENTION, metadata
from app.building_blocks.infrastructure.persistence.repositories import (
    BaseRepository,
    SqlAlchemyRepository,
)
from app.building_blocks.infrastructure.persistence.types import UtcDateTime
from app.building_blocks.infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork

__all__ = [
    "NAMING_CONVENTION",
    "BaseRepository",
    "DatabaseUnavailableError",
    "SqlAlchemyRepository",
    "SqlAlchemyUnitOfWork",
    "UniqueConstraintViolation",
    "UnstorableValueError",
    "UtcDateTime",
    "check_database",
    "create_engine",
    "create_session_factory",
    "describe_url",
    "metadata",
    "translate_integrity_error",
]
