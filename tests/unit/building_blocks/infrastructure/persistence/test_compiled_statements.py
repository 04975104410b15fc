"""CompiledSelect's contract without a database; its rows and its driver path are tested against
both backends in tests/integration/building_blocks/infrastructure/persistence."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from app.building_blocks.infrastructure.persistence.compiled_statements import CompiledSelect
from app.users.persistence.tables import users_table


def test_in_lists_are_refused_their_sql_changes_with_their_length() -> None:
    with pytest.raises(ValueError, match="IN list"):
        CompiledSelect(select(users_table).where(users_table.c.id.in_(bindparam("ids", expanding=True))))


def test_every_selected_expression_needs_a_key() -> None:
    with pytest.raises(ValueError, match="label"):
        CompiledSelect(select(func.count()))
    CompiledSelect(select(func.count().label("n")))  # labelled: fine


def test_postgresql_plan_binds_by_name_in_the_sqls_order() -> None:
    query = CompiledSelect(
        select(users_table.c.id)
        .where(users_table.c.status == bindparam("status"), users_table.c.id > bindparam("after"))
        .limit(bindparam("limit"))
    )
    plan = query._plan(asyncpg_dialect())
    after = uuid.uuid4()

    assert plan.sql.count("$") == 3
    assert plan.arguments({"limit": 5, "after": after, "status": "active"}) == ["active", after, 5]
    with pytest.raises(TypeError, match="limit"):
        plan.arguments({"after": after, "status": "active"})
