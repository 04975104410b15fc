"""The bare baseline of ``bench/api_throughput.py``: the service's three measured routes written
plainly, FastAPI + one asyncpg pool, no kit.

``uvicorn --factory bench.baseline_app:create_app`` against the service's migrated database (its
``users`` and ``outbox`` tables), configured from the service's own settings (``DATABASE_URL``,
``DATABASE_POOL_SIZE`` + ``DATABASE_MAX_OVERFLOW`` → asyncpg ``min_size``/``max_size``, the same
``lock_timeout``/``statement_timeout``; TLS as asyncpg negotiates it, as for the service):

- ``GET /api/v1/users/{id}``: one ``SELECT`` on the pool (no explicit transaction), 404 when
  missing, the service's JSON fields and ``ETag``;
- ``POST /api/v1/users``: the body validated by pydantic (email + name), then in ONE transaction
  the user row, an outbox row of the same size as the service's ``OutboxWriter`` writes (CloudEvents
  headers JSON + the integration event's JSON, correlation id included) and the relay's wake-up
  (``NOTIFY outbox``: sent by the table's insert trigger when the schema has it, as since migration
  0006, else by a ``SELECT pg_notify`` as the service's writer then did); 201 with the user JSON
  and ``Location``, 409 on a taken email;
- ``GET /hello``: a constant JSON (what ``/health/live`` is measured against).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg  # type: ignore[import-untyped]  # no type information
from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel, EmailStr, Field

from app.building_blocks.domain.identifiers import uuid7
from app.settings import Settings

PREFIX = "/api/v1/users"
EVENT_TYPE = "users.user_registered"
SELECT_USER = "SELECT id, email, name, status, created_at, updated_at, version FROM users WHERE id = $1"
INSERT_USER = (
    "INSERT INTO users (id, email, name, status, created_at, updated_at, version)"
    " VALUES ($1, $2, $3, 'active', $4, $4, 1)"
)
HAS_NOTIFY_TRIGGER = (
    "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'outbox'::regclass AND tgname = 'outbox_notify')"
)
INSERT_OUTBOX = (
    "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, topic, payload, headers, occurred_at)"
    " VALUES ($1, 'user', $2, $3, $4, $5, $6, $7)"
)


class UserIn(BaseModel):
    email: EmailStr = Field(max_length=320)
    name: str = Field(min_length=1, max_length=200)


class UserOut(BaseModel):
    id: UUID
    email: str
    name: str
    status: str
    created_at: datetime
    updated_at: datetime
    version: int


def asyncpg_dsn(url: str) -> str:
    """``postgresql+asyncpg://...`` (SQLAlchemy's spelling) → ``postgresql://...`` (libpq's)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}://{rest}"


def _utc_text(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def outbox_values(
    user_id: UUID, email: str, name: str, now: datetime, *, service: str, topic: str
) -> tuple[Any, ...]:
    """The outbox row's values, shaped like ``OutboxWriter``'s (same keys, same JSON, same size)."""
    event_id, correlation_id, moment = uuid7(), str(uuid.uuid4()), _utc_text(now)
    versioned = f"{EVENT_TYPE}.v1"
    payload = {
        "event_id": str(event_id),
        "occurred_at": moment,
        "aggregate_id": str(user_id),
        "correlation_id": correlation_id,
        "causation_id": None,
        "source": service,
        "user_id": str(user_id),
        "email": email,
        "name": name,
        "event_type": EVENT_TYPE,
        "event_version": 1,
        "aggregate_type": "user",
    }
    headers = {
        "ce_specversion": "1.0",
        "ce_id": str(event_id),
        "ce_type": versioned,
        "ce_source": service,
        "ce_time": moment,
        "ce_subject": str(user_id),
        "content-type": "application/json",
        "ce_correlationid": correlation_id,
        # The service writes the request's trace context with the row (tracing is on by default).
        "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
    }
    compact = (",", ":")
    return (
        event_id,
        str(user_id),
        versioned,
        topic,
        json.dumps(payload, separators=compact),
        json.dumps(headers, separators=compact),
        now,
    )


def create_app() -> FastAPI:
    settings = Settings()
    db = settings.database
    service = settings.service_name
    topic = settings.topic_overrides.get("user", f"{service}.users.v1")
    pools: list[asyncpg.Pool] = []
    notify_by_hand: list[bool] = []  # whether the outbox has no trigger sending the NOTIFY

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        server_settings = {"lock_timeout": str(int(db.lock_timeout * 1000)), "application_name": "baseline"}
        if db.statement_timeout:
            server_settings["statement_timeout"] = str(int(db.statement_timeout * 1000))
        pool = await asyncpg.create_pool(
            asyncpg_dsn(db.url),
            min_size=db.pool_size,
            max_size=db.pool_size + db.max_overflow,
            timeout=db.connect_timeout,
            server_settings=server_settings,
        )
        pools.append(pool)
        notify_by_hand.append(not await pool.fetchval(HAS_NOTIFY_TRIGGER))
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="baseline", lifespan=lifespan)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(PREFIX + "/{user_id}", response_model=UserOut)
    async def get_user(user_id: UUID, response: Response) -> UserOut:
        row = await pools[0].fetchrow(SELECT_USER, user_id)
        if row is None:
            raise HTTPException(status_code=404, detail="user not found")
        response.headers["ETag"] = f'"{row["version"]}"'
        return UserOut(**dict(row))

    @app.post(PREFIX, status_code=201, response_model=UserOut)
    async def register_user(body: UserIn, response: Response) -> UserOut:
        email, now, user_id = body.email.lower(), datetime.now(UTC), uuid7()
        async with pools[0].acquire() as connection, connection.transaction():
            try:
                await connection.execute(INSERT_USER, user_id, email, body.name, now)
            except asyncpg.UniqueViolationError:
                raise HTTPException(status_code=409, detail="email already registered") from None
            values = outbox_values(user_id, email, body.name, now, service=service, topic=topic)
            await connection.execute(INSERT_OUTBOX, *values)
            if notify_by_hand[0]:
                await connection.execute("SELECT pg_notify('outbox', '')")
        response.headers["Location"] = f"{PREFIX}/{user_id}"
        response.headers["ETag"] = '"1"'
        return UserOut(
            id=user_id,
            email=email,
            name=body.name,
            status="active",
            created_at=now,
            updated_at=now,
            version=1,
        )

    return app
