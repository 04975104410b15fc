"""Black-box HTTP against a running server (``BASE_URL``, or one started per backend).

These tests only speak HTTP, so they run unchanged against the compose stack (``make e2e``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx

from tests.helpers import USERS, assert_problem, unique_email


async def test_the_whole_lifecycle_over_http(base_url: str) -> None:
    marker = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        created = await http.post(USERS, json={"email": f"Life-{marker}@Example.com", "name": "Life"})
        assert created.status_code == 201
        user = created.json()
        location = created.headers["location"]
        assert location == f"{USERS}/{user['id']}"

        fetched = await http.get(location)
        assert fetched.json() == user
        assert fetched.headers["etag"] == '"1"'

        for i in range(2):
            await http.post(USERS, json={"email": f"life-{marker}-{i}@example.com", "name": f"n{i}"})
        first = (await http.get(USERS, params={"email": f"life-{marker}", "limit": 2})).json()
        assert len(first["items"]) == 2
        assert first["next_cursor"]
        second = (
            await http.get(
                USERS, params={"email": f"life-{marker}", "limit": 2, "cursor": first["next_cursor"]}
            )
        ).json()
        assert len(second["items"]) == 1
        assert second["next_cursor"] is None

        patched = await http.patch(
            location, json={"name": "Renamed"}, headers={"If-Match": fetched.headers["etag"]}
        )
        assert patched.status_code == 200
        assert patched.headers["etag"] == '"2"'
        assert_problem(await http.patch(location, json={"name": "Stale"}, headers={"If-Match": '"1"'}), 412)

        deactivated = await http.post(f"{location}/deactivate", headers={"If-Match": '"2"'})
        assert deactivated.json()["status"] == "deactivated"
        reactivated = await http.post(f"{location}/reactivate")
        assert reactivated.json()["status"] == "active"

        assert (
            await http.delete(location, headers={"If-Match": reactivated.headers["etag"]})
        ).status_code == 204
        assert_problem(await http.get(location), 404, "USER_NOT_FOUND")


async def test_concurrent_patches_with_one_etag_give_one_200_and_one_412(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        user = (await http.post(USERS, json={"email": unique_email(), "name": "Race"})).json()
        path = f"{USERS}/{user['id']}"
        for round_ in range(5):
            etag = (await http.get(path)).headers["etag"]
            responses = await asyncio.gather(
                *(
                    http.patch(path, json={"name": f"writer-{round_}-{i}"}, headers={"If-Match": etag})
                    for i in range(2)
                )
            )
            assert sorted(r.status_code for r in responses) == [200, 412], [r.text for r in responses]
            winner = next(r for r in responses if r.status_code == 200).json()
            assert (await http.get(path)).json()["name"] == winner["name"]


async def test_fifty_concurrent_registrations_of_one_email_create_one_user(base_url: str) -> None:
    local = f"race-{uuid.uuid4().hex[:10]}"
    spellings = [
        "".join(c.upper() if (n >> k) & 1 else c for k, c in enumerate(f"{local}@example.com"))
        for n in range(50)
    ]
    async with httpx.AsyncClient(
        base_url=base_url, timeout=60, limits=httpx.Limits(max_connections=50)
    ) as http:
        responses = await asyncio.gather(
            *(http.post(USERS, json={"email": e, "name": "Twin"}) for e in spellings)
        )
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 1, 409: 49}, statuses
        for response in responses:
            if response.status_code == 409:
                assert_problem(response, 409, "EMAIL_ALREADY_REGISTERED")
        listed = (await http.get(USERS, params={"email": local})).json()
        assert len(listed["items"]) == 1
        assert listed["items"][0]["email"] == f"{local}@example.com"


async def test_every_error_is_problem_json_over_http(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        assert_problem(
            await http.post(USERS, content=b"\xff\xfe", headers={"content-type": "application/json"}), 400
        )
        assert_problem(
            await http.post(USERS, content=b"email=a", headers={"content-type": "text/plain"}), 400
        )
        assert_problem(await http.get(f"{USERS}/{'9' * 40}"), 400)
        assert_problem(await http.get("/missing"), 404)
        assert_problem(await http.delete(USERS), 405)


async def test_the_activity_log_shows_each_event_once_in_order(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        user = (await http.post(USERS, json={"email": unique_email("activity"), "name": "Act"})).json()
        path = f"{USERS}/{user['id']}"
        assert (await http.patch(path, json={"email": unique_email("moved")})).status_code == 200
        assert (await http.post(f"{path}/deactivate")).status_code == 200
        assert (await http.post(f"{path}/reactivate")).status_code == 200
        assert (await http.delete(path)).status_code == 204
        expected = [
            "users.user_registered",
            "users.user_email_changed",
            "users.user_deactivated",
            "users.user_reactivated",
            "users.user_deleted",
        ]
        items: list[dict[str, object]] = []
        for _ in range(100):  # projected asynchronously: poll for up to ~10 s
            response = await http.get(f"{path}/activity")
            # 404 until the first event is projected: the user itself is already deleted
            items = response.json()["items"] if response.status_code == 200 else []
            if len(items) >= len(expected):
                break
            await asyncio.sleep(0.1)
        assert [item["event_type"] for item in items] == expected
        assert len({item["event_id"] for item in items}) == len(expected)
        assert_problem(await http.get(f"{USERS}/{uuid.uuid4()}/activity"), 404, "USER_NOT_FOUND")
