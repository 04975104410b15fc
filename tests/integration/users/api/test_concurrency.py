"""Races decided by the database, on both backends, in process."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx

from tests.helpers import USERS, unique_email


async def test_concurrent_patches_with_the_same_if_match(client: httpx.AsyncClient) -> None:
    user = (await client.post(USERS, json={"email": unique_email(), "name": "Race"})).json()
    path = f"{USERS}/{user['id']}"
    responses = await asyncio.gather(
        *(client.patch(path, json={"name": f"w{i}"}, headers={"If-Match": '"1"'}) for i in range(2))
    )
    assert sorted(r.status_code for r in responses) == [200, 412]
    assert (await client.get(path)).json()["version"] == 2


async def test_concurrent_patches_without_if_match_all_apply(client: httpx.AsyncClient) -> None:
    """Without a precondition writers queue on the row lock: nobody gets an error, none is lost."""
    user = (await client.post(USERS, json={"email": unique_email(), "name": "Queue"})).json()
    path = f"{USERS}/{user['id']}"
    responses = await asyncio.gather(*(client.patch(path, json={"name": f"w{i}"}) for i in range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    assert sorted(r.json()["version"] for r in responses) == list(range(2, 12))


async def register_as_told(client: httpx.AsyncClient, email: str) -> tuple[int, int]:
    """POST as a well-behaved client does: a 503 says "retry shortly", so it retries (its
    Retry-After, capped). Returns the final status and how many 503s it took."""
    unavailable = 0
    for _ in range(50):
        response = await client.post(USERS, json={"email": email, "name": "Twin"})
        if response.status_code != 503:
            return response.status_code, unavailable
        unavailable += 1
        await asyncio.sleep(min(float(response.headers.get("retry-after", "1")), 0.5))
    raise AssertionError(f"still 503 after {unavailable} attempts")


async def test_fifty_registrations_of_one_email_in_different_cases(client: httpx.AsyncClient) -> None:
    """One wins, 49 conflict, whatever the backend. SQLite has one writer: under a 50-way race on
    a slow machine some requests may wait out DATABASE_LOCK_TIMEOUT and get a 503 (retry), never
    a second user nor a 500."""
    local = f"twin-{uuid.uuid4().hex[:10]}"
    emails = [f"{local}@EXAMPLE.com" if i % 2 else f"{local.upper()}@example.COM" for i in range(50)]
    outcomes = await asyncio.gather(*(register_as_told(client, email) for email in emails))
    assert Counter(status for status, _ in outcomes) == {201: 1, 409: 49}
    retried = sum(unavailable for _, unavailable in outcomes)
    if retried:
        print(f"\n{retried} answers were 503 (the lock timeout) before the final one")
    listed = (await client.get(USERS, params={"email": local})).json()
    assert len(listed["items"]) == 1
