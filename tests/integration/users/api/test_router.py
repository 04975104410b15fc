"""The users HTTP API on both backends, in process: every success and error path."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.helpers import USERS, assert_problem, unique_email


async def register(client: httpx.AsyncClient, email: str | None = None, name: str = "Ada") -> httpx.Response:
    response = await client.post(USERS, json={"email": email or unique_email(), "name": name})
    assert response.status_code == 201, response.text
    return response


async def test_register_returns_201_with_location_and_etag(client: httpx.AsyncClient) -> None:
    email = unique_email("Mixed.Case")
    response = await client.post(USERS, json={"email": f"  {email.upper()} ", "name": "  Ada   Lovelace "})
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == email.lower()
    assert body["name"] == "Ada Lovelace"
    assert body["status"] == "active"
    assert body["version"] == 1
    assert uuid.UUID(body["id"]).version == 7
    assert response.headers["location"] == f"{USERS}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body["created_at"] == body["updated_at"]


async def test_get_returns_user_with_etag_and_honours_if_none_match(client: httpx.AsyncClient) -> None:
    created = (await register(client)).json()
    response = await client.get(f"{USERS}/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == '"1"'
    cached = await client.get(f"{USERS}/{created['id']}", headers={"If-None-Match": '"1"'})
    assert cached.status_code == 304
    assert cached.content == b""


async def test_duplicate_email_in_any_case_is_409(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email)
    response = await client.post(USERS, json={"email": email.upper(), "name": "Twin"})
    body = assert_problem(response, 409, "EMAIL_ALREADY_REGISTERED")
    assert email in body["detail"]


async def test_unknown_id_is_404_everywhere(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    for method, path, payload in [
        ("GET", f"{USERS}/{missing}", None),
        ("PATCH", f"{USERS}/{missing}", {"name": "x"}),
        ("POST", f"{USERS}/{missing}/deactivate", None),
        ("POST", f"{USERS}/{missing}/reactivate", None),
        ("DELETE", f"{USERS}/{missing}", None),
    ]:
        response = await client.request(method, path, json=payload)
        body = assert_problem(response, 404, "USER_NOT_FOUND")
        assert str(missing) in body["detail"]


async def test_invalid_input_is_400_with_field_errors(client: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, object], set[str]]] = [
        ({"email": "not-an-email", "name": "Ada"}, {"email"}),
        ({"email": unique_email(), "name": ""}, {"name"}),
        ({"email": unique_email(), "name": "x" * 201}, {"name"}),
        ({"name": "Ada"}, {"email"}),
        ({"email": unique_email(), "name": "Ada", "admin": True}, {"admin"}),
        ({"email": 42, "name": ["x"]}, {"email", "name"}),
    ]
    for payload, fields in cases:
        body = assert_problem(await client.post(USERS, json=payload), 400, "VALIDATION_ERROR")
        assert set(body["errors"]) == fields, (payload, body)
        assert all(body["errors"][field] for field in fields)


async def test_whitespace_only_name_is_rejected_by_the_domain(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post(USERS, json={"email": unique_email(), "name": "   "}), 400)
    assert body["errors"] == {"name": ["name must not be empty"]}


async def test_malformed_json_and_wrong_types_are_400(client: httpx.AsyncClient) -> None:
    response = await client.post(USERS, content=b"{not json", headers={"content-type": "application/json"})
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert body["errors"] == {"body": ["request body is not valid JSON"]}
    assert_problem(await client.post(USERS, json=["a", "list"]), 400)
    assert_problem(await client.get(f"{USERS}/not-a-uuid"), 400)
    assert_problem(await client.get(USERS, params={"limit": 0}), 400)
    assert_problem(await client.get(USERS, params={"limit": 101}), 400)
    assert_problem(await client.get(USERS, params={"status": "sleeping"}), 400)


async def test_patch_changes_name_and_email_and_bumps_version(client: httpx.AsyncClient) -> None:
    created = (await register(client)).json()
    new_email = unique_email("renamed")
    response = await client.patch(
        f"{USERS}/{created['id']}",
        json={"name": "Grace", "email": new_email.upper()},
        headers={"If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["email"], body["version"]) == ("Grace", new_email, 2)
    assert response.headers["etag"] == '"2"'
    assert body["updated_at"] > created["updated_at"]


async def test_patch_with_nothing_to_change_keeps_the_version(client: httpx.AsyncClient) -> None:
    created = (await register(client, name="Same")).json()
    response = await client.patch(f"{USERS}/{created['id']}", json={"name": "Same"})
    assert response.status_code == 200
    assert response.json()["version"] == 1


async def test_patch_validation(client: httpx.AsyncClient) -> None:
    created = (await register(client)).json()
    path = f"{USERS}/{created['id']}"
    body = assert_problem(await client.patch(path, json={}), 400, "VALIDATION_ERROR")
    assert "at least one" in str(body["errors"])
    assert_problem(await client.patch(path, json={"email": "nope"}), 400)
    assert_problem(await client.patch(path, json={"version": 3}), 400)


async def test_patch_to_a_taken_email_is_409(client: httpx.AsyncClient) -> None:
    taken = unique_email()
    await register(client, taken)
    other = (await register(client)).json()
    response = await client.patch(f"{USERS}/{other['id']}", json={"email": taken.upper()})
    assert_problem(response, 409, "EMAIL_ALREADY_REGISTERED")


async def test_stale_if_match_is_412_and_changes_nothing(client: httpx.AsyncClient) -> None:
    created = (await register(client)).json()
    path = f"{USERS}/{created['id']}"
    assert (await client.patch(path, json={"name": "v2"}, headers={"If-Match": '"1"'})).status_code == 200
    for if_match in ['"1"', 'W/"2"', '"02"', '"1", "3"']:
        body = assert_problem(
            await client.patch(path, json={"name": "lost"}, headers={"If-Match": if_match}),
            412,
            "VERSION_MISMATCH",
        )
        assert body["extensions"]["current_version"] == 2
    for malformed in ["garbage", "2", '"2" x']:
        body = assert_problem(
            await client.patch(path, json={"name": "lost"}, headers={"If-Match": malformed}),
            400,
            "INVALID_PRECONDITION_HEADER",
        )
        assert body["errors"] == {"If-Match": ["not a list of entity tags"]}
    assert (
        await client.patch(path, json={"name": "v3"}, headers={"If-Match": '"1", "2"'})
    ).status_code == 200
    assert (await client.patch(path, json={"name": "v4"}, headers={"If-Match": "*"})).status_code == 200
    assert (await client.get(path)).json()["name"] == "v4"
    assert_problem(await client.delete(path, headers={"If-Match": '"1"'}), 412)
    assert_problem(await client.post(f"{path}/deactivate", headers={"If-Match": '"1"'}), 412)


async def test_deactivate_and_reactivate(client: httpx.AsyncClient) -> None:
    created = (await register(client)).json()
    path = f"{USERS}/{created['id']}"
    response = await client.post(f"{path}/deactivate", headers={"If-Match": '"1"'})
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["version"]) == ("deactivated", 2)
    assert response.headers["etag"] == '"2"'
    assert_problem(await client.post(f"{path}/deactivate"), 409, "USER_ALREADY_DEACTIVATED")
    assert_problem(await client.patch(path, json={"name": "x"}), 409, "USER_DEACTIVATED")
    response = await client.post(f"{path}/reactivate")
    assert (response.json()["status"], response.json()["version"]) == ("active", 3)
    assert_problem(await client.post(f"{path}/reactivate"), 409, "USER_ALREADY_ACTIVE")


async def test_delete_is_204_then_404(client: httpx.AsyncClient) -> None:
    email = unique_email()
    created = (await register(client, email)).json()
    path = f"{USERS}/{created['id']}"
    response = await client.delete(path, headers={"If-Match": '"1"'})
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get(path), 404, "USER_NOT_FOUND")
    assert_problem(await client.delete(path), 404)
    await register(client, email)  # the email is free again


async def test_list_pages_with_cursor_and_filters(client: httpx.AsyncClient) -> None:
    marker = uuid.uuid4().hex[:8]
    ids = [(await register(client, f"list-{marker}-{i}@example.com")).json()["id"] for i in range(5)]
    await client.post(f"{USERS}/{ids[1]}/deactivate")

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2, "email": f"LIST-{marker}"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(USERS, params=params)).json()
        seen += [user["id"] for user in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert pages == 3

    active = (await client.get(USERS, params={"email": f"list-{marker}", "status": "active"})).json()
    assert [user["id"] for user in active["items"]] == [i for i in ids if i != ids[1]]
    deactivated = (
        await client.get(USERS, params={"email": f"list-{marker}", "status": "deactivated"})
    ).json()
    assert [user["id"] for user in deactivated["items"]] == [ids[1]]
    assert deactivated["next_cursor"] is None


async def test_email_prefix_filter_treats_wildcards_literally(client: httpx.AsyncClient) -> None:
    marker = uuid.uuid4().hex[:8]
    await register(client, f"pct{marker}x@example.com")
    page = (await client.get(USERS, params={"email": f"pct%{marker[1:]}"})).json()
    assert page["items"] == []
    page = (await client.get(USERS, params={"email": f"pct{marker[:4]}_"})).json()
    assert page["items"] == []


async def test_tampered_cursor_is_400(client: httpx.AsyncClient) -> None:
    for cursor in ["%%%", "bm90LWpzb24", "eyJhZnRlciI6IDF9", "W10"]:
        body = assert_problem(await client.get(USERS, params={"cursor": cursor}), 400, "INVALID_CURSOR")
        assert body["errors"] == {"cursor": ["invalid cursor"]}


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    assert_problem(await client.put(USERS), 405, "METHOD_NOT_ALLOWED")


async def test_correlation_id_is_echoed_and_the_problem_carries_the_w3c_trace_id(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(f"{USERS}/{uuid.uuid4()}", headers={"X-Correlation-Id": "req-123"})
    assert response.headers["x-correlation-id"] == "req-123"
    assert re.fullmatch(r"[0-9a-f]{32}", response.json()["trace_id"])
    generated = await client.get("/health/live", headers={"X-Correlation-Id": "bad id with spaces"})
    assert generated.headers["x-correlation-id"] != "bad id with spaces"
    assert uuid.UUID(generated.headers["x-correlation-id"])


async def test_health_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok", "checks": {}}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"]["status"] == "ok"


async def test_control_characters_in_filters_are_400(client: httpx.AsyncClient) -> None:
    for value in ["\x00", "a\x00b", "\x1b[31m"]:
        body = assert_problem(await client.get(USERS, params={"email": value}), 400, "VALIDATION_ERROR")
        assert set(body["errors"]) == {"email"}


async def test_names_are_measured_in_characters_on_every_backend(client: httpx.AsyncClient) -> None:
    name = "é" * 200  # 400 bytes in UTF-8: fits because the limit counts characters
    response = await client.post(USERS, json={"email": unique_email(), "name": name})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name
