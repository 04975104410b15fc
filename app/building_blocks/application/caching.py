"""Which query results may be cached, and under which key: the aggregate they show.

A query opts in by naming its key::

    class GetUser(Query[UserDetails]):
        user_id: UUID

        def cache_key(self) -> str:
            return aggregate_cache_key(User, self.user_id)

Every committed change of that aggregate drops the key (the unit of work's after-commit hook in
``infrastructure/cache``), so the key must be exactly :func:`aggregate_cache_key` of the
aggregate whose state the result shows. Queries spanning many aggregates (lists, searches) are
not cached this way: no single change would know to drop them.
"""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from app.building_blocks.domain.entities import AggregateRoot


class CachedQuery(Protocol):
    def cache_key(self) -> str: ...


def aggregate_cache_key(aggregate_type: type[AggregateRoot], aggregate_id: UUID | str) -> str:
    """``user:0193...``: the key of one aggregate's cached views."""
    return f"{aggregate_type.__name__.lower()}:{aggregate_id}"
