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


async def test_fifty_registrations_of_one_email_in_different_cases(client: httpx.AsyncClient) -> None:
    local = f"twin-{uuid.uuid4().hex[:10]}"
    emails = [f"{local}@EXAMPLE.com" if i % 2 else f"{local.upper()}@example.COM" for i in range(50)]
    responses = await asyncio.gather(*(client.post(USERS, json={"email": e, "name": "Twin"}) for e in emails))
    assert Counter(r.status_code for r in responses) == {201: 1, 409: 49}
    listed = (await client.get(USERS, params={"email": local})).json()
    assert len(listed["items"]) == 1
