"""The User aggregate and its Email value object: pure logic, no I/O."""

from __future__ import annotations

import pytest

from app.building_blocks.domain import DomainValidationError
from app.users.domain import (
    Email,
    User,
    UserAlreadyActive,
    UserAlreadyDeactivated,
    UserDeactivated,
    UserDeleted,
    UserEmailChanged,
    UserIsDeactivated,
    UserProfileUpdated,
    UserReactivated,
    UserRegistered,
    UserStatus,
)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [("  Ada@Example.COM ", "ada@example.com"), ("a.b+tag@sub.example.org", "a.b+tag@sub.example.org")],
)
def test_email_is_trimmed_and_lower_cased(raw: str, normalised: str) -> None:
    assert str(Email.of(raw)) == normalised
    assert Email.of(raw) == Email.of(normalised.upper())


@pytest.mark.parametrize(
    "raw", ["", "   ", "no-at-sign", "a@", "@b.com", "a b@c.com", "x" * 310 + "@example.com"]
)
def test_invalid_emails_raise_a_domain_validation_error_on_the_email_field(raw: str) -> None:
    with pytest.raises(DomainValidationError) as caught:
        Email.of(raw)
    assert caught.value.field == "email"


def test_register_records_user_registered() -> None:
    user = User.register(email=Email.of("ada@example.com"), name="  Ada  Lovelace ")
    assert user.name == "Ada Lovelace"
    assert user.status is UserStatus.ACTIVE
    assert user.id.version == 7
    assert user.created_at == user.updated_at
    [event] = user.pull_events()
    assert isinstance(event, UserRegistered)
    assert (event.user_id, event.email, event.name) == (user.id, "ada@example.com", "Ada Lovelace")


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "bad\x00name"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(DomainValidationError):
        User.register(email=Email.of("ada@example.com"), name=name)


def make_user() -> User:
    user = User.register(email=Email.of("ada@example.com"), name="Ada")
    user.pull_events()
    return user


def test_update_profile_records_one_event_per_change() -> None:
    user = make_user()
    assert user.update_profile(name="Grace", email=Email.of("grace@example.com"))
    events = user.pull_events()
    assert [type(e) for e in events] == [UserProfileUpdated, UserEmailChanged]
    changed = events[1]
    assert isinstance(changed, UserEmailChanged)
    assert (changed.old_email, changed.new_email) == ("ada@example.com", "grace@example.com")
    assert user.updated_at > user.created_at


def test_update_profile_without_change_records_nothing() -> None:
    user = make_user()
    assert not user.update_profile(name=" Ada ", email=Email.of("ADA@example.com"))
    assert user.pull_events() == []
    assert user.updated_at == user.created_at


def test_deactivate_reactivate_rules() -> None:
    user = make_user()
    user.deactivate()
    with pytest.raises(UserAlreadyDeactivated):
        user.deactivate()
    with pytest.raises(UserIsDeactivated):
        user.update_profile(name="x")
    user.reactivate()
    with pytest.raises(UserAlreadyActive):
        user.reactivate()
    assert [type(e) for e in user.pull_events()] == [UserDeactivated, UserReactivated]


def test_delete_records_user_deleted() -> None:
    user = make_user()
    user.delete()
    [event] = user.pull_events()
    assert isinstance(event, UserDeleted)
    assert event.email == "ada@example.com"
