"""The ``Email`` value object: one spelling per mailbox, so uniqueness is a plain comparison."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from app.building_blocks.domain.exceptions import DomainValidationError
from app.building_blocks.domain.value_objects import ValueObject

MAX_LENGTH = 320  # RFC 5321: 64 (local part) + 1 + 255 (domain)


class Email(ValueObject):
    """A syntactically valid address, trimmed and lower-cased.

    Lower-casing the local part too is a product decision: ``Ann@x.io`` and ``ann@x.io`` are one
    user here, which is what people expect even though RFC 5321 lets servers distinguish them.
    """

    value: str

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        raw = data.get("value") if isinstance(data, dict) else data
        if not isinstance(raw, str):
            raise DomainValidationError("email must be a string", field="email")
        candidate = raw.strip().lower()
        if not candidate:
            raise DomainValidationError("email must not be empty", field="email")
        if len(candidate) > MAX_LENGTH:
            raise DomainValidationError(f"email must be at most {MAX_LENGTH} characters", field="email")
        try:
            _, normalised = validate_email(candidate)
        except PydanticCustomError as error:
            raise DomainValidationError(
                f"'{raw.strip()}' is not a valid email address", field="email"
            ) from error
        return {"value": normalised.lower()}

    @classmethod
    def of(cls, raw: str) -> Email:
        return cls(value=raw)

    def __str__(self) -> str:
        return self.value
