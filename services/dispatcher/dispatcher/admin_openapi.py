"""The OpenAPI 3.1 document of the dispatcher's admin port (/dlq and /erasures pages), built
from pydantic models of what the pages answer: the models are the one description, the
document is derived (no hand-written JSON schema to drift). docs/admin-api.md explains it.

Served at `GET /dlq/openapi.json` without a token: it describes the API, never its data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from bridge.access import ENGINEERING, EVERYONE, INVESTIGATORS, ROLES, Role
from bridge.problems import MEDIA_TYPE, ProblemBody

from .outcomes import STATUSES

_REF = "#/components/schemas/{model}"
_STATUS = "|".join(STATUSES)


# --- what the pages answer ------------------------------------------------------------------


class EntrySummary(BaseModel):
    """One dead letter, as `GET /dlq` lists it."""

    id: int
    reference: str
    status: str = Field(description=f"one of {', '.join(STATUSES)}")
    reason: str = Field(description="why it was dead-lettered, e.g. missing_contact")
    retry_count: int
    provider: str
    event_type: str
    template_id: str | None
    last_error: str | None
    next_attempt_at: str | None = Field(description="ISO 8601")
    created_at: str = Field(description="ISO 8601")
    updated_at: str = Field(description="ISO 8601")


class EntryList(BaseModel):
    entries: list[EntrySummary]
    count: int


class EntryDetail(EntrySummary):
    """One dead letter in full: the event (the number masked) and the reference's story."""

    dedupe_key: str
    payload: dict[str, Any] = Field(description="the canonical event, phone shown as •••4567")
    history: list[dict[str, Any]] = Field(description="the reference's audit records")


class StatusReasonCount(BaseModel):
    status: str
    reason: str
    count: int


class DeadLetterStats(BaseModel):
    window_seconds: int | None = Field(description="newer_than in seconds; null: all time")
    total: int
    by_status: dict[str, int]
    by_reason: dict[str, int]
    by_status_and_reason: list[StatusReasonCount]


class RetryResult(BaseModel):
    """One retry: 404 and 409 answers are problems carrying these members too."""

    id: int
    outcome: str = Field(description="sent, already_sent, busy, not_retryable, …")
    ok: bool
    message: str
    entry: EntrySummary | None


class BulkRetryLine(BaseModel):
    id: int
    outcome: str
    ok: bool
    message: str


class BulkRetryResult(BaseModel):
    matched: int
    sent: int
    failed: int
    results: list[BulkRetryLine]


class Settled(BaseModel):
    id: int
    entry: EntrySummary


class Note(BaseModel):
    note: str = Field(min_length=1, max_length=1000, description="why (kept in the audit log)")


class BulkFilters(BaseModel):
    """Which entries to retry (the same names as `GET /dlq`'s query); at least one besides
    limit. Default status: every retryable one."""

    status: str | None = Field(None, description=f"comma list of {_STATUS}")
    reason: str | None = None
    provider: str | None = None
    reference: str | None = None
    older_than: str | None = Field(None, description="90s, 30m, 2h, 1d, 1h30m")
    newer_than: str | None = None
    limit: int | None = Field(None, ge=1, le=500)


class ErasureRequest(BaseModel):
    """Exactly one of account and phone."""

    account: str | None = None
    phone: str | None = None
    dry_run: bool = Field(False, description="show what would go, erase nothing")


class ErasureResult(BaseModel):
    id: int | None = Field(description="the erasure log entry; null for a dry run")
    status: Literal["dry_run", "done", "pending"]
    nothing_found: bool
    removed: dict[str, Any] = Field(description="counts by store")
    siteti_contacts_left: int
    earlier_pending: list[int]


class ErasureLogEntry(BaseModel):
    """An erasure log entry: counts and keyed hashes only, never the subject."""

    id: int
    subject_hash: str
    subject_kind: Literal["account", "phone"]
    requested_by: str
    status: str
    contacts_left: int | None
    removed: Any
    attempts: int
    last_error: str | None
    next_attempt_at: str | None
    created_at: str
    updated_at: str
    completed_at: str | None


# --- the operations ---------------------------------------------------------------------------


_AUTH_ERRORS = {
    401: "no bearer token, or an unknown one (WWW-Authenticate: Bearer)",
    403: "the token's role may not do this",
    503: "no token configured (the API is off), or the database is unavailable",
}


@dataclass(frozen=True)
class Operation:
    method: Literal["get", "post"]
    path: str
    summary: str
    roles: frozenset[Role] | None  # None: no token needed
    answers: dict[int, tuple[type[BaseModel] | None, str]]
    errors: dict[int, str] = field(default_factory=dict)
    query: tuple[str, ...] = ()
    body: type[BaseModel] | None = None


