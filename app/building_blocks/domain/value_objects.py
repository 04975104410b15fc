"""Value objects: defined by their attributes, immutable and hashable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ValueObject(BaseModel):
    """Base for value objects. Equality and hash come from the field values; assignment is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")
