"""``/api/v1/users``: every endpoint turns HTTP into one command or query and back."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response, status

from app.building_blocks.api.dependencies import MediatorDep
from app.building_blocks.api.etags import etag_for, if_none_match_hits, parse_if_match
from app.building_blocks.api.exceptions import BadRequestException
from app.building_blocks.api.openapi import problem_responses
from app.building_blocks.api.pagination import decode_cursor, encode_cursor
from app.building_blocks.api.rate_limits import rate_limited
from app.building_blocks.api.routing import StrictJsonRoute
from app.users.api.schemas import (
    ActivityEntryPublic,
    UserActivityPublic,
    UserCreate,
    UserPublic,
    UsersPublic,
    UserUpdate,
)
from app.users.application.commands import (
    DeactivateUser,
    DeleteUser,
    ReactivateUser,
    RegisterUser,
    UpdateUserProfile,
)
from app.users.application.queries import MAX_PAGE_SIZE, GetUser, GetUserActivity, ListUsers
from app.users.application.read_models import UserDetails
from app.users.domain.user import UserStatus

PREFIX = "/api/v1/users"
# StrictJsonRoute: a body naming a JSON key twice is a 400, not "the last one wins"
router = APIRouter(prefix=PREFIX, tags=["users"], route_class=StrictJsonRoute)

IfMatch = Annotated[
    str | None,
    Header(description='ETag of the version you read (e.g. `"3"`); a stale one gives 412.'),
]


def _respond(response: Response, user: UserDetails) -> UserPublic:
    response.headers["ETag"] = etag_for(user.version)
    return UserPublic.from_details(user)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    summary="Register a user",
    description="Limited per client address (`RATE_LIMIT_REGISTRATIONS`, default 20/minute): over it, "
    "a 429 problem with `Retry-After`; a 201 and a 429 carry the `RateLimit-Policy` and `RateLimit` fields.",
    responses=problem_responses(400, 409, 429),
    dependencies=[rate_limited("registrations")],
)
async def register_user(body: UserCreate, mediator: MediatorDep, response: Response) -> UserPublic:
    user = await mediator.send(RegisterUser(email=body.email, name=body.name))
    response.headers["Location"] = f"{PREFIX}/{user.id}"
    return _respond(response, user)


@router.get(
    "",
    response_model=UsersPublic,
    summary="List users (keyset pagination, oldest first)",
    responses=problem_responses(400),
)
async def list_users(
    mediator: MediatorDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    status_filter: Annotated[UserStatus | None, Query(alias="status")] = None,
    email: Annotated[
        str | None,
        Query(max_length=320, pattern=r"^[^\x00-\x1f\x7f]*$", description="Case-insensitive email prefix"),
    ] = None,
) -> UsersPublic:
    after = _after_from_cursor(cursor) if cursor else None
    page = await mediator.send(ListUsers(limit=limit, after=after, status=status_filter, email_prefix=email))
    return UsersPublic(
        items=[UserPublic.from_details(user) for user in page.items],
        next_cursor=encode_cursor({"after": str(page.next_after)}) if page.next_after else None,
    )


def _after_from_cursor(cursor: str) -> UUID:
    position = decode_cursor(cursor)
    try:
        return UUID(str(position["after"]))
    except (KeyError, ValueError):
        raise BadRequestException(
            "The cursor is not valid; use the next_cursor of a previous page.",
            error_code="INVALID_CURSOR",
            errors={"cursor": ["invalid cursor"]},
        ) from None


@router.get(
    "/{user_id}",
    response_model=UserPublic,
    summary="Get a user",
    responses={**problem_responses(400, 404), 304: {"description": "Not Modified"}},
)
async def get_user(
    user_id: UUID,
    mediator: MediatorDep,
    response: Response,
    if_none_match: Annotated[str | None, Header()] = None,
) -> UserPublic | Response:
    user = await mediator.send(GetUser(user_id=user_id))
    if if_none_match_hits(if_none_match, user.version):
        return Response(status_code=304, headers={"ETag": etag_for(user.version)})
    return _respond(response, user)


@router.get(
    "/{user_id}/activity",
    response_model=UserActivityPublic,
    summary="What happened to a user, oldest first",
    description="The activity log is projected asynchronously from the users topic (outbox → relay → "
    "consumer), so an event appears shortly after the change that raised it; each appears once.",
    responses=problem_responses(400, 404),
)
async def get_user_activity(
    user_id: UUID,
    mediator: MediatorDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> UserActivityPublic:
    entries = await mediator.send(GetUserActivity(user_id=user_id, limit=limit))
    return UserActivityPublic(items=[ActivityEntryPublic(**entry.model_dump()) for entry in entries])


@router.patch(
    "/{user_id}",
    response_model=UserPublic,
    summary="Change a user's name and/or email",
    responses=problem_responses(400, 404, 409, 412),
)
async def update_user(
    user_id: UUID,
    body: UserUpdate,
    mediator: MediatorDep,
    response: Response,
    if_match: IfMatch = None,
) -> UserPublic:
    user = await mediator.send(
        UpdateUserProfile(
            user_id=user_id,
            name=body.name,
            email=body.email,
            expected_versions=parse_if_match(if_match),
        )
    )
    return _respond(response, user)


@router.post(
    "/{user_id}/deactivate",
    response_model=UserPublic,
    summary="Deactivate a user",
    responses=problem_responses(400, 404, 409, 412),
)
async def deactivate_user(
    user_id: UUID, mediator: MediatorDep, response: Response, if_match: IfMatch = None
) -> UserPublic:
    user = await mediator.send(DeactivateUser(user_id=user_id, expected_versions=parse_if_match(if_match)))
    return _respond(response, user)


@router.post(
    "/{user_id}/reactivate",
    response_model=UserPublic,
    summary="Reactivate a user",
    responses=problem_responses(400, 404, 409, 412),
)
async def reactivate_user(
    user_id: UUID, mediator: MediatorDep, response: Response, if_match: IfMatch = None
) -> UserPublic:
    user = await mediator.send(ReactivateUser(user_id=user_id, expected_versions=parse_if_match(if_match)))
    return _respond(response, user)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a user",
    responses=problem_responses(400, 404, 412),
)
async def delete_user(user_id: UUID, mediator: MediatorDep, if_match: IfMatch = None) -> Response:
    await mediator.send(DeleteUser(user_id=user_id, expected_versions=parse_if_match(if_match)))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
