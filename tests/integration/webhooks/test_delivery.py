"""Webhooks end to end on PostgreSQL: the app in embedded mode, a real endpoint, signed POSTs."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable

from app.settings import WebhookSettings
from tests.http_servers import ReceivedRequest, Reply, ScriptedServer
from tests.integration.webhooks.conftest import (
    HOOK,
    assert_signed,
    distinct_ids,
    event_of,
    new_secret,
    running_app,
    user_of,
    wait_until,
)

REGISTERED = "users.user_registered.v1"
UPDATED = "users.user_profile_updated.v1"


async def test_each_event_is_posted_once_signed_typed_correlated_and_in_order(
    database: str, endpoint: ScriptedServer
) -> None:
    """5 registrations and 1 update: 6 signed POSTs, one per event, in order per user."""
    secret = new_secret()
    endpoint.always(HOOK, Reply(204))
    webhooks = WebhookSettings(url=endpoint.url_for(HOOK), secret=secret)
    async with running_app(database, webhooks=webhooks) as service:
        correlation: dict[tuple[str, str], str] = {}
        users = []
        for index in range(5):
            cid = str(uuid.uuid4())
            user = await service.register(f"User{index}", correlation_id=cid)
            correlation[(user, REGISTERED)] = cid
            users.append(user)
        cid = str(uuid.uuid4())
        await service.rename(users[0], "Renamed", correlation_id=cid)
        correlation[(users[0], UPDATED)] = cid
        received = await endpoint.wait_for(HOOK, 6, timeout=15)
        await wait_until(lambda: len(service.published()) >= 6, timeout=5, what="6 events published")
        published = {message.message_id: message for message in service.published()}
        await _no_more(endpoint, 6)

    assert len(received) == 6
    assert len(distinct_ids(received)) == 6
    assert set(distinct_ids(received)) == set(published), "webhook-id is the event's id"
    for request in received:
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/json"
        assert_signed(secret, request)
        event = event_of(request)
        assert set(event) == {"type", "timestamp", "data"}
        message = published[request.headers["webhook-id"]]
        assert event["type"] == message.event_type
        assert event["data"] == message.json()
        assert event["timestamp"].endswith("Z")
        assert request.headers["x-correlation-id"] == correlation[(user_of(request), event["type"])]
        assert request.headers["traceparent"].startswith("00-")
    first_user = [event_of(request)["type"] for request in received if user_of(request) == users[0]]
    assert first_user == [REGISTERED, UPDATED]
    assert sorted(
        user_of(request) for request in received if event_of(request)["type"] == REGISTERED
    ) == sorted(users)


async def test_retry_after_is_honoured_with_the_same_id_and_a_fresh_signature(
    database: str, endpoint: ScriptedServer
) -> None:
    """503 + Retry-After: 1 twice per event: a third attempt >= 1 s later, same id, re-signed."""
    secret = new_secret()
    attempts: dict[str, int] = {}

    def twice_unavailable(request: ReceivedRequest) -> Reply:
        message_id = request.headers["webhook-id"]
        attempts[message_id] = attempts.get(message_id, 0) + 1
        if attempts[message_id] <= 2:
            return Reply(503, headers={"Retry-After": "1"})
        return Reply(204)

    endpoint.always(HOOK, twice_unavailable)
    webhooks = WebhookSettings(url=endpoint.url_for(HOOK), secret=secret)
    async with running_app(database, webhooks=webhooks) as service:
        users = [await service.register(name) for name in ("Ada", "Bob")]
        for user in users:
            await service.rename(user, "Renamed")
        received = await endpoint.wait_for(HOOK, 12, timeout=30)
        await _no_more(endpoint, 12)

    ids = distinct_ids(received)
    assert len(ids) == 4
    assert all(attempts[message_id] == 3 for message_id in ids)
    for message_id in ids:
        tries = [request for request in received if request.headers["webhook-id"] == message_id]
        assert len({request.body for request in tries}) == 1, "the same body on every attempt"
        for earlier, later in itertools.pairwise(tries):
            assert later.arrived - earlier.arrived >= 0.99, "Retry-After: 1 honoured"
            fresh = int(later.headers["webhook-timestamp"]) - int(earlier.headers["webhook-timestamp"])
            assert fresh >= 1, "each attempt signed when it is sent"
        for request in tries:
            assert_signed(secret, request)
    for user in users:
        own = [request for request in received if user_of(request) == user]
        registered = [r for r in own if event_of(r)["type"] == REGISTERED]
        updated = [r for r in own if event_of(r)["type"] == UPDATED]
        assert len(registered) == len(updated) == 3
        assert updated[0].arrived > registered[-1].arrived, "a user's next event waits for the last"


async def test_a_refused_event_is_dead_lettered_after_one_attempt_and_later_events_flow(
    database: str, endpoint: ScriptedServer
) -> None:
    """A 400 dead-letters that event at once (with its status); the others still arrive."""
    secret = new_secret()
    refused_email: list[str] = []

    def refuse_one(request: ReceivedRequest) -> Reply:
        event = event_of(request)
        if event["type"] == REGISTERED and event["data"]["name"] == "Refused":
            refused_email.append(event["data"]["email"])
            return Reply(400, {"error": "no"})
        return Reply(204)

    endpoint.always(HOOK, refuse_one)
    webhooks = WebhookSettings(url=endpoint.url_for(HOOK), secret=secret)
    async with running_app(database, webhooks=webhooks) as service:
        victim = await service.register("Refused")
        other = await service.register("Other")
        await service.rename(victim, "Renamed")
        await service.rename(other, "Renamed too")
        received = await endpoint.wait_for(HOOK, 4, timeout=15)
        await wait_until(lambda: len(service.dead_letters()) >= 1, timeout=5, what="a dead letter")
        await _no_more(endpoint, 4)
        letters = service.dead_letters()

    refused = [r for r in received if user_of(r) == victim and event_of(r)["type"] == REGISTERED]
    assert len(refused) == 1, "a 400 is not retried"
    assert len(letters) == 1
    letter = letters[0]
    assert letter.message_id == refused[0].headers["webhook-id"]
    assert letter.headers["dlq_http_status"] == "400"
    assert letter.headers["dlq_webhook_outcome"] == "refused"
    assert letter.headers["dlq_attempts"] == "1"
    later = {(user_of(r), event_of(r)["type"]) for r in received if r is not refused[0]}
    assert later == {(other, REGISTERED), (victim, UPDATED), (other, UPDATED)}
    assert received.index(refused[0]) == 0


async def test_only_the_listed_event_types_are_sent(database: str, endpoint: ScriptedServer) -> None:
    """WEBHOOK_EVENTS=users.user_profile_updated: registrations are not sent."""
    endpoint.always(HOOK, Reply(204))
    webhooks = WebhookSettings(
        url=endpoint.url_for(HOOK), secret=new_secret(), events="users.user_profile_updated"
    )
    async with running_app(database, webhooks=webhooks) as service:
        users = [await service.register(name) for name in ("Ada", "Bob")]
        await service.rename(users[1], "Renamed")
        # one partition: the registrations were handled (skipped) before the update went out
        received = await endpoint.wait_for(HOOK, 1, timeout=15)
        await _no_more(endpoint, 1)
        assert not service.dead_letters()

    assert [event_of(r)["type"] for r in received] == [UPDATED]
    assert user_of(received[0]) == users[1]


async def test_an_event_older_than_max_age_is_dead_lettered_as_expired(
    database: str, endpoint: ScriptedServer, fast_client: Callable[..., None]
) -> None:
    """The endpoint keeps answering 503 past max_age: the event goes to the DLQ, expired."""
    fast_client(max_retries=0, failure_threshold=100)
    endpoint.always(HOOK, Reply(503))
    webhooks = WebhookSettings(url=endpoint.url_for(HOOK), secret=new_secret(), max_age=0.5)
    async with running_app(database, webhooks=webhooks) as service:
        user = await service.register("Late")
        await wait_until(lambda: len(service.dead_letters()) >= 1, timeout=15, what="a dead letter")
        letters = service.dead_letters()
        published = service.published()

    assert len(letters) == 1
    assert letters[0].headers["dlq_webhook_outcome"] == "expired"
    assert letters[0].message_id == published[0].message_id
    assert letters[0].json()["user_id"] == user
    assert "dlq_http_status" not in letters[0].headers


async def _no_more(endpoint: ScriptedServer, expected: int, quiet: float = 0.5) -> None:
    """No request beyond ``expected`` arrives within ``quiet`` seconds."""
    try:
        await endpoint.wait_for(HOOK, expected + 1, timeout=quiet)
    except TimeoutError:
        return
    raise AssertionError(f"more than {expected} requests: {endpoint.count(HOOK)}")
