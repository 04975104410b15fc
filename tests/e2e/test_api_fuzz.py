"""Property-based fuzzing of every operation in the OpenAPI document, over real HTTP.

Schemathesis generates valid and invalid requests from the schema; each response must not be a
5xx, must use a documented status and content type, must match the documented schema, and
invalid requests must be rejected. This
is what "no input produces a 500 and every error is ProblemDetails" means in practice.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from app.main import create_app
from tests.conftest import make_settings

EXAMPLES_PER_OPERATION = 40


def schema_operations() -> list[str]:
    """Every operation of the service's own OpenAPI document, known at collection time (the app is
    built, not served: nothing connects), so each gets its own test and none is left out."""
    paths = create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()["paths"]
    return sorted(f"{method.upper()} {path}" for path, item in paths.items() for method in item)


OPERATIONS = schema_operations()


def operations(base_url: str) -> dict[str, schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    return {operation.label: operation for operation in found}


def test_every_operation_is_fuzzed(base_url: str) -> None:
    assert "POST /api/v1/users" in OPERATIONS
    assert "PATCH /api/v1/users/{user_id}" in OPERATIONS
    assert sorted(operations(base_url)) == OPERATIONS  # the server serves what the tests cover


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_input_breaks_the_api(base_url: str, label: str) -> None:
    operation = operations(base_url)[label]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        # The schema cannot say everything the domain checks (reserved email domains, control
        # characters in names), so a schema-valid request may still be a correct 400.
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    fuzz()
