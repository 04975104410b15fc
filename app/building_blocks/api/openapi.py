"""Make the OpenAPI document tell the truth about errors: ProblemDetails, and 400 not 422."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.building_blocks.api.problem_details import PROBLEM_JSON, ProblemDetails, status_title

_PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting ProblemDetails bodies for the given statuses."""
    return {
        status: {
            "model": ProblemDetails,
            "description": status_title(status),
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }


def install_problem_openapi(app: FastAPI) -> None:
    """Replace FastAPI's default 422 ``HTTPValidationError`` with our 400 ProblemDetails and serve
    every documented error as ``application/problem+json``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            servers=app.servers,
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ProblemDetails", ProblemDetails.model_json_schema())
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.get("responses", {})
                validation = responses.pop("422", None)
                if validation is not None and "HTTPValidationError" in str(validation):
                    responses.setdefault("400", {"description": status_title(400)})
                for status, response in responses.items():
                    if status.isdigit() and int(status) >= 400:
                        response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
