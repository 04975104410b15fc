"""Domain building blocks: identifiers, value objects, entities and aggregates. Pure logic, no I/O."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from app.building_blocks.domain import AggregateRoot, DomainEvent, ValueObject, uuid7


def test_uuid7_is_version_7_rfc_variant_and_strictly_increasing() -> None:
    ids = [uuid7() for _ in range(20_000)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_value_objects_are_immutable_and_compare_by_value() -> None:
    class Money(ValueObject):
        amount: int
        currency: str

    a, b = Money(amount=1, currency="EUR"), Money(amount=1, currency="EUR")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    with pytest.raises(ValidationError):
        a.amount = 2  # type: ignore[misc]


def test_entities_compare_by_identity() -> None:
    class Thing(AggregateRoot):
        label: str

    one = Thing(label="a")
    assert one == Thing(id=one.id, label="b")
    assert one != Thing(label="a")


def test_aggregate_events_are_pulled_once() -> None:
    class Thing(AggregateRoot):
        pass

    thing = Thing()
    thing.record_event(DomainEvent())
    assert len(thing.pending_events) == 1
    assert len(thing.pull_events()) == 1
    assert thing.pull_events() == []
