"""The one error shape of every HTTP API of the bridge: RFC 9457 (RFC 7807) problem details,
sent as `application/problem+json`. No I/O, no framework.

    {"type": "/docs/errors.md#not-found", "title": "Not found", "status": 404,
     "detail": "no such entry", "id": 7}

- `type` names the kind of problem: a URI reference to its section in docs/errors.md (the
  path from the repository root, the same wherever the bridge runs). Clients branch on it.
- `title` is the kind's fixed summary; `detail` is this occurrence's message, the text a
  person acts on; `status` repeats the HTTP status.
- Extension members add what a client can use (`retry_after` in seconds, an entry's `id`).

`problem` builds a body, `ProblemBody` is its pydantic model (for OpenAPI documents), and
`openapi_responses` the OpenAPI `responses` entries for a route's error statuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MEDIA_TYPE = "application/problem+json"
#: Where every `type` points: docs/errors.md, one section per kind (its slug is the anchor).
DOCS = "/docs/errors.md"
_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})


@dataclass(frozen=True)
class ProblemType:
    slug: str
    title: str

    @property
    def uri(self) -> str:
        return f"{DOCS}#{self.slug}"


INVALID_REQUEST = ProblemType("invalid-request", "The request is invalid")
BAD_SIGNATURE = ProblemType("bad-signature", "The signature check failed")
UNAUTHENTICATED = ProblemType("unauthenticated", "A valid bearer token is needed")
FORBIDDEN = ProblemType("forbidden", "The token's role may not do this")
CLIENT_NOT_ALLOWED = ProblemType("client-not-allowed", "The client address is not allowed")
NOT_CONFIRMED = ProblemType("not-confirmed", "The provider does not confirm the transaction")
NOT_FOUND = ProblemType("not-found", "Not found")
METHOD_NOT_ALLOWED = ProblemType("method-not-allowed", "Method not allowed")
CONFLICT = ProblemType("conflict", "The entry's state does not allow this")
TOO_LARGE = ProblemType("too-large", "The body is too large")
UNUSABLE_PAYLOAD = ProblemType("unusable-payload", "Authentic, but not usable")
RATE_LIMITED = ProblemType("rate-limited", "Too many rejected requests")
OVERLOADED = ProblemType("overloaded", "Too many requests in progress")
UNAVAILABLE = ProblemType("unavailable", "A dependency is unavailable")
API_DISABLED = ProblemType("api-disabled", "The API is disabled")
NOT_READY = ProblemType("not-ready", "Not ready")
INTERNAL_ERROR = ProblemType("internal-error", "Internal error")

#: Every kind, in docs/errors.md's order (a test keeps the two the same).
TYPES: tuple[ProblemType, ...] = (
    INVALID_REQUEST,
    BAD_SIGNATURE,
    UNAUTHENTICATED,
    FORBIDDEN,
    CLIENT_NOT_ALLOWED,
    NOT_CONFIRMED,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    CONFLICT,
    TOO_LARGE,
    UNUSABLE_PAYLOAD,
    RATE_LIMITED,
    OVERLOADED,
    UNAVAILABLE,
    API_DISABLED,
    NOT_READY,
    INTERNAL_ERROR,
)

# The kind an answer gets when only its status is known (a framework's own 404, 405, 422…).
_BY_STATUS: dict[int, ProblemType] = {
    400: INVALID_REQUEST,
    401: UNAUTHENTICATED,
    403: FORBIDDEN,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    409: CONFLICT,
    413: TOO_LARGE,
    422: INVALID_REQUEST,
    429: RATE_LIMITED,
    503: UNAVAILABLE,
}


def for_status(status: int) -> ProblemType:
    return _BY_STATUS.get(status, INTERNAL_ERROR if status >= 500 else INVALID_REQUEST)


def problem(kind: ProblemType, status: int, detail: str, /, **extensions: Any) -> dict[str, Any]:
    """A problem details body. Extension members must not reuse the standard members' names
    (a clash would silently change what clients branch on)."""
    if not 400 <= status <= 599:
        raise ValueError(f"a problem's status is 4xx or 5xx, not {status}")
    clash = _MEMBERS & extensions.keys()
    if clash:
        raise ValueError(f"extension members clash with standard ones: {sorted(clash)}")
    return {"type": kind.uri, "title": kind.title, "status": status, "detail": detail} | extensions


class ProblemBody(BaseModel):
    """RFC 9457 problem details, as every error of the bridge's HTTP APIs is answered."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(description="URI reference to the kind's section in docs/errors.md")
    title: str = Field(description="the kind's fixed summary")
    status: int = Field(ge=400, le=599, description="the HTTP status, repeated")
    detail: str = Field(description="what went wrong this time, for a person to act on")
    instance: str | None = Field(None, description="the occurrence, when there is one")
    retry_after: int | None = Field(
        None, description="seconds to wait before retrying (429 and 503 from the edge)"
    )


def problem_schema() -> dict[str, Any]:
    """ProblemBody's JSON Schema, self-contained (no $ref), for an OpenAPI `content`."""
    return ProblemBody.model_json_schema()


def openapi_responses(statuses: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries, each `application/problem+json`, from {status: when}
    (string keys, as in an OpenAPI document and as FastAPI's `responses=` takes them too)."""
    content = {MEDIA_TYPE: {"schema": problem_schema()}}
    return {str(s): {"description": text, "content": content} for s, text in statuses.items()}