_LIST_QUERY = ("status", "reason", "provider", "reference", "older_than", "newer_than", "limit")
_QUERY_DOCS: dict[str, tuple[str, dict[str, Any]]] = {
    "status": (f"comma list of {_STATUS}", {"type": "string"}),
    "reason": ("e.g. missing_contact, template_not_approved", {"type": "string"}),
    "provider": ("e.g. paystack", {"type": "string"}),
    "reference": ("one transaction's entries, e.g. moniepoint:MNP-1", {"type": "string"}),
    "older_than": ("created before this long ago: 90s, 30m, 2h, 1d, 1h30m", {"type": "string"}),
    "newer_than": ("created within this long ago", {"type": "string"}),
    "limit": ("at most this many (GET /dlq: ≤ 1000, default 100; bulk: ≤ 500)", {"type": "string"}),
}
_INVALID = {400: "a query, path or body value is invalid (detail says which)"}
_NO_ENTRY = {404: "no such entry"}
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/dlq/stats",
        "Dead-letter counts by status and reason (no references)",
        EVERYONE,
        {200: (DeadLetterStats, "the counts")},
        _INVALID,
        query=("newer_than",),
    ),
    Operation(
        "get",
        "/dlq",
        "List dead letters",
        INVESTIGATORS,
        {200: (EntryList, "matching entries, newest first")},
        _INVALID,
        query=_LIST_QUERY,
    ),
    Operation(
        "post",
        "/dlq/retry",
        "Retry every entry matching the filters (query or JSON body)",
        INVESTIGATORS,
        {200: (BulkRetryResult, "what each retry did")},
        _INVALID,
        query=_LIST_QUERY,
        body=BulkFilters,
    ),
    Operation(
        "get",
        "/dlq/{entry_id}",
        "One dead letter, its event (number masked) and the reference's audit history",
        INVESTIGATORS,
        {200: (EntryDetail, "the entry")},
        _INVALID | _NO_ENTRY,
    ),
    Operation(
        "post",
        "/dlq/{entry_id}/retry",
        "Retry now (the path of a fresh event; never sends twice)",
        INVESTIGATORS,
        {200: (RetryResult, "retried (ok says whether it was sent)")},
        _INVALID | _NO_ENTRY | {409: "busy (another retry holds it), or it may not be retried"},
    ),
    Operation(
        "post",
        "/dlq/{entry_id}/resolve",
        "Mark handled by an operator (→ completed)",
        INVESTIGATORS,
        {200: (Settled, "resolved")},
        _INVALID | _NO_ENTRY | {409: "its status may not be resolved (`entry_status`)"},
        body=Note,
    ),
    Operation(
        "post",
        "/dlq/{entry_id}/close",
        "Give up on it (→ failed)",
        INVESTIGATORS,
        {200: (Settled, "closed")},
        _INVALID | _NO_ENTRY | {409: "its status may not be closed (`entry_status`)"},
        body=Note,
    ),
    Operation(
        "post",
        "/erasures",
        "Erase a data subject (engineering only)",
        ENGINEERING,
        {
            200: (ErasureResult, "dry run: what would go"),
            201: (ErasureResult, "erased"),
            202: (ErasureResult, "erased here; Siteti contacts still to delete (retried)"),
        },
        _INVALID,
        body=ErasureRequest,
    ),
    Operation(
        "get",
        "/erasures/{erasure_id}",
        "An erasure log entry",
        ENGINEERING,
        {200: (ErasureLogEntry, "the entry")},
        {404: "no such erasure"},
    ),
    Operation(
        "get",
        "/dlq/openapi.json",
        "This document (no token needed)",
        None,
        {200: (None, "the OpenAPI 3.1 document")},
    ),
)
_MODELS: tuple[type[BaseModel], ...] = (
    ProblemBody,
    EntryList,
    EntryDetail,
    DeadLetterStats,
    RetryResult,
    BulkRetryResult,
    Settled,
    Note,
    BulkFilters,
    ErasureRequest,
    ErasureResult,
    ErasureLogEntry,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            # ASCII digits, within PostgreSQL's bigint (anything else is not a route: 404).
            "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
        }
        for name in ("entry_id", "erasure_id")
        if "{" + name + "}" in operation.path
    ]
    for name in operation.query:
        description, schema = _QUERY_DOCS[name]
        params.append({"name": name, "in": "query", "description": description, "schema": schema})
    return params


def _operation(op: Operation) -> dict[str, Any]:
    roles = sorted(op.roles) if op.roles is not None else []
    responses: dict[str, Any] = {
        str(status): {
            "description": text,
            "content": {"application/json": {"schema": _ref(model) if model else {}}},
        }
        for status, (model, text) in op.answers.items()
    }
    errors = op.errors | (_AUTH_ERRORS if op.roles is not None else {})
    for status in sorted(errors):
        responses[str(status)] = {
            "description": errors[status],
            "content": {MEDIA_TYPE: {"schema": _ref(ProblemBody)}},
        }
    document: dict[str, Any] = {
        "summary": op.summary,
        "operationId": op.method + op.path.replace("/", "_").replace("{", "").replace("}", ""),
        "parameters": _parameters(op),
        "responses": responses,
    }
    if op.roles is None:
        document["security"] = []
    else:
        document["description"] = f"Roles: {', '.join(roles)}."
        document["x-roles"] = roles
    if op.body is not None:
        document["requestBody"] = {
            "required": op.body is not BulkFilters,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    return document


@cache
def admin_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the admin port (built once, then shared: do not mutate)."""
    _, schemas = models_json_schema(
        [(model, "serialization") for model in _MODELS], ref_template=_REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "siteti-bridge dispatcher admin API",
            "version": "1",
            "description": "Dead letters and erasures, on the dispatcher's web port. Every"
            " error is RFC 9457 problem details (application/problem+json): docs/errors.md."
            f" Roles: {', '.join(ROLES)} (API_TOKENS). docs/admin-api.md has examples.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from API_TOKENS (role:token) or ADMIN_API_TOKENS",
                }
            },
        },
        "security": [{"bearer": []}],
    }
