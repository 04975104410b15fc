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

EXAMPLES_PER_OPERATION = 40
OPERATIONS = 10  # every operation gets its own test below; a new endpoint must raise this


def operations(base_url: str) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_is_fuzzed(base_url: str) -> None:
    labels = {operation.label for operation in operations(base_url)}
    assert "POST /api/v1/users" in labels
    assert "PATCH /api/v1/users/{user_id}" in labels
    assert len(labels) == OPERATIONS, sorted(labels)


@pytest.mark.parametrize("index", range(OPERATIONS))
def test_no_input_breaks_the_api(base_url: str, index: int) -> None:
    operation = operations(base_url)[index]

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
