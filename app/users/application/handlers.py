"""One handler per use case. Handlers load aggregates, call their methods and save them; the
transaction behaviour commits, so no handler touches sessions or transactions."""

from __future__ import annotations

from uuid import UUID

from app.users.application.commands import (
    DeactivateUser,
    DeleteUser,
    ReactivateUser,
    RegisterUser,
    UpdateUserProfile,
)
from app.users.application.queries import GetUser, GetUserActivity, ListUsers
from app.users.application.read_models import ActivityEntry, UserDetails, UserPage
from app.users.application.unit_of_work import UsersUnitOfWork
from app.users.domain.email import Email
from app.users.domain.exceptions import EmailAlreadyRegistered, UserNotFound, UserVersionMismatch
from app.users.domain.user import User


class _UserHandler:
    def __init__(self, uow: UsersUnitOfWork) -> None:
        self.uow = uow

    async def _load_for_change(self, user_id: UUID, expected_versions: frozenset[int] | None) -> User:
        """Load and lock the user, then check the caller's ``If-Match`` versions.

        The row lock makes concurrent writers queue up, so the second of two requests carrying the
        same ETag sees the first one's new version and fails the precondition (412) instead of
        overwriting it.
        """
        user = await self.uow.users.get(user_id, for_update=True)
        if user is None:
            raise UserNotFound(user_id)
        if expected_versions is not None and user.version not in expected_versions:
            raise UserVersionMismatch(user_id, user.version)
        return user


class RegisterUserHandler(_UserHandler):
    async def handle(self, command: RegisterUser) -> UserDetails:
        user = User.register(email=Email.of(command.email), name=command.name)
        # The unique constraint decides, and the repository reports it as EmailAlreadyRegistered:
        # a look-up first would cost every registration a round trip to speed up the rare
        # duplicate, and could not replace the constraint anyway (a concurrent twin passes it).
        await self.uow.users.add(user)
        return UserDetails.from_user(user)


class UpdateUserProfileHandler(_UserHandler):
    async def handle(self, command: UpdateUserProfile) -> UserDetails:
        email = Email.of(command.email) if command.email is not None else None
        user = await self._load_for_change(command.user_id, command.expected_versions)
        if email is not None and email != user.email:
            other = await self.uow.users.get_by_email(email)
            if other is not None:
                raise EmailAlreadyRegistered(str(email))
        if user.update_profile(name=command.name, email=email):
            await self.uow.users.update(user)
        return UserDetails.from_user(user)


class DeactivateUserHandler(_UserHandler):
    async def handle(self, command: DeactivateUser) -> UserDetails:
        user = await self._load_for_change(command.user_id, command.expected_versions)
        user.deactivate()
        await self.uow.users.update(user)
        return UserDetails.from_user(user)


class ReactivateUserHandler(_UserHandler):
    async def handle(self, command: ReactivateUser) -> UserDetails:
        user = await self._load_for_change(command.user_id, command.expected_versions)
        user.reactivate()
        await self.uow.users.update(user)
        return UserDetails.from_user(user)


class DeleteUserHandler(_UserHandler):
    async def handle(self, command: DeleteUser) -> None:
        user = await self._load_for_change(command.user_id, command.expected_versions)
        user.delete()
        await self.uow.users.remove(user)


class GetUserHandler:
    def __init__(self, uow: UsersUnitOfWork) -> None:
        self.uow = uow

    async def handle(self, query: GetUser) -> UserDetails:
        user = await self.uow.user_reads.get(query.user_id)
        if user is None:
            raise UserNotFound(query.user_id)
        return user


class ListUsersHandler:
    def __init__(self, uow: UsersUnitOfWork) -> None:
        self.uow = uow

    async def handle(self, query: ListUsers) -> UserPage:
        prefix = query.email_prefix.strip().lower() if query.email_prefix else None
        return await self.uow.user_reads.list(
            limit=query.limit, after=query.after, status=query.status, email_prefix=prefix or None
        )


class GetUserActivityHandler:
    def __init__(self, uow: UsersUnitOfWork) -> None:
        self.uow = uow

    async def handle(self, query: GetUserActivity) -> list[ActivityEntry]:
        entries = list(await self.uow.user_reads.activity(query.user_id, limit=query.limit))
        if not entries and await self.uow.user_reads.get(query.user_id) is None:
            raise UserNotFound(query.user_id)
        return entries
