"""RFC 9457 (obsoletes RFC 7807) problem details: the one shape of every HTTP error."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_JSON = "application/problem+json"

# Each status links to its definition in RFC 9110 (which obsoletes RFC 7231) or RFC 6585.
_STATUS_TYPES: dict[int, tuple[str, str]] = {
    400: ("https://tools.ietf.org/html/rfc9110#section-15.5.1", "Bad Request"),
    401: ("https://tools.ietf.org/html/rfc9110#section-15.5.2", "Unauthorized"),
    403: ("https://tools.ietf.org/html/rfc9110#section-15.5.4", "Forbidden"),
    404: ("https://tools.ietf.org/html/rfc9110#section-15.5.5", "Not Found"),
    405: ("https://tools.ietf.org/html/rfc9110#section-15.5.6", "Method Not Allowed"),
    406: ("https://tools.ietf.org/html/rfc9110#section-15.5.7", "Not Acceptable"),
    408: ("https://tools.ietf.org/html/rfc9110#section-15.5.9", "Request Timeout"),
    409: ("https://tools.ietf.org/html/rfc9110#section-15.5.10", "Conflict"),
    411: ("https://tools.ietf.org/html/rfc9110#section-15.5.12", "Length Required"),
    412: ("https://tools.ietf.org/html/rfc9110#section-15.5.13", "Precondition Failed"),
    413: ("https://tools.ietf.org/html/rfc9110#section-15.5.14", "Content Too Large"),
    415: ("https://tools.ietf.org/html/rfc9110#section-15.5.16", "Unsupported Media Type"),
    422: ("https://tools.ietf.org/html/rfc9110#section-15.5.21", "Unprocessable Content"),
    428: ("https://tools.ietf.org/html/rfc6585#section-3", "Precondition Required"),
    429: ("https://tools.ietf.org/html/rfc6585#section-4", "Too Many Requests"),
    500: ("https://tools.ietf.org/html/rfc9110#section-15.6.1", "Internal Server Error"),
    502: ("https://tools.ietf.org/html/rfc9110#section-15.6.3", "Bad Gateway"),
    503: ("https://tools.ietf.org/html/rfc9110#section-15.6.4", "Service Unavailable"),
    504: ("https://tools.ietf.org/html/rfc9110#section-15.6.5", "Gateway Timeout"),
}


def status_type(status: int) -> str:
    return _STATUS_TYPES.get(status, ("about:blank", ""))[0]


def status_title(status: int) -> str:
    from http import HTTPStatus

    known = _STATUS_TYPES.get(status)
    if known:
        return known[1]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ProblemDetails(BaseModel):
    """The error body. ``errors`` maps a field's dotted path to its messages (validation only);
    ``extensions`` holds machine-readable extras such as ``error_code``."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "https://tools.ietf.org/html/rfc9110#section-15.5.5",
                "title": "Not Found",
                "status": 404,
                "detail": "User '0192f0c1-...' not found",
                "instance": "/api/v1/users/0192f0c1-...",
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "extensions": {"error_code": "USER_NOT_FOUND"},
            }
        }
    )

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    trace_id: str | None = None
    errors: dict[str, list[str]] | None = Field(default=None)
    extensions: dict[str, Any] | None = Field(default=None)

    @classmethod
    def for_status(cls, status: int, **fields: Any) -> ProblemDetails:
        fields.setdefault("type", status_type(status))
        fields.setdefault("title", status_title(status))
        return cls(status=status, **fields)

    def to_body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
